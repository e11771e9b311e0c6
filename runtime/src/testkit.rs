//! The plugin testkit: a built component loaded into the real runtime, with
//! the limits it would run with in production, behind fake host services
//! (recording HTTP that enforces the allow-list, an in-memory key-value
//! store, a fixed clock, seeded randomness). Tests call callbacks and assert
//! on verdicts, logs, HTTP calls, time and memory used.
//!
//! `live_http()` sends the plugin's requests for real, through the
//! server's own path (allow-list, DNS, the address policy on every resolved
//! address, a connection pinned to them), still recorded; the address policy
//! is Synapse's default unless `ip_range_blacklist` / `ip_range_whitelist`
//! set it (a test server on loopback needs `ip_range_whitelist(["127.0.0.1"])`).
//!
//! Generic over the role (`load_as::<R>()`); `load()` loads a spam checker,
//! `load_pusher()` a pusher (with typed `serves`, `check_pusher`, `notify`).
//! Used by Weft's own tests and re-exported for plugin authors as the
//! `weft-plugin-testkit` crate (in `plugin-sdk/testkit/`).
//!
//! ```text
//! let plugin = Testkit::new("target/wasm32-wasip2/release/my_plugin.wasm")
//!     .config(json!({"blocked_servers": ["evil.example"]}))
//!     .load().await?;
//! let answer = plugin.call(SpamCall::UserMayInvite { .. }).await?;
//! ```

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use rand::{RngCore, SeedableRng, rngs::StdRng};
use wasmtime_wasi::{HostWallClock, WasiCtxBuilder};

use super::{
    egress::{AddressPolicy, Egress},
    engine::PluginEngine,
    error::{CallFailure, LoadError},
    host_services::{BoxFuture, HostServices, HttpError, HttpRequest, HttpResponse, LogRecord, send_checked},
    kv::{MemoryKv, PluginKv},
    loaded::{CallStats, LoadedPlugin},
    pusher::{Delivery, Notification, PushAnswer, PushCall, Pusher, PusherCheck, PusherInfo, Served},
    role::Role,
    spam::Spam,
    verify::engine_settings,
};
use crate::config::{OnError, PluginCapabilities, PluginConfig, PluginLimitsConfig, PluginRole};

/// Builds a [`TestPlugin`].
#[derive(Debug, Clone)]
pub struct Testkit {
    plugin: PluginConfig,
    /// Set limits (else the role's defaults).
    limits: Option<PluginLimitsConfig>,
    clock_ms: u64,
    seed: u64,
    responses: Vec<(String, HttpResponse)>,
    live_http: bool,
    blacklist: Option<Vec<String>>,
    whitelist: Vec<String>,
    cache_dir: Option<PathBuf>,
}

