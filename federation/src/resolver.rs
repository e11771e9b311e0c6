//! The DNS resolver of the federation client: every address a name resolves
//! to is judged by the address policy (`ip_range_blacklist`,
//! `ip_range_whitelist`) before reqwest may connect, so a name that points
//! at a private address is refused as a literal one is. Discovery registers
//! where a host name really leads (an SRV target) with `route`.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use weft_core::address_policy::AddressPolicy;

#[derive(Debug, Clone)]
pub(crate) struct PolicyResolver {
    policy: Arc<AddressPolicy>,
    /// Host names whose addresses discovery decided (from SRV records).
    routes: Arc<RwLock<HashMap<String, Vec<SocketAddr>>>>,
}

impl PolicyResolver {
    pub(crate) fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy, routes: Arc::default() }
    }

    /// Connections to `host` go to `addresses` (their ports are replaced by
    /// the URL's).
    pub(crate) fn route(&self, host: &str, addresses: Vec<SocketAddr>) {
        self.routes.write().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(host.to_ascii_lowercase(), addresses);
    }

    pub(crate) fn policy(&self) -> &AddressPolicy {
        &self.policy
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let routed = self.routes.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&host).cloned();
        let policy = self.policy.clone();
        Box::pin(async move {
            let found: Vec<SocketAddr> = match routed {
                Some(addresses) => addresses,
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            let allowed: Vec<SocketAddr> = found.iter().copied().filter(|address| policy.allows(address.ip())).collect();
            if allowed.is_empty() {
                let refused = found.first().map_or_else(|| format!("{host} has no address"), |address| policy.check(address.ip()).unwrap_err());
                return Err(refused.into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}
