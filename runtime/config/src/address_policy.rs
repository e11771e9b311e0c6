//! The outbound address policy: Synapse's `ip_range_blacklist` (default:
//! loopback, RFC 1918 and other private, link-local, CGNAT, multicast,
//! documentation and benchmarking ranges; the unspecified addresses always)
//! with `ip_range_whitelist` as exceptions. Shared by plugins' outbound HTTP
//! (the runtime's `egress`) and federation (`weft-federation`), which both
//! judge every address a name resolved to. Lives in this small crate so both
//! reach it without depending on each other.

use std::net::IpAddr;

use ipnet::IpNet;

/// Synapse's default `ip_range_blacklist`.
pub const DEFAULT_IP_RANGE_BLACKLIST: [&str; 19] = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
];

/// Refused whatever `ip_range_blacklist` says (as Synapse): connecting to an
/// unspecified address reaches this machine.
const ALWAYS_BLACKLISTED: [&str; 2] = ["0.0.0.0/32", "::/128"];

/// Which addresses outbound requests of plugins may reach: the server's
/// `ip_range_blacklist` and `ip_range_whitelist` (CIDR ranges; an address in
/// both is allowed). The server fills it from its configuration; the
/// default is Synapse's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPolicy {
    blacklist: Vec<IpNet>,
    whitelist: Vec<IpNet>,
}

impl Default for AddressPolicy {
    fn default() -> Self {
        Self::new(None, &[]).unwrap_or(Self { blacklist: Vec::new(), whitelist: Vec::new() })
    }
}

impl AddressPolicy {
    /// `blacklist` replaces the default when given; `Err` names the first
    /// entry that is not a CIDR range or an address.
    pub fn new(blacklist: Option<&[String]>, whitelist: &[String]) -> Result<Self, String> {
        let defaults: Vec<String>;
        let blacklist = match blacklist {
            Some(entries) => entries,
            None => {
                defaults = DEFAULT_IP_RANGE_BLACKLIST.iter().map(|range| (*range).to_owned()).collect();
                &defaults
            }
        };
        let always = ALWAYS_BLACKLISTED.iter().map(|range| (*range).to_owned()).collect::<Vec<_>>();
        Ok(Self { blacklist: parse_ranges(blacklist.iter().chain(&always))?, whitelist: parse_ranges(whitelist)? })
    }

    /// Whether an outbound request may connect to `address`.
    pub fn allows(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        let within = |ranges: &[IpNet]| ranges.iter().any(|range| range.contains(&address));
        !within(&self.blacklist) || within(&self.whitelist)
    }

    pub fn check(&self, address: IpAddr) -> Result<(), String> {
        if self.allows(address) {
            Ok(())
        } else {
            Err(format!(
                "{address} is in ip_range_blacklist (loopback, private, link-local and other special addresses by default) and not in ip_range_whitelist"
            ))
        }
    }
}

/// CIDR ranges, or single addresses (a /32 or /128).
fn parse_ranges<'a>(entries: impl IntoIterator<Item = &'a String>) -> Result<Vec<IpNet>, String> {
    entries
        .into_iter()
        .map(|entry| {
            let entry = entry.trim();
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{entry}` is not a CIDR range such as 10.0.0.0/8"))
        })
        .collect()
}
