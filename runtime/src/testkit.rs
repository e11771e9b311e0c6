//! The plugin testkit: a built component loaded into the real runtime, with
//! the limits it would run with in production, behind fake host services
//! (recording HTTP that enforces the allow-list, an in-memory key-value
//! store, a fixed clock the test may move, seeded randomness). Tests call
//! callbacks and assert on verdicts, logs, HTTP calls, time and memory used.
//! With `live_http()` allowed requests go out over the network as the
//! server sends them (a plugin tested against a real service, such as an
//! SSO plugin against a real OpenID provider), still recorded.
//!
//! Generic over the role (`load_as::<R>()`, such as `load_as::<Sso>()`);
//! `load()` loads a spam checker.
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
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rand::{RngCore, SeedableRng, rngs::StdRng};
use wasmtime_wasi::{HostWallClock, WasiCtxBuilder};

use super::{
    egress::Egress,
    engine::PluginEngine,
    error::{CallFailure, LoadError},
    host_services::{BoxFuture, HostServices, HttpError, HttpRequest, HttpResponse, LogRecord, send_checked},
    kv::{MemoryKv, PluginKv},
    loaded::{CallStats, LoadedPlugin},
    role::Role,
    spam::Spam,
    verify::engine_settings,
};
use crate::config::{OnError, PluginCapabilities, PluginConfig, PluginLimitsConfig, PluginRole};

/// Builds a [`TestPlugin`].
#[derive(Debug, Clone)]
pub struct Testkit {
    plugin: PluginConfig,
    clock_ms: u64,
    seed: u64,
    responses: Vec<(String, HttpResponse)>,
    live_http: bool,
    cache_dir: Option<PathBuf>,
}

impl Testkit {
    /// A component file; by default production limits, no capabilities,
    /// `fail-closed`, the clock at 2026-01-01T00:00:00Z and seed 0.
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
            clock_ms: 1_767_225_600_000,
            seed: 0,
            responses: Vec::new(),
            live_http: false,
            cache_dir: None,
        }
    }

    /// The name in logs and metrics (distinct names keep parallel tests apart).
    pub fn name(mut self, name: &str) -> Self {
        self.plugin.name = name.into();
        self
    }

    /// The plugin's configuration: a JSON object that TOML can hold (as
    /// `[plugins.config]` must: no `null`). Panics on any other value rather
    /// than hand the plugin an empty configuration.
    pub fn config(mut self, config: serde_json::Value) -> Self {
        self.plugin.config = serde_json::from_value(config).unwrap_or_else(|e| panic!("the plugin configuration is not a TOML table: {e}"));
        self
    }

    pub fn limits(mut self, limits: PluginLimitsConfig) -> Self {
        self.plugin.limits = limits;
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

    /// The answer to allowed requests whose URL starts with `url_prefix`
    /// (others get 404).
    pub fn respond(mut self, url_prefix: &str, status: u16, body: &str) -> Self {
        self.responses.push((url_prefix.into(), HttpResponse { status, headers: Vec::new(), body: body.as_bytes().to_vec() }));
        self
    }

    /// Sends the requests the allow-list accepts over the network, as the
    /// server does (addresses checked after DNS: grant `allow_private_addresses`
    /// for a service on this machine), instead of answering from `respond`.
    /// They are still recorded (`http_calls`).
    pub fn live_http(mut self) -> Self {
        self.live_http = true;
        self
    }

    /// The fixed time the plugin sees (`TestPlugin::set_clock_ms` moves it).
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

    /// Loads the component as a plugin of role `R`.
    pub async fn load_as<R: Role>(mut self) -> Result<TestPlugin<R>, LoadError> {
        self.plugin.role = R::ROLE;
        let settings = engine_settings(std::slice::from_ref(&self.plugin), "");
        let engine = PluginEngine::new(settings, self.cache_dir.unwrap_or_else(super::engine::default_cache_dir))?;
        let services = Arc::new(FakeServices {
            kv: MemoryKv::default(),
            clock_ms: AtomicU64::new(self.clock_ms),
            seed: self.seed,
            rng: Mutex::new(StdRng::seed_from_u64(self.seed)),
            responses: self.responses,
            live_http: self.live_http,
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

/// One outbound request the plugin asked for, and what the fake did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub request: HttpRequest,
    /// `Err` with the reason when the allow-list refused it.
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

    /// Moves the plugin's clock (`now-ms` and WASI's wall clock) for the next calls.
    pub fn set_clock_ms(&self, ms: u64) {
        self.services.clock_ms.store(ms, Ordering::Relaxed);
    }

    /// A value in the plugin's key-value store.
    pub fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.services.kv.get(&self.plugin.ctx.name, key)
    }
}

/// Host services for tests: nothing leaves the process.
struct FakeServices {
    kv: MemoryKv,
    /// Read at each call's start; a test moves it between calls.
    clock_ms: AtomicU64,
    seed: u64,
    rng: Mutex<StdRng>,
    responses: Vec<(String, HttpResponse)>,
    live_http: bool,
    http_calls: Mutex<Vec<HttpCall>>,
    logs: Mutex<Vec<LogRecord>>,
}

impl HostServices for FakeServices {
    fn kv(&self) -> &dyn PluginKv {
        &self.kv
    }
    fn now_ms(&self) -> u64 {
        self.clock_ms.load(Ordering::Relaxed)
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
    fn log(&self, record: &LogRecord) {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).push(record.clone());
    }
    fn configure_wasi(&self, wasi: &mut WasiCtxBuilder) {
        wasi.wall_clock(FixedClock(Duration::from_millis(self.now_ms())))
            .secure_random(wasmtime_wasi::Deterministic::new(self.seed.to_le_bytes().to_vec()))
            .insecure_random_seed(u128::from(self.seed));
    }
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

struct FixedClock(Duration);

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}
