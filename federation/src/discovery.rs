//! Server discovery (the specification's "Resolving server names"): where
//! to connect for a server name, which name its certificate must carry, and
//! the `Host` header.
//!
//! 1. An IP literal: that address, port 8448 unless given.
//! 2. A host name with an explicit port: that host and port.
//! 3. `https://<host>/.well-known/matrix/server` naming `m.server`: the
//!    delegated name, resolved by these same rules (IP literal, explicit
//!    port, then SRV and 8448 below), the certificate and `Host` being the
//!    delegated name's.
//! 4. SRV `_matrix-fed._tcp.<host>`, then the deprecated `_matrix._tcp.<host>`:
//!    the target and port, the certificate and `Host` being the server name's.
//! 5. Otherwise `<host>:8448`.
//!
//! Answers are cached in memory: a well-known answer (or its absence) for a
//! day (an hour when the fetch failed), a whole resolution as long.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Mutex,
    time::{Duration, Instant},
};

use hickory_resolver::TokioResolver;
use ruma::ServerName;

use crate::{FederationError, resolver::PolicyResolver};

const DEFAULT_PORT: u16 = 8448;
const WELL_KNOWN_TTL: Duration = Duration::from_secs(24 * 60 * 60);
const WELL_KNOWN_FAILURE_TTL: Duration = Duration::from_secs(60 * 60);
/// The most of a well-known answer read (Synapse's limit).
const WELL_KNOWN_MAX_SIZE: usize = 50 * 1024;

/// Where one server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The host of the URL: the name the certificate must carry (or an IP).
    pub host: String,
    pub port: u16,
    /// The `Host` header.
    pub host_header: String,
}

impl Destination {
    pub fn base_url(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("https://[{v6}]:{}", self.port),
            _ => format!("https://{}:{}", self.host, self.port),
        }
    }
}

pub(crate) struct Discovery {
    resolver: PolicyResolver,
    dns: Option<TokioResolver>,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, (Destination, Instant)>>,
}

impl Discovery {
    pub(crate) fn new(resolver: PolicyResolver, http: reqwest::Client) -> Self {
        let dns = match TokioResolver::builder_tokio() {
            Ok(builder) => Some(builder.build()),
            Err(error) => {
                tracing::warn!(%error, "no DNS configuration: SRV records of other servers will not be looked up");
                None
            }
        };
        Self { resolver, dns, http, cache: Mutex::new(HashMap::new()) }
    }

    /// Where `server` is reached; cached.
    pub(crate) async fn resolve(&self, server: &ServerName) -> Result<Destination, FederationError> {
        let key = server.as_str().to_ascii_lowercase();
        if let Some((destination, until)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && *until > Instant::now()
        {
            return Ok(destination.clone());
        }
        let (destination, ttl) = self.discover(server).await?;
        if let Ok(ip) = destination.host.parse::<IpAddr>() {
            self.resolver.policy().check(ip).map_err(FederationError::Blocked)?;
        }
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (destination.clone(), Instant::now() + ttl));
        Ok(destination)
    }

    async fn discover(&self, server: &ServerName) -> Result<(Destination, Duration), FederationError> {
        let host = server.host();
        if let Some(destination) = literal_or_explicit(server.as_str(), host, server.port()) {
            return Ok((destination, WELL_KNOWN_TTL));
        }
        let (delegated, ttl) = self.well_known(host).await;
        if let Some(delegated) = delegated {
            let Ok(delegated_name) = <&ServerName>::try_from(delegated.as_str()) else {
                return Ok((self.srv_or_default(host, server.as_str()).await, WELL_KNOWN_FAILURE_TTL));
            };
            let delegated_host = delegated_name.host();
            if let Some(destination) = literal_or_explicit(delegated_name.as_str(), delegated_host, delegated_name.port()) {
                return Ok((destination, ttl));
            }
            return Ok((self.srv_or_default(delegated_host, delegated_host).await, ttl));
        }
        Ok((self.srv_or_default(host, host).await, ttl))
    }

    /// Steps 4 and 5: SRV records of `host`, else `host:8448`.
    async fn srv_or_default(&self, host: &str, host_header: &str) -> Destination {
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            if let Some((target, port)) = self.srv(&format!("{service}.{host}.")).await
                && let Ok(addresses) = tokio::net::lookup_host((target.as_str(), port)).await
            {
                let addresses: Vec<SocketAddr> = addresses.collect();
                if !addresses.is_empty() {
                    // The certificate stays the server name's: connect to the
                    // target's addresses under the server's host name.
                    self.resolver.route(host, addresses);
                    return Destination { host: host.to_owned(), port, host_header: host_header.to_owned() };
                }
            }
        }
        Destination { host: host.to_owned(), port: DEFAULT_PORT, host_header: host_header.to_owned() }
    }

    /// The target and port of the SRV record with the lowest priority.
    async fn srv(&self, name: &str) -> Option<(String, u16)> {
        let lookup = self.dns.as_ref()?.srv_lookup(name).await.ok()?;
        let record = lookup.iter().min_by_key(|record| (record.priority(), u16::MAX - record.weight()))?;
        let target = record.target().to_utf8();
        let target = target.trim_end_matches('.');
        (!target.is_empty()).then(|| (target.to_owned(), record.port()))
    }

    /// `m.server` of `https://<host>/.well-known/matrix/server`, and how long
    /// the answer holds.
    async fn well_known(&self, host: &str) -> (Option<String>, Duration) {
        let url = format!("https://{host}/.well-known/matrix/server");
        let fetched = async {
            let response = self.http.get(&url).timeout(Duration::from_secs(10)).send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            let body = crate::client::read_bounded(response, WELL_KNOWN_MAX_SIZE).await.ok()?;
            let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
            value.get("m.server")?.as_str().map(str::to_owned)
        };
        match fetched.await {
            Some(delegated) => (Some(delegated), WELL_KNOWN_TTL),
            None => (None, WELL_KNOWN_FAILURE_TTL),
        }
    }
}

/// Steps 1 and 2: an IP literal, or a host name with an explicit port.
fn literal_or_explicit(name: &str, host: &str, port: Option<u16>) -> Option<Destination> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return Some(Destination { host: bare.to_owned(), port: port.unwrap_or(DEFAULT_PORT), host_header: name.to_owned() });
    }
    port.map(|port| Destination { host: host.to_owned(), port, host_header: name.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_explicit_ports_need_no_lookup() {
        let d = literal_or_explicit("127.0.0.1:8449", "127.0.0.1", Some(8449)).unwrap();
        assert_eq!((d.host.as_str(), d.port, d.host_header.as_str()), ("127.0.0.1", 8449, "127.0.0.1:8449"));
        let d = literal_or_explicit("[::1]", "[::1]", None).unwrap();
        assert_eq!((d.base_url().as_str(), d.host_header.as_str()), ("https://[::1]:8448", "[::1]"));
        let d = literal_or_explicit("localhost:9000", "localhost", Some(9000)).unwrap();
        assert_eq!(d.base_url(), "https://localhost:9000");
        assert!(literal_or_explicit("example.org", "example.org", None).is_none());
    }
}
