//! The plugin runtime: sandboxed WebAssembly components (WIT package
//! `weft:plugin`, in `wit/`) that extend the server in a role, today spam
//! checking.
//!
//! Owns: the wasmtime engine of this process (`engine`), loading plugins and
//! running calls under limits (`loaded`), the `host` interface they import
//! (`host_api`, `host_services`, `kv`, `egress`), the failure policy (`error`,
//! `health`), metrics, configuration checks (`verify`), the WIT versions
//! this host runs (`version`), the spam-checker role (`spam`) that call sites
//! use through `Services::spam_checker`, the forwarder for a plugin pinned
//! to other instances (`remote`), and the testkit (`testkit`, re-exported by
//! `plugin-sdk/testkit` for plugin authors).
//!
//! May call: `config` (read), `telemetry` through the `metrics` facade,
//! `replication::client` (forwarding calls), `http_client` (`http-send`).
//! Must not: reach storage or build HTTP responses (the api layer turns
//! verdicts into Matrix errors and serves the endpoint forwarded calls
//! arrive at).
//!
//! Decisions: a fresh instance per call from a pre-instantiated component by
//! default (pooling allocator; no state survives a call, a trapped instance
//! is just dropped), warm instances only when a plugin's
//! `max_calls_per_instance` asks for them (parked after a clean return
//! only); every host import is async; a plugin that keeps failing is
//! switched off with backoff (`health`); plugins run in the instances their
//! `instances` name, and other instances forward their calls there
//! (`remote`, behind the `spam::SpamCheckerBackend` seam).

mod bindings;
pub mod egress;
pub mod engine;
pub mod error;
pub mod health;
mod host_api;
pub mod host_services;
pub mod kv;
pub mod limits;
pub mod loaded;
mod metrics;
mod output;
pub mod remote;
pub mod spam;
pub mod testkit;
mod state;
pub mod verify;
pub mod version;

use std::sync::Arc;

pub use error::{CallFailure, LoadError};
pub use host_services::{HostServices, LiveServices};
pub use kv::{KvError, PluginKv};
pub use loaded::{CallStats, LoadedPlugin};
pub use spam::{SpamCheckerBackend, SpamCheckers};

use crate::{config::Config, replication::client::InternalClient};

/// The spam checkers of this instance, in configuration order: plugins it
/// runs are loaded here; calls to plugins pinned to other instances are
/// sent to them with `client` (`remote`).
pub async fn load_spam_checkers(
    config: &Config,
    services: Arc<dyn HostServices>,
    client: &InternalClient,
) -> Result<SpamCheckers, LoadError> {
    let instance = config.instance_name();
    let loaded = load(config, services).await?;
    let mut local = loaded.iter();
    let chain = config
        .plugins
        .iter()
        .map(|plugin| -> Arc<dyn SpamCheckerBackend> {
            if plugin.runs_on(instance) {
                local.next().expect("one loaded plugin per local entry").clone()
            } else {
                Arc::new(remote::RemotePlugin::new(plugin, instance, client.clone()))
            }
        })
        .collect();
    Ok(SpamCheckers::with_hosted(chain, loaded))
}

/// Loads the plugins this instance runs, in configuration order.
pub async fn load(config: &Config, services: Arc<dyn HostServices>) -> Result<Vec<Arc<LoadedPlugin>>, LoadError> {
    let instance = config.instance_name();
    let settings = verify::engine_settings(config, instance);
    if settings.slots == 0 {
        return Ok(Vec::new());
    }
    let engine = engine::PluginEngine::new(settings, verify::cache_dir(config))?;
    let mut loaded = Vec::new();
    for plugin in config.plugins.iter().filter(|p| p.runs_on(instance)) {
        loaded.push(Arc::new(LoadedPlugin::load(&engine, plugin, instance, services.clone()).await?));
    }
    Ok(loaded)
}
