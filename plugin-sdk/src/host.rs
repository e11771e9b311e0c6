//! The host interface, wrapped: log lines, the plugin's configuration, its
//! private key-value store, outbound HTTP through the host's allow-list, the
//! clock and randomness. Outside wasm32, native stand-ins.

use std::fmt;

use serde_json::Value;

/// The plugin's `config` table from the server configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginConfig(pub Value);

impl PluginConfig {
    /// The configuration the host hands this plugin.
    pub fn from_host() -> Self {
        Self(serde_json::from_str(&imp::plugin_config()).unwrap_or(Value::Null))
    }

    /// A configuration from JSON text (for native tests).
    pub fn from_json(text: &str) -> Result<Self, PluginError> {
        serde_json::from_str(text).map(Self).map_err(|e| PluginError::new(format!("configuration is not JSON: {e}")))
    }

    /// The raw value of an option (`None` when absent).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// A string option: `None` when absent or `null`, `Err` when not a string.
    pub fn str(&self, key: &str) -> Result<Option<&str>, PluginError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(PluginError::new(format!("`{key}` must be a string"))),
        }
    }

    /// A list of strings, empty when absent.
    pub fn strings(&self, key: &str) -> Result<Vec<String>, PluginError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned).ok_or_else(|| PluginError::new(format!("`{key}` must be a list of strings"))))
                .collect(),
            Some(_) => Err(PluginError::new(format!("`{key}` must be a list of strings"))),
        }
    }

    /// A non-negative integer option: `None` when absent or `null`, `Err` otherwise when not one.
    pub fn u64(&self, key: &str) -> Result<Option<u64>, PluginError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| PluginError::new(format!("`{key}` must be a non-negative integer"))),
        }
    }

    /// A boolean option: `None` when absent or `null`, `Err` when not a boolean.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, PluginError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| PluginError::new(format!("`{key}` must be true or false"))),
        }
    }
}

/// A plugin's own error (a bad configuration, mostly). Returned from `new`,
/// it ends the call with a trap whose message the host logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError(pub String);

impl PluginError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PluginError {}

/// Structured logging through the host, which adds plugin, role, call and
/// instance. Each call has a log budget (`max_log_bytes`); past it, lines drop.
pub mod log {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Level {
        Trace,
        Debug,
        Info,
        Warn,
        Error,
    }

    pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
        super::imp::log(level, message, fields);
    }
    pub fn debug(message: &str) {
        log(Level::Debug, message, &[]);
    }
    pub fn info(message: &str) {
        log(Level::Info, message, &[]);
    }
    pub fn warn(message: &str) {
        log(Level::Warn, message, &[]);
    }
    pub fn error(message: &str) {
        log(Level::Error, message, &[]);
    }
}

/// A key-value store private to this plugin, kept by the host across calls
/// and restarts (in Weft's database) and shared by every instance running
/// the plugin. Values up to 64 KiB, 16 MiB in all; `set` says when refused.
pub mod kv {
    /// The value stored under `key` (`None` when there is none). When the
    /// host's store cannot answer, the call fails instead.
    pub fn get(key: &str) -> Option<Vec<u8>> {
        super::imp::kv_get(key)
    }
    /// Stores `value` under `key`; `Err` says why the host refused it (too
    /// large, the store full, a NUL in the key).
    pub fn set(key: &str, value: &[u8]) -> Result<(), super::PluginError> {
        super::imp::kv_set(key, value).map_err(super::PluginError)
    }
    /// Removes `key` (nothing happens when it is not there).
    pub fn delete(key: &str) {
        super::imp::kv_delete(key)
    }
}

