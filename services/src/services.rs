//! The state every request handler shares: configuration, storage, keys and
//! limiters, built once at start-up from the configuration.
//!
//! Handlers receive `AppState` (an `Arc<Services>`); nothing here is global,
//! so several instances can live in one process (the tests do). Every service
//! module of this crate reaches the others through it, which is why they
//! share one crate.
//!
//! May call: every module of this crate, `weft_core`, `weft_storage`,
//! `weft_plugin_runtime` (through `plugins`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use ruma::OwnedServerName;

use weft_core::config::Config;
use weft_core::crypto::server_key::{SigningKey, SigningKeyError};
use weft_core::ratelimit::RateLimiters;
use weft_storage::{Storage, StorageError, Stream};

use crate::{
    plugins::{AppserviceNotifiers, HostedPlugins, LiveServices, LoadError, PusherPlugins, SpamCheckers},
    rooms::Rooms,
    sync::Notifier,
};

pub type AppState = Arc<Services>;

pub struct Services {
    pub config: Config,
    pub server_name: OwnedServerName,
    pub storage: Storage,
    pub signing_key: Arc<SigningKey>,
    /// Other servers: discovery, the signed outbound client, their keys,
    /// and checking the signatures of their requests.
    pub federation: weft_federation::Federation,
    pub rate_limits: RateLimiters,
    /// The shared secret of `/_synapse/admin/v1/register`, read from the
    /// configuration or its `_path` file at start-up.
    pub registration_shared_secret: Option<String>,
    /// Nonces handed out by the shared-secret registration API, each usable
    /// once within a minute. In memory: the admin API is served by main only.
    pub admin_nonces: Mutex<HashMap<String, Instant>>,
    /// The spam-checker plugins in configuration order, run here or sent to
    /// the instances that host them (empty: every check allows at no cost).
    /// See `crate::plugins::spam`.
    pub spam_checker: SpamCheckers,
    /// The pusher plugins in configuration order, run here or sent to the
    /// instances that host them: `/pushers/set` asks them whether a pusher
    /// is valid (`check_pusher`), the push sender delivers through them.
    pub pushers: PusherPlugins,
    /// The appservice notifier plugin, run here or on the instance that
    /// hosts it (`notify_appservices_from_worker`): see `crate::appservices`.
    pub appservices: AppserviceNotifiers,
    /// The `sso-provider` plugins, run here or sent to the instances that
    /// host them, and the identity providers they stand for.
    pub sso: crate::sso::SsoLogins,
    /// The plugins this instance runs (of every role), which the internal
    /// route runs for the other instances.
    pub hosted_plugins: HostedPlugins,
    /// The event pipeline and its per-room locks.
    pub rooms: Rooms,
    /// Stream positions readers may trust, and the wake-ups of `/sync`.
    pub notifier: Notifier,
    /// What `/sync` shares between listeners and keeps between requests.
    pub sync_caches: crate::sync::SyncCaches,
    /// Who is typing where (this instance writes the `typing` stream).
    pub typing: crate::typing::Typing,
    /// Who is syncing here, for the presence timer.
    pub presence: crate::presence::Presence,
    /// Who owns each access token in use (`crate::token_owners`).
    pub token_owners: crate::token_owners::TokenOwnerCache,
    /// Users' push rules, for evaluating every event.
    pub push_rulesets: crate::push::RulesetCache,
    /// Who writes what, the bus to the other processes, and calls to them.
    pub replication: crate::replication::Replication,
    /// The media repository, on the instances that run it.
    pub media: Option<crate::media::MediaRepository>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    SigningKey(#[from] SigningKeyError),
    #[error(transparent)]
    Plugin(#[from] LoadError),
    #[error("`server_name` `{0}` is not valid")]
    ServerName(String),
    #[error("cannot set up replication over Redis: {0}")]
    Replication(#[from] redis::RedisError),
    #[error("cannot open the media store {path}: {source}")]
    MediaStore { path: String, source: std::io::Error },
    #[error("ip_range_blacklist or ip_range_whitelist: {0}")]
    AddressPolicy(String),
    #[error(transparent)]
    Federation(#[from] weft_federation::FederationError),
    #[error("cannot read registration_shared_secret_path {path}: {source}")]
    SharedSecret { path: String, source: std::io::Error },
}

impl Services {
    /// Wakes `/sync` for what this writer has committed on `stream`, and
    /// tells the other processes; call after a commit.
    pub fn stream_advanced(&self, stream: Stream) {
        let position = self.storage.persisted_position(stream);
        self.notifier.notify(stream, position);
        self.replication.announce_rows(stream, position, Vec::new());
    }

    /// `stream_advanced` for events persisted into `room_id`.
    pub fn events_persisted(&self, room_id: &str, event_ids: &[&str]) {
        let position = self.storage.persisted_position(Stream::Events);
        self.notifier.notify(Stream::Events, position);
        self.replication.announce_rows(Stream::Events, position, vec![room_id.into(), event_ids.into()]);
    }

    /// Typing in `room_id` changed, as of `position`.
    pub fn typing_changed(&self, room_id: &ruma::RoomId, position: i64) {
        self.notifier.notify(Stream::Typing, position);
        let users = self.typing.current(room_id);
        self.replication.announce_rows(Stream::Typing, position, vec![room_id.as_str().into(), serde_json::json!(users)]);
    }

    /// Connects to the database, migrates it (main only), and loads keys
    /// (main generates a missing signing key; a worker needs main's).
    pub async fn build(config: Config) -> Result<AppState, StartupError> {
        let storage = Storage::connect(&config.database, config.instance_name()).await?;
        Self::build_with_storage(config, storage).await
    }

    pub async fn build_with_storage(config: Config, mut storage: Storage) -> Result<AppState, StartupError> {
        let server_name = OwnedServerName::try_from(config.server_name()).map_err(|_| StartupError::ServerName(config.server_name().to_owned()))?;
        // The key first: a worker waiting for the schema may load it as soon as the schema is ready.
        let key_path = config.signing_key_path.clone().unwrap_or_else(|| format!("{}.signing.key", config.server_name()).into());
        let (signing_key, generated) = SigningKey::load_or_generate(&key_path, config.is_main_process())?;
        if generated {
            tracing::info!(path = %key_path.display(), key_id = %signing_key.key_id(), "generated a new signing key");
        }
        if config.is_main_process() {
            storage.migrate().await?;
            register_appservice_senders(&config, &storage).await?;
        } else {
            storage.wait_for_migrations().await?;
        }
        storage.load_positions().await?;
        if !config.has_workers() {
            // Every write of a device's keys goes through this process.
            storage.keep_key_counts();
        }
        let mut replication = crate::replication::Replication::from_config(&config)?;
        replication.register(Arc::new(crate::typing::Mirror));
        replication.register(Arc::new(crate::presence::RemoteSyncs::default()));
        let typing = crate::typing::Typing::default();
        let recorded = storage.recorded_positions().await?;
        let notifier = Notifier::new(replication.writers().clone(), |stream, writer| {
            if writer == config.instance_name() {
                if stream.is_in_database() { storage.persisted_position(stream) } else { typing.position() }
            } else {
                recorded.iter().find(|(s, w, _)| *s == stream && w == writer).map_or(0, |(_, _, position)| *position)
            }
        });
        let registration_shared_secret = match (&config.registration_shared_secret, &config.registration_shared_secret_path) {
            (Some(secret), _) => Some(secret.clone()),
            (None, Some(path)) => {
                Some(std::fs::read_to_string(path).map_err(|source| StartupError::SharedSecret { path: path.display().to_string(), source })?.trim().to_owned())
            }
            (None, None) => None,
        };
        // Plugins keep their key-value state in the database, read it through the homeserver view,
        // and reach only the addresses `ip_range_blacklist` and `ip_range_whitelist` allow.
        let address_policy = crate::plugins::address_policy(&config).map_err(StartupError::AddressPolicy)?;
        let plugin_services = Arc::new(
            LiveServices::new(Arc::new(crate::plugins::StorageKv(storage.clone())))
                .with_homeserver(Arc::new(crate::plugins::StorageView::new(storage.clone())))
                .with_address_policy(address_policy),
        );
        let media = crate::media::MediaRepository::from_config(&config)
            .map_err(|source| StartupError::MediaStore { path: config.media_store_path().display().to_string(), source })?;
        let plugins = crate::plugins::load_all(&config, plugin_services, &replication.client).await?;
        let signing_key = Arc::new(signing_key);
        let internal: Arc<dyn weft_federation::egress::InternalTransport> = Arc::new(replication.client.clone());
        let federation = weft_federation::Federation::from_config(&config, server_name.clone(), signing_key.clone(), storage.clone(), Some(internal))?;
        Ok(Arc::new(Self {
            spam_checker: plugins.spam_checker,
            pushers: plugins.pushers,
            appservices: plugins.appservices,
            sso: crate::sso::SsoLogins::new(plugins.sso),
            hosted_plugins: plugins.hosted,
            rate_limits: RateLimiters::from_config(&config),
            server_name,
            storage,
            signing_key,
            federation,
            registration_shared_secret,
            admin_nonces: Mutex::new(HashMap::new()),
            rooms: Rooms::default(),
            notifier,
            typing,
            replication,
            media,
            presence: Default::default(),
            push_rulesets: Default::default(),
            token_owners: Default::default(),
            sync_caches: Default::default(),
            config,
        }))
    }
}

/// Each appservice's sender user gets an account (no password) if it has
/// none, so that it has a profile and shows up as any user does.
async fn register_appservice_senders(config: &Config, storage: &Storage) -> Result<(), StartupError> {
    for service in config.app_services.all() {
        if storage.user(&service.sender).await?.is_some() {
            continue;
        }
        let user = weft_storage::NewUser { user_id: &service.sender, password_hash: None, admin: false, shadow_banned: false, user_type: None };
        match storage.create_user(user, None).await {
            Ok(()) => tracing::info!(user_id = %service.sender, appservice = %service.id, "registered an appservice's sender user"),
            Err(weft_storage::StorageError::Conflict) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(())
}
