//! The configuration schema: one struct per TOML table, named as Synapse names
//! its YAML options. Every field has a default so that each top-level key can be
//! checked on its own; required values are enforced by `validate`.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::SynapseDuration;

/// The whole configuration of one instance after merging its files.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    /// The public name of the server, the part after `:` in user ids.
    pub server_name: Option<String>,
    /// The URL clients use to reach this server; derived from the first client
    /// listener when absent.
    pub public_baseurl: Option<String>,
    /// Whether `/.well-known/matrix/client` is served (Synapse's default: no).
    pub serve_client_wellknown: bool,
    /// Extra fields for `/.well-known/matrix/client`.
    pub extra_well_known_client_content: serde_json::Map<String, serde_json::Value>,
    pub listeners: Vec<ListenerConfig>,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,

    // Workers, exactly as Synapse names them.
    pub worker_app: Option<String>,
    pub worker_name: Option<String>,
    pub worker_listeners: Vec<ListenerConfig>,
    pub worker_replication_secret: Option<String>,
    pub instance_map: BTreeMap<String, InstanceLocation>,
    pub stream_writers: StreamWriters,
    /// Who sends push notifications: `pusher_instances()` (unset is main;
    /// an explicit `[]` is nobody).
    pub pusher_instances: Option<Vec<String>>,
    /// Who sends federation transactions: each destination by one of them,
    /// chosen by `federation_sender_of` (unset: main).
    pub federation_sender_instances: Vec<String>,
    pub notify_appservices_from_worker: Option<String>,
    pub update_user_directory_from_worker: Option<String>,
    pub run_background_tasks_on: Option<String>,
    pub media_instance_running_background_jobs: Option<String>,
    pub outbound_federation_restricted_to: Vec<String>,

    // Application services (`docs/appservices.md`).
    /// The registration files (YAML, as bridges write them), relative to the
    /// file that names them.
    pub app_service_config_files: Vec<PathBuf>,
    /// Accepted for compatibility: Weft records appservice users' addresses
    /// as every user's.
    pub track_appservice_user_ips: bool,
    /// Refused when true: Weft sends the `hs_token` only as a Bearer header.
    pub use_appservice_legacy_authorization: bool,
    /// Synapse's `experimental_features`, the switches that concern
    /// appservices (`docs/appservices.md`).
    pub experimental_features: ExperimentalFeatures,
    /// The registrations read from `app_service_config_files` when loading.
    #[serde(skip)]
    pub app_services: crate::appservice::AppServices,

    // Outbound requests (plugins' today: push gateways and the like).
    /// CIDR ranges outbound requests may not reach; unset is Synapse's
    /// default list (loopback, private, link-local and other special ranges).
    pub ip_range_blacklist: Option<Vec<String>>,
    /// Exceptions to `ip_range_blacklist` (default none).
    pub ip_range_whitelist: Vec<String>,
    // Federation (`docs/federation.md`), Synapse's options.
    /// The certificate chain (PEM, leaf first) of listeners with `tls = true`.
    pub tls_certificate_path: Option<PathBuf>,
    /// The private key (PEM) of `tls_certificate_path`.
    pub tls_private_key_path: Option<PathBuf>,
    /// Whether `/.well-known/matrix/server` is served (Synapse's default: no).
    pub serve_server_wellknown: bool,
    /// Whether remote servers' certificates are checked (default true).
    #[serde(default = "default_true")]
    pub federation_verify_certificates: bool,
    /// CA certificates (PEM files) trusted for federation instead of the system's.
    pub federation_custom_ca_list: Vec<PathBuf>,
    /// Server names (`*` wildcards allowed) whose certificates are not checked.
    pub federation_certificate_verification_whitelist: Vec<String>,
    /// The only servers federated with, when set.
    pub federation_domain_whitelist: Option<Vec<String>>,
    /// Notaries asked for other servers' keys; unset is Synapse's `matrix.org`.
    pub trusted_key_servers: Option<Vec<TrustedKeyServer>>,
    /// Whether other servers may read the public room directory.
    pub allow_public_rooms_over_federation: bool,
    /// Weft: `weft router`, the reverse proxy in front of the instances (`[router]`).
    /// Which instance serves what is `instance_map.<name>.serves`.
    pub router: Option<RouterConfig>,

    // Registration and authentication.
    pub enable_registration: bool,
    pub enable_registration_without_verification: bool,
    pub registration_shared_secret: Option<String>,
    pub registration_shared_secret_path: Option<PathBuf>,
    pub password_config: PasswordConfig,
    /// Single sign-on (Synapse's `sso`): redirect targets trusted without a
    /// confirmation page. The identity providers are `sso-provider` plugins.
    pub sso: SsoConfig,
    /// Synapse's `templates`: where an operator's versions of the SSO pages are.
    pub templates: TemplatesConfig,

    // Keys and secrets.
    pub signing_key_path: Option<PathBuf>,
    pub macaroon_secret_key: Option<String>,
    pub form_secret: Option<String>,

    // Rate limits.
    #[serde(default = "default_rc_message")]
    pub rc_message: RateLimit,
    pub rc_registration: RateLimit,
    /// `/_matrix/media/v1/create` per user (Synapse's default: 10 a second, bursts of 50).
    #[serde(default = "default_rc_media_create")]
    pub rc_media_create: RateLimit,
    pub rc_login: LoginRateLimits,
    /// `createRoom` and room upgrades per user (Synapse's default: 0.016 a second, bursts of 10).
    #[serde(default = "default_rc_room_creation")]
    pub rc_room_creation: RateLimit,
    /// Invites per room, per invitee and per inviter.
    pub rc_invites: InviteRateLimits,
    /// Joins per user: `local` for rooms this server is in, `remote` for joins
    /// over federation (accepted and validated; nothing uses it yet).
    pub rc_joins: JoinRateLimits,

    // Per-user data.
    pub presence: PresenceConfig,
    /// `push`: push notifications, Synapse's options.
    pub push: PushConfig,

    // VoIP: the TURN servers handed to clients by `/voip/turnServer`.
    pub turn_uris: Vec<String>,
    pub turn_shared_secret: Option<String>,
    pub turn_username: Option<String>,
    pub turn_password: Option<String>,
    /// How long TURN credentials last (default one hour): `turn_user_lifetime()`.
    pub turn_user_lifetime: Option<SynapseDuration>,

    // The media repository (`media.rs`), Synapse's options.
    /// Whether this instance serves media: `runs_media_repo()`.
    pub enable_media_repo: Option<bool>,
    pub media_store_path: Option<PathBuf>,
    pub max_upload_size: Option<super::ByteSize>,
    pub max_image_pixels: Option<super::ByteSize>,
    /// Thumbnails of exactly the requested size rather than the nearest of `thumbnail_sizes`.
    pub dynamic_thumbnails: bool,
    pub thumbnail_sizes: Option<Vec<super::ThumbnailSize>>,
    pub max_pending_media_uploads: Option<u64>,
    pub unused_expiration_time: Option<SynapseDuration>,
    pub enable_authenticated_media: Option<bool>,
    /// Refused when true: Weft has no URL previews yet.
    pub url_preview_enabled: bool,

    // Operations.
    pub enable_metrics: bool,
    /// Accepted for compatibility with Synapse configurations; Weft reports nothing.
    pub report_stats: bool,
    /// Weft: the largest request body accepted on the client API, in bytes.
    pub max_request_body_size: Option<u64>,
    /// Weft: log format and level (Synapse points `log_config` at a Python logging file).
    pub logging: LoggingConfig,
    /// Weft: how long a client may take over a request, and shutdown over requests in flight.
    pub http_timeouts: HttpTimeouts,

    /// Weft: WebAssembly plugins (`[[plugins]]`, the schema is the plugin runtime's `config`).
    pub plugins: Vec<super::PluginConfig>,
    /// Weft: where compiled plugins are cached (default: a `weft-plugin-cache`
    /// directory in the system's temporary directory). Only Weft may write there.
    pub plugin_cache_dir: Option<PathBuf>,
}

