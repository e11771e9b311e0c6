//! A spam checker pinned to other instances: calls made here will be sent
//! over the internal HTTP API to an instance that hosts the plugin (the
//! workers milestone). Until then every call fails as `unreachable`, so the
//! plugin's `on_error` applies here too: a `fail-closed` checker pinned
//! elsewhere refuses rather than silently letting everything through.

use super::{
    error::CallFailure,
    host_services::BoxFuture,
    loaded::CallStats,
    metrics,
    spam::{SpamAnswer, SpamCall, SpamCheckerBackend},
};
use crate::config::{OnError, PluginConfig};

pub struct RemotePlugin {
    name: String,
    role: &'static str,
    on_error: OnError,
    /// The instances that host the plugin.
    hosts: Vec<String>,
    /// This instance, for logs.
    instance: String,
}

impl RemotePlugin {
    pub fn new(config: &PluginConfig, instance: &str) -> Self {
        Self {
            name: config.name.clone(),
            role: config.role.as_str(),
            on_error: config.on_error(),
            hosts: config.instances.clone(),
            instance: instance.to_owned(),
        }
    }
}

impl SpamCheckerBackend for RemotePlugin {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_error(&self) -> OnError {
        self.on_error
    }

    fn call<'a>(&'a self, call: &'a SpamCall) -> BoxFuture<'a, Result<(SpamAnswer, CallStats), CallFailure>> {
        let failure = CallFailure::Unreachable(format!(
            "the plugin runs on {}; forwarding calls between instances arrives with workers",
            self.hosts.join(", ")
        ));
        metrics::failure(&self.name, call.name(), failure.reason());
        tracing::warn!(plugin = %self.name, role = self.role, call = call.name(), instance = %self.instance,
            reason = failure.reason(), outcome = self.on_error.as_str(), "plugin call failed: {failure}");
        Box::pin(std::future::ready(Err(failure)))
    }
}
