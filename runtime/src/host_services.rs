//! The services behind the `host` interface: key-value store (`kv`),
//! outbound HTTP and the address policy it is held to, clock, randomness,
//! where plugin log lines go besides `tracing`, and the read-only homeserver
//! view behind the `homeserver` interface (`homeserver`).
//!
//! A trait so the testkit can put fakes behind the same runtime (recording
//! HTTP, a settable clock, seeded randomness, a seedable homeserver) without
//! touching the sandbox or the limits. `LiveServices` is what a server uses;
//! `send_checked` and `check_reachable` are its network path, which the
//! testkit's live mode shares. Its clients are pooled per host and checked
//! addresses, so requests to one gateway reuse connections.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use wasmtime_wasi::WasiCtxBuilder;

use super::{
    egress::{AddressPolicy, Egress, Target},
    homeserver::HomeserverView,
    kv::{MemoryKv, PluginKv},
};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Largest HTTP response body a plugin may receive.
pub const MAX_HTTP_RESPONSE_BYTES: usize = 1024 * 1024;

/// Headers a plugin may not set on outbound requests.
const FORBIDDEN_HEADERS: [&str; 6] = ["host", "connection", "content-length", "transfer-encoding", "upgrade", "proxy-authorization"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    Denied(String),
    InvalidRequest(String),
    Unreachable(String),
    Timeout,
    TooLarge,
}

/// A log line a plugin wrote, with what the host knows about the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub plugin: String,
    pub call: &'static str,
    pub level: tracing::Level,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

pub trait HostServices: Send + Sync + 'static {
    /// The plugins' key-value stores.
    fn kv(&self) -> &dyn PluginKv;
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    fn random_bytes(&self, len: usize) -> Vec<u8>;
    /// Sends a request the plugin asked for; must refuse what `egress` refuses.
    fn http_send<'a>(&'a self, plugin: &'a str, egress: &'a Egress, request: HttpRequest, timeout: Duration) -> BoxFuture<'a, Result<HttpResponse, HttpError>>;
    /// Whether `http_send` would refuse `url` (`http-check`), sending nothing.
    fn http_check<'a>(&'a self, _plugin: &'a str, egress: &'a Egress, url: String, timeout: Duration) -> BoxFuture<'a, Result<(), HttpError>> {
        Box::pin(async move { check_reachable(egress, &url, timeout).await.map(drop) })
    }
    /// The server's outbound address policy (`ip_range_blacklist` and
    /// `ip_range_whitelist`), which every plugin's egress is held to.
    fn address_policy(&self) -> Arc<AddressPolicy> {
        Arc::default()
    }
    /// Sees every log line a plugin wrote (after it went to `tracing`).
    fn log(&self, _record: &LogRecord) {}
    /// Adjusts the WASI context of a call (the testkit sets clock and randomness).
    fn configure_wasi(&self, _wasi: &mut WasiCtxBuilder) {}
    /// The homeserver view granted plugins read (`None`: this host has none,
    /// and granted calls answer `unavailable`).
    fn homeserver(&self) -> Option<&dyn HomeserverView> {
        None
    }
}

/// The services of a running server: the key-value store it is given (the
/// database's; `default` keeps it in memory), the real clock, randomness and
/// network, under the address policy it is given (Synapse's default until
/// `with_address_policy`), and the server's homeserver view when it hands one.
pub struct LiveServices {
    kv: Arc<dyn PluginKv>,
    policy: Arc<AddressPolicy>,
    homeserver: Option<Arc<dyn HomeserverView>>,
}

impl LiveServices {
    pub fn new(kv: Arc<dyn PluginKv>) -> Self {
        Self { kv, policy: Arc::default(), homeserver: None }
    }

    /// The server's `ip_range_blacklist` and `ip_range_whitelist`.
    pub fn with_address_policy(mut self, policy: AddressPolicy) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// Serves the `homeserver` interface from `view` (to plugins granted it).
    pub fn with_homeserver(mut self, view: Arc<dyn HomeserverView>) -> Self {
        self.homeserver = Some(view);
        self
    }
}

impl Default for LiveServices {
    fn default() -> Self {
        Self::new(Arc::new(MemoryKv::default()))
    }
}