impl Testkit {
    /// A component file; by default the role's production limits, no
    /// capabilities, its default `on_error`, the clock at
    /// 2026-01-01T00:00:00Z, seed 0, and recorded HTTP that reaches nothing.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            plugin: PluginConfig {
                name: "under-test".into(),
                role: PluginRole::SpamChecker,
                path: path.into(),
                instances: Vec::new(),
                config: toml::Table::new(),
                limits: PluginLimitsConfig::default(),
                capabilities: PluginCapabilities::default(),
                on_error: None,
                disable_after_failures: None,
                retry_after_secs: None,
            },
            limits: None,
            clock_ms: 1_767_225_600_000,
            seed: 0,
            responses: Vec::new(),
            live_http: false,
            blacklist: None,
            whitelist: Vec::new(),
            cache_dir: None,
        }
    }

    /// The name in logs and metrics (distinct names keep parallel tests apart).
    pub fn name(mut self, name: &str) -> Self {
        self.plugin.name = name.into();
        self
    }

    /// The plugin's configuration (a JSON object).
    pub fn config(mut self, config: serde_json::Value) -> Self {
        self.plugin.config = serde_json::from_value(config).unwrap_or_default();
        self
    }

    pub fn limits(mut self, limits: PluginLimitsConfig) -> Self {
        self.limits = Some(limits);
        self
    }

    pub fn capabilities(mut self, capabilities: PluginCapabilities) -> Self {
        self.plugin.capabilities = capabilities;
        self
    }

    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.plugin.on_error = Some(on_error);
        self
    }

    /// Switch-off policy: after `failures` in a row, off for `retry_after_secs`.
    pub fn disable_after(mut self, failures: u32, retry_after_secs: u64) -> Self {
        self.plugin.disable_after_failures = Some(failures);
        self.plugin.retry_after_secs = Some(retry_after_secs);
        self
    }

    /// Allows outbound HTTP to `entry` (as `allowed_outbound_hosts`).
    pub fn allow_host(mut self, entry: &str) -> Self {
        self.plugin.capabilities.allowed_outbound_hosts.push(entry.into());
        self
    }

    /// Sends the plugin's HTTP requests for real (still recorded), as a
    /// server does: allow-list, DNS, the address policy, pinned connection.
    pub fn live_http(mut self) -> Self {
        self.live_http = true;
        self
    }

    /// The server's `ip_range_blacklist` (default: Synapse's).
    pub fn ip_range_blacklist(mut self, ranges: &[&str]) -> Self {
        self.blacklist = Some(ranges.iter().map(|r| (*r).to_owned()).collect());
        self
    }

    /// The server's `ip_range_whitelist`: exceptions to the blacklist
    /// (`["127.0.0.1"]` lets a test server on loopback be reached).
    pub fn ip_range_whitelist(mut self, ranges: &[&str]) -> Self {
        self.whitelist = ranges.iter().map(|r| (*r).to_owned()).collect();
        self
    }

    /// The answer to allowed requests whose URL starts with `url_prefix`
    /// (others get 404); not used with `live_http`.
    pub fn respond(mut self, url_prefix: &str, status: u16, body: &str) -> Self {
        self.responses.push((url_prefix.into(), HttpResponse { status, headers: Vec::new(), body: body.as_bytes().to_vec() }));
        self
    }

    pub fn clock_ms(mut self, ms: u64) -> Self {
        self.clock_ms = ms;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Where compiled components are cached (default: the system's).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Loads the component as a spam checker.
    pub async fn load(self) -> Result<TestPlugin, LoadError> {
        self.load_as::<Spam>().await
    }

    /// Loads the component as a pusher.
    pub async fn load_pusher(self) -> Result<TestPlugin<Pusher>, LoadError> {
        self.load_as::<Pusher>().await
    }

    /// Loads the component as a plugin of role `R`.
    pub async fn load_as<R: Role>(mut self) -> Result<TestPlugin<R>, LoadError> {
        self.plugin.role = R::ROLE;
        self.plugin.limits = self.limits.unwrap_or_else(|| PluginLimitsConfig::for_role(R::ROLE));
        let policy = AddressPolicy::new(self.blacklist.as_deref(), &self.whitelist).map_err(LoadError::Engine)?;
        let settings = engine_settings(std::slice::from_ref(&self.plugin), "");
        let engine = PluginEngine::new(settings, self.cache_dir.unwrap_or_else(super::engine::default_cache_dir))?;
        let services = Arc::new(FakeServices {
            kv: MemoryKv::default(),
            clock_ms: self.clock_ms,
            seed: self.seed,
            rng: Mutex::new(StdRng::seed_from_u64(self.seed)),
            responses: self.responses,
            live_http: self.live_http,
            policy: Arc::new(policy),
            http_calls: Mutex::new(Vec::new()),
            logs: Mutex::new(Vec::new()),
        });
        let plugin = LoadedPlugin::load(&engine, &self.plugin, "testkit", services.clone()).await?;
        Ok(TestPlugin { plugin: Arc::new(plugin), services, last: Mutex::new(None) })
    }
}

/// A loaded plugin under test (a spam checker unless said).
pub struct TestPlugin<R: Role = Spam> {
    pub plugin: Arc<LoadedPlugin<R>>,
    services: Arc<FakeServices>,
    last: Mutex<Option<CallStats>>,
}

/// One outbound request the plugin asked for, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub request: HttpRequest,
    /// The status, or `Err` with the reason it was refused (the allow-list,
    /// the address policy) or failed (`Timeout`, `Unreachable(..)`).
    pub outcome: Result<u16, String>,
}

impl<R: Role> TestPlugin<R> {
    /// Calls one callback; `Err` is what the server would treat with `on_error`.
    pub async fn call(&self, call: R::Call) -> Result<R::Answer, CallFailure> {
        let (answer, stats) = self.plugin.call(&call).await?;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(stats);
        Ok(answer)
    }

    /// Time, peak memory and fuel of the last successful call.
    pub fn last_stats(&self) -> Option<CallStats> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every line the plugin logged, oldest first.
    pub fn logs(&self) -> Vec<LogRecord> {
        self.services.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn http_calls(&self) -> Vec<HttpCall> {
        self.services.http_calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A value in the plugin's key-value store.
    pub fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.services.kv.get(&self.plugin.ctx.name, key)
    }
}

impl TestPlugin<Pusher> {
    /// What the plugin serves.
    pub async fn serves(&self) -> Result<Served, CallFailure> {
        match self.call(PushCall::Serves).await? {
            PushAnswer::Serves(served) => Ok(served),
            other => Err(CallFailure::Malformed(format!("{other:?} does not answer serves"))),
        }
    }

