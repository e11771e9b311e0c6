//! Where outbound federation requests leave from (`outbound_federation_restricted_to`).
//!
//! Every request the federation client makes is an `Outbound`: a request
//! for one destination server, by path (signed with X-Matrix or not), or a
//! media `Location` another server named. `FederationClient::send` is the
//! one place that decides how it goes out: directly (this instance resolves
//! the destination and connects), or, on an instance not listed in
//! `outbound_federation_restricted_to`, over the internal API to one of the
//! listed instances, which checks it against its own policy
//! (`federation_domain_whitelist`, `ip_range_blacklist`/`ip_range_whitelist`),
//! signs it as the server and sends it (`serve`). Such an instance never
//! connects to another server itself, not even to look up its address.
//!
//! The exchange with the proxying instance: `POST PROXY_PATH` whose body is
//! the request's description as one JSON line, then the request's body as
//! is; the answer is the remote server's status in `REMOTE_STATUS_HEADER`,
//! its `Content-Type` and `Content-Disposition`, and its body (read up to
//! the request's limit there, as a direct request reads it); or, when the
//! request could not be made, a Matrix error whose `weft_egress_error` says
//! why, turned back into the same `FederationError` a direct request gives.
//!
//! May call: `weft_core` (the shard of a destination). The transport to the
//! other instances (`InternalTransport`) is the internal API's client,
//! handed in by whoever builds the federation client.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header::CONTENT_DISPOSITION, header::CONTENT_TYPE};
use ruma::{OwnedServerName, ServerName};
use serde::{Deserialize, Serialize};

use weft_core::config::Config;

use crate::{FederationClient, FederationError};

/// The internal API route of the proxying instances.
pub const PROXY_PATH: &str = "/_weft/replication/v1/federation/outbound";
/// On a proxying instance's answer: the remote server's status.
pub const REMOTE_STATUS_HEADER: &str = "x-weft-remote-status";
/// The most a request to a proxying instance takes beyond the request's
/// own time: address discovery and connecting there.
const PROXY_GRACE: Duration = Duration::from_secs(30);

/// One request to another server, before it is signed or addressed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outbound {
    /// The server the request is for: the X-Matrix destination, or the
    /// server whose media a `Location` holds.
    pub destination: OwnedServerName,
    pub method: String,
    pub target: Target,
    pub content_type: Option<String>,
    /// Whether it carries this server's X-Matrix signature.
    pub sign: bool,
    /// The most of the answer's body read.
    pub limit: usize,
    #[serde(skip)]
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A path and query on the destination, resolved by server discovery.
    Path(String),
    /// An absolute URL another server named for its media (`Location`).
    Location(String),
}

/// The remote server's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Why a call to another instance failed.
#[derive(Debug)]
pub enum TransportFailure {
    /// No connection was made: trying another instance is safe.
    NotConnected(String),
    /// The call was made and failed (timed out, reply lost).
    Failed(String),
}

/// A POST over the internal API to another instance, with the secret.
pub trait InternalTransport: Send + Sync {
    fn post<'a>(
        &'a self,
        instance: &'a str,
        path: &'a str,
        body: Bytes,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, TransportFailure>> + Send + 'a>>;
}

/// How this instance's requests leave.
pub(crate) enum Egress {
    Direct,
    /// Through these instances (`outbound_federation_restricted_to`).
    Through {
        instances: Arc<[String]>,
        transport: Arc<dyn InternalTransport>,
    },
}

impl Egress {
    pub(crate) fn from_config(config: &Config, transport: Option<Arc<dyn InternalTransport>>) -> Result<Self, FederationError> {
        let allowed = &config.outbound_federation_restricted_to;
        if allowed.is_empty() || allowed.iter().any(|name| name == config.instance_name()) {
            return Ok(Self::Direct);
        }
        let transport = transport
            .ok_or_else(|| FederationError::Config("outbound_federation_restricted_to needs the internal API's client, which this process has not".into()))?;
        Ok(Self::Through { instances: allowed.iter().cloned().collect(), transport })
    }
}

