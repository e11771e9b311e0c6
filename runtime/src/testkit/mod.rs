//! The plugin testkit: a built component loaded into the real runtime, with
//! the limits it would run with in production, behind fake host services
//! (`services`: recording HTTP that enforces the allow-list, an in-memory
//! key-value store the test seeds and inspects, a wall clock the test sets
//! and advances, seeded randomness; `homeserver`: a seedable homeserver
//! view). Tests call callbacks and the optional `validate-config`, and
//! assert on answers, logs, HTTP calls, the store, time and memory used.
//! With `live_http()` allowed requests go out over the network as the
//! server sends them (a plugin tested against a real service, such as an
//! SSO plugin against a real OpenID provider), still recorded.
//!
//! `live_http()` sends the plugin's requests for real, through the
//! server's own path (allow-list, DNS, the address policy on every resolved
//! address, a connection pinned to them), still recorded: a plugin tested
//! against a real service, such as an SSO plugin against a real OpenID
//! provider. The address policy is Synapse's default unless
//! `ip_range_blacklist` / `ip_range_whitelist` set it (a test server on
//! loopback needs `ip_range_whitelist(["127.0.0.1"])` or the plugin's
//! `allow_private_addresses`).
//!
//! Generic over the role (`load_as::<R>()`, such as `load_as::<Sso>()`);
//! `load()` loads a spam checker, `load_pusher()` a pusher (with typed
//! `serves`, `check_pusher`, `notify`), `load_appservice_notifier()` an
//! appservice notifier (`appservice(call)` runs any of its exports).
//! Used by Weft's own tests and re-exported for plugin authors as the
//! `weft-plugin-testkit` crate (in `plugin-sdk/testkit/`).
//!
//! ```text
//! let plugin = Testkit::new("target/wasm32-wasip2/release/my_plugin.wasm")
//!     .config(json!({"blocked_servers": ["evil.example"]}))
//!     .kv_entry("greeted/@a:example.org", b"1")
//!     .load().await?;
//! let answer = plugin.call(SpamCall::UserMayInvite { .. }).await?;
//! plugin.clock().advance(Duration::from_secs(3600));
//! assert_eq!(plugin.kv_entries().len(), 2);
//! ```

mod homeserver;
mod services;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use rand::{SeedableRng, rngs::StdRng};

pub use self::{
    homeserver::FakeHomeserver,
    services::{TestClock, TestKv},
};
use super::{
    appservice::{AppserviceCall, AppserviceNotifier, Outcome},
    config_export::ConfigCheck,
    egress::AddressPolicy,
    engine::PluginEngine,
    error::{CallFailure, LoadError},
    host_services::{HttpRequest, HttpResponse, LogRecord},
    kv::KvError,
    loaded::{CallStats, LoadedPlugin},
    pusher::{Delivery, Notification, PushAnswer, PushCall, Pusher, PusherCheck, PusherInfo, Served},
    role::Role,
    spam::Spam,
    verify::engine_settings,
};
use crate::config::{HomeserverScope, OnError, PluginCapabilities, PluginConfig, PluginLimitsConfig, PluginRole};
use services::FakeServices;

/// 2026-01-01T00:00:00Z, where a testkit's clock starts.
const START_MS: u64 = 1_767_225_600_000;

/// Builds a [`TestPlugin`].
#[derive(Debug, Clone)]
pub struct Testkit {
    plugin: PluginConfig,
    /// Set limits (else the role's defaults).
    limits: Option<PluginLimitsConfig>,
    clock: TestClock,
    kv: TestKv,
    kv_entries: Vec<(String, Vec<u8>)>,
    homeserver: FakeHomeserver,
    seed: u64,
    responses: Vec<(String, HttpResponse)>,
    live_http: bool,
    blacklist: Option<Vec<String>>,
    whitelist: Vec<String>,
    cache_dir: Option<PathBuf>,
}

impl Testkit {
    /// A component file; by default the role's production limits, no
    /// capabilities, its default `on_error`, a clock of its own at
    /// 2026-01-01T00:00:00Z, an empty store and homeserver of its own, seed
    /// 0, and recorded HTTP that reaches nothing.
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
            clock: TestClock::new(START_MS),
            kv: TestKv::default(),
            kv_entries: Vec::new(),
            homeserver: FakeHomeserver::default(),
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

