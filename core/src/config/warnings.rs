//! Advice on a configuration that is valid but probably exposes more than was
//! meant, or does less than it seems to (nobody sends pushes): printed by
//! `weft check-config` (which still succeeds) and logged at start-up.

use super::{Config, Resource};

/// One line per problem, each starting with the option's key path.
pub fn warnings(config: &Config) -> Vec<String> {
    let key = if config.is_main_process() { "listeners" } else { "worker_listeners" };
    let mut warnings = Vec::new();
    for (index, listener) in config.own_listeners().iter().enumerate() {
        if !listener.serves(Resource::Replication) || listener.path.is_some() {
            continue;
        }
        let exposed: Vec<String> = listener.bind_addresses.iter().filter(|address| !address.is_loopback()).map(ToString::to_string).collect();
        if !exposed.is_empty() {
            warnings.push(format!(
                "`{key}[{index}].bind_addresses`: the `replication` listener binds to {} (without `bind_addresses`, every address); \
                 only this deployment's processes should reach it: bind it to 127.0.0.1, or, with processes on other hosts, \
                 keep everyone else out with a firewall",
                exposed.join(", ")
            ));
        }
    }
    if config.pusher_instances.as_ref().is_some_and(Vec::is_empty) {
        warnings.push("`pusher_instances`: the list is empty, so no instance sends push notifications (remove the option to send them from main)".to_owned());
    }
    if !config.push.enabled {
        warnings.push("`push.enabled`: push notifications are switched off; pushers can be set but no notification is sent".to_owned());
    }
    warnings
}
