//! A stand-in application service for the failure cases no real one shows
//! on demand (an error status forever, garbage, no answer): an axum server
//! on port 0 that records every request and answers as the test says. The
//! real appservice, mautrix-python's, is driven by `tests/appservice/bridge.py`.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use serde_json::Value;

/// How the appservice answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// 200 with `{}`.
    Accept,
    /// This status with this body, every time.
    Status(u16, &'static str),
    /// 200 with a body that is no JSON at all.
    Garbage,
    /// Never answers.
    Hang,
}

/// One request the appservice received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: &'static str,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Debug)]
struct Inner {
    mode: Mode,
    /// Answers to the next transactions, before `mode` applies again.
    script: Vec<Mode>,
    received: Vec<Received>,
    /// The 200 answers of the MSC3983 claim and the MSC3984 query (404 when unset).
    keys: Option<(Value, Value)>,
}

#[derive(Debug, Clone)]
pub struct FakeAppservice {
    inner: Arc<Mutex<Inner>>,
    pub address: SocketAddr,
}

impl FakeAppservice {
    pub async fn start(mode: Mode) -> Self {
        let inner = Arc::new(Mutex::new(Inner { mode, script: Vec::new(), received: Vec::new(), keys: None }));
        let app = Router::new()
            .route("/_matrix/app/v1/transactions/{txn}", put(transaction))
            .route("/_matrix/app/v1/users/{user}", get(query))
            .route("/_matrix/app/v1/rooms/{alias}", get(query))
            .route("/_matrix/app/v1/ping", post(ping))
            .route("/_matrix/app/unstable/org.matrix.msc3983/keys/claim", post(keys))
            .route("/_matrix/app/unstable/org.matrix.msc3984/keys/query", post(keys))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { inner, address }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.inner.lock().unwrap().mode = mode;
    }

    /// Answers for the next transactions, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Mode>) {
        self.inner.lock().unwrap().script = answers.into_iter().collect();
    }

    /// Answers key claims (MSC3983) and key queries (MSC3984) with these, with 200.
    pub fn answer_keys(&self, claim: Value, query: Value) {
        self.inner.lock().unwrap().keys = Some((claim, query));
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// The transactions received, as (txn id, body), retries included.
    pub fn transactions(&self) -> Vec<(i64, Value)> {
        self.received()
            .into_iter()
            .filter(|r| r.path.starts_with("/_matrix/app/v1/transactions/"))
            .map(|r| (r.path.rsplit('/').next().unwrap().parse().unwrap(), r.body))
            .collect()
    }

    /// Waits until `done` holds of what was received, at most `seconds`.
    pub async fn wait_for(&self, seconds: u64, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; received {received:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn record(inner: &Mutex<Inner>, method: &'static str, path: String, headers: &HeaderMap, body: &Bytes) -> Mode {
    let mut inner = inner.lock().unwrap();
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = serde_json::from_slice(body).unwrap_or(Value::Null);
    inner.received.push(Received { method, path, authorization, body });
    inner.mode.clone()
}

async fn answer(mode: Mode) -> Response {
    match mode {
        Mode::Accept => (StatusCode::OK, "{}").into_response(),
        Mode::Status(status, body) => (StatusCode::from_u16(status).unwrap(), body).into_response(),
        Mode::Garbage => (StatusCode::OK, "<html>not json").into_response(),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

async fn transaction(State(inner): State<Arc<Mutex<Inner>>>, Path(txn): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let mode = record(&inner, "PUT", format!("/_matrix/app/v1/transactions/{txn}"), &headers, &body);
    let scripted = {
        let mut inner = inner.lock().unwrap();
        if inner.script.is_empty() { None } else { Some(inner.script.remove(0)) }
    };
    answer(scripted.unwrap_or(mode)).await
}

async fn query(State(inner): State<Arc<Mutex<Inner>>>, uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let mode = record(&inner, "GET", uri.path().to_owned(), &headers, &Bytes::new());
    answer(mode).await
}

async fn ping(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    let mode = record(&inner, "POST", "/_matrix/app/v1/ping".into(), &headers, &body);
    answer(mode).await
}

async fn keys(State(inner): State<Arc<Mutex<Inner>>>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    record(&inner, "POST", path.clone(), &headers, &body);
    let answers = inner.lock().unwrap().keys.clone();
    match answers {
        Some((claim, _)) if path.ends_with("/keys/claim") => (StatusCode::OK, claim.to_string()).into_response(),
        Some((_, query)) => (StatusCode::OK, query.to_string()).into_response(),
        None => (StatusCode::NOT_FOUND, r#"{"errcode":"M_UNRECOGNIZED"}"#).into_response(),
    }
}
