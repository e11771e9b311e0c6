//! Weft's storage (`weft-storage`): one repository over SQLite or
//! PostgreSQL through sqlx's `Any` driver, so the same SQL text and the same
//! code serve both. Where the engines must differ (stream id allocation,
//! connection set-up) the difference lives in `dialect`. Migrations for both
//! live side by side in `storage/migrations/{postgres,sqlite}` and run at
//! start-up.
//!
//! Owns: every SQL statement in Weft. Callers get typed rows and ruma ids and
//! never see SQL or sqlx. May call: `weft_core` (the database configuration,
//! the stream names, the `TokenOwners` lookup it implements). Must not: build
//! HTTP responses, know about Matrix errcodes, or know the services above it
//! (the plugin runtime reaches `plugin_kv` through `weft_services::plugins`).
//!
//! The map: one module per family of tables (`users`, `devices`, `events`,
//! `receipts`, `media`, `plugin_kv`, ...), with the stream bookkeeping in
//! `streams` and `positions`, and the migrations in `migrations`.
//!
//! Stream rows carry the writer's `instance_name` and a stream id; each
//! writer records its position in `stream_positions` (`flush_position`,
//! several times a second), so any process can catch up from the database.

mod account_data;
mod aliases;
mod appservice_feeds;
mod appservices;
mod backfill;
mod checkpoints;
mod cross_signing;
mod devices;
mod dialect;
mod e2e_keys;
mod error;
mod events;
mod federation_rooms;
mod filters;
mod key_backup;
mod key_queries;
mod media;
mod migrations;
mod openid;
mod plain_event;
mod plugin_kv;
mod positions;
mod presence;
mod profiles;
mod push_actions;
mod push_queue;
mod push_rules;
mod pushers;
mod receipts;
mod relations;
mod remote_devices;
mod remote_media;
mod reports;
mod room_state;
mod search;
mod server_keys;
mod sharing;
mod sso;
mod streams;
mod stripped_state;
mod timestamps;
mod to_device;
mod uia;
mod user_directory;
mod users;

use std::{str::FromStr, time::Duration};

use sqlx::{AnyPool, any::AnyPoolOptions};

pub use account_data::AccountDataEntry;
pub use appservice_feeds::{AppserviceFeed, InboxMessage, OneTimeKeyCounts, UnusedFallbackKeys};
pub use appservices::{QUEUED_KINDS, QueuedItem};
pub use cross_signing::KeySignature;
pub use devices::{Device, NewSession, TokenOwner};
pub use dialect::Dialect;
pub use e2e_keys::{ClaimedKey, KeyCounts, NewKey};
pub use error::StorageError;
pub use events::{NewEvent, NewRoom, StoredEvent};
pub use federation_rooms::{DestinationRetry, OutboxRow};
pub use key_backup::{BackupCounts, BackupKey, BackupKeysWrite, BackupVersion, BackupVersionUpdate, StoredBackupKey};
pub use key_queries::{KeyClaim, KeySources};
pub use media::{AttachError, LocalMedia, MediaContent};
pub use presence::{NewPresence, PresenceRow};
pub use push_actions::{Notification, PushAction, UnreadAction, UnreadBase};
pub use push_queue::{PendingPush, PusherId, PusherPushes};
pub use pushers::{NewPusher, PusherKey, StoredPusher};
pub use receipts::{NewReceipt, Receipt, UNTHREADED};
pub use remote_devices::{RemoteDevice, RemoteDeviceList};
pub use remote_media::RemoteMedia;
pub use reports::Report;
pub use room_state::{NewStateReset, StateOverride, StateResetMark};
pub use server_keys::StoredServerKey;
pub use sso::{SsoAttempt, SsoCounts, UsernameSession};
pub use streams::{DeviceListChange, Stream};
pub use to_device::{Delivery, ToDeviceMessage};
pub use uia::UiaSession;
pub use user_directory::DirectoryEntry;
pub use users::{NewUser, User};

use weft_core::config::{DatabaseConfig, DatabaseEngine};

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// When a write's commit must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Before the commit returns.
    #[default]
    Flushed,
    /// With the next flushed commit of any connection (PostgreSQL's
    /// `synchronous_commit = off`; the write-ahead log is one sequence, so a
    /// later flushed commit carries it): for writes acknowledged only after
    /// such a commit, as a federation transaction's events are by its stored
    /// answer. A crash of the database may lose them, never a process's.
    /// SQLite commits as it always does.
    WithNextFlush,
}

/// How long a pooled connection may sit idle and still be handed out
/// without a ping first.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(10);

/// The database of one Weft instance and the instance name it writes stream rows as.
#[derive(Clone, Debug)]
pub struct Storage {
    pool: AnyPool,
    dialect: Dialect,
    instance_name: String,
    /// This writer's stream ids allocated but not yet committed, per stream.
    in_flight: std::sync::Arc<positions::StreamIds>,
    /// Devices' key counts, once `keep_key_counts` allowed it.
    key_counts: std::sync::Arc<e2e_keys::KeyCountCache>,
    /// SQLite's checkpoints, run beside the requests (`checkpoints`).
    _checkpointer: Option<std::sync::Arc<checkpoints::Checkpointer>>,
}

impl Storage {
    /// Connects to the configured database (creating a SQLite file if needed).
    pub async fn connect(config: &DatabaseConfig, instance_name: &str) -> Result<Self> {
        let url = connection_url(config);
        Self::connect_url(&url, config.args.cp_min, config.args.cp_max, instance_name).await
    }

