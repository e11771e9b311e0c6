//! A plugin of any role pinned to other instances: each call is sent through
//! the server's `RemoteTransport` over the internal HTTP API (`POST /_weft/replication/v1/plugins/{name}/{callback}/{txn}`,
//! one route for every role) to an instance that hosts the plugin, which runs
//! it (`Hosted::serve`) and replies with its answer or why it gave none; this
//! instance then applies `on_error` once.
//!
//! The whole exchange is bounded by the plugin's deadline plus a network
//! margin. Within it the hosts are tried in configuration order; a host that
//! cannot be reached passes the call to the next, and when none answered the
//! round is retried with backoff (a restarting worker comes back). When the
//! time is up the call fails as `unreachable`. Repeated unreachability
//! switches the stand-in off like a failing local plugin (`health`), so a
//! host that is down costs a request the deadline only now and then.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{
    error::CallFailure,
    health::{Health, Tripped},
    host_services::BoxFuture,
    limits::Limits,
    loaded::{CallStats, LoadedPlugin},
    metrics,
    role::{PluginBackend, Role},
};
use crate::config::{OnError, PluginConfig};

/// Time for the network and the hosting instance's own overhead on top of
/// the plugin's deadline.
pub const NETWORK_MARGIN: Duration = Duration::from_millis(250);
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// The internal API route every role's forwarded calls arrive at.
pub const ROUTE: &str = "/_weft/replication/v1/plugins/{name}/{callback}/{txn_id}";

/// The internal API path of one forwarded call.
pub fn path(plugin: &str, callback: &str, txn_id: &str) -> String {
    format!("/_weft/replication/v1/plugins/{plugin}/{callback}/{txn_id}")
}

/// How this instance reaches the others: the server implements it with its
/// internal API client (authenticated, over the instances' TCP or Unix sockets).
pub trait RemoteTransport: Send + Sync {
    /// POSTs `body` (JSON) to `path` on the instance named `instance`, within `timeout`.
    fn post<'a>(&'a self, instance: &'a str, path: &'a str, body: Bytes, timeout: Duration) -> BoxFuture<'a, Result<TransportReply, TransportError>>;
}

/// The status and body an instance answered with.
#[derive(Debug, Clone)]
pub struct TransportReply {
    pub status: http::StatusCode,
    pub body: Bytes,
}

/// Why a request reached no instance.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Not reached now (refused, timed out): a restarting instance may come
    /// back, so the call is retried with backoff within its deadline.
    #[error("{0}")]
    Unreachable(String),
    /// Never reachable (not a known instance).
    #[error("{0}")]
    Unknown(String),
}

/// A fresh transaction id: the hosting instance's logs tell calls apart by it.
fn new_txn_id() -> String {
    rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(20).map(char::from).collect()
}

/// What the hosting instance replies: the plugin's answer, or why it gave none.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteOutcome<A> {
    Answer(A),
    Failure(CallFailure),
}

impl<A> From<Result<(A, CallStats), CallFailure>> for RemoteOutcome<A> {
    fn from(result: Result<(A, CallStats), CallFailure>) -> Self {
        match result {
            Ok((answer, _)) => Self::Answer(answer),
            Err(failure) => Self::Failure(failure),
        }
    }
}

/// Why a forwarded call gave no answer, and where that happened.
enum Failed {
    /// Between the instances, or a reply this instance cannot use.
    Here(CallFailure),
    /// On `host`, which ran the plugin (and logged and counted the failure).
    There { host: String, failure: CallFailure },
}

pub struct RemotePlugin<R: Role> {
    name: String,
    role: &'static str,
    on_error: OnError,
    /// The instances that host the plugin, in the order they are tried.
    hosts: Vec<String>,
    /// This instance, for logs.
    instance: String,
    /// The bound of one whole call: the plugin's deadline and `NETWORK_MARGIN`.
    deadline: Duration,
    transport: Arc<dyn RemoteTransport>,
    health: Health,
    role_type: std::marker::PhantomData<fn() -> R>,
}

impl<R: Role> RemotePlugin<R> {
    pub fn new(config: &PluginConfig, instance: &str, transport: Arc<dyn RemoteTransport>) -> Self {
        Self {
            name: config.name.clone(),
            role: R::ROLE.as_str(),
            on_error: config.on_error.unwrap_or(R::DEFAULT_ON_ERROR),
            hosts: config.instances.clone(),
            instance: instance.to_owned(),
            deadline: Limits::from_config(&config.limits).timeout + NETWORK_MARGIN,
            transport,
            health: Health::new(config.disable_after_failures(), Duration::from_secs(config.retry_after_secs())),
            role_type: std::marker::PhantomData,
        }
    }

