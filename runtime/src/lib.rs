//! Weft's plugin runtime: sandboxed WebAssembly components (WIT package
//! `weft:plugin`, in `wit/`) that extend the server in a role: spam
//! checking, SSO login and delivering push notifications. The `weft` server
//! and the plugin testkit both depend on this crate; it depends on no part
//! of the server (no storage, HTTP server, Redis or image code).
//!
//! Owns: the `[[plugins]]` schema (`config`), what a role is (`role`: the one
//! trait everything else is generic over), the wasmtime engine of this
//! process (`engine`), loading plugins and running calls under limits
//! (`loaded`), the `host` interface every role's world imports (`bindings`,
//! `host_api`, `host_services`, `kv`, `egress`, over the outbound client of
//! `http_client`), the capability-gated `homeserver` view (`homeserver`), a
//! plugin's optional check of its own configuration (`config_export`), the
//! failure policy (`error`, `health`), metrics,
//! configuration checks (`verify`), the WIT versions this host runs
//! (`version`), the forwarder for a plugin pinned to other instances and
//! the serving side of it (`remote`), the testkit (`testkit`, re-exported by
//! `plugin-sdk/testkit` for plugin authors), and the roles: spam checking
//! (`spam`), logging in with an identity provider (`sso`), pushers
//! (`pusher`) and the appservice notifier (`appservice`).
//!
//! May call: wasmtime, the `metrics` facade, reqwest (`http-send`). What the
//! server provides is behind traits it implements: the key-value store
//! (`kv::PluginKv`), host services (`HostServices`), the read-only view of
//! its users and rooms (`homeserver::HomeserverView`) and the transport to
//! other instances (`remote::RemoteTransport`). Must not: reach storage or
//! build HTTP responses (the server turns verdicts into Matrix errors and
//! serves the route forwarded calls arrive at, through `remote::Hosted`).
//!
//! Decisions: a fresh instance per call from a pre-instantiated component by
//! default (pooling allocator; no state survives a call, a trapped instance
//! is just dropped), warm instances only when a plugin's
//! `max_calls_per_instance` asks for them (parked after a clean return
//! only); every host import is async; a plugin that keeps failing is
//! switched off with backoff (`health`); plugins run in the instances their
//! `instances` name, and other instances forward their calls there
//! (`remote`, behind the `role::PluginBackend` seam); one engine per
//! process serves every role.

mod bindings;
/// `[[plugins]]`: the schema, a crate of its own (`weft-plugin-config`) so
/// that the server's configuration embeds it without building wasmtime.
pub use weft_plugin_config as config;
pub mod appservice;
pub mod config_export;
pub mod egress;
pub mod engine;
pub mod error;
pub mod health;
pub mod homeserver;
mod host_api;
pub mod host_services;
pub mod http_client;
pub mod kv;
pub mod limits;
pub mod loaded;
mod metrics;
mod output;
pub mod pusher;
pub mod remote;
pub mod role;
pub mod spam;
pub mod sso;
mod state;
pub mod testkit;
pub mod verify;
pub mod version;

use std::sync::Arc;

pub use appservice::{AppserviceNotifier, AppserviceNotifiers};
pub use config::Deployment;
pub use config_export::ConfigCheck;
pub use error::{CallFailure, LoadError};
pub use homeserver::HomeserverView;
pub use host_services::{HostServices, LiveServices};
pub use kv::{KvError, PluginKv};
pub use loaded::{CallStats, LoadedPlugin};
pub use pusher::{Pusher, PusherPlugins};
pub use remote::{Hosted, HostedPlugins, RemoteTransport};
pub use role::{PluginBackend, Role};
pub use spam::{Spam, SpamCheckerBackend, SpamCheckers};
pub use sso::{Sso, SsoProviders};

use config::{PluginConfig, PluginRole};

/// The plugins of this process, by role.
#[derive(Debug, Clone, Default)]
pub struct Plugins {
    /// The spam-checker chain, in configuration order.
    pub spam_checker: SpamCheckers,
    /// The SSO provider plugins, in configuration order.
    pub sso: SsoProviders,
    /// The pusher plugins, in configuration order.
    pub pushers: PusherPlugins,
    /// The appservice notifier (the first configured, if any).
    pub appservices: AppserviceNotifiers,
    /// The plugins this instance runs, which other instances' calls reach.
    pub hosted: HostedPlugins,
}

