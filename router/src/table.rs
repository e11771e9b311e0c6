//! Which instances serve each endpoint group, derived from the configuration:
//! `instance_map.<name>.serves` lists groups, `client_port`/`client_path` say
//! where the instance's client listener is.
//!
//! A group no instance lists goes to the writer of its stream when that
//! writer has a client address (typing, to-device, account data, receipts,
//! presence, push rules, device lists: `EndpointGroup::written_stream`), and to `main` otherwise. Writes can
//! reach any instance (workers forward to the writer themselves); the writer
//! is only preferred because it saves that extra hop. `initial_sync` falls
//! back to the `sync` instances, not to `main`.
//!
//! The table also knows the events persisters (`stream_writers.events`), so
//! that a send into a room can go to the room's persister when that
//! persister serves `event_sending`: it persists without the internal hop
//! and without waiting to see its own write replicated.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::PathBuf,
};

use weft_core::config::{Config, MAIN_INSTANCE, Resource};
use weft_core::endpoint_groups::EndpointGroup;
use weft_core::streams::shard;

/// Where an instance's client listener is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // An IPv6 literal needs brackets before the port.
            Self::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "{host}:{port}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// An instance the router can send requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub address: Address,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error("`main` has no client listener: add one to `listeners` or set `instance_map.main.client_port`")]
    NoMainAddress,
    #[error("`instance_map.{0}` lists groups in `serves` but has no `client_port` or `client_path`")]
    NoClientAddress(String),
    #[error("`instance_map.{instance}.serves`: `{group}` is not an endpoint group")]
    UnknownGroup { instance: String, group: String },
}

/// The group to instances table. Every group has at least one instance.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    instances: Vec<Instance>,
    /// Indexes into `instances`, in `instance_map` order.
    groups: HashMap<EndpointGroup, Vec<usize>>,
    initial_sync_separately: bool,
    /// `stream_writers.events`, in configured order (the sharding order).
    events_writers: Vec<String>,
}

impl RoutingTable {
    pub fn from_config(config: &Config) -> Result<Self, TableError> {
        let mut instances = vec![Instance { name: MAIN_INSTANCE.to_owned(), address: main_address(config).ok_or(TableError::NoMainAddress)? }];
        let mut groups: HashMap<EndpointGroup, Vec<usize>> = HashMap::new();
        let mut index_of = BTreeMap::from([(MAIN_INSTANCE.to_owned(), 0)]);
        for (name, location) in &config.instance_map {
            let address = match (&location.client_path, location.client_port) {
                (Some(path), _) => Some(Address::Unix(path.clone())),
                (None, Some(port)) => {
                    let host = location.client_host.clone().or_else(|| location.host.clone()).unwrap_or_else(|| "localhost".to_owned());
                    Some(Address::Tcp { host, port })
                }
                (None, None) => None,
            };
            let index = if name == MAIN_INSTANCE {
                0
            } else if let Some(address) = address {
                instances.push(Instance { name: name.clone(), address });
                index_of.insert(name.clone(), instances.len() - 1);
                instances.len() - 1
            } else if location.serves.is_empty() {
                continue;
            } else {
                return Err(TableError::NoClientAddress(name.clone()));
            };
            for group in &location.serves {
                let group = EndpointGroup::from_name(group).ok_or_else(|| TableError::UnknownGroup { instance: name.clone(), group: group.clone() })?;
                let serving = groups.entry(group).or_default();
                if !serving.contains(&index) {
                    serving.push(index);
                }
            }
        }

        for group in EndpointGroup::ALL {
            if groups.contains_key(&group) || group == EndpointGroup::InitialSync {
                continue;
            }
            let writers: Vec<usize> = group
                .written_stream()
                .map(|stream| config.stream_writers.writers_of(stream.as_str()))
                .unwrap_or_default()
                .iter()
                .filter_map(|writer| index_of.get(writer).copied())
                .collect();
            groups.insert(group, if writers.is_empty() { vec![0] } else { writers });
        }
        if !groups.contains_key(&EndpointGroup::InitialSync) {
            let sync = groups[&EndpointGroup::Sync].clone();
            groups.insert(EndpointGroup::InitialSync, sync);
        }
        let initial_sync_separately = config.router.as_ref().is_some_and(|router| router.initial_sync_separately);
        let events_writers = config.stream_writers.writers_of("events");
        Ok(Self { instances, groups, initial_sync_separately, events_writers })
    }

    /// Every instance with a client address; `main` is first.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// The instances serving `group`, as indexes into `instances()`; never empty.
    pub fn serving(&self, group: EndpointGroup) -> &[usize] {
        self.groups.get(&group).map(Vec::as_slice).unwrap_or(&[0])
    }

    /// The names of the instances serving `group`.
    pub fn names_serving(&self, group: EndpointGroup) -> Vec<&str> {
        self.serving(group).iter().map(|&index| self.instances[index].name.as_str()).collect()
    }

    /// The persister of `room_id`, as an index into `instances()`, when it
    /// is one of the instances serving `group`.
    pub fn room_writer(&self, room_id: &str, group: EndpointGroup) -> Option<usize> {
        let writer = &self.events_writers[shard(room_id, self.events_writers.len())];
        self.serving(group).iter().copied().find(|&index| &self.instances[index].name == writer)
    }

    pub fn initial_sync_separately(&self) -> bool {
        self.initial_sync_separately
    }
}

/// `main`'s client listener: `instance_map.main.client_*`, else the first
/// listener in `listeners` serving `client`.
fn main_address(config: &Config) -> Option<Address> {
    let mapped = config.instance_map.get(MAIN_INSTANCE);
    if let Some(location) = mapped {
        if let Some(path) = &location.client_path {
            return Some(Address::Unix(path.clone()));
        }
        if let Some(port) = location.client_port {
            let host = location.client_host.clone().or_else(|| location.host.clone()).unwrap_or_else(|| "localhost".to_owned());
            return Some(Address::Tcp { host, port });
        }
    }
    let listener = config
        .listeners
        .iter()
        .find(|listener| listener.serves(Resource::Client) && (listener.path.is_some() || listener.port.is_some_and(|port| port != 0)))?;
    if let Some(path) = &listener.path {
        return Some(Address::Unix(path.clone()));
    }
    let port = listener.port?;
    // Where main is reachable: its `instance_map` host, else a specific bound
    // address, else this machine.
    let host = mapped
        .and_then(|location| location.host.clone())
        .or_else(|| listener.bind_addresses.iter().find(|address| !address.is_unspecified()).map(IpAddr::to_string))
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    Some(Address::Tcp { host, port })
}