    async fn forward(&self, call: &R::Call) -> Result<(R::Answer, CallStats), CallFailure> {
        let start = Instant::now();
        let result = match self.health.admit(R::call_name(call)) {
            Err(remaining) => Err(Failed::Here(CallFailure::Disabled(remaining))),
            Ok(()) => self.exchange(call, start + self.deadline).await,
        };
        let elapsed = start.elapsed();
        metrics::call(&self.name, R::call_name(call), elapsed);
        match result {
            Ok(answer) => {
                if self.health.record_success(R::call_name(call)) {
                    metrics::switched_off(&self.name, R::call_name(call), false);
                    tracing::warn!(plugin = %self.name, role = self.role, call = R::call_name(call), instance = %self.instance,
                        "forwarding to the plugin switched back on: its trial call succeeded");
                }
                Ok((answer, CallStats { elapsed, ..CallStats::default() }))
            }
            Err(failed) => Err(self.report(R::call_name(call), failed)),
        }
    }

    /// Tries the hosts in order, rounds of them with backoff, until `deadline`.
    async fn exchange(&self, call: &R::Call, deadline: Instant) -> Result<R::Answer, Failed> {
        let body = Bytes::from(serde_json::to_vec(call).map_err(|e| Failed::Here(CallFailure::Malformed(e.to_string())))?);
        let path = path(&self.name, R::call_name(call), &new_txn_id());
        let mut backoff = FIRST_BACKOFF;
        let mut last_error = None;
        loop {
            let mut may_come_back = false;
            for host in &self.hosts {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    break;
                }
                match self.transport.post(host, &path, body.clone(), remaining).await {
                    Ok(reply) if reply.status == http::StatusCode::OK => return self.read(call, host, &reply.body),
                    Ok(reply) => last_error = Some(format!("{host} answered {}: {}", reply.status, String::from_utf8_lossy(&reply.body))),
                    Err(error) => {
                        may_come_back |= matches!(error, TransportError::Unreachable(_));
                        last_error = Some(error.to_string());
                    }
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !may_come_back || remaining.is_zero() {
                let last = last_error.unwrap_or_else(|| "no time left to try".into());
                return Err(Failed::Here(CallFailure::Unreachable(format!(
                    "no instance hosting it ({}) answered within {:?}; last error: {last}",
                    self.hosts.join(", "),
                    self.deadline
                ))));
            }
            tokio::time::sleep(backoff.min(remaining)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn read(&self, call: &R::Call, host: &str, body: &[u8]) -> Result<R::Answer, Failed> {
        match serde_json::from_slice(body) {
            Ok(RemoteOutcome::Answer(answer)) if R::answers(call, &answer) => Ok(answer),
            Ok(RemoteOutcome::Answer(answer)) => {
                Err(Failed::Here(CallFailure::Malformed(format!("{host} answered {answer:?}, which does not answer {}", R::call_name(call)))))
            }
            Ok(RemoteOutcome::Failure(failure)) => Err(Failed::There { host: host.to_owned(), failure }),
            Err(error) => Err(Failed::Here(CallFailure::Malformed(format!("{host} sent an unreadable reply: {error}")))),
        }
    }

    /// One log line and a metric; this instance's own failures count towards
    /// switching the stand-in off (the host's health keeps track of its runs).
    fn report(&self, call: &'static str, failed: Failed) -> CallFailure {
        let outcome = self.on_error.as_str();
        let (failure, host) = match failed {
            Failed::Here(failure) => (failure, None),
            Failed::There { host, failure } => (failure, Some(host)),
        };
        metrics::failure(&self.name, call, failure.reason());
        if let CallFailure::Disabled(_) = failure {
            tracing::debug!(plugin = %self.name, role = self.role, call, instance = %self.instance, reason = failure.reason(), outcome,
                "plugin switched off: {failure}");
            return failure;
        }
        let ran_on = host.as_deref().unwrap_or("-");
        tracing::warn!(plugin = %self.name, role = self.role, call, instance = %self.instance, ran_on, reason = failure.reason(), outcome,
            "plugin call failed: {failure}");
        if host.is_none()
            && failure.counts_against_plugin()
            && let Tripped::SwitchedOff(backoff) = self.health.record_failure(call)
        {
            metrics::switched_off(&self.name, call, true);
            tracing::error!(plugin = %self.name, role = self.role, call, instance = %self.instance, retry_in = ?backoff,
                "PLUGIN SWITCHED OFF here after repeated failures to reach it: every call answers `{outcome}` until it is retried");
        }
        failure
    }
}

impl<R: Role> PluginBackend<R> for RemotePlugin<R> {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_error(&self) -> OnError {
        self.on_error
    }

    fn call<'a>(&'a self, call: &'a R::Call) -> BoxFuture<'a, Result<(R::Answer, CallStats), CallFailure>> {
        Box::pin(self.forward(call))
    }
}

/// A plugin this instance hosts, whatever its role, as the internal route
/// serves it to the other instances.
pub trait Hosted: Send + Sync {
    fn name(&self) -> &str;
    /// Runs a forwarded call: `callback` is the path's, `body` the role's
    /// call as JSON. The reply is a `RemoteOutcome` as JSON.
    fn serve<'a>(&'a self, callback: &'a str, body: &'a [u8]) -> BoxFuture<'a, Result<serde_json::Value, ServeError>>;
}

/// Why a forwarded call was not run (the server's route answers 400).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("The body is not JSON: {0}")]
    NotJson(String),
    #[error("Not a {role} call: {reason}")]
    BadCall { role: &'static str, reason: String },
}

impl<R: Role> Hosted for LoadedPlugin<R> {
    fn name(&self) -> &str {
        &self.ctx.name
    }

    fn serve<'a>(&'a self, callback: &'a str, body: &'a [u8]) -> BoxFuture<'a, Result<serde_json::Value, ServeError>> {
        Box::pin(async move {
            let role = R::ROLE.as_str();
            let call: R::Call = serde_json::from_slice(body).map_err(|error| match error.classify() {
                serde_json::error::Category::Data => ServeError::BadCall { role, reason: error.to_string() },
                _ => ServeError::NotJson(error.to_string()),
            })?;
            if R::call_name(&call) != callback {
                let reason = format!("the path names `{callback}`, the body `{}`", R::call_name(&call));
                return Err(ServeError::BadCall { role, reason });
            }
            let outcome = RemoteOutcome::from(self.call(&call).await);
            serde_json::to_value(outcome).map_err(|error| ServeError::BadCall { role, reason: error.to_string() })
        })
    }
}

/// The plugins this instance hosts (of every role), for the internal route.
#[derive(Clone, Default)]
pub struct HostedPlugins(Vec<std::sync::Arc<dyn Hosted>>);

impl HostedPlugins {
    pub fn new(plugins: Vec<std::sync::Arc<dyn Hosted>>) -> Self {
        Self(plugins)
    }

