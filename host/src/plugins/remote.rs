//! A spam checker pinned to other instances: each call is sent over the
//! internal HTTP API (`POST /_weft/replication/v1/plugins/{name}/spam/{txn}`)
//! to an instance that hosts the plugin, which runs it and replies with its
//! answer or why it gave none; this instance then applies `on_error` once.
//!
//! The whole exchange is bounded by the plugin's deadline plus a network
//! margin. Within it the hosts are tried in configuration order; a host that
//! cannot be reached passes the call to the next, and when none answered the
//! round is retried with backoff (a restarting worker comes back). When the
//! time is up the call fails as `unreachable`. Repeated unreachability
//! switches the stand-in off like a failing local plugin (`health`), so a
//! host that is down costs a request the deadline only now and then.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{
    error::CallFailure,
    health::{Health, Tripped},
    host_services::BoxFuture,
    limits::Limits,
    loaded::CallStats,
    metrics,
    spam::{SpamAnswer, SpamCall, SpamCheckerBackend},
};
use crate::{
    config::{OnError, PluginConfig},
    replication::client::{CallError, InternalClient},
};

/// Time for the network and the hosting instance's own overhead on top of
/// the plugin's deadline.
pub const NETWORK_MARGIN: Duration = Duration::from_millis(250);
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// The internal API path of one forwarded call.
pub fn path(plugin: &str, txn_id: &str) -> String {
    format!("/_weft/replication/v1/plugins/{plugin}/spam/{txn_id}")
}

/// What the hosting instance replies: the plugin's answer, or why it gave none.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteOutcome {
    Answer(SpamAnswer),
    Failure(CallFailure),
}

impl From<Result<(SpamAnswer, CallStats), CallFailure>> for RemoteOutcome {
    fn from(result: Result<(SpamAnswer, CallStats), CallFailure>) -> Self {
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

pub struct RemotePlugin {
    name: String,
    role: &'static str,
    on_error: OnError,
    /// The instances that host the plugin, in the order they are tried.
    hosts: Vec<String>,
    /// This instance, for logs.
    instance: String,
    /// The bound of one whole call: the plugin's deadline and `NETWORK_MARGIN`.
    deadline: Duration,
    client: InternalClient,
    health: Health,
}

impl RemotePlugin {
    pub fn new(config: &PluginConfig, instance: &str, client: InternalClient) -> Self {
        Self {
            name: config.name.clone(),
            role: config.role.as_str(),
            on_error: config.on_error(),
            hosts: config.instances.clone(),
            instance: instance.to_owned(),
            deadline: Limits::from_config(&config.limits).timeout + NETWORK_MARGIN,
            client,
            health: Health::new(config.disable_after_failures(), Duration::from_secs(config.retry_after_secs())),
        }
    }

    async fn forward(&self, call: &SpamCall) -> Result<(SpamAnswer, CallStats), CallFailure> {
        let start = Instant::now();
        let result = match self.health.admit() {
            Err(remaining) => Err(Failed::Here(CallFailure::Disabled(remaining))),
            Ok(()) => self.exchange(call, start + self.deadline).await,
        };
        let elapsed = start.elapsed();
        metrics::call(&self.name, call.name(), elapsed);
        match result {
            Ok(answer) => {
                if self.health.record_success() {
                    metrics::switched_off(&self.name, false);
                    tracing::warn!(plugin = %self.name, role = self.role, instance = %self.instance,
                        "forwarding to the plugin switched back on: its trial call succeeded");
                }
                Ok((answer, CallStats { elapsed, ..CallStats::default() }))
            }
            Err(failed) => Err(self.report(call.name(), failed)),
        }
    }

    /// Tries the hosts in order, rounds of them with backoff, until `deadline`.
    async fn exchange(&self, call: &SpamCall, deadline: Instant) -> Result<SpamAnswer, Failed> {
        let body = Bytes::from(serde_json::to_vec(call).map_err(|e| Failed::Here(CallFailure::Malformed(e.to_string())))?);
        let path = path(&self.name, &crate::replication::room_writes::new_txn_id());
        let mut backoff = FIRST_BACKOFF;
        let mut last_error = None;
        loop {
            let mut may_come_back = false;
            for host in &self.hosts {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    break;
                }
                match self.client.attempt(host, &path, body.clone(), remaining).await {
                    Ok(reply) if reply.status == StatusCode::OK => return self.read(call, host, &reply.body),
                    Ok(reply) => last_error = Some(format!("{host} answered {}: {}", reply.status, String::from_utf8_lossy(&reply.body))),
                    Err(error) => {
                        may_come_back |= matches!(error, CallError::Unreachable { .. });
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

    fn read(&self, call: &SpamCall, host: &str, body: &[u8]) -> Result<SpamAnswer, Failed> {
        match serde_json::from_slice(body) {
            Ok(RemoteOutcome::Answer(answer)) if call.answered_by(&answer) => Ok(answer),
            Ok(RemoteOutcome::Answer(answer)) => {
                Err(Failed::Here(CallFailure::Malformed(format!("{host} answered {answer:?}, which does not answer {}", call.name()))))
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
            && let Tripped::SwitchedOff(backoff) = self.health.record_failure()
        {
            metrics::switched_off(&self.name, true);
            tracing::error!(plugin = %self.name, role = self.role, instance = %self.instance, retry_in = ?backoff,
                "PLUGIN SWITCHED OFF here after repeated failures to reach it: every call answers `{outcome}` until it is retried");
        }
        failure
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
        Box::pin(self.forward(call))
    }
}
