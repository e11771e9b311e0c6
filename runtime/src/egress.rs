//! Outbound HTTP rules: the `allowed_outbound_hosts` allow-list and the
//! address check after DNS. Both the production sender and the testkit's
//! recording sender go through `Egress::check_url`; the production one (and
//! the testkit's live one) resolves names and applies `check_address` to
//! every address it would connect to.
//!
//! An entry is `scheme://host[:port]`, `host[:port]` (any of http/https), a
//! host of `*.example.org` (any subdomain, not the apex) or `*` (any host:
//! `*:*` is any URL, for plugins that call user-chosen URLs such as push
//! gateways), and a port of `*` (any). A missing port means the scheme's
//! default (80, 443).
//!
//! The address check is the server's `AddressPolicy`: Synapse's
//! `ip_range_blacklist` (default: loopback, RFC 1918 and other private,
//! link-local, CGNAT, multicast, documentation and benchmarking ranges; the
//! unspecified addresses always) with `ip_range_whitelist` as exceptions. A
//! plugin with `allow_private_addresses` skips it. IPv4-mapped IPv6
//! addresses are judged as the IPv4 address.

use std::{net::IpAddr, sync::Arc};

/// One plugin's outbound HTTP permissions.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    rules: Vec<Rule>,
    /// `allow_private_addresses`: whether a host may resolve to an address
    /// the policy refuses.
    pub allow_private: bool,
    /// The server's address policy.
    policy: Arc<AddressPolicy>,
    /// The HTTP clients of this plugin's requests, one per host and checked
    /// addresses, so connections are reused; kept here rather than process
    /// wide because a client's connections belong to the runtime that
    /// opened them.
    pub(crate) clients: Arc<crate::host_services::ClientPool>,
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
    Any,
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
    /// Addresses are judged by the default policy until `with_policy`.
    pub fn parse(entries: &[String], allow_private: bool) -> Result<Self, String> {
        let rules = entries.iter().map(|entry| parse_rule(entry).ok_or_else(|| entry.clone())).collect::<Result<_, _>>()?;
        Ok(Self { rules, allow_private, policy: Arc::default(), clients: Arc::default() })
    }

    /// The same permissions under the server's address policy.
    pub fn with_policy(mut self, policy: Arc<AddressPolicy>) -> Self {
        self.policy = policy;
        self
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
                    HostPattern::Any => true,
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
        if self.allow_private {
            return Ok(());
        }
        self.policy.check(address)
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
        _ if host == "*" => HostPattern::Any,
        Some(suffix) => HostPattern::Subdomain(suffix.to_owned()),
        None => HostPattern::Exact(host),
    };
    match &host {
        HostPattern::Exact(h) | HostPattern::Subdomain(h) if h.is_empty() || h.contains('*') => return None,
        _ => {}
    }
    Some(Rule { scheme, host, port })
}

/// Not refused by the default address policy (Synapse's default
/// `ip_range_blacklist`): not loopback, private, link-local, shared (CGNAT),
/// unspecified, multicast, documentation or benchmarking space.
pub fn is_public(address: IpAddr) -> bool {
    AddressPolicy::default().allows(address)
}

pub use weft_plugin_config::address_policy::{AddressPolicy, DEFAULT_IP_RANGE_BLACKLIST};

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_default_policy_is_synapses_blacklist() {
        let policy = AddressPolicy::default();
        for refused in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.31.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "192.0.0.8",
            "198.18.0.1",
            "203.0.113.5",
            "224.0.0.1",
            "0.0.0.0",
            "::",
            "::1",
            "fe80::1",
            "fd00::1",
            "2001:db8::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!policy.allows(ip(refused)), "{refused}");
            assert!(policy.check(ip(refused)).unwrap_err().contains("ip_range_blacklist"));
        }
        for allowed in ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111", "::ffff:93.184.216.34"] {
            assert!(policy.allows(ip(allowed)), "{allowed}");
        }
    }

    #[test]
    fn the_whitelist_makes_exceptions_and_a_given_blacklist_replaces_the_default() {
        let policy = AddressPolicy::new(None, &["127.0.0.1".into(), "10.5.0.0/16".into()]).unwrap();
        assert!(policy.allows(ip("127.0.0.1")) && policy.allows(ip("::ffff:127.0.0.1")) && policy.allows(ip("10.5.3.4")));
        assert!(!policy.allows(ip("127.0.0.2")) && !policy.allows(ip("10.6.0.1")) && !policy.allows(ip("::1")));
        let own = AddressPolicy::new(Some(&["203.0.113.0/24".into()]), &[]).unwrap();
        assert!(own.allows(ip("127.0.0.1")) && own.allows(ip("10.0.0.1")));
        assert!(!own.allows(ip("203.0.113.9")));
        assert!(!own.allows(ip("0.0.0.0")) && !own.allows(ip("::")), "unspecified addresses are always refused");
        assert!(AddressPolicy::new(None, &["10.0.0.0/33".into()]).unwrap_err().contains("10.0.0.0/33"));
        assert!(AddressPolicy::new(Some(&["localhost".into()]), &[]).is_err());
    }

    #[test]
    fn a_plugin_allowed_private_addresses_skips_the_policy() {
        let egress = Egress::parse(&["*:*".into()], true).unwrap();
        assert!(egress.check_address(ip("127.0.0.1")).is_ok());
        let egress = Egress::parse(&["*:*".into()], false).unwrap().with_policy(Arc::new(AddressPolicy::new(None, &["127.0.0.1".into()]).unwrap()));
        assert!(egress.check_address(ip("127.0.0.1")).is_ok() && egress.check_address(ip("10.0.0.1")).is_err());
    }

    #[test]
    fn a_host_of_star_is_any_host() {
        let any = Egress::parse(&["*:*".into()], false).unwrap();
        for url in ["https://push.example.org/_matrix/push/v1/notify", "http://gw.example:5000/x", "http://[2001:db8::1]:8080/"] {
            assert!(any.check_url(url).is_ok(), "{url}");
        }
        assert!(any.check_url("ftp://push.example.org/").is_err());
        let https = Egress::parse(&["https://*".into()], false).unwrap();
        assert!(https.check_url("https://a.example/").is_ok());
        assert!(https.check_url("https://a.example:8443/").is_err() && https.check_url("http://a.example/").is_err());
        assert!(Egress::parse(&["https://*x.example".into()], false).is_err());
    }
}