impl Config {
    pub fn server_name(&self) -> &str {
        self.server_name.as_deref().unwrap_or("localhost")
    }

    /// The name of this instance: `worker_name`, or `main` for the main process.
    pub fn instance_name(&self) -> &str {
        self.worker_name.as_deref().unwrap_or(super::MAIN_INSTANCE)
    }

    /// The instance that sends federation transactions to `destination`:
    /// among `federation_sender_instances`, by sha256 of the server name
    /// as Synapse shards them; main when the list is empty.
    pub fn federation_sender_of(&self, destination: &str) -> &str {
        match self.federation_sender_instances.len() {
            0 => super::MAIN_INSTANCE,
            count => &self.federation_sender_instances[crate::streams::shard(destination, count)],
        }
    }

    /// Whether this instance sends federation transactions to some destinations.
    pub fn sends_federation(&self) -> bool {
        match self.federation_sender_instances.is_empty() {
            true => self.instance_name() == super::MAIN_INSTANCE,
            false => self.federation_sender_instances.iter().any(|name| name == self.instance_name()),
        }
    }

    pub fn is_main_process(&self) -> bool {
        self.worker_name.is_none()
    }

    /// What the plugin runtime needs to know of this configuration beyond
    /// `[[plugins]]`: this instance, every instance name, the compile cache.
    pub fn plugin_deployment(&self) -> super::PluginDeployment {
        super::PluginDeployment {
            instance: self.instance_name().to_owned(),
            known_instances: std::iter::once(super::MAIN_INSTANCE.to_owned()).chain(self.instance_map.keys().cloned()).collect(),
            cache_dir: self.plugin_cache_dir.clone(),
        }
    }