/// Loads every plugin of `plugins` this instance runs, and stands in with
/// `transport` for those pinned to other instances (`remote`).
pub async fn load_all(
    plugins: &[PluginConfig],
    deployment: &Deployment,
    services: Arc<dyn HostServices>,
    transport: Arc<dyn RemoteTransport>,
) -> Result<Plugins, LoadError> {
    let instance = deployment.instance.as_str();
    let engine = new_engine(plugins, deployment)?;
    let mut spam_chain: Vec<Arc<dyn PluginBackend<Spam>>> = Vec::new();
    let mut sso_providers: Vec<Arc<dyn PluginBackend<Sso>>> = Vec::new();
    let mut pushers: Vec<Arc<dyn PluginBackend<Pusher>>> = Vec::new();
    let mut notifiers: Vec<Arc<dyn PluginBackend<AppserviceNotifier>>> = Vec::new();
    let mut hosted: Vec<Arc<dyn Hosted>> = Vec::new();
    for plugin in plugins {
        match plugin.role {
            PluginRole::SpamChecker => {
                let backend = backend::<Spam>(engine.as_ref(), plugin, instance, &services, &transport, &mut hosted).await?;
                spam_chain.push(backend);
            }
            PluginRole::SsoProvider => sso_providers.push(backend::<Sso>(engine.as_ref(), plugin, instance, &services, &transport, &mut hosted).await?),
            PluginRole::Pusher => pushers.push(backend::<Pusher>(engine.as_ref(), plugin, instance, &services, &transport, &mut hosted).await?),
            PluginRole::AppserviceNotifier => {
                notifiers.push(backend::<AppserviceNotifier>(engine.as_ref(), plugin, instance, &services, &transport, &mut hosted).await?)
            }
        }
    }
    Ok(Plugins {
        spam_checker: SpamCheckers::from_backends(spam_chain),
        sso: SsoProviders::new(sso_providers),
        pushers: PusherPlugins::new(pushers),
        appservices: AppserviceNotifiers::new(notifiers),
        hosted: HostedPlugins::new(hosted),
    })
}

/// The plugin as call sites of its role see it: loaded here (and listed in
/// `hosted`), or forwarded to the instances that run it.
async fn backend<R: Role>(
    engine: Option<&engine::PluginEngine>,
    plugin: &PluginConfig,
    instance: &str,
    services: &Arc<dyn HostServices>,
    transport: &Arc<dyn RemoteTransport>,
    hosted: &mut Vec<Arc<dyn Hosted>>,
) -> Result<Arc<dyn PluginBackend<R>>, LoadError> {
    match engine.filter(|_| plugin.runs_on(instance)) {
        Some(engine) => {
            let loaded = Arc::new(LoadedPlugin::<R>::load(engine, plugin, instance, services.clone()).await?);
            hosted.push(loaded.clone());
            Ok(loaded)
        }
        None => Ok(Arc::new(remote::RemotePlugin::<R>::new(plugin, instance, transport.clone()))),
    }
}

/// The engine of the plugins this instance runs (`None`: it runs none).
fn new_engine(plugins: &[PluginConfig], deployment: &Deployment) -> Result<Option<engine::PluginEngine>, LoadError> {
    let settings = verify::engine_settings(plugins, &deployment.instance);
    if settings.slots == 0 {
        return Ok(None);
    }
    engine::PluginEngine::new(settings, deployment.cache_dir()).map(Some)
}

/// Loads the plugins of role `R` this instance runs, in configuration order
/// (with an engine sized for every plugin it runs).
pub async fn load<R: Role>(plugins: &[PluginConfig], deployment: &Deployment, services: Arc<dyn HostServices>) -> Result<Vec<Arc<LoadedPlugin<R>>>, LoadError> {
    let instance = deployment.instance.as_str();
    let Some(engine) = new_engine(plugins, deployment)? else { return Ok(Vec::new()) };
    let mut loaded = Vec::new();
    for plugin in plugins.iter().filter(|p| p.role == R::ROLE && p.runs_on(instance)) {
        loaded.push(Arc::new(LoadedPlugin::load(&engine, plugin, instance, services.clone()).await?));
    }
    Ok(loaded)
}