impl FederationClient {
    /// Sends `request` directly or through an allowed instance: the one
    /// place that decides.
    pub(crate) async fn send(&self, request: Outbound) -> Result<Answer, FederationError> {
        self.check_allowed(&request.destination)?;
        match &self.egress {
            Egress::Direct => {
                metrics::counter!("weft_federation_outbound_requests_total", "via" => "direct").increment(1);
                self.send_direct(request).await
            }
            Egress::Through { instances, transport } => through(instances, transport.as_ref(), request).await,
        }
    }

    /// Whether this instance connects to other servers itself.
    pub fn connects_directly(&self) -> bool {
        matches!(self.egress, Egress::Direct)
    }
}

/// Sends `request` through the first of `instances` that can be reached,
/// starting at the one sha256 of the destination picks (connections to a
/// destination stay on one instance while it is up).
async fn through(instances: &[String], transport: &dyn InternalTransport, request: Outbound) -> Result<Answer, FederationError> {
    let server = request.destination.clone();
    let body = encode_request(&request);
    let timeout = crate::client::REQUEST_TIMEOUT + PROXY_GRACE;
    let first = weft_core::streams::shard(server.as_str(), instances.len());
    let mut failures = Vec::new();
    for instance in instances.iter().cycle().skip(first).take(instances.len()) {
        metrics::counter!("weft_federation_outbound_requests_total", "via" => instance.clone()).increment(1);
        match transport.post(instance, PROXY_PATH, body.clone(), timeout).await {
            Ok(reply) => return decode_answer(instance, &server, reply),
            Err(TransportFailure::NotConnected(reason)) => {
                tracing::warn!(%instance, %server, %reason, "cannot reach an instance of outbound_federation_restricted_to; trying the next");
                failures.push(format!("{instance}: {reason}"));
            }
            Err(TransportFailure::Failed(reason)) => {
                return Err(FederationError::Transport { server: server.to_string(), reason: format!("through {instance}: {reason}") });
            }
        }
    }
    Err(FederationError::Transport {
        server: server.to_string(),
        reason: format!("no instance of outbound_federation_restricted_to could be reached ({})", failures.join("; ")),
    })
}

/// Serves another instance's `request` (the body of a `PROXY_PATH` call)
/// on this one, which must be allowed to connect out.
pub async fn serve(client: &FederationClient, request: &[u8]) -> http::Response<Bytes> {
    if !client.connects_directly() {
        return refusal(StatusCode::FORBIDDEN, &Wire::Blocked { reason: "this instance is not in outbound_federation_restricted_to".into() });
    }
    let Some(request) = decode_request(request) else {
        return refusal(StatusCode::BAD_REQUEST, &Wire::Request { reason: "not an outbound federation request".into() });
    };
    metrics::counter!("weft_federation_proxied_requests_total").increment(1);
    match client.send(request).await {
        Ok(answer) => {
            let mut response = http::Response::new(Bytes::from(answer.body));
            let headers = response.headers_mut();
            headers.insert(REMOTE_STATUS_HEADER, HeaderValue::from(answer.status.as_u16()));
            for name in [CONTENT_TYPE, CONTENT_DISPOSITION] {
                if let Some(value) = answer.headers.get(&name) {
                    headers.insert(name, value.clone());
                }
            }
            response
        }
        Err(error) => refusal(StatusCode::BAD_GATEWAY, &Wire::from(error)),
    }
}

/// The description as one JSON line (serde_json escapes newlines in
/// strings), then the body.
fn encode_request(request: &Outbound) -> Bytes {
    let mut encoded = serde_json::to_vec(request).unwrap_or_default();
    encoded.push(b'\n');
    encoded.extend_from_slice(&request.body);
    Bytes::from(encoded)
}

fn decode_request(encoded: &[u8]) -> Option<Outbound> {
    let split = encoded.iter().position(|byte| *byte == b'\n')?;
    let mut request: Outbound = serde_json::from_slice(&encoded[..split]).ok()?;
    request.body = encoded[split + 1..].to_vec();
    Some(request)
}