    /// The instances that send push notifications: `pusher_instances`, or
    /// main when it is unset (an explicit empty list: nobody).
    pub fn pusher_instances(&self) -> &[String] {
        static MAIN: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| vec![super::MAIN_INSTANCE.to_owned()]);
        self.pusher_instances.as_deref().unwrap_or(MAIN.as_slice())
    }

    /// Whether this instance sends the push notifications of some users.
    pub fn sends_pushes(&self) -> bool {
        self.push.enabled && self.pusher_instances().iter().any(|name| name == self.instance_name())
    }

    /// The instance that sends `user_id`'s push notifications: the sha256 of
    /// the user id modulo the number of `pusher_instances`, as Synapse
    /// shards them; none when nobody sends pushes.
    pub fn pusher_instance_for(&self, user_id: &str) -> Option<&str> {
        let instances = self.pusher_instances();
        if instances.is_empty() {
            return None;
        }
        Some(&instances[crate::streams::shard(user_id, instances.len())])
    }

    /// The listeners this instance opens: `worker_listeners` on a worker.
    pub fn own_listeners(&self) -> &[ListenerConfig] {
        if self.is_main_process() { &self.listeners } else { &self.worker_listeners }
    }

    pub fn turn_user_lifetime(&self) -> std::time::Duration {
        self.turn_user_lifetime.map_or(std::time::Duration::from_secs(3600), |lifetime| lifetime.0)
    }

    pub fn max_request_body_size(&self) -> u64 {
        // Synapse's limit: 200 PDUs of 64 KiB.
        self.max_request_body_size.unwrap_or(200 * 65_536)
    }

    /// Whether this instance needs each `events` row as soon as it is written,
    /// rather than the events writers' positions, announced on every handler
    /// tick (50 ms) in which they moved. Rows are what wake `/sync` at once
    /// and keep reads up to date. They are followed by main; by any instance
    /// the router sends a group other than `event_sending` (an instance that
    /// only forwards sends learns the persister's position from its reply);
    /// by a worker with a client or federation listener that neither serves a
    /// group nor writes a stream (it is reached some other way, so it may serve
    /// anything); and by the instances of jobs that react to events (pushers,
    /// appservice notifier, federation senders).
    /// Not by an events persister that only takes sends into its own rooms, a
    /// writer of the other streams, or a background worker: the user directory
    /// catches up at most every 50 ms anyway.
    pub fn follows_event_rows(&self) -> bool {
        let instance = self.instance_name();
        let named = |names: &[String]| names.iter().any(|name| name == instance);
        if self.is_main_process()
            || named(self.pusher_instances())
            || named(&self.federation_sender_instances)
            || self.notify_appservices_from_worker.as_deref() == Some(instance)
        {
            return true;
        }
        let serves = self.instance_map.get(instance).map(|location| location.serves.as_slice()).unwrap_or_default();
        if serves.iter().any(|group| group != "event_sending") {
            return true;
        }
        let writes_a_stream = self.stream_writers.all().any(|(_, writers)| named(writers));
        let faces_clients =
            self.own_listeners().iter().any(|listener| listener.serves(super::Resource::Client) || listener.serves(super::Resource::Federation));
        serves.is_empty() && faces_clients && !writes_a_stream
    }

    /// Whether anything in the configuration names an instance other than main.
    pub fn has_workers(&self) -> bool {
        let not_main = |name: &String| name != super::MAIN_INSTANCE;
        self.worker_name.is_some() || self.instance_map.keys().any(not_main) || self.stream_writers.all().any(|(_, writers)| writers.iter().any(not_main))
    }
}

fn default_true() -> bool {
    true
}

