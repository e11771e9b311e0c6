//! A scripted remote homeserver for the media tests: HTTPS on 127.0.0.1
//! with the test CA's certificate, named `localhost:PORT`, answering the
//! federation and legacy media downloads by what the media id starts with,
//! and noting every request (path and query, and whether it was X-Matrix
//! signed) so that tests can count what reached it.
//!
//! - `inline…`: a `multipart/mixed` answer holding the file (text);
//! - `slow…`: the same after half a second;
//! - `png…`: a 64x64 PNG image;
//! - `located…`: a `Location` part pointing at `/files/<id>` here;
//! - `legacy…`: 404 `M_UNRECOGNIZED` on the federation endpoint (a server
//!   without it), the file on `/_matrix/media/v3/download`;
//! - `big…`: a 30,000-byte file;
//! - anything else: 404 `M_NOT_FOUND`.
//!
//! It also has a signing key (served on `/_matrix/key/v2/server`), so that
//! tests can play it as the origin of PDUs, and serves the events it was
//! given (`serve_event`) on `/_matrix/federation/v1/event/{id}` and their
//! auth chains (among those events) on `/_matrix/federation/v1/event_auth`.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use ruma::{CanonicalJsonObject, signatures::Ed25519KeyPair};
use serde_json::Value;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
};

use crate::support::synapse::test_ca;

const BOUNDARY: &str = "fake0remote0boundary0f00d";

/// One request the fake saw.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) signed: bool,
}

pub(crate) struct FakeRemote {
    pub(crate) server_name: String,
    /// The signing key, `ed25519:fake`.
    pub(crate) key: Arc<Ed25519KeyPair>,
    seen: Arc<Mutex<Vec<Seen>>>,
    events: Events,
    task: tokio::task::JoinHandle<()>,
}

/// PDUs the fake serves, by event id.
type Events = Arc<Mutex<HashMap<String, Value>>>;

impl Drop for FakeRemote {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeRemote {
    pub(crate) async fn start() -> FakeRemote {
        let ca = test_ca();
        let certs = CertificateDer::pem_file_iter(&ca.chain).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_file(&ca.key).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server_name = format!("localhost:{port}");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let key = Arc::new(Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "fake".into()).unwrap());
        let events: Events = Arc::default();
        let remote = Remote { name: server_name.clone(), seen: seen.clone(), key: key.clone(), events: events.clone() };
        let task = tokio::spawn(accept(listener, acceptor, Arc::new(remote)));
        FakeRemote { server_name, key, seen, events, task }
    }

    /// Serves `pdu` as event `event_id` (and in auth chains).
    pub(crate) fn serve_event(&self, event_id: &str, pdu: Value) {
        self.events.lock().unwrap().insert(event_id.to_owned(), pdu);
    }

    /// The requests whose path and query contain `part`.
    pub(crate) fn seen(&self, part: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|seen| seen.path.contains(part)).cloned().collect()
    }
}

/// What the fake answers from.
struct Remote {
    name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    key: Arc<Ed25519KeyPair>,
    events: Events,
}

async fn accept(listener: TcpListener, acceptor: TlsAcceptor, remote: Arc<Remote>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let (acceptor, remote) = (acceptor.clone(), remote.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let remote = remote.clone();
                async move { Ok::<_, Infallible>(answer(&remote, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

/// The bytes of media `id`.
pub(crate) fn content_of(id: &str) -> Vec<u8> {
    if id.starts_with("big") {
        return vec![b'x'; 30_000];
    }
    if id.starts_with("png") {
        let image = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 90]));
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(image).write_to(&mut out, image::ImageFormat::Png).unwrap();
        return out.into_inner();
    }
    format!("the content of {id}").into_bytes()
}

fn type_of(id: &str) -> &'static str {
    if id.starts_with("png") { "image/png" } else { "text/plain" }
}

type Answer = hyper::Response<Full<Bytes>>;

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Answer {
    hyper::Response::builder().status(status).header("content-type", content_type).body(Full::new(Bytes::from(body))).unwrap()
}

fn error(status: u16, errcode: &str) -> Answer {
    respond(status, "application/json", serde_json::json!({"errcode": errcode, "error": "scripted"}).to_string().into_bytes())
}

/// The two parts of a federation media answer: `{}` then `part` (its headers, a blank line, its bytes).
fn multipart(part: Vec<u8>) -> Answer {
    let mut body = format!("--{BOUNDARY}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{BOUNDARY}\r\n").into_bytes();
    body.extend(part);
    body.extend(format!("\r\n--{BOUNDARY}--\r\n").into_bytes());
    respond(200, &format!("multipart/mixed; boundary={BOUNDARY}"), body)
}

/// The fake's signed key document.
fn key_document(remote: &Remote) -> Vec<u8> {
    let valid_until = ruma::MilliSecondsSinceUnixEpoch::now().get() + ruma::UInt::from(86_400_000u32);
    let document = serde_json::json!({
        "server_name": remote.name,
        "valid_until_ts": valid_until,
        "verify_keys": {"ed25519:fake": {"key": STANDARD_NO_PAD.encode(remote.key.public_key())}},
        "old_verify_keys": {},
    });
    let mut object: CanonicalJsonObject = serde_json::from_value(document).unwrap();
    ruma::signatures::sign_json(&remote.name, &*remote.key, &mut object).unwrap();
    serde_json::to_vec(&object).unwrap()
}

/// The auth chain of `event_id` among the events the fake serves.
fn auth_chain(events: &HashMap<String, Value>, event_id: &str) -> Vec<Value> {
    let mut chain: Vec<Value> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut stack: Vec<String> = events.get(event_id).map(auth_events_of).unwrap_or_default();
    while let Some(id) = stack.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        if let Some(event) = events.get(&id) {
            stack.extend(auth_events_of(event));
            chain.push(event.clone());
        }
    }
    chain
}