impl HostServices for LiveServices {
    fn kv(&self) -> &dyn PluginKv {
        &*self.kv
    }
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }
    fn random_bytes(&self, len: usize) -> Vec<u8> {
        use rand::RngCore;
        let mut bytes = vec![0; len];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        bytes
    }
    fn http_send<'a>(
        &'a self,
        _plugin: &'a str,
        egress: &'a Egress,
        request: HttpRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<HttpResponse, HttpError>> {
        Box::pin(send_checked(egress, request, timeout))
    }
    fn address_policy(&self) -> Arc<AddressPolicy> {
        self.policy.clone()
    }
    fn homeserver(&self) -> Option<&dyn HomeserverView> {
        self.homeserver.as_deref()
    }
}

/// The allow-list, then DNS, then the address check: the target and the
/// addresses a request to `url` may connect to.
pub async fn check_reachable(egress: &Egress, url: &str, timeout: Duration) -> Result<(Target, Vec<SocketAddr>), HttpError> {
    let target = egress.check_url(url).map_err(HttpError::Denied)?;
    let resolved: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => tokio::time::timeout(timeout, tokio::net::lookup_host((target.host.as_str(), target.port)))
            .await
            .map_err(|_| HttpError::Timeout)?
            .map_err(|e| HttpError::Unreachable(format!("cannot resolve {}: {e}", target.host)))?
            .collect(),
    };
    let mut refused = None;
    let allowed: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|addr| match egress.check_address(addr.ip()) {
            Ok(()) => true,
            Err(e) => {
                refused = Some(e);
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        return Err(HttpError::Denied(refused.unwrap_or_else(|| format!("{} resolved to no address", target.host))));
    }
    Ok((target, allowed))
}

/// `check_reachable`, then a connection pinned to the checked addresses (so
/// a second lookup cannot swap in another one); `https` checks the
/// certificate against the URL's host.
pub async fn send_checked(egress: &Egress, request: HttpRequest, timeout: Duration) -> Result<HttpResponse, HttpError> {
    let started = std::time::Instant::now();
    let answer = send_checked_untimed(egress, request, timeout).await;
    metrics::histogram!("weft_plugin_http_request_duration_seconds").record(started.elapsed().as_secs_f64());
    answer
}

async fn send_checked_untimed(egress: &Egress, request: HttpRequest, timeout: Duration) -> Result<HttpResponse, HttpError> {
    let (target, allowed) = check_reachable(egress, &request.url, timeout).await?;
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|_| HttpError::InvalidRequest(format!("bad method `{}`", request.method)))?;
    let client = pooled_client(&egress.clients, &target.host, allowed)?;
    let mut builder = client.request(method, &request.url).timeout(timeout).body(request.body);
    for (name, value) in &request.headers {
        // The host sets these from the checked URL and the body; a plugin
        // must not point `Host` at another site behind the same address.
        if FORBIDDEN_HEADERS.iter().any(|forbidden| name.eq_ignore_ascii_case(forbidden)) {
            return Err(HttpError::InvalidRequest(format!("the `{name}` header is set by the host")));
        }
        builder = builder.header(name.as_str(), value.as_str());
    }
    let mut response = builder.send().await.map_err(failed)?;
    let status = response.status().as_u16();
    let headers = response.headers().iter().map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())).collect();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        if body.len() + chunk.len() > MAX_HTTP_RESPONSE_BYTES {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(HttpResponse { status, headers, body })
}

/// A plugin's HTTP clients by host and checked addresses.
pub type ClientPool = Mutex<std::collections::HashMap<(String, Vec<SocketAddr>), reqwest::Client>>;

/// Clients kept before the pool starts afresh.
const MAX_POOLED_CLIENTS: usize = 256;

/// The client for `host` pinned to `addresses` (checked, in the order
/// checked): one per pair, kept, so its connections are reused.
fn pooled_client(clients: &ClientPool, host: &str, addresses: Vec<SocketAddr>) -> Result<reqwest::Client, HttpError> {
    let key = (host.to_owned(), addresses);
    if let Some(client) = clients.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(client.clone());
    }
    let client = crate::http_client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .resolve_to_addrs(host, &key.1)
        .build()
        .map_err(|e| HttpError::Unreachable(e.to_string()))?;
    let mut clients = clients.lock().unwrap_or_else(|e| e.into_inner());
    if clients.len() >= MAX_POOLED_CLIENTS {
        clients.clear();
    }
    clients.insert(key, client.clone());
    Ok(client)
}

/// A timeout, or what went wrong with every cause (reqwest's message alone
/// does not say, for example, that a certificate was refused).
fn failed(error: reqwest::Error) -> HttpError {
    if error.is_timeout() {
        return HttpError::Timeout;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    HttpError::Unreachable(text)
}