    /// The plugin's configuration: a JSON object that TOML can hold (as
    /// `[plugins.config]` must: no `null`). Panics on any other value rather
    /// than hand the plugin an empty configuration.
    pub fn config(mut self, config: serde_json::Value) -> Self {
        self.plugin.config = serde_json::from_value(config).unwrap_or_else(|e| panic!("the plugin configuration is not a TOML table: {e}"));
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

    /// Sets the clock to `ms` since the Unix epoch (the shared one, after
    /// `clock`). After load, move it with `TestPlugin::clock`.
    pub fn clock_ms(self, ms: u64) -> Self {
        self.clock.set_ms(ms);
        self
    }

    /// Runs on `clock`, which the test (and other plugins) may share.
    pub fn clock(mut self, clock: TestClock) -> Self {
        self.clock = clock;
        self
    }

    /// Uses `kv` as the key-value store: share one between plugins, or keep
    /// a handle to seed and inspect it.
    pub fn kv(mut self, kv: TestKv) -> Self {
        self.kv = kv;
        self
    }

    /// Stores `value` under `key` in the plugin's namespace when it loads.
    pub fn kv_entry(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.kv_entries.push((key.into(), value.into()));
        self
    }

    /// The homeserver the plugin sees when granted (`grant_homeserver`).
    pub fn homeserver(mut self, homeserver: FakeHomeserver) -> Self {
        self.homeserver = homeserver;
        self
    }

    /// Grants parts of the `homeserver` view (as `capabilities.homeserver`).
    pub fn grant_homeserver(mut self, scopes: &[HomeserverScope]) -> Self {
        self.plugin.capabilities.homeserver = scopes.to_vec();
        self
    }

    /// Sends the requests the allow-list accepts over the network, as the
    /// server does (DNS, the address policy on every resolved address, a
    /// connection pinned to them: for a service on this machine, grant
    /// `allow_private_addresses` or `ip_range_whitelist` it), instead of
    /// answering from `respond`. They are still recorded (`http_calls`).
    pub fn live_http(mut self) -> Self {
        self.live_http = true;
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

    /// Loads the component as an appservice notifier.
    pub async fn load_appservice_notifier(self) -> Result<TestPlugin<AppserviceNotifier>, LoadError> {
        self.load_as::<AppserviceNotifier>().await
    }

    /// Loads the component as a plugin of role `R`. Its configuration is
    /// not checked (call `validate_config`), so a test can see what a bad
    /// one does to calls.
    pub async fn load_as<R: Role>(mut self) -> Result<TestPlugin<R>, LoadError> {
        self.plugin.role = R::ROLE;
        self.plugin.limits = self.limits.unwrap_or_else(|| PluginLimitsConfig::for_role(R::ROLE));
        let policy = AddressPolicy::new(self.blacklist.as_deref(), &self.whitelist).map_err(LoadError::Engine)?;
        for (key, value) in self.kv_entries {
            self.kv.set(&self.plugin.name, &key, value).map_err(|error| LoadError::Engine(format!("cannot seed the key-value store with `{key}`: {error}")))?;
        }
        let settings = engine_settings(std::slice::from_ref(&self.plugin), "");
        let engine = PluginEngine::new(settings, self.cache_dir.unwrap_or_else(super::engine::default_cache_dir))?;
        let services = Arc::new(FakeServices {
            kv: self.kv,
            clock: self.clock,
            seed: self.seed,
            rng: Mutex::new(StdRng::seed_from_u64(self.seed)),
            responses: self.responses,
            live_http: self.live_http,
            policy: Arc::new(policy),
            http_calls: Mutex::new(Vec::new()),
            logs: Mutex::new(Vec::new()),
            homeserver: self.homeserver,
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

    /// Asks the plugin to check its own configuration (`validate-config`);
    /// `NotExported` when the component does not offer it.
    pub async fn validate_config(&self) -> Result<ConfigCheck, CallFailure> {
        self.plugin.validate_config().await
    }

    /// The wall clock the plugin reads: set or advance it between calls.
    pub fn clock(&self) -> &TestClock {
        &self.services.clock
    }

    /// The whole store (every plugin namespace in it, when shared).
    pub fn kv(&self) -> &TestKv {
        &self.services.kv
    }

    /// A value in the plugin's key-value store.
    pub fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.services.kv.get(&self.plugin.ctx.name, key)
    }

    /// Stores a value in the plugin's key-value store, as the plugin would.
    pub fn kv_set(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<(), KvError> {
        self.services.kv.set(&self.plugin.ctx.name, key, value)
    }

    /// Every entry of the plugin's key-value store, by key.
    pub fn kv_entries(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        self.services.kv.entries(&self.plugin.ctx.name)
    }

    /// The homeserver the plugin sees (change it between calls).
    pub fn homeserver(&self) -> &FakeHomeserver {
        &self.services.homeserver
    }
}

impl TestPlugin<AppserviceNotifier> {
    /// Runs one export of the appservice-notifier world (a failed call is `Err`).
    pub async fn appservice(&self, call: AppserviceCall) -> Result<Outcome, CallFailure> {
        self.call(call).await
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