/// One entry of `trusted_key_servers`: a notary and, optionally, the keys its
/// answers must be signed with (without them, any key it serves itself).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct TrustedKeyServer {
    pub server_name: String,
    /// Key id (`ed25519:abc`) to unpadded base64 public key.
    pub verify_keys: Option<BTreeMap<String, String>>,
    /// Accepted for compatibility (Synapse only silences a warning with it).
    pub accept_keys_insecurely: bool,
}

impl Config {
    /// `trusted_key_servers`, with Synapse's default (`matrix.org`) when unset.
    pub fn trusted_key_servers(&self) -> Vec<TrustedKeyServer> {
        self.trusted_key_servers.clone().unwrap_or_else(|| vec![TrustedKeyServer { server_name: "matrix.org".into(), ..Default::default() }])
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ListenerConfig {
    pub port: Option<u16>,
    pub bind_addresses: Vec<IpAddr>,
    /// A Unix socket path instead of `port` and `bind_addresses`.
    pub path: Option<PathBuf>,
    #[serde(rename = "type")]
    pub kind: ListenerType,
    pub tls: bool,
    /// Trust `X-Forwarded-For` from a reverse proxy for client addresses.
    pub x_forwarded: bool,
    pub resources: Vec<ListenerResources>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            port: None,
            // Synapse's default: every interface, IPv6 and IPv4.
            bind_addresses: vec!["::".parse().unwrap(), "0.0.0.0".parse().unwrap()],
            path: None,
            kind: ListenerType::Http,
            tls: false,
            x_forwarded: false,
            resources: Vec::new(),
        }
    }
}

