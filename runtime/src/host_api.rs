//! The `host` interface of `weft:plugin`, as seen from one call: log lines go
//! to `tracing` with plugin, role, call and instance (and to the services'
//! `log` hook), capped per call; key-value, HTTP, clock and randomness are
//! delegated to the plugin's `HostServices` (a key-value store that cannot
//! be reached fails the call). HTTP gets what is left of the
//! call's deadline but a short reserve (a tenth, at most 50 ms), since
//! epoch interruption cannot stop a blocked host call, and so that a plugin
//! whose request timed out still has time to answer (a pusher says "retry"
//! instead of failing).

use std::time::{Duration, Instant};

use super::{
    bindings::{host, types},
    host_services::{HttpError, HttpRequest, LogRecord},
    kv::KvError,
    state::CallState,
};

/// The most random bytes one `random-bytes` call returns.
const MAX_RANDOM_BYTES: u32 = 4096;
/// The most of a call's remaining time kept back from an HTTP request.
const MAX_ANSWER_RESERVE: Duration = Duration::from_millis(50);

impl types::Host for CallState {}

impl host::Host for CallState {
    async fn log(&mut self, level: host::LogLevel, message: String, fields: Vec<host::LogField>) -> wasmtime::Result<()> {
        let level = match level {
            host::LogLevel::Trace => tracing::Level::TRACE,
            host::LogLevel::Debug => tracing::Level::DEBUG,
            host::LogLevel::Info => tracing::Level::INFO,
            host::LogLevel::Warn => tracing::Level::WARN,
            host::LogLevel::Error => tracing::Level::ERROR,
        };
        let fields: Vec<(String, String)> = fields.into_iter().map(|f| (f.key, f.value)).collect();
        self.emit_log(level, message, fields);
        Ok(())
    }

    async fn plugin_config(&mut self) -> wasmtime::Result<String> {
        Ok(self.plugin.config_json.to_string())
    }

    async fn kv_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.plugin.services.kv().get(&self.plugin.name, &key).await.map_err(unavailable)
    }

    async fn kv_set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        match self.plugin.services.kv().set(&self.plugin.name, &key, value).await {
            Ok(()) => Ok(Ok(())),
            Err(KvError::Refused(reason)) => Ok(Err(reason)),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn kv_delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.plugin.services.kv().delete(&self.plugin.name, &key).await.map_err(unavailable)
    }

    async fn http_send(&mut self, request: host::HttpRequest) -> wasmtime::Result<Result<host::HttpResponse, host::HttpError>> {
        let timeout = self.http_timeout();
        let plugin = self.plugin.clone();
        let request = HttpRequest { method: request.method, url: request.url, headers: request.headers, body: request.body };
        let url = request.url.clone();
        let answer = plugin.services.http_send(&plugin.name, &plugin.egress, request, timeout).await;
        if let Err(HttpError::Denied(reason)) = &answer {
            tracing::warn!(plugin = %plugin.name, role = plugin.role, call = self.call, instance = %plugin.instance, %url, %reason, "plugin HTTP request refused");
        }
        Ok(answer.map(|r| host::HttpResponse { status: r.status, headers: r.headers, body: r.body }).map_err(to_wit))
    }

    async fn http_check(&mut self, url: String) -> wasmtime::Result<Result<(), host::HttpError>> {
        let timeout = self.http_timeout();
        let plugin = self.plugin.clone();
        Ok(plugin.services.http_check(&plugin.name, &plugin.egress, url, timeout).await.map_err(to_wit))
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(self.plugin.services.now_ms())
    }

    async fn random_bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        Ok(self.plugin.services.random_bytes(len.min(MAX_RANDOM_BYTES) as usize))
    }
}

fn to_wit(error: HttpError) -> host::HttpError {
    match error {
        HttpError::Denied(reason) => host::HttpError::Denied(reason),
        HttpError::InvalidRequest(reason) => host::HttpError::InvalidRequest(reason),
        HttpError::Unreachable(reason) => host::HttpError::Unreachable(reason),
        HttpError::Timeout => host::HttpError::Timeout,
        HttpError::TooLarge => host::HttpError::TooLarge,
    }
}

/// A store that cannot answer fails the call: the plugin cannot tell "no
/// value" from "unknown", so it must not carry on as if it could.
fn unavailable(error: KvError) -> wasmtime::Error {
    wasmtime::format_err!("{error}")
}

impl CallState {
    /// What an HTTP request of this call may take: the rest of the deadline
    /// but the reserve the plugin needs to answer afterwards.
    fn http_timeout(&self) -> Duration {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        remaining - (remaining / 10).min(MAX_ANSWER_RESERVE)
    }

    /// Logs a line from the plugin, unless the call's log budget is spent
    /// (then one warning says so and the rest is dropped).
    pub fn emit_log(&mut self, level: tracing::Level, message: String, fields: Vec<(String, String)>) {
        let size = message.len() as u64 + fields.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum::<u64>();
        let plugin = &self.plugin;
        if self.log_bytes + size > plugin.limits.max_log_bytes {
            if !self.log_dropped {
                self.log_dropped = true;
                tracing::warn!(plugin = %plugin.name, role = plugin.role, call = self.call, instance = %plugin.instance,
                    limit = plugin.limits.max_log_bytes, "plugin log budget spent: further lines of this call are dropped");
            }
            return;
        }
        self.log_bytes += size;
        let shown: String = fields.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join(" ");
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(target: "weft::plugin", $level, plugin = %plugin.name, role = plugin.role, call = self.call,
                    instance = %plugin.instance, fields = %shown, "{message}")
            };
        }
        match level {
            tracing::Level::TRACE => emit!(tracing::Level::TRACE),
            tracing::Level::DEBUG => emit!(tracing::Level::DEBUG),
            tracing::Level::INFO => emit!(tracing::Level::INFO),
            tracing::Level::WARN => emit!(tracing::Level::WARN),
            _ => emit!(tracing::Level::ERROR),
        }
        plugin.services.log(&LogRecord { plugin: plugin.name.clone(), call: self.call, level, message, fields });
    }
}