    /// `check-pusher`: `Valid` or `Invalid` (a failed call is `Err`).
    pub async fn check_pusher(&self, pusher: &PusherInfo) -> Result<PusherCheck, CallFailure> {
        match self.call(PushCall::CheckPusher { pusher: Box::new(pusher.clone()) }).await? {
            PushAnswer::Check(check) => Ok(check),
            other => Err(CallFailure::Malformed(format!("{other:?} does not answer check-pusher"))),
        }
    }

    /// `notify` (a failed call is `Err`; the server would retry it).
    pub async fn notify(&self, notification: Notification) -> Result<Delivery, CallFailure> {
        match self.call(PushCall::Notify { notification: Box::new(notification) }).await? {
            PushAnswer::Delivery(delivery) => Ok(delivery),
            other => Err(CallFailure::Malformed(format!("{other:?} does not answer notify"))),
        }
    }
}

/// Host services for tests: nothing leaves the process but with `live_http`.
struct FakeServices {
    kv: MemoryKv,
    clock_ms: u64,
    seed: u64,
    rng: Mutex<StdRng>,
    responses: Vec<(String, HttpResponse)>,
    live_http: bool,
    policy: Arc<AddressPolicy>,
    http_calls: Mutex<Vec<HttpCall>>,
    logs: Mutex<Vec<LogRecord>>,
}

impl FakeServices {
    fn record(&self, request: HttpRequest, answer: &Result<HttpResponse, HttpError>) {
        let outcome = match answer {
            Ok(response) => Ok(response.status),
            Err(HttpError::Denied(reason)) => Err(reason.clone()),
            Err(other) => Err(format!("{other:?}")),
        };
        self.http_calls.lock().unwrap_or_else(|e| e.into_inner()).push(HttpCall { request, outcome });
    }
}

impl HostServices for FakeServices {
    fn kv(&self) -> &dyn PluginKv {
        &self.kv
    }
    fn now_ms(&self) -> u64 {
        self.clock_ms
    }
    fn random_bytes(&self, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).fill_bytes(&mut bytes);
        bytes
    }
    fn http_send<'a>(
        &'a self,
        _plugin: &'a str,
        egress: &'a Egress,
        request: HttpRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<HttpResponse, HttpError>> {
        if self.live_http {
            return Box::pin(async move {
                let answer = send_checked(egress, request.clone(), timeout).await;
                self.record(request, &answer);
                answer
            });
        }
        let answer = match egress.check_url(&request.url) {
            Err(reason) => Err(HttpError::Denied(reason)),
            Ok(_) => Ok(self
                .responses
                .iter()
                .find(|(prefix, _)| request.url.starts_with(prefix.as_str()))
                .map(|(_, response)| response.clone())
                .unwrap_or(HttpResponse { status: 404, headers: Vec::new(), body: Vec::new() })),
        };
        self.record(request, &answer);
        Box::pin(std::future::ready(answer))
    }
    fn http_check<'a>(&'a self, _plugin: &'a str, egress: &'a Egress, url: String, timeout: Duration) -> BoxFuture<'a, Result<(), HttpError>> {
        if self.live_http {
            return Box::pin(async move { super::host_services::check_reachable(egress, &url, timeout).await.map(drop) });
        }
        // Without a network, names are not resolved: only literal addresses are judged.
        let answer = egress.check_url(&url).map_err(HttpError::Denied).and_then(|target| match target.host.parse() {
            Ok(ip) => egress.check_address(ip).map_err(HttpError::Denied),
            Err(_) => Ok(()),
        });
        Box::pin(std::future::ready(answer))
    }
    fn address_policy(&self) -> Arc<AddressPolicy> {
        self.policy.clone()
    }
    fn log(&self, record: &LogRecord) {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).push(record.clone());
    }
    fn configure_wasi(&self, wasi: &mut WasiCtxBuilder) {
        wasi.wall_clock(FixedClock(Duration::from_millis(self.clock_ms)))
            .secure_random(wasmtime_wasi::Deterministic::new(self.seed.to_le_bytes().to_vec()))
            .insecure_random_seed(u128::from(self.seed));
    }
}

struct FixedClock(Duration);

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}
