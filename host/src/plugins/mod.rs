//! The plugin runtime as this server uses it: the `weft-plugin-runtime`
//! crate (`runtime/`: roles, engine, limits, capabilities, health, remote
//! calls, the testkit) re-exported whole, so call sites write
//! `crate::plugins::spam::…`, and loaded from this server's configuration.
//!
//! Owns: nothing of the runtime itself; only `load_all` and `load`, which
//! hand the runtime the `[[plugins]]` entries, the facts of `Config` it needs
//! (`Config::plugin_deployment`) and the internal API client as its
//! `RemoteTransport` (implemented in `replication::client`). The key-value
//! store behind `LiveServices` is `storage::plugin_kv`'s; the homeserver
//! view granted plugins read is `homeserver_view`'s.
//!
//! May call: `config` (read), `replication::client`, `storage` (reads, in
//! `homeserver_view`). The runtime never calls back into this crate except
//! through the traits it defines.

mod homeserver_view;

use std::sync::Arc;

pub use homeserver_view::StorageView;
pub use weft_plugin_runtime::*;

use crate::{config::Config, replication::client::InternalClient};

/// Loads every plugin this instance runs, and stands in with `client` for
/// those pinned to other instances (`remote`).
pub async fn load_all(config: &Config, services: Arc<dyn HostServices>, client: &InternalClient) -> Result<Plugins, LoadError> {
    weft_plugin_runtime::load_all(&config.plugins, &config.plugin_deployment(), services, Arc::new(client.clone())).await
}

/// Loads the plugins of role `R` this instance runs, in configuration order.
pub async fn load<R: Role>(config: &Config, services: Arc<dyn HostServices>) -> Result<Vec<Arc<LoadedPlugin<R>>>, LoadError> {
    weft_plugin_runtime::load(&config.plugins, &config.plugin_deployment(), services).await
}
