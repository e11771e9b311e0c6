//! The testkit's host services: nothing leaves the process (but HTTP with
//! `live_http`). Recording HTTP that enforces the allow-list and the address
//! policy, a settable wall clock (`TestClock`), an in-memory key-value store
//! the test seeds and inspects (`TestKv`), seeded randomness, the log lines,
//! and the fake homeserver view.
//!
//! The clock and the store are handles: clones share one clock or one store,
//! so a test moves time or reads the store after load, and two loaded
//! plugins can share them.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rand::{RngCore, rngs::StdRng};
use wasmtime_wasi::{HostWallClock, WasiCtxBuilder};

use super::{FakeHomeserver, HttpCall};
use crate::{
    egress::{AddressPolicy, Egress},
    homeserver::HomeserverView,
    host_services::{BoxFuture, HostServices, HttpError, HttpRequest, HttpResponse, LogRecord, check_reachable, send_checked},
    kv::{KvError, MemoryKv, PluginKv},
};

/// The wall clock plugins under test read: the host's `now-ms` and WASI's
/// wall clock (`SystemTime::now()` in a Rust guest). It moves only when the
/// test moves it; WASI's monotonic clock (`Instant`) stays real, so
/// deadlines and timings are real. Clones share one clock.
#[derive(Debug, Clone)]
pub struct TestClock(Arc<AtomicU64>);

impl TestClock {
    /// A clock at `ms` milliseconds since the Unix epoch.
    pub fn new(ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(ms)))
    }

    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Sets the clock (backwards too, as a real wall clock may go).
    pub fn set_ms(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }
}

impl HostWallClock for TestClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.now_ms())
    }
}

/// Key-value stores in memory, one namespace per plugin name as in the
/// server (two plugins of the same name share entries, as two instances of
/// one plugin do; other names are apart). Clones share the store: seed it
/// before or after load, read it after calls, hand it to several plugins.
#[derive(Debug, Clone, Default)]
pub struct TestKv(Arc<MemoryKv>);

impl TestKv {
    pub fn get(&self, plugin: &str, key: &str) -> Option<Vec<u8>> {
        self.0.get(plugin, key)
    }

    /// Stores under the same limits as the server (`Refused` past them).
    pub fn set(&self, plugin: &str, key: &str, value: impl Into<Vec<u8>>) -> Result<(), KvError> {
        self.0.set(plugin, key, value.into())
    }

    pub fn delete(&self, plugin: &str, key: &str) {
        self.0.delete(plugin, key);
    }

    /// Every entry of `plugin`'s namespace, by key.
    pub fn entries(&self, plugin: &str) -> BTreeMap<String, Vec<u8>> {
        self.0.entries(plugin)
    }
}

/// Host services for tests.
pub(super) struct FakeServices {
    pub kv: TestKv,
    pub clock: TestClock,
    pub seed: u64,
    pub rng: Mutex<StdRng>,
    pub responses: Vec<(String, HttpResponse)>,
    /// Send allowed requests over the network instead of answering from `responses`.
    pub live_http: bool,
    pub policy: Arc<AddressPolicy>,
    pub http_calls: Mutex<Vec<HttpCall>>,
    pub logs: Mutex<Vec<LogRecord>>,
    pub homeserver: FakeHomeserver,
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
        &*self.kv.0
    }
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
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
            return Box::pin(async move { check_reachable(egress, &url, timeout).await.map(drop) });
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
        wasi.wall_clock(self.clock.clone())
            .secure_random(wasmtime_wasi::Deterministic::new(self.seed.to_le_bytes().to_vec()))
            .insecure_random_seed(u128::from(self.seed));
    }
    fn homeserver(&self) -> Option<&dyn HomeserverView> {
        Some(&self.homeserver)
    }
}
