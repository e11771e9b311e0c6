//! `[[plugins]]`: WebAssembly plugins, the instances that run them, their
//! limits and capabilities, and what happens when one fails. Weft-only (Synapse
//! loads Python modules with `modules:`).
//!
//! ```toml
//! [[plugins]]
//! name = "spam-rules"
//! role = "spam-checker"
//! path = "plugins/spam_rules.wasm"
//! instances = ["main"]              # default: every instance
//! on_error = "fail-closed"          # the default for spam checking
//! [plugins.config]                  # handed to the plugin as JSON
//! blocked_servers = ["evil.example"]
//! [plugins.limits]
//! timeout_ms = 250
//! memory_mb = 32
//! max_calls_per_instance = 1000     # warm instances (default 1: a fresh one per call)
//! [plugins.capabilities]
//! allowed_outbound_hosts = ["https://rules.example.org"]
//! homeserver = ["users", "rooms"]   # the read-only `homeserver` view (default: none)
//! ```
//!
//! Every limit has a default small enough for a spam check; the semantic
//! checks (known instances, possible limits, a real component exporting the
//! role's world) are in `crate::verify`, which the server's configuration
//! validation calls. The server's `Config` embeds these types; what the
//! runtime needs to know of the rest of it is a `Deployment`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The facts of the server's configuration beyond `[[plugins]]` that loading
/// and checking plugins need.
#[derive(Debug, Clone, Default)]
pub struct Deployment {
    /// This instance's name (`""` in the testkit: it runs every plugin).
    pub instance: String,
    /// Every instance name a plugin's `instances` may list.
    pub known_instances: Vec<String>,
    /// Where compiled components are cached (`None`: the system's cache).
    pub cache_dir: Option<PathBuf>,
}

impl Deployment {
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(crate::engine::default_cache_dir)
    }
}

/// One `[[plugins]]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PluginConfig {
    /// Unique among the plugins: it names the plugin in logs, metrics and its
    /// private key-value store.
    pub name: String,
    pub role: PluginRole,
    /// The WebAssembly component (`.wasm`), relative to the configuration file.
    pub path: PathBuf,
    /// The instances that load the plugin; empty means every instance.
    pub instances: Vec<String>,
    /// Handed to the plugin as JSON (`plugin-config` in the WIT `host` interface).
    pub config: toml::Table,
    pub limits: PluginLimitsConfig,
    pub capabilities: PluginCapabilities,
    /// What a call that fails (trap, timeout, over a limit, malformed answer)
    /// answers; `fail-closed` refuses, `fail-open` allows.
    pub on_error: Option<OnError>,
    /// Consecutive failures after which the plugin is switched off; it is
    /// tried again after `retry_after_secs`, doubling up to an hour.
    pub disable_after_failures: Option<u32>,
    pub retry_after_secs: Option<u64>,
}

impl PluginConfig {
    /// The configured policy, else the role's default (the same as the
    /// role's `plugins::Role::DEFAULT_ON_ERROR`, which the runtime uses).
    pub fn on_error(&self) -> OnError {
        self.on_error.unwrap_or(match self.role {
            PluginRole::SpamChecker | PluginRole::SsoProvider => OnError::FailClosed,
        })
    }

    pub fn disable_after_failures(&self) -> u32 {
        self.disable_after_failures.unwrap_or(5)
    }

    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_secs.unwrap_or(30)
    }

    /// Whether the instance named `instance` loads this plugin.
    pub fn runs_on(&self, instance: &str) -> bool {
        self.instances.is_empty() || self.instances.iter().any(|name| name == instance)
    }
}

/// The role of a plugin: which WIT world its component must export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginRole {
    #[default]
    SpamChecker,
    /// Logs users in with an identity provider (`crate::sso`).
    SsoProvider,
}

impl PluginRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SpamChecker => "spam-checker",
            Self::SsoProvider => "sso-provider",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    FailClosed,
    FailOpen,
}

impl OnError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailClosed => "fail-closed",
            Self::FailOpen => "fail-open",
        }
    }
}

/// Per-plugin limits; every instance is held to them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct PluginLimitsConfig {
    /// Wall-clock deadline of one call, instantiation included.
    pub timeout_ms: u64,
    /// Linear memory of one instance, in MiB.
    pub memory_mb: u64,
    /// Optional instruction budget per call (deterministic, unlike the deadline).
    pub fuel: Option<u64>,
    /// Largest input of one call (event JSON, configuration, ...), in bytes.
    pub max_input_bytes: u64,
    /// Largest answer (rejection message and fields), in bytes.
    pub max_output_bytes: u64,
    /// Log bytes a call may write; further lines are dropped.
    pub max_log_bytes: u64,
    /// Calls running at once; each holds an instance slot reserved at start-up.
    pub max_concurrent_calls: u32,
    /// Calls one instance may answer. 1 (the default): a fresh instance per
    /// call, nothing survives a call. More: warm instances, kept after a clean
    /// return (so a plugin's set-up, like compiling its rules, is paid once
    /// per instance) and dropped after any failure or that many calls.
    pub max_calls_per_instance: u32,
}

impl Default for PluginLimitsConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 500,
            memory_mb: 64,
            fuel: None,
            max_input_bytes: 1024 * 1024,
            max_output_bytes: 16 * 1024,
            max_log_bytes: 16 * 1024,
            max_concurrent_calls: 16,
            max_calls_per_instance: 1,
        }
    }
}

/// What a plugin may reach beyond the `host` interface. Nothing by default.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PluginCapabilities {
    /// Hosts the plugin may call through the host's HTTP: `https://api.example.org`,
    /// `http://10.0.0.5:8080`, `https://*.example.org`, `http://host:*`.
    /// A missing port means the scheme's default.
    pub allowed_outbound_hosts: Vec<String>,
    /// Whether an allowed host may resolve to a loopback, private or
    /// link-local address (refused by default, against DNS tricks).
    pub allow_private_addresses: bool,
    /// A directory the plugin sees as `/data`, read-write, and nothing above it.
    pub data_dir: Option<PathBuf>,
    /// The parts of the read-only `homeserver` view the plugin may ask
    /// (`users`, `rooms`); none by default.
    pub homeserver: Vec<HomeserverScope>,
}

/// A part of the `homeserver` host interface an operator grants a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HomeserverScope {
    /// Local accounts: `get-user-info` and `get-profile`.
    Users,
    /// Rooms' current state: `get-membership`, `get-state-event` and `get-joined-members`.
    Rooms,
}

impl HomeserverScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Rooms => "rooms",
        }
    }
}
