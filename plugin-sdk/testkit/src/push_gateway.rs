//! A push gateway for tests, written from the Matrix Push Gateway API: an
//! HTTP server on 127.0.0.1 that takes `POST /_matrix/push/v1/notify`,
//! records every request it gets, and answers as the test says: accept
//! (`{"rejected": []}`), reject pushkeys (`{"rejected": [...]}`), fail
//! with a status, and any of these slowly.
//!
//! As the specification says, another path is 404 `M_UNRECOGNIZED`, another
//! method 405 `M_UNRECOGNIZED`, and a body that is not a JSON object with a
//! `notification` holding a `devices` list is 400 `M_BAD_JSON`; those
//! requests are recorded too. Each connection serves one request and is
//! closed (`connection: close`).
//!
//! ```text
//! let gateway = PushGateway::start().await?;
//! gateway.set_reply(Reply::Status(500));        // fail from now on
//! gateway.script([Reply::Status(500), Reply::Accept]); // these first, in order
//! gateway.set_delay(Duration::from_secs(2));    // answer slowly
//! let received = gateway.wait_for(1, Duration::from_secs(5)).await;
//! assert_eq!(received[0].notification()["prio"], "high");
//! ```

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
    task::JoinHandle,
};

/// The path of the Push Gateway API's one endpoint.
pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";
/// The largest request head (request line and headers) read.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The largest request body read.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// How the gateway answers a valid notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 200 `{"rejected": []}`.
    Accept,
    /// 200 `{"rejected": [these pushkeys]}`.
    Reject(Vec<String>),
    /// This status with an `M_UNKNOWN` error body.
    Status(u16),
    /// This status with a `Retry-After` header of so many seconds.
    RetryAfter(u16, u64),
}

/// One request the gateway received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub body: Value,
    /// The status the gateway answered with.
    pub status: u16,
    /// When the request arrived (its whole body read).
    pub at: std::time::Instant,
}

impl Received {
    /// `body.notification` (`Value::Null` when absent).
    pub fn notification(&self) -> &Value {
        &self.body["notification"]
    }

    /// `body.notification.devices[0]`.
    pub fn device(&self) -> &Value {
        &self.body["notification"]["devices"][0]
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    reply: Mutex<Option<Reply>>,
    delay: Mutex<Duration>,
    arrived: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running gateway; stops accepting when dropped.
pub struct PushGateway {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl PushGateway {
    /// Listens on 127.0.0.1 on a free port, accepting every notification.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, shared.clone()));
            }
        });
        Ok(Self { addr, state, accept })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>/_matrix/push/v1/notify`.
    pub fn url(&self) -> String {
        self.url_via("127.0.0.1")
    }

    /// The notify URL through another host name for this machine (`localhost`).
    pub fn url_via(&self, host: &str) -> String {
        format!("http://{host}:{}{NOTIFY_PATH}", self.addr.port())
    }

    /// How every later valid notification is answered (after the script).
    pub fn set_reply(&self, reply: Reply) {
        *lock(&self.state.reply) = Some(reply);
    }

    /// Answers the next valid notifications with these, in order, before
    /// going back to `set_reply`'s answer.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.state.script).extend(replies);
    }

    /// Waits this long before answering each request (default none).
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.state.delay) = delay;
    }

    /// Every request so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// Waits until at least `count` requests arrived (answered or not), or
    /// `timeout` passed; returns what arrived.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.state.arrived.notified();
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.received();
            }
        }
    }
}

impl Drop for PushGateway {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Reads one request, records it, answers it, closes the connection.
async fn serve(mut socket: TcpStream, state: Arc<State>) {
    let Some((method, path, headers, body)) = read_request(&mut socket).await else {
        let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        return;
    };
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, extra_headers, answer) = if path != NOTIFY_PATH {
        (404, String::new(), json!({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}))
    } else if method != "POST" {
        (405, String::new(), json!({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}))
    } else if !json["notification"]["devices"].is_array() {
        (400, String::new(), json!({"errcode": "M_BAD_JSON", "error": "The body must be {\"notification\": {..., \"devices\": [...]}}"}))
    } else {
        let reply = lock(&state.script).pop_front().or_else(|| lock(&state.reply).clone()).unwrap_or(Reply::Accept);
        match reply {
            Reply::Accept => (200, String::new(), json!({"rejected": []})),
            Reply::Reject(pushkeys) => (200, String::new(), json!({"rejected": pushkeys})),
            Reply::Status(status) => (status, String::new(), json!({"errcode": "M_UNKNOWN", "error": "The push gateway is told to fail"})),
            Reply::RetryAfter(status, secs) => {
                (status, format!("retry-after: {secs}\r\n"), json!({"errcode": "M_UNKNOWN", "error": "The push gateway is told to fail"}))
            }
        }
    };
    lock(&state.received).push(Received { method, path, headers, body: json, status, at: std::time::Instant::now() });
    state.arrived.notify_waiters();
    let delay = *lock(&state.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let body = answer.to_string();
    let response = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra_headers}connection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

type Request = (String, String, Vec<(String, String)>, Vec<u8>);

/// An HTTP/1.1 request with a `content-length` body (what HTTP clients send
/// for a JSON body); `None` when it is not one.
async fn read_request(socket: &mut TcpStream) -> Option<Request> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return None;
        }
        let mut chunk = [0u8; 8192];
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = std::str::from_utf8(&buffer[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (request_line.next()?.to_owned(), request_line.next()?.to_owned());
    let headers: Vec<(String, String)> =
        lines.filter_map(|line| line.split_once(':')).map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned())).collect();
    let length = headers.iter().find(|(name, _)| name == "content-length").map_or(Some(0), |(_, v)| v.parse::<usize>().ok())?;
    if length > MAX_BODY_BYTES {
        return None;
    }
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    body.truncate(length);
    Some((method, path, headers, body))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