    /// Connects to a database given as a `postgres://` or `sqlite:` URL.
    pub async fn connect_url(url: &str, min: Option<u32>, max: Option<u32>, instance_name: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(url);
        let options = sqlx::any::AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .min_connections(min.unwrap_or(dialect.default_min_connections()))
            .max_connections(max.unwrap_or(dialect.default_max_connections()))
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| Box::pin(async move { dialect.prepare_connection(conn).await }))
            // sqlx pings every connection it hands out, one more round trip
            // before each query; it also pings each one it takes back, so
            // only a connection that has been idle a while needs the test.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| Box::pin(async move { Ok(meta.idle_for < IDLE_BEFORE_PING || sqlx::Connection::ping(conn).await.is_ok()) }))
            .connect_with(options)
            .await?;
        let _checkpointer = (dialect == Dialect::Sqlite).then(|| checkpoints::start(pool.clone()));
        Ok(Self {
            _checkpointer,
            pool,
            dialect,
            instance_name: instance_name.to_owned(),
            in_flight: positions::StreamIds::starting_at([0; Stream::COUNT]),
            key_counts: Default::default(),
        })
    }

    /// Brings the schema up to date. Only the main process runs this.
    pub async fn migrate(&self) -> Result<()> {
        migrations::run(&self.pool, self.dialect).await
    }

    /// Waits until the main process has brought the schema up to this
    /// binary's version (a worker started with or before main), logging
    /// every 10 s while it waits.
    pub async fn wait_for_migrations(&self) -> Result<()> {
        let wanted = migrations::latest_version();
        let started = std::time::Instant::now();
        let mut next_log = Duration::ZERO;
        loop {
            let applied = migrations::applied_version(&self.pool).await?;
            if applied > wanted {
                return Err(StorageError::SchemaTooNew { database: applied, binary: wanted });
            }
            if applied == wanted {
                return Ok(());
            }
            if started.elapsed() >= next_log {
                tracing::info!(applied, wanted, "waiting for the main process to migrate the database");
                next_log += Duration::from_secs(10);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Loads what this writer had persisted before it started. Call once, after migrating.
    pub async fn load_positions(&mut self) -> Result<()> {
        // Every row before start-up is committed: the position is the last one written.
        let mut persisted = [0; Stream::COUNT];
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT stream_name, stream_id FROM stream_positions WHERE instance_name = $1")
            .bind(&self.instance_name)
            .fetch_all(&self.pool)
            .await?;
        for (name, position) in rows {
            if let Some(stream) = Stream::ALL.iter().find(|stream| stream.as_str() == name) {
                persisted[stream.index()] = position;
            }
        }
        // Nothing of this writer is in flight at start-up, so it has persisted
        // everything up to the last id handed out on each stream (the row
        // itself may lag: see `flush_position`).
        let mut conn = self.pool.acquire().await?;
        for stream in Stream::ALL {
            if stream.is_in_database() {
                let current = self.dialect.current_stream_id(&mut conn, stream).await?;
                persisted[stream.index()] = persisted[stream.index()].max(current);
            }
        }
        drop(conn);
        self.in_flight = positions::StreamIds::starting_at(persisted);
        Ok(())
    }

    /// Starts a transaction that writes: every multi-statement write goes
    /// through here, so that SQLite writers wait for the lock instead of failing.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        self.begin_write_with(Durability::Flushed).await
    }

    async fn begin_write_with(&self, durability: Durability) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.pool.begin_with(self.dialect.begin_write_sql()).await?;
        if durability == Durability::WithNextFlush && self.dialect == Dialect::Postgres {
            sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await?;
        }
        Ok(tx)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn instance_name(&self) -> &str {
        &self.instance_name
    }

    /// Connections in use and idle, for metrics.
    pub fn pool_usage(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// Waits for queries in flight and closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn connection_url(config: &DatabaseConfig) -> String {
    let args = &config.args;
    match config.name {
        DatabaseEngine::Sqlite => {
            let path = args.database.as_deref().unwrap_or("homeserver.db");
            if path == ":memory:" { "sqlite::memory:".to_owned() } else { format!("sqlite://{path}?mode=rwc") }
        }
        DatabaseEngine::Postgres => {
            let encode = |s: &str| -> String {
                s.bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                        _ => format!("%{b:02X}"),
                    })
                    .collect()
            };
            let user = args.user.as_deref().map(encode).unwrap_or_default();
            let credentials = match (&args.user, &args.password) {
                (Some(_), Some(password)) => format!("{user}:{}@", encode(password)),
                (Some(_), None) => format!("{user}@"),
                _ => String::new(),
            };
            let host = args.host.as_deref().unwrap_or("localhost");
            let database = args.dbname.as_deref().or(args.database.as_deref()).unwrap_or("synapse");
            // A host starting with `/` is a Unix socket directory, as in libpq.
            if host.starts_with('/') {
                format!("postgres://{credentials}localhost/{}?host={}&port={}", encode(database), encode(host), args.port.unwrap_or(5432))
            } else {
                format!("postgres://{credentials}{host}:{}/{}", args.port.unwrap_or(5432), encode(database))
            }
        }
    }
}

/// Reads a flag column: BOOLEAN on PostgreSQL, INTEGER 0/1 on SQLite.
pub(crate) fn flag(row: &sqlx::any::AnyRow, column: &str) -> Result<bool> {
    use sqlx::Row;
    match row.try_get::<bool, _>(column) {
        Ok(value) => Ok(value),
        Err(_) => Ok(row.try_get::<i64, _>(column)? != 0),
    }
}

/// Text derived from event content for an index column (search, user
/// directory). PostgreSQL text cannot hold U+0000; it is dropped, on both
/// engines alike, as Synapse does for its search index.
fn index_text(text: &str) -> String {
    text.replace('\0', "")
}

/// Milliseconds since the Unix epoch: the unit of every timestamp column.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