fn auth_events_of(event: &Value) -> Vec<String> {
    event["auth_events"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect()
}

/// A percent-encoded path segment, decoded.
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match (bytes[at], bytes.get(at + 1..at + 3).and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                at += 3;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_answer(value: &Value) -> Answer {
    respond(200, "application/json", serde_json::to_vec(value).unwrap())
}

async fn answer(remote: &Remote, request: hyper::Request<hyper::body::Incoming>) -> Answer {
    let name = remote.name.as_str();
    let path = request.uri().path_and_query().map(ToString::to_string).unwrap_or_default();
    let signed = request.headers().get("authorization").and_then(|value| value.to_str().ok()).is_some_and(|value| value.starts_with("X-Matrix"));
    remote.seen.lock().unwrap().push(Seen { path: path.clone(), signed });
    let bare = request.uri().path();
    if bare == "/_matrix/key/v2/server" || bare.starts_with("/_matrix/key/v2/server/") {
        return respond(200, "application/json", key_document(remote));
    }
    if let Some(id) = bare.strip_prefix("/_matrix/federation/v1/event/") {
        let id = decode(id);
        return match remote.events.lock().unwrap().get(&id) {
            Some(pdu) => json_answer(&serde_json::json!({"origin": name, "origin_server_ts": 1, "pdus": [pdu]})),
            None => error(404, "M_NOT_FOUND"),
        };
    }
    if let Some(rest) = bare.strip_prefix("/_matrix/federation/v1/event_auth/") {
        let id = decode(rest.rsplit('/').next().unwrap_or_default());
        let events = remote.events.lock().unwrap();
        return match events.contains_key(&id) {
            true => json_answer(&serde_json::json!({"auth_chain": auth_chain(&events, &id)})),
            false => error(404, "M_NOT_FOUND"),
        };
    }
    if let Some(id) = bare.strip_prefix("/_matrix/federation/v1/media/download/") {
        if id.starts_with("slow") {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        return match id {
            id if id.starts_with("located") => multipart(format!("Location: https://{name}/files/{id}\r\n\r\n").into_bytes()),
            id if id.starts_with("legacy") => error(404, "M_UNRECOGNIZED"),
            id if ["inline", "slow", "png", "big"].iter().any(|prefix| id.starts_with(prefix)) => {
                let mut part = format!("Content-Type: {}\r\nContent-Disposition: attachment; filename={id}.file\r\n\r\n", type_of(id)).into_bytes();
                part.extend(content_of(id));
                multipart(part)
            }
            _ => error(404, "M_NOT_FOUND"),
        };
    }
    if let Some(id) = bare.strip_prefix("/files/") {
        return respond(200, type_of(id), content_of(id));
    }
    if let Some(rest) = bare.strip_prefix("/_matrix/media/v3/download/") {
        let id = rest.rsplit('/').next().unwrap_or_default();
        if id.starts_with("legacy") {
            let mut answer = respond(200, type_of(id), content_of(id));
            answer.headers_mut().insert("content-disposition", format!("inline; filename={id}.old").parse().unwrap());
            return answer;
        }
    }
    error(404, "M_NOT_FOUND")
}
