//! Outbound HTTP rules: the `allowed_outbound_hosts` allow-list and the
//! address check after DNS. Both the production sender and the testkit's
//! recording sender go through `Egress::check_url`; only the production one
//! resolves names, so only it applies `check_address`.
//!
//! An entry is `scheme://host[:port]`, `host[:port]` (any of http/https), a
//! host of `*.example.org` (any subdomain, not the apex), and a port of `*`
//! (any). A missing port means the scheme's default (80, 443).

use std::net::IpAddr;

/// One plugin's outbound HTTP permissions.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    rules: Vec<Rule>,
    /// `allow_private_addresses`: whether a host may resolve to loopback,
    /// private or link-local addresses.
    pub allow_private: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    scheme: Option<String>,
    host: HostPattern,
    port: PortRule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRule {
    /// The scheme's default port (80 or 443; either for a rule without scheme).
    Default,
    Exact(u16),
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    Subdomain(String),
}

/// A URL the allow-list accepted, split for connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Egress {
    /// Parses every entry; `Err` names the first one that is not valid.
    pub fn parse(entries: &[String], allow_private: bool) -> Result<Self, String> {
        let rules = entries.iter().map(|entry| parse_rule(entry).ok_or_else(|| entry.clone())).collect::<Result<_, _>>()?;
        Ok(Self { rules, allow_private })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Checks a URL the plugin asked for; `Err` says why it is refused.
    pub fn check_url(&self, url: &str) -> Result<Target, String> {
        let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
        let scheme = uri.scheme_str().ok_or_else(|| format!("`{url}` has no scheme"))?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            other => return Err(format!("scheme `{other}` is not allowed: only http and https")),
        };
        let host = uri.host().ok_or_else(|| format!("`{url}` has no host"))?.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(default_port);
        let allowed = self.rules.iter().any(|rule| {
            rule.scheme.as_ref().is_none_or(|s| *s == scheme)
                && match &rule.host {
                    HostPattern::Exact(h) => *h == host,
                    HostPattern::Subdomain(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
                }
                && match rule.port {
                    PortRule::Exact(p) => p == port,
                    PortRule::Any => true,
                    PortRule::Default => port == default_port,
                }
        });
        if !allowed {
            return Err(format!("{scheme}://{host}:{port} is not in allowed_outbound_hosts"));
        }
        Ok(Target { scheme, host, port })
    }

    /// Checks an address a host resolved to (or a literal one).
    pub fn check_address(&self, address: IpAddr) -> Result<(), String> {
        if self.allow_private || is_public(address) {
            Ok(())
        } else {
            Err(format!("{address} is a loopback, private or link-local address and allow_private_addresses is off"))
        }
    }
}

fn parse_rule(entry: &str) -> Option<Rule> {
    let (scheme, rest) = match entry.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return None;
            }
            (Some(scheme), rest)
        }
        None => (None, entry),
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.is_empty() {
        return None;
    }
    // `[v6]:port`, `host:port`, `host`.
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let port = match port {
        None => PortRule::Default,
        Some("*") => PortRule::Any,
        Some(p) => PortRule::Exact(p.parse::<u16>().ok()?),
    };
    let host = host.to_ascii_lowercase();
    let host = match host.strip_prefix("*.") {
        Some(suffix) => HostPattern::Subdomain(suffix.to_owned()),
        None => HostPattern::Exact(host),
    };
    match &host {
        HostPattern::Exact(h) | HostPattern::Subdomain(h) if h.is_empty() || h.contains('*') => return None,
        _ => {}
    }
    Some(Rule { scheme, host, port })
}

/// Not loopback, private, link-local, shared (CGNAT), unspecified, multicast
/// or documentation space; IPv4-mapped IPv6 is judged as IPv4.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || (a == 100 && (64..128).contains(&b))
                || a == 0)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80)
        }
    }
}