impl ListenerConfig {
    pub fn serves(&self, resource: Resource) -> bool {
        (self.kind == ListenerType::Metrics && resource == Resource::Metrics) || self.resources.iter().any(|r| r.names.contains(&resource))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerType {
    #[default]
    Http,
    /// Synapse's dedicated metrics listener: serves `/metrics` only.
    Metrics,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ListenerResources {
    pub names: Vec<Resource>,
    /// Accepted for compatibility; responses are not compressed.
    pub compress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Client,
    Federation,
    /// Synapse's name for the server-key endpoints alone.
    Keys,
    Replication,
    Media,
    Metrics,
    Health,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Federation => "federation",
            Self::Keys => "keys",
            Self::Replication => "replication",
            Self::Media => "media",
            Self::Metrics => "metrics",
            Self::Health => "health",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct DatabaseConfig {
    pub name: DatabaseEngine,
    pub args: DatabaseArgs,
}

/// Synapse's engine names: `sqlite3`, and `psycopg2` for PostgreSQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum DatabaseEngine {
    #[default]
    #[serde(rename = "sqlite3")]
    Sqlite,
    #[serde(rename = "psycopg2", alias = "postgresql")]
    Postgres,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct DatabaseArgs {
    /// SQLite: the database file. PostgreSQL: the database name (as `dbname`).
    pub database: Option<String>,
    pub dbname: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub cp_min: Option<u32>,
    pub cp_max: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RedisConfig {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub path: Option<PathBuf>,
    pub dbid: Option<u32>,
    pub password: Option<String>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self { enabled: false, host: "localhost".into(), port: 6379, path: None, dbid: None, password: None }
    }
}

/// An `instance_map` entry. `host`/`port`/`path` are Synapse's: the
/// instance's `replication` listener. The rest are Weft additions for `weft
/// router` and `weft gen-proxy-config`: where the instance's client and
/// federation listener is, and which endpoint groups it is sent.
///
/// ```toml
/// [instance_map.sync1]
/// host = "10.0.0.5"
/// port = 9094            # replication listener
/// client_port = 8083     # client/federation listener (or client_path = "/run/weft/sync1.sock")
/// serves = ["sync", "initial_sync"]
/// ```
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceLocation {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathBuf>,
    pub tls: bool,
    /// Weft: the host of the client listener; defaults to `host`, then `localhost`.
    pub client_host: Option<String>,
    /// Weft: the port of the listener serving the `client` (and `federation`) resources.
    pub client_port: Option<u16>,
    /// Weft: a Unix socket serving the `client` resource, instead of `client_port`.
    pub client_path: Option<PathBuf>,
    /// Weft: the endpoint groups the router sends to this instance, by the
    /// names of `endpoint_groups::EndpointGroup` (`sync`, `client_reads`,
    /// `room_messages`, `federation`, `federation_transactions`, `media`,
    /// `sso`, `initial_sync`, ...). A group no instance lists goes to `main`.
    pub serves: Vec<String>,
}

/// Weft: `[router]`, the built-in reverse proxy (`weft router`).
///
/// ```toml
/// [router]
/// bind_addresses = ["127.0.0.1"]
/// port = 8008
/// initial_sync_separately = true
/// connect_timeout_ms = 2000
/// down_for_ms = 5000
/// token_cache_ms = 30000
/// tls_port = 8448
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RouterConfig {
    pub bind_addresses: Vec<IpAddr>,
    pub port: u16,
    /// A second port on the same addresses, served over TLS with
    /// `tls_certificate_path` and `tls_private_key_path` and routed like
    /// `port`: the federation port other servers connect to (8448).
    pub tls_port: Option<u16>,
    /// Send `/sync` without `since` (an initial sync, heavy) to the instances
    /// that list `initial_sync`, as the worker document suggests; they fall
    /// back to the `sync` instances when none does.
    pub initial_sync_separately: bool,
    /// How long to wait for a connection to an instance before trying the next.
    /// Responses have no time limit: `/sync` long-polls.
    pub connect_timeout_ms: u64,
    /// How long an instance that refused a connection is skipped.
    pub down_for_ms: u64,
    /// How long the user behind an access token is remembered for sticky `/sync`.
    pub token_cache_ms: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            bind_addresses: vec!["127.0.0.1".parse().unwrap()],
            port: 8008,
            tls_port: None,
            initial_sync_separately: false,
            connect_timeout_ms: 2_000,
            down_for_ms: 5_000,
            token_cache_ms: 30_000,
        }
    }
}

/// `experimental_features`, as Synapse names them. Only the appservice key
/// proxying is switched here; the MSC2409 and MSC3202 switches are accepted
/// so that bridges' Synapse instructions work, and change nothing (Weft
/// reads those from each registration).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ExperimentalFeatures {
    /// MSC3983: one-time key claims for the users of appservices' exclusive
    /// namespaces that the server has no key for are asked of the appservice.
    pub msc3983_appservice_otk_claims: bool,
    /// MSC3984: device key queries for those users are also asked of the
    /// appservice, its answer merged over the server's.
    pub msc3984_appservice_key_query: bool,
    /// Accepted; Weft sends to-device messages to appservices that set `receive_ephemeral`.
    pub msc2409_to_device_messages_enabled: bool,
    /// Accepted; Weft sends the MSC3202 fields to appservices that set `org.matrix.msc3202`.
    pub msc3202_transaction_extensions: bool,
    /// Accepted; Weft lets appservices that set `org.matrix.msc3202` or `io.element.msc4190` pick devices.
    pub msc3202_device_masquerading: bool,
}

/// `presence`: whether users' online status is tracked and shared.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct PresenceConfig {
    pub enabled: bool,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `push`: Synapse's push options.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct PushConfig {
    /// Whether push notifications are sent at all (unread counts are kept
    /// either way).
    pub enabled: bool,
    /// Whether full-format notifications carry the event's `content`.
    pub include_content: bool,
    /// Whether the badge (`counts.unread`) counts rooms with unread
    /// notifications rather than the notifications themselves.
    pub group_unread_count_by_room: bool,
    /// Delays each push by a random time up to this, counted from the
    /// event's `origin_server_ts` (default none).
    pub jitter_delay: Option<SynapseDuration>,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self { enabled: true, include_content: true, group_unread_count_by_room: true, jitter_delay: None }
    }
}

/// `stream_writers`: which instances write each stream. Each entry takes a
/// name or a list of names, as in Synapse; an absent entry means `main`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct StreamWriters {
    #[serde(deserialize_with = "one_or_many")]
    pub events: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub typing: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub to_device: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub account_data: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub receipts: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub presence: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub push_rules: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub device_lists: Vec<String>,
}

impl StreamWriters {
    /// Every stream with its configured writers (possibly empty: main).
    pub fn all(&self) -> impl Iterator<Item = (&'static str, &[String])> {
        [
            ("events", &self.events),
            ("typing", &self.typing),
            ("to_device", &self.to_device),
            ("account_data", &self.account_data),
            ("receipts", &self.receipts),
            ("presence", &self.presence),
            ("push_rules", &self.push_rules),
            ("device_lists", &self.device_lists),
        ]
        .into_iter()
        .map(|(name, writers)| (name, writers.as_slice()))
    }