fn decode_answer(instance: &str, server: &ServerName, reply: http::Response<Bytes>) -> Result<Answer, FederationError> {
    let (parts, body) = reply.into_parts();
    let remote_status = parts.headers.get(REMOTE_STATUS_HEADER).and_then(|value| value.to_str().ok()?.parse::<u16>().ok());
    if let Some(status) = remote_status.and_then(|status| StatusCode::from_u16(status).ok()) {
        let mut headers = parts.headers;
        headers.remove(REMOTE_STATUS_HEADER);
        return Ok(Answer { status, headers, body: body.to_vec() });
    }
    let wire =
        serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|value| serde_json::from_value::<Wire>(value.get("weft_egress_error")?.clone()).ok());
    Err(match wire {
        Some(wire) => wire.into_error(server),
        None => FederationError::Transport {
            server: server.to_string(),
            reason: format!("{instance} answered {}: {}", parts.status, String::from_utf8_lossy(&body)),
        },
    })
}

fn refusal(status: StatusCode, wire: &Wire) -> http::Response<Bytes> {
    let body = serde_json::json!({"errcode": "M_UNKNOWN", "error": wire.reason(), "weft_egress_error": wire});
    let mut response = http::Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A `FederationError` as the proxying instance tells it.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Wire {
    NotWhitelisted,
    Blocked { reason: String },
    Discovery { reason: String },
    Transport { reason: String },
    TooLarge { limit: u64 },
    InvalidResponse { reason: String },
    Request { reason: String },
}

impl Wire {
    fn reason(&self) -> String {
        match self {
            Self::NotWhitelisted => "not in federation_domain_whitelist".into(),
            Self::TooLarge { limit } => format!("larger than {limit} bytes"),
            Self::Blocked { reason }
            | Self::Discovery { reason }
            | Self::Transport { reason }
            | Self::InvalidResponse { reason }
            | Self::Request { reason } => reason.clone(),
        }
    }

    fn into_error(self, server: &ServerName) -> FederationError {
        let server = server.to_string();
        match self {
            Self::NotWhitelisted => FederationError::NotWhitelisted(server),
            Self::Blocked { reason } => FederationError::Blocked(reason),
            Self::Discovery { reason } => FederationError::Discovery { server, reason },
            Self::Transport { reason } => FederationError::Transport { server, reason },
            Self::TooLarge { limit } => FederationError::TooLarge { server, limit },
            Self::InvalidResponse { reason } => FederationError::InvalidResponse { server, reason },
            Self::Request { reason } => FederationError::Request(reason),
        }
    }
}

impl From<FederationError> for Wire {
    fn from(error: FederationError) -> Self {
        match error {
            FederationError::NotWhitelisted(_) => Self::NotWhitelisted,
            FederationError::Blocked(reason) => Self::Blocked { reason },
            FederationError::Discovery { reason, .. } => Self::Discovery { reason },
            FederationError::TooLarge { limit, .. } => Self::TooLarge { limit },
            FederationError::InvalidResponse { reason, .. } => Self::InvalidResponse { reason },
            FederationError::Request(reason) => Self::Request { reason },
            FederationError::Transport { reason, .. } => Self::Transport { reason },
            other => Self::Transport { reason: other.to_string() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Outbound {
        Outbound {
            destination: "remote.example:8448".try_into().unwrap(),
            method: "PUT".into(),
            target: Target::Path("/_matrix/federation/v1/send/1?x=\n".into()),
            content_type: Some("application/json".into()),
            sign: true,
            limit: 1024,
            body: b"{\"pdus\":[]}\n\x00binary".to_vec(),
        }
    }

    #[test]
    fn a_request_crosses_the_internal_api_whole() {
        let decoded = decode_request(&encode_request(&request())).unwrap();
        let original = request();
        assert_eq!((decoded.destination, decoded.method, decoded.target), (original.destination, original.method, original.target));
        assert_eq!((decoded.content_type, decoded.sign, decoded.limit, decoded.body), (original.content_type, true, 1024, original.body));
        assert!(decode_request(b"no newline").is_none());
        assert!(decode_request(b"{}\n").is_none());
    }

    #[test]
    fn the_proxying_instances_errors_come_back_as_they_were() {
        let server: OwnedServerName = "remote.example".try_into().unwrap();
        for error in [
            FederationError::NotWhitelisted("remote.example".into()),
            FederationError::Blocked("127.0.0.1 is in ip_range_blacklist".into()),
            FederationError::TooLarge { server: "remote.example".into(), limit: 5 },
            FederationError::Transport { server: "remote.example".into(), reason: "connection refused".into() },
        ] {
            let expected = error.to_string();
            let refused = refusal(StatusCode::BAD_GATEWAY, &Wire::from(error));
            assert_eq!(decode_answer("fed1", &server, refused).unwrap_err().to_string(), expected);
        }
        let unauthorized = http::Response::builder().status(401).body(Bytes::from_static(b"{\"errcode\":\"M_UNKNOWN_TOKEN\"}")).unwrap();
        let error = decode_answer("fed1", &server, unauthorized).unwrap_err();
        assert!(matches!(error, FederationError::Transport { .. }) && error.to_string().contains("fed1 answered 401"), "{error}");
    }

    #[test]
    fn a_remote_answer_keeps_its_status_and_type() {
        let server: OwnedServerName = "remote.example".try_into().unwrap();
        let reply = http::Response::builder()
            .header(REMOTE_STATUS_HEADER, "404")
            .header(CONTENT_TYPE, "application/json")
            .body(Bytes::from_static(b"{\"errcode\":\"M_NOT_FOUND\"}"))
            .unwrap();
        let answer = decode_answer("fed1", &server, reply).unwrap();
        assert_eq!((answer.status, answer.headers.get(CONTENT_TYPE).unwrap()), (StatusCode::NOT_FOUND, &HeaderValue::from_static("application/json")));
        assert!(answer.headers.get(REMOTE_STATUS_HEADER).is_none());
    }

    #[test]
    fn only_instances_left_out_of_the_list_go_through_another() {
        let config = |restricted: &[&str], worker: Option<&str>| Config {
            outbound_federation_restricted_to: restricted.iter().map(|name| name.to_string()).collect(),
            worker_name: worker.map(str::to_owned),
            ..Config::default()
        };
        assert!(matches!(Egress::from_config(&config(&[], None), None).unwrap(), Egress::Direct), "unset: every instance connects");
        assert!(matches!(Egress::from_config(&config(&["fed1"], Some("fed1")), None).unwrap(), Egress::Direct));
        assert!(Egress::from_config(&config(&["fed1"], None), None).is_err(), "main must go through fed1");
    }

    /// Instances as the internal API's client finds them: `down` takes no
    /// connection, `lost` takes the request and never answers whole.
    struct Instances(std::sync::Mutex<Vec<String>>);

    impl InternalTransport for Instances {
        fn post<'a>(
            &'a self,
            instance: &'a str,
            _: &'a str,
            _: Bytes,
            _: Duration,
        ) -> Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, TransportFailure>> + Send + 'a>> {
            self.0.lock().unwrap().push(instance.to_owned());
            Box::pin(async move {
                match instance {
                    "down" => Err(TransportFailure::NotConnected("connection refused".into())),
                    "lost" => Err(TransportFailure::Failed("reply cut off".into())),
                    _ => Ok(http::Response::builder().header(REMOTE_STATUS_HEADER, "200").body(Bytes::from(instance.to_owned())).unwrap()),
                }
            })
        }
    }

    #[tokio::test]
    async fn an_unreachable_instance_is_passed_over_and_a_request_made_is_never_sent_twice() {
        let destination = request().destination;
        // The instance sha256 of the destination picks first, the other after.
        let ordered = |first: &str, second: &str| -> Vec<String> {
            let mut list = vec![first.to_owned(), second.to_owned()];
            if weft_core::streams::shard(destination.as_str(), 2) == 1 {
                list.reverse();
            }
            list
        };
        let instances = Instances(Default::default());
        let answer = through(&ordered("down", "up"), &instances, request()).await.unwrap();
        assert_eq!((answer.status, answer.body.as_slice()), (StatusCode::OK, b"up".as_slice()));
        assert_eq!(*instances.0.lock().unwrap(), ["down", "up"]);

        let instances = Instances(Default::default());
        let error = through(&ordered("lost", "up"), &instances, request()).await.unwrap_err();
        assert!(matches!(error, FederationError::Transport { .. }) && error.to_string().contains("through lost"), "{error}");
        assert_eq!(*instances.0.lock().unwrap(), ["lost"], "the request may have been made: not sent again");

        let instances = Instances(Default::default());
        let error = through(&["down".to_owned()], &instances, request()).await.unwrap_err();
        assert!(error.to_string().contains("no instance of outbound_federation_restricted_to could be reached"), "{error}");
    }
}