/// Outbound HTTP, made by the host for the plugin after checking the URL
/// against `allowed_outbound_hosts` and the addresses it resolves to against
/// the server's address policy (`ip_range_blacklist`).
pub mod http {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Request {
        pub method: String,
        pub url: String,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Request {
        pub fn get(url: impl Into<String>) -> Self {
            Self { method: "GET".into(), url: url.into(), headers: Vec::new(), body: Vec::new() }
        }
        pub fn post(url: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
            Self { method: "POST".into(), url: url.into(), headers: Vec::new(), body: body.into() }
        }
        pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.headers.push((name.into(), value.into()));
            self
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Error {
        /// Not in the allow-list, or resolves to a refused address.
        Denied(String),
        InvalidRequest(String),
        Unreachable(String),
        Timeout,
        TooLarge,
    }

    /// Sends `request` through the host, within what is left of the call's deadline.
    pub fn send(request: &Request) -> Result<Response, Error> {
        super::imp::http_send(request)
    }

    /// Whether `send` may reach `url`, sending nothing: the allow-list, and
    /// the addresses its host resolves to against the server's address
    /// policy (`Denied` says why not; `Unreachable` or `Timeout`: the name
    /// did not resolve now). For checking a user's URL before keeping it.
    pub fn check(url: &str) -> Result<(), Error> {
        super::imp::http_check(url)
    }
}

/// Milliseconds since the Unix epoch, from the host (in the testkit, the
/// test's clock, which it sets and advances).
pub fn now_ms() -> u64 {
    imp::now_ms()
}

/// Random bytes from the host (seeded in the testkit); at most 4096.
pub fn random_bytes(len: u32) -> Vec<u8> {
    imp::random_bytes(len)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{http, log::Level};
    use crate::bindings::weft::plugin::host as wit;

    pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            Level::Trace => wit::LogLevel::Trace,
            Level::Debug => wit::LogLevel::Debug,
            Level::Info => wit::LogLevel::Info,
            Level::Warn => wit::LogLevel::Warn,
            Level::Error => wit::LogLevel::Error,
        };
        let fields: Vec<wit::LogField> = fields.iter().map(|(k, v)| wit::LogField { key: (*k).into(), value: (*v).into() }).collect();
        wit::log(level, message, &fields);
    }
    pub fn plugin_config() -> String {
        wit::plugin_config()
    }
    pub fn kv_get(key: &str) -> Option<Vec<u8>> {
        wit::kv_get(key)
    }
    pub fn kv_set(key: &str, value: &[u8]) -> Result<(), String> {
        wit::kv_set(key, value)
    }
    pub fn kv_delete(key: &str) {
        wit::kv_delete(key)
    }
    pub fn http_send(request: &http::Request) -> Result<http::Response, http::Error> {
        let request =
            wit::HttpRequest { method: request.method.clone(), url: request.url.clone(), headers: request.headers.clone(), body: request.body.clone() };
        wit::http_send(&request).map(|r| http::Response { status: r.status, headers: r.headers, body: r.body }).map_err(http_error)
    }
    pub fn http_check(url: &str) -> Result<(), http::Error> {
        wit::http_check(url).map_err(http_error)
    }
    fn http_error(e: wit::HttpError) -> http::Error {
        match e {
            wit::HttpError::Denied(reason) => http::Error::Denied(reason),
            wit::HttpError::InvalidRequest(reason) => http::Error::InvalidRequest(reason),
            wit::HttpError::Unreachable(reason) => http::Error::Unreachable(reason),
            wit::HttpError::Timeout => http::Error::Timeout,
            wit::HttpError::TooLarge => http::Error::TooLarge,
        }
    }
    pub fn now_ms() -> u64 {
        wit::now_ms()
    }
    pub fn random_bytes(len: u32) -> Vec<u8> {
        wit::random_bytes(len)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::{cell::RefCell, collections::HashMap};

    use super::{http, log::Level};

    thread_local! {
        static KV: RefCell<HashMap<String, Vec<u8>>> = RefCell::new(HashMap::new());
    }

    pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
        eprintln!("[{level:?}] {message} {fields:?}");
    }
    pub fn plugin_config() -> String {
        "{}".into()
    }
    pub fn kv_get(key: &str) -> Option<Vec<u8>> {
        KV.with(|kv| kv.borrow().get(key).cloned())
    }
    pub fn kv_set(key: &str, value: &[u8]) -> Result<(), String> {
        KV.with(|kv| kv.borrow_mut().insert(key.to_owned(), value.to_vec()));
        Ok(())
    }
    pub fn kv_delete(key: &str) {
        KV.with(|kv| kv.borrow_mut().remove(key));
    }
    pub fn http_send(_request: &http::Request) -> Result<http::Response, http::Error> {
        Err(http::Error::Denied("no host outside WebAssembly: use the testkit".into()))
    }
    pub fn http_check(_url: &str) -> Result<(), http::Error> {
        Err(http::Error::Denied("no host outside WebAssembly: use the testkit".into()))
    }
    pub fn now_ms() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }
    pub fn random_bytes(len: u32) -> Vec<u8> {
        vec![4; len as usize]
    }
}