    /// Streams that Synapse allows only one writer for.
    pub const SINGLE_WRITER: [&'static str; 5] = ["typing", "to_device", "account_data", "presence", "push_rules"];

    /// The writers of `stream`, with the `main` default applied.
    pub fn writers_of(&self, stream: &str) -> Vec<String> {
        let configured = self.all().find(|(name, _)| *name == stream).map(|(_, w)| w.to_vec()).unwrap_or_default();
        if configured.is_empty() { vec![super::MAIN_INSTANCE.to_owned()] } else { configured }
    }
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "an instance name or a list of instance names")]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(name) => vec![name],
        OneOrMany::Many(names) => names,
    })
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct PasswordConfig {
    /// Whether local passwords can be used to log in.
    pub enabled: bool,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Synapse's `sso` options.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SsoConfig {
    /// A `redirectUrl` starting with one of these is redirected to at once
    /// after an SSO login; any other gets a confirmation page first.
    pub client_whitelist: Vec<String>,
    /// Whether a returning user's display name is updated from the provider
    /// at each login (Synapse's default: no).
    pub update_profile_information: bool,
}

/// Synapse's `templates` options.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct TemplatesConfig {
    /// A directory whose `sso_*.html` files (Synapse's names) replace the
    /// built-in SSO pages.
    pub custom_template_directory: Option<PathBuf>,
}

/// A leaky bucket, as Synapse's `rc_*` options: `burst_count` actions at once,
/// refilled at `per_second`. Raise both to lift a limit.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst_count: f64,
}

impl RateLimit {
    pub const fn new(per_second: f64, burst_count: f64) -> Self {
        Self { per_second, burst_count }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        // Synapse's defaults for `rc_message` and `rc_registration` differ; the
        // table-level defaults below restore them where a table is absent.
        Self::new(0.17, 3.0)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LoginRateLimits {
    /// Login attempts per client address.
    pub address: RateLimit,
    /// Login attempts per account.
    pub account: RateLimit,
    /// Failed login attempts per account.
    pub failed_attempts: RateLimit,
}

impl Default for LoginRateLimits {
    fn default() -> Self {
        Self { address: RateLimit::new(0.003, 5.0), account: RateLimit::new(0.003, 5.0), failed_attempts: RateLimit::new(0.17, 3.0) }
    }
}

/// `rc_invites`, as Synapse keys them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct InviteRateLimits {
    /// Invites into one room, whoever sends them.
    pub per_room: RateLimit,
    /// Invites one user receives, in any room.
    pub per_user: RateLimit,
    /// Invites one user sends, in any room.
    pub per_issuer: RateLimit,
}

impl Default for InviteRateLimits {
    fn default() -> Self {
        Self { per_room: RateLimit::new(0.3, 10.0), per_user: RateLimit::new(0.003, 5.0), per_issuer: RateLimit::new(0.3, 10.0) }
    }
}

/// `rc_joins`: joins per user.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct JoinRateLimits {
    pub local: RateLimit,
    pub remote: RateLimit,
}

impl Default for JoinRateLimits {
    fn default() -> Self {
        Self { local: RateLimit::new(0.1, 10.0), remote: RateLimit::new(0.01, 10.0) }
    }
}

fn default_rc_room_creation() -> RateLimit {
    RateLimit::new(0.016, 10.0)
}

/// Synapse's default for `rc_message`.
fn default_rc_media_create() -> RateLimit {
    RateLimit::new(10.0, 50.0)
}

fn default_rc_message() -> RateLimit {
    RateLimit::new(0.2, 10.0)
}

/// Weft: how long a slow or silent client may hold a connection (Synapse
/// has no such limits and keeps such connections open for ever).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(default)]
pub struct HttpTimeouts {
    /// From a connection's start, or the end of its previous response, to
    /// the end of the next request's headers: closes silent, drip-fed and
    /// idle keep-alive connections alike.
    pub header: SynapseDuration,
    /// From the end of the headers to the end of the body.
    pub body: SynapseDuration,
    /// How long shutdown lets requests in flight finish before it closes
    /// their connections.
    pub shutdown_grace: SynapseDuration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        let seconds = |s| SynapseDuration(std::time::Duration::from_secs(s));
        Self { header: seconds(30), body: seconds(60), shutdown_grace: seconds(10) }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LoggingConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `weft=debug,sqlx=warn`; `RUST_LOG` wins.
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self { format: LogFormat::Plain, level: "info".into() }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}