    pub fn get(&self, name: &str) -> Option<&dyn Hosted> {
        self.0.iter().find(|plugin| plugin.name() == name).map(|plugin| &**plugin)
    }
}

impl std::fmt::Debug for HostedPlugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|p| p.name())).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::spam::{Spam, SpamAnswer, SpamCall, SpamVerdict};

    /// Answers from a script, one reply per request, and records the requests.
    struct Scripted {
        replies: Mutex<Vec<Result<TransportReply, TransportError>>>,
        requests: Mutex<Vec<(String, String, serde_json::Value)>>,
    }

    impl RemoteTransport for Scripted {
        fn post<'a>(&'a self, instance: &'a str, path: &'a str, body: Bytes, _timeout: Duration) -> BoxFuture<'a, Result<TransportReply, TransportError>> {
            self.requests.lock().unwrap().push((instance.to_owned(), path.to_owned(), serde_json::from_slice(&body).unwrap()));
            let mut replies = self.replies.lock().unwrap();
            let reply = if replies.is_empty() { Err(TransportError::Unknown(format!("`{instance}` is not in instance_map"))) } else { replies.remove(0) };
            Box::pin(std::future::ready(reply))
        }
    }

    fn forwarder(hosts: &[&str], replies: Vec<Result<TransportReply, TransportError>>) -> (RemotePlugin<Spam>, Arc<Scripted>) {
        let transport = Arc::new(Scripted { replies: Mutex::new(replies), requests: Mutex::new(Vec::new()) });
        let config = PluginConfig { name: "rules".into(), instances: hosts.iter().map(|h| (*h).to_owned()).collect(), ..PluginConfig::default() };
        (RemotePlugin::new(&config, "main", transport.clone()), transport)
    }

    fn call() -> SpamCall {
        SpamCall::UserMayPublishRoom { user: "@a:example.org".try_into().unwrap(), room: "!r:example.org".try_into().unwrap() }
    }

    fn allow() -> TransportReply {
        let body = serde_json::to_vec(&RemoteOutcome::Answer(SpamAnswer::Verdict(SpamVerdict::Allow))).unwrap();
        TransportReply { status: http::StatusCode::OK, body: body.into() }
    }

    #[tokio::test]
    async fn a_call_goes_through_the_transport_and_an_unreachable_host_passes_it_on() {
        let unreachable = || Err(TransportError::Unreachable("connection refused".into()));
        // w1 refuses, w2 refuses, then the second round reaches w1.
        let (plugin, transport) = forwarder(&["w1", "w2"], vec![unreachable(), unreachable(), Ok(allow())]);
        let (answer, _) = plugin.call(&call()).await.expect("answered");
        assert_eq!(answer, SpamAnswer::Verdict(SpamVerdict::Allow));
        let requests = transport.requests.lock().unwrap().clone();
        let hosts: Vec<&str> = requests.iter().map(|(host, _, _)| host.as_str()).collect();
        assert_eq!(hosts, ["w1", "w2", "w1"]);
        let (_, path, body) = &requests[0];
        assert!(path.starts_with("/_weft/replication/v1/plugins/rules/user-may-publish-room/"), "{path}");
        assert!(requests.iter().all(|(_, p, _)| p == path), "one transaction id for every attempt of a call");
        assert_eq!(body, &serde_json::to_value(call()).unwrap());
    }

    #[tokio::test]
    async fn an_unknown_instance_is_not_retried() {
        let (plugin, transport) = forwarder(&["nowhere"], Vec::new());
        let failure = plugin.call(&call()).await.expect_err("no host");
        assert!(matches!(&failure, CallFailure::Unreachable(detail) if detail.contains("not in instance_map")), "{failure}");
        assert_eq!(transport.requests.lock().unwrap().len(), 1);
    }
}
