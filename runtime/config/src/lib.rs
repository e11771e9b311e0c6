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
//! An appservice notifier (`role = "appservice-notifier"`) retries too.
//! A pusher (`role = "pusher"`) retries later when a call fails
//! (`on_error = "retry"`, its default and only policy); an SSO provider
//! (`role = "sso-provider"`) always fails closed. The deadline of both
//! defaults to 10 s (an identity provider or a push gateway is across the
//! internet).
//!
//! Every limit has a default small enough for a spam check (the other roles
//! have their own defaults, `PluginLimitsConfig::for_role`: a limit left out
//! takes its role's default); the semantic
//! checks (known instances, possible limits, a failure policy the role
//! knows, a real component exporting the role's world) are in
//! the runtime's `verify`, which the server's configuration validation calls. The
//! server's `Config` embeds these types; what the runtime needs to know of
//! the rest of it is a `Deployment`.
//!
//! This is a crate of its own (`weft-plugin-config`, re-exported as
//! `weft_plugin_runtime::config`) so that the server's configuration crate
//! (`weft-core`) can embed the schema without building wasmtime.

pub mod address_policy;

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
        self.cache_dir.clone().unwrap_or_else(default_cache_dir)
    }
}

/// Where compiled components are cached when `plugin_cache_dir` is not set.
pub fn default_cache_dir() -> PathBuf {
    std::env::temp_dir().join("weft-plugin-cache")
}

/// One `[[plugins]]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(from = "PluginEntry")]
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
    /// answers: for a spam checker `fail-closed` refuses, `fail-open`
    /// allows; a pusher's `retry` tries the notification again later.
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
        self.on_error.unwrap_or(self.role.default_on_error())
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
    /// Logs users in with an identity provider (the runtime's `sso`).
    SsoProvider,
    /// Delivers push notifications (the runtime's `pusher`).
    Pusher,
    /// Speaks the Application Service API to the registered appservices
    /// (the runtime's `appservice`).
    AppserviceNotifier,
}

impl PluginRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SpamChecker => "spam-checker",
            Self::SsoProvider => "sso-provider",
            Self::Pusher => "pusher",
            Self::AppserviceNotifier => "appservice-notifier",
        }
    }

    /// The failure policy of a plugin that sets none (the same as the role's
    /// `Role::DEFAULT_ON_ERROR`, which the runtime uses).
    pub fn default_on_error(self) -> OnError {
        match self {
            Self::SpamChecker | Self::SsoProvider => OnError::FailClosed,
            Self::Pusher | Self::AppserviceNotifier => OnError::Retry,
        }
    }

    /// The failure policies that mean something for the role: a spam check
    /// answers now (refuse or allow), a failed login has no user to let in,
    /// a push can be tried again.
    pub fn policies(self) -> &'static [OnError] {
        match self {
            Self::SpamChecker => &[OnError::FailClosed, OnError::FailOpen],
            Self::SsoProvider => &[OnError::FailClosed],
            Self::Pusher | Self::AppserviceNotifier => &[OnError::Retry],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    FailClosed,
    FailOpen,
    /// Try again later (the pusher role: the notification stays queued).
    Retry,
}

impl OnError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailClosed => "fail-closed",
            Self::FailOpen => "fail-open",
            Self::Retry => "retry",
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

impl PluginLimitsConfig {
    /// The defaults of a plugin of `role`: an SSO provider makes several
    /// round trips to its identity provider per call and a pusher waits on a
    /// gateway across the internet (10 s each), and more notifications are
    /// in flight at once than spam checks. A pusher's instances are warm
    /// (1,000 calls each): a pusher delivers every notification of the
    /// server, and a fresh instance per notification halved the rate a
    /// pusher keeps up with (docs/benchmarks.md, "Push"). So are an SSO
    /// provider's: a fresh instance per login parses the configuration,
    /// compiles the templates and reads the provider's metadata and keys
    /// from the key-value store again (docs/benchmarks.md, "SSO logins").
    pub fn for_role(role: PluginRole) -> Self {
        match role {
            PluginRole::SpamChecker => Self::default(),
            PluginRole::SsoProvider => Self { timeout_ms: 10_000, max_calls_per_instance: 1000, ..Self::default() },
            PluginRole::Pusher => Self { timeout_ms: 10_000, max_concurrent_calls: 64, max_calls_per_instance: 1000, ..Self::default() },
            // A transaction holds up to 100 events, each up to 64 KiB.
            PluginRole::AppserviceNotifier => {
                Self { timeout_ms: 30_000, max_concurrent_calls: 64, max_input_bytes: 16 * 1024 * 1024, max_output_bytes: 1024 * 1024, ..Self::default() }
            }
        }
    }
}

