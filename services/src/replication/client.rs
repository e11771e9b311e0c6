//! Calls to other instances' internal HTTP API (the `replication` listener
//! named in `instance_map`), authenticated with `worker_replication_secret`.
//! A call that cannot reach its instance is retried with backoff for a
//! while (an instance restarting comes back), with the same transaction id,
//! so the callee applies it at most once. Replies carry the callee's stream
//! positions; `wait_for_positions` holds the caller until it has seen them
//! (learning most from the reply itself), so a client reads its own writes
//! from any worker. The client is also the plugin runtime's transport to
//! the instances that host a pinned plugin (`RemoteTransport`), and the
//! federation client's to the instances that connect out for this one
//! (`InternalTransport`, `outbound_federation_restricted_to`).

use std::{collections::HashMap, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use weft_core::config::Config;
use weft_federation::egress::{InternalTransport, TransportFailure};
use weft_plugin_runtime::{
    host_services::BoxFuture,
    remote::{RemoteTransport, TransportError, TransportReply},
};
use weft_storage::Stream;

use crate::sync::Notifier;

/// The header carrying a reply's stream positions: `stream:instance:position,...`.
pub const POSITIONS_HEADER: &str = "x-weft-positions";
/// How long a call keeps retrying an unreachable instance.
const RETRY_FOR: Duration = Duration::from_secs(20);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct InternalClient {
    secret: Option<String>,
    /// Per instance: its client (Unix sockets need their own) and base URL.
    instances: HashMap<String, (reqwest::Client, String)>,
}

/// A reply as the callee produced it, kept for a retried transaction.
#[derive(Debug, Clone)]
pub struct StoredReply {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub positions: String,
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("`{0}` is not in instance_map")]
    UnknownInstance(String),
    #[error("cannot reach `{instance}`: {source}")]
    Unreachable { instance: String, source: reqwest::Error },
}

impl InternalClient {
    pub fn from_config(config: &Config) -> Self {
        let mut instances = HashMap::new();
        let shared = weft_plugin_runtime::http_client::builder().pool_idle_timeout(Duration::from_secs(60)).build().unwrap_or_default();
        for (name, location) in &config.instance_map {
            let scheme = if location.tls { "https" } else { "http" };
            let entry = match (&location.path, &location.host, location.port) {
                (Some(path), _, _) => {
                    let client = weft_plugin_runtime::http_client::builder().unix_socket(path.clone()).build().unwrap_or_default();
                    (client, "http://localhost".to_owned())
                }
                (None, Some(host), Some(port)) => (shared.clone(), format!("{scheme}://{host}:{port}")),
                _ => continue,
            };
            instances.insert(name.clone(), entry);
        }
        Self { secret: config.worker_replication_secret.clone(), instances }
    }

