//! The plugin runtime as this server uses it: the `weft-plugin-runtime`
//! crate (`runtime/`: roles, engine, limits, capabilities, health, remote
//! calls, the testkit) re-exported whole, so call sites write
//! `weft_services::plugins::spam::…`, and loaded from this server's configuration.
//!
//! Owns: nothing of the runtime itself; only `load_all` and `load`, which
//! hand the runtime the `[[plugins]]` entries, the facts of `Config` it needs
//! (`Config::plugin_deployment`) and the internal API client as its
//! `RemoteTransport` (implemented in `replication::client`), the runtime's
//! checks for configuration validation (`check_config`), and the key-value
//! store behind `LiveServices`: `StorageKv`, the runtime's `PluginKv` over
//! `weft_storage`'s `plugin_kv_*` functions, and the homeserver view granted
//! plugins read (`homeserver_view`).
//!
//! May call: `weft_core::config` (read), `weft_storage` (the key-value
//! rows; reads in `homeserver_view`), `replication::client`. The runtime never calls back into this
//! crate except through the traits it defines.

mod homeserver_view;

use std::sync::Arc;

pub use homeserver_view::StorageView;
pub use weft_plugin_runtime::*;

use weft_core::config::Config;
use weft_plugin_runtime::egress::AddressPolicy;
use weft_storage::{Storage, StorageError};

use crate::replication::client::InternalClient;

/// The plugin runtime's checks of `config`'s `[[plugins]]` (names,
/// instances, limits, and that each component exports its role's world),
/// as configuration validation runs them (`weft_core::config::ExtraCheck`).
pub fn check_config(config: &Config, fail: &mut dyn FnMut(&str, String)) {
    weft_plugin_runtime::verify::check(&config.plugins, &config.plugin_deployment(), fail);
    if let Some(blacklist) = &config.ip_range_blacklist
        && let Err(problem) = AddressPolicy::new(Some(blacklist), &[])
    {
        fail("ip_range_blacklist", problem);
    }
    if let Err(problem) = AddressPolicy::new(None, &config.ip_range_whitelist) {
        fail("ip_range_whitelist", problem);
    }
    // A pusher plugin delivers from the pusher instances: pinned elsewhere,
    // it would be called only remotely, and only by them.
    let pushers = config.pusher_instances();
    for (index, plugin) in config.plugins.iter().enumerate() {
        if plugin.role != weft_core::config::PluginRole::Pusher {
            continue;
        }
        for instance in plugin.instances.iter().filter(|instance| !pushers.contains(instance)) {
            fail(
                &format!("plugins[{index}].instances"),
                format!("`{instance}` is not one of `pusher_instances` ({}): a pusher plugin runs on pusher instances", describe(pushers)),
            );
        }
    }
}

fn describe(instances: &[String]) -> String {
    if instances.is_empty() { "none".to_owned() } else { instances.join(", ") }
}

/// The outbound address policy of `config`'s `ip_range_blacklist` and
/// `ip_range_whitelist` (checked by `check_config`, so `Err` only for a
/// configuration that skipped it).
pub fn address_policy(config: &Config) -> Result<AddressPolicy, String> {
    AddressPolicy::new(config.ip_range_blacklist.as_deref(), &config.ip_range_whitelist)
}

/// Loads every plugin this instance runs, and stands in with `client` for
/// those pinned to other instances (`remote`).
pub async fn load_all(config: &Config, services: Arc<dyn HostServices>, client: &InternalClient) -> Result<Plugins, LoadError> {
    weft_plugin_runtime::load_all(&config.plugins, &config.plugin_deployment(), services, Arc::new(client.clone())).await
}

/// Loads the plugins of role `R` this instance runs, in configuration order.
pub async fn load<R: Role>(config: &Config, services: Arc<dyn HostServices>) -> Result<Vec<Arc<LoadedPlugin<R>>>, LoadError> {
    weft_plugin_runtime::load(&config.plugins, &config.plugin_deployment(), services).await
}

/// The plugins' key-value stores in the database (`weft_storage`'s
/// `plugin_kv_*`), as the runtime's `PluginKv`.
#[derive(Debug, Clone)]
pub struct StorageKv(pub Storage);

fn unavailable(error: StorageError) -> KvError {
    KvError::Unavailable(error.to_string())
}

impl PluginKv for StorageKv {
    fn get<'a>(&'a self, plugin: &'a str, key: &'a str) -> host_services::BoxFuture<'a, Result<Option<Vec<u8>>, KvError>> {
        Box::pin(async move {
            if key.contains('\0') {
                return Ok(None);
            }
            self.0.plugin_kv_get(plugin, key).await.map_err(unavailable)
        })
    }

    fn set<'a>(&'a self, plugin: &'a str, key: &'a str, value: Vec<u8>) -> host_services::BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            kv::check_entry(key, &value)?;
            match self.0.plugin_kv_set(plugin, key, &value, kv::MAX_KV_TOTAL_BYTES as i64).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(kv::store_full()),
                Err(error) => Err(unavailable(error)),
            }
        })
    }

    fn delete<'a>(&'a self, plugin: &'a str, key: &'a str) -> host_services::BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            if key.contains('\0') {
                return Ok(());
            }
            self.0.plugin_kv_delete(plugin, key).await.map_err(unavailable)
        })
    }
}