impl Default for PluginLimitsConfig {
    /// The spam checker's defaults.
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

/// A `[[plugins]]` entry as written: the limits it leaves out take its
/// role's defaults.
#[derive(Deserialize)]
#[serde(default)]
struct PluginEntry {
    name: String,
    role: PluginRole,
    path: PathBuf,
    instances: Vec<String>,
    config: toml::Table,
    limits: LimitsEntry,
    capabilities: PluginCapabilities,
    on_error: Option<OnError>,
    disable_after_failures: Option<u32>,
    retry_after_secs: Option<u64>,
}

impl Default for PluginEntry {
    fn default() -> Self {
        let PluginConfig { name, role, path, instances, config, limits: _, capabilities, on_error, disable_after_failures, retry_after_secs } =
            PluginConfig::default();
        Self { name, role, path, instances, config, limits: LimitsEntry::default(), capabilities, on_error, disable_after_failures, retry_after_secs }
    }
}

/// `[plugins.limits]` as written.
#[derive(Default, Deserialize)]
#[serde(default)]
struct LimitsEntry {
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
    fuel: Option<u64>,
    max_input_bytes: Option<u64>,
    max_output_bytes: Option<u64>,
    max_log_bytes: Option<u64>,
    max_concurrent_calls: Option<u32>,
    max_calls_per_instance: Option<u32>,
}

impl From<PluginEntry> for PluginConfig {
    fn from(entry: PluginEntry) -> Self {
        let written = entry.limits;
        let defaults = PluginLimitsConfig::for_role(entry.role);
        let limits = PluginLimitsConfig {
            timeout_ms: written.timeout_ms.unwrap_or(defaults.timeout_ms),
            memory_mb: written.memory_mb.unwrap_or(defaults.memory_mb),
            fuel: written.fuel.or(defaults.fuel),
            max_input_bytes: written.max_input_bytes.unwrap_or(defaults.max_input_bytes),
            max_output_bytes: written.max_output_bytes.unwrap_or(defaults.max_output_bytes),
            max_log_bytes: written.max_log_bytes.unwrap_or(defaults.max_log_bytes),
            max_concurrent_calls: written.max_concurrent_calls.unwrap_or(defaults.max_concurrent_calls),
            max_calls_per_instance: written.max_calls_per_instance.unwrap_or(defaults.max_calls_per_instance),
        };
        Self {
            name: entry.name,
            role: entry.role,
            path: entry.path,
            instances: entry.instances,
            config: entry.config,
            limits,
            capabilities: entry.capabilities,
            on_error: entry.on_error,
            disable_after_failures: entry.disable_after_failures,
            retry_after_secs: entry.retry_after_secs,
        }
    }
}

/// What a plugin may reach beyond the `host` interface. Nothing by default.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PluginCapabilities {
    /// Hosts the plugin may call through the host's HTTP: `https://api.example.org`,
    /// `http://10.0.0.5:8080`, `https://*.example.org`, `http://host:*`.
    /// A missing port means the scheme's default. A host of `*` is any host
    /// (`*:*`: any URL, for user-chosen ones such as push gateways), still
    /// subject to the address policy.
    pub allowed_outbound_hosts: Vec<String>,
    /// Whether an allowed host may resolve to an address the server's
    /// policy refuses (`ip_range_blacklist`: loopback, private, link-local,
    /// ...; refused by default, against DNS tricks).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushers_retry_and_pushers_and_sso_providers_wait_longer_unless_told_otherwise() {
        let pusher: PluginConfig = toml::from_str("name = \"p\"\nrole = \"pusher\"\n[limits]\nmemory_mb = 32\n").unwrap();
        assert_eq!((pusher.role, pusher.on_error, pusher.on_error()), (PluginRole::Pusher, None, OnError::Retry));
        assert_eq!((pusher.limits.timeout_ms, pusher.limits.max_concurrent_calls, pusher.limits.memory_mb), (10_000, 64, 32));
        assert_eq!(pusher.limits.max_calls_per_instance, 1000, "warm instances for pushers");
        let told: PluginConfig = toml::from_str("role = \"pusher\"\non_error = \"retry\"\n[limits]\ntimeout_ms = 300\n").unwrap();
        assert_eq!((told.on_error, told.limits.timeout_ms, told.limits.max_concurrent_calls), (Some(OnError::Retry), 300, 64));
        let sso: PluginConfig = toml::from_str("role = \"sso-provider\"\n").unwrap();
        assert_eq!((sso.on_error(), sso.limits.timeout_ms, sso.limits.max_concurrent_calls), (OnError::FailClosed, 10_000, 16));
        assert_eq!(sso.limits.max_calls_per_instance, 1000, "warm instances for SSO providers");
        let spam: PluginConfig = toml::from_str("name = \"s\"\n").unwrap();
        assert_eq!((spam.role, spam.on_error(), spam.limits.timeout_ms), (PluginRole::SpamChecker, OnError::FailClosed, 500));
        assert!(toml::from_str::<PluginConfig>("on_error = \"later\"").is_err());
    }
}