    /// Sends a request to `instance`, retrying while it is unreachable.
    pub async fn call(&self, instance: &str, method: Method, path: &str, headers: HeaderMap, body: Bytes) -> Result<StoredReply, CallError> {
        let (client, base) = self.instances.get(instance).ok_or_else(|| CallError::UnknownInstance(instance.to_owned()))?;
        let url = format!("{base}{path}");
        let started = std::time::Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            let mut request = client.request(method.clone(), &url).headers(headers.clone()).body(body.clone());
            if let Some(secret) = &self.secret {
                request = request.bearer_auth(secret);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let content_type = response.headers().get(http::header::CONTENT_TYPE).cloned();
                    let positions = response.headers().get(POSITIONS_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    match response.bytes().await {
                        Ok(body) => return Ok(StoredReply { status, content_type, positions, body }),
                        Err(source) if started.elapsed() >= RETRY_FOR => {
                            return Err(CallError::Unreachable { instance: instance.to_owned(), source });
                        }
                        Err(error) => tracing::warn!(%instance, %error, "internal call lost its reply; retrying"),
                    }
                }
                Err(source) if started.elapsed() >= RETRY_FOR => return Err(CallError::Unreachable { instance: instance.to_owned(), source }),
                Err(error) => tracing::warn!(%instance, %error, "internal call failed; retrying"),
            }
            metrics::counter!("weft_replication_call_retries_total", "instance" => instance.to_owned()).increment(1);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    /// One try at a POST to `instance`, answered within `timeout` (connecting
    /// and the whole reply) or failed: for callers that keep their own
    /// deadline and retry themselves.
    pub async fn attempt(&self, instance: &str, path: &str, body: Bytes, timeout: Duration) -> Result<StoredReply, CallError> {
        let (client, base) = self.instances.get(instance).ok_or_else(|| CallError::UnknownInstance(instance.to_owned()))?;
        let mut request = client.post(format!("{base}{path}")).header(http::header::CONTENT_TYPE, "application/json").body(body).timeout(timeout);
        if let Some(secret) = &self.secret {
            request = request.bearer_auth(secret);
        }
        let unreachable = |source| CallError::Unreachable { instance: instance.to_owned(), source };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let content_type = response.headers().get(http::header::CONTENT_TYPE).cloned();
        let positions = response.headers().get(POSITIONS_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body = response.bytes().await.map_err(unreachable)?;
        Ok(StoredReply { status, content_type, positions, body })
    }
}

/// The federation client's way to the instances of
/// `outbound_federation_restricted_to`: one try, the whole reply.
impl InternalTransport for InternalClient {
    fn post<'a>(&'a self, instance: &'a str, path: &'a str, body: Bytes, timeout: Duration) -> BoxFuture<'a, Result<http::Response<Bytes>, TransportFailure>> {
        Box::pin(async move {
            let (client, base) = self.instances.get(instance).ok_or_else(|| TransportFailure::NotConnected(format!("`{instance}` is not in instance_map")))?;
            let mut request = client.post(format!("{base}{path}")).body(body).timeout(timeout);
            if let Some(secret) = &self.secret {
                request = request.bearer_auth(secret);
            }
            let failed = |error: reqwest::Error| match error.is_connect() {
                true => TransportFailure::NotConnected(error.to_string()),
                false => TransportFailure::Failed(error.to_string()),
            };
            let mut response = request.send().await.map_err(failed)?;
            let mut reply = http::Response::builder().status(response.status());
            if let Some(headers) = reply.headers_mut() {
                *headers = std::mem::take(response.headers_mut());
            }
            let body = response.bytes().await.map_err(failed)?;
            reply.body(body).map_err(|error| TransportFailure::Failed(error.to_string()))
        })
    }
}

impl RemoteTransport for InternalClient {
    fn post<'a>(&'a self, instance: &'a str, path: &'a str, body: Bytes, timeout: Duration) -> BoxFuture<'a, Result<TransportReply, TransportError>> {
        Box::pin(async move {
            match self.attempt(instance, path, body, timeout).await {
                Ok(reply) => Ok(TransportReply { status: reply.status, body: reply.body }),
                Err(error @ CallError::Unreachable { .. }) => Err(TransportError::Unreachable(error.to_string())),
                Err(error @ CallError::UnknownInstance(_)) => Err(TransportError::Unknown(error.to_string())),
            }
        })
    }
}

/// `stream:instance:position` entries, comma-separated.
pub fn encode_positions(positions: &[(Stream, String, i64)]) -> String {
    positions.iter().map(|(stream, instance, position)| format!("{}:{instance}:{position}", stream.as_str())).collect::<Vec<_>>().join(",")
}

pub fn decode_positions(text: &str) -> Vec<(Stream, String, i64)> {
    text.split(',')
        .filter_map(|entry| {
            let mut parts = entry.splitn(3, ':');
            let stream = super::stream_named(parts.next()?)?;
            let instance = parts.next()?.to_owned();
            let position = parts.next()?.parse().ok()?;
            Some((stream, instance, position))
        })
        .collect()
}

/// Waits until this instance has seen every position in `positions`, at
/// most `READ_YOUR_WRITES_TIMEOUT`; then carries on with a warning.
///
/// A writer's reply states what a POSITION from it would: it has persisted
/// its stream up to there. For a stream in the database that is all there
/// is to see, so those positions are taken from the reply at once rather
/// than waited for on the bus; only `typing` rows are waited for, as they
/// carry its state.
pub async fn wait_for_positions(notifier: &Notifier, positions: &[(Stream, String, i64)]) {
    for (stream, instance, position) in positions {
        if stream.is_in_database() {
            super::advance_position(notifier, *stream, instance, *position);
        }
    }
    let reached = || positions.iter().all(|(stream, instance, position)| notifier.writer_position(*stream, instance) >= *position);
    if reached() {
        return;
    }
    let mut changes = notifier.subscribe();
    let waited = tokio::time::timeout(super::READ_YOUR_WRITES_TIMEOUT, async {
        while !reached() {
            if changes.changed().await.is_err() {
                break;
            }
        }
    })
    .await;
    if waited.is_err() {
        tracing::warn!(positions = %encode_positions(positions), "gave up waiting for replication to catch up; answering anyway");
    }
}
