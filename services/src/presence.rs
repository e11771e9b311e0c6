//! Presence: who is online, idle or offline, as Synapse decides it. Setting
//! a state (`PUT /presence`, or `/sync`'s `set_presence`) writes a row of the
//! `presence` stream; a timer on the stream's writer moves users who stopped
//! acting to `unavailable` after `IDLE_TIMEOUT`, and users who stopped
//! syncing to `offline` after `SYNC_TIMEOUT` (a user with a long-poll open is
//! syncing). Disabled entirely by `presence.enabled = false`.
//!
//! A user syncing on another process counts as syncing: that process
//! announces it with USER_SYNC (and repeats it every `USER_SYNC_REFRESH`);
//! [`RemoteSyncs`], the stream's replication handler, takes it on the writer.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use futures_util::{FutureExt, future::BoxFuture};
use ruma::{OwnedUserId, UserId};

use weft_storage::{NewPresence, StorageError, Stream, now_ms};

use crate::{
    replication::{Command, StreamHandler},
    services::{AppState, Services},
};

/// The states a user may set (`PUT /presence`, `/sync`'s `set_presence`).
pub const SETTABLE_STATES: [&str; 3] = ["online", "unavailable", "offline"];

/// Online users who do nothing for this long become `unavailable` (Synapse's IDLE_TIMER).
pub const IDLE_TIMEOUT_MS: i64 = 5 * 60 * 1000;
/// Users who stop syncing for this long go `offline` (Synapse's SYNC_ONLINE_TIMEOUT).
pub const SYNC_TIMEOUT_MS: i64 = 30 * 1000;
/// Activity within this long counts as `currently_active` (Synapse's LAST_ACTIVE_GRANULARITY).
pub const ACTIVE_MS: i64 = 60 * 1000;
/// How often the timer looks for idle and gone users.
pub const TIMER_INTERVAL: Duration = Duration::from_secs(5);

/// How often a worker repeats USER_SYNC for the users syncing on it.
pub const USER_SYNC_REFRESH: Duration = Duration::from_secs(10);

/// A user reported syncing by another process counts as syncing this long
/// after the last report (reports repeat every `USER_SYNC_REFRESH`).
const REMOTE_SYNC_EXPIRY: Duration = Duration::from_secs(30);

/// The users with a `/sync` open on this instance, and on the presence
/// writer, those other processes reported (USER_SYNC).
#[derive(Debug, Default)]
pub struct Presence {
    syncing: Mutex<HashMap<OwnedUserId, usize>>,
    /// `(process id, user id)` → when last reported.
    remote: Mutex<HashMap<(String, String), Instant>>,
    /// On the writer: the state each user's row was last seen in by a sync,
    /// and when that sync recorded itself (`touched`).
    touched: Mutex<HashMap<OwnedUserId, (String, Instant)>>,
}

/// A sync that finds the user's row in the state it asks for records itself
/// at most this often: the row's `last_sync_ts` only matters to the timer,
/// which waits `SYNC_TIMEOUT_MS` and also counts users syncing right now.
const TOUCH_INTERVAL: Duration = Duration::from_secs(5);
/// Most users whose last touch is remembered.
const MAX_TOUCHED: usize = 100_000;

/// Marks a user as syncing until dropped.
pub struct Syncing<'a> {
    presence: &'a Presence,
    user_id: OwnedUserId,
}

impl Drop for Syncing<'_> {
    fn drop(&mut self) {
        let mut syncing = self.presence.syncing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = syncing.get_mut(&self.user_id) {
            *count -= 1;
            if *count == 0 {
                syncing.remove(&self.user_id);
            }
        }
    }
}

impl Presence {
    pub fn syncing(&self, user_id: &UserId) -> Syncing<'_> {
        *self.syncing.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).entry(user_id.to_owned()).or_default() += 1;
        Syncing { presence: self, user_id: user_id.to_owned() }
    }

    fn is_syncing(&self, user_id: &str) -> bool {
        self.syncing.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).keys().any(|user| user.as_str() == user_id)
            || self
                .remote
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .iter()
                .any(|((_, user), at)| user == user_id && at.elapsed() < REMOTE_SYNC_EXPIRY)
    }

    fn touched_recently(&self, user_id: &UserId, state: &str) -> bool {
        let touched = self.touched.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        touched.get(user_id).is_some_and(|(held, at)| held == state && at.elapsed() < TOUCH_INTERVAL)
    }

    fn set_touched(&self, user_id: &UserId, state: Option<&str>) {
        let mut touched = self.touched.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match state {
            Some(state) => {
                if touched.len() >= MAX_TOUCHED {
                    touched.clear();
                }
                touched.insert(user_id.to_owned(), (state.to_owned(), Instant::now()));
            }
            None => {
                touched.remove(user_id);
            }
        }
    }

    fn syncing_users(&self) -> Vec<OwnedUserId> {
        self.syncing.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).keys().cloned().collect()
    }
}

fn writes_presence(services: &Services) -> bool {
    services.replication.writers().writes(Stream::Presence)
}

fn user_sync(services: &Services, user_id: &str, syncing: bool) -> crate::replication::Command {
    crate::replication::Command::UserSync {
        process_id: services.replication.process_id().to_owned(),
        user_id: user_id.to_owned(),
        device_id: None,
        syncing,
        last_sync_ms: now_ms(),
    }
}

/// On a process that does not write presence: repeats USER_SYNC for every
/// user syncing here, so the writer keeps them online.
pub fn refresh_remote_syncs(services: &Services) {
    if !services.config.presence.enabled || writes_presence(services) {
        return;
    }
    for user_id in services.presence.syncing_users() {
        services.replication.publish(&user_sync(services, user_id.as_str(), true));
    }
}

/// On the presence writer: another process reports a user syncing (or not).
pub async fn remote_sync(services: &Services, process_id: &str, user_id: &str, syncing: bool, _last_sync_ms: i64) {
    if !services.config.presence.enabled || !writes_presence(services) {
        return;
    }
    let key = (process_id.to_owned(), user_id.to_owned());
    {
        let mut remote = services.presence.remote.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !syncing {
            remote.remove(&key);
            return;
        }
        remote.retain(|_, at| at.elapsed() < REMOTE_SYNC_EXPIRY);
        remote.insert(key, Instant::now());
    }
    if let Ok(user_id) = <&UserId>::try_from(user_id)
        && let Err(error) = on_sync(services, user_id, "online").await
    {
        tracing::warn!(%error, "cannot record a user syncing elsewhere");
    }
}

/// On the presence writer: a `/sync` on another process asked for a state
/// other than `online`. The user counts as syncing there (as USER_SYNC
/// would say) and the state is applied as for a sync here.
pub async fn remote_sync_state(services: &Services, process_id: &str, user_id: &UserId, set_presence: &str) -> Result<(), StorageError> {
    if services.config.presence.enabled && set_presence != "offline" {
        let mut remote = services.presence.remote.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        remote.retain(|_, at| at.elapsed() < REMOTE_SYNC_EXPIRY);
        remote.insert((process_id.to_owned(), user_id.as_str().to_owned()), Instant::now());
    }
    on_sync(services, user_id, set_presence).await
}

/// Marks `user_id` as syncing here for as long as the guard lives, except on
/// a process that does not write presence when the sync asked for another
/// state than `online`: the writer was told directly, and USER_SYNC (which
/// means "online") must not contradict it.
pub fn track_sync<'a>(services: &'a Services, user_id: &UserId, set_presence: &str) -> Option<Syncing<'a>> {
    (writes_presence(services) || set_presence == "online").then(|| services.presence.syncing(user_id))
}

/// On the presence writer: a process stopped; its users no longer sync there.
pub fn clear_remote_syncs(services: &Services, process_id: &str) {
    services.presence.remote.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|(process, _), _| process != process_id);
}

/// Sets a user's state (and status message when given) as they asked.
pub async fn set(services: &Services, user_id: &UserId, state: &str, status_msg: Option<Option<&str>>) -> Result<(), StorageError> {
    if !services.config.presence.enabled {
        return Ok(());
    }
    let now = now_ms();
    let current = services.storage.presence(user_id).await?;
    let status = match status_msg {
        Some(status) => status.map(str::to_owned),
        None => current.as_ref().and_then(|row| row.status_msg.clone()),
    };
    let active = state == "online";
    let last_active = if active { now } else { current.as_ref().map_or(now, |row| row.last_active_ts) };
    write(services, user_id, state, status.as_deref(), last_active, now, active).await
}

/// A `/sync` with `set_presence` (`online` unless the client says otherwise).
pub async fn on_sync(services: &Services, user_id: &UserId, set_presence: &str) -> Result<(), StorageError> {
    if !services.config.presence.enabled || set_presence == "offline" {
        return Ok(());
    }
    if !writes_presence(services) {
        if set_presence != "online" {
            sync_state_on_writer(services, user_id, set_presence).await;
            return Ok(());
        }
        // The writer marks the user online; repeated while they keep syncing.
        if !services.presence.is_syncing(user_id.as_str()) {
            services.replication.publish(&user_sync(services, user_id.as_str(), true));
        }
        return Ok(());
    }
    if services.presence.touched_recently(user_id, set_presence) {
        return Ok(());
    }
    let now = now_ms();
    match services.storage.presence(user_id).await? {
        Some(row) if row.state == set_presence || (set_presence == "online" && row.state == "unavailable" && now - row.last_active_ts > IDLE_TIMEOUT_MS) => {
            // Syncing alone is not activity: an idle user stays idle.
            services.storage.touch_presence_sync(user_id, now).await?;
            if row.state == set_presence {
                services.presence.set_touched(user_id, Some(set_presence));
            }
            Ok(())
        }
        current => {
            let status = current.as_ref().and_then(|row| row.status_msg.clone());
            let active = set_presence == "online";
            let last_active = if active { now } else { current.as_ref().map_or(now, |row| row.last_active_ts) };
            write(services, user_id, set_presence, status.as_deref(), last_active, now, active).await?;
            services.presence.set_touched(user_id, Some(set_presence));
            Ok(())
        }
    }
}

/// Longest a `/sync` waits for the presence writer to record a state it asked for.
const SYNC_STATE_TIMEOUT: Duration = Duration::from_secs(2);

/// On a process that does not write presence: a `/sync` asking for a state
/// other than `online` has the writer apply it (as Synapse's workers do), and
/// waits until it has seen the writer's position so the sync can include it.
/// A writer that does not answer in time is logged; the sync goes on.
async fn sync_state_on_writer(services: &Services, user_id: &UserId, set_presence: &str) {
    let writer = services.replication.writers().writer_of(Stream::Presence).to_owned();
    let process_id = services.replication.process_id();
    let body = serde_json::json!({ "process_id": process_id, "user_id": user_id, "set_presence": set_presence }).to_string();
    match services.replication.client.attempt(&writer, SYNC_STATE_PATH, body.into(), SYNC_STATE_TIMEOUT).await {
        Ok(reply) if reply.status.is_success() => {
            let positions = crate::replication::client::decode_positions(&reply.positions);
            crate::replication::client::wait_for_positions(&services.notifier, &positions).await;
        }
        Ok(reply) => tracing::warn!(%writer, status = %reply.status, "the presence writer refused a sync's presence state"),
        Err(error) => tracing::warn!(%writer, %error, "the presence writer did not record a sync's presence state"),
    }
}

/// The internal API path on the presence writer for a worker's `/sync` state.
pub const SYNC_STATE_PATH: &str = "/_weft/replication/v1/presence/sync";

async fn write(
    services: &Services,
    user_id: &UserId,
    state: &str,
    status_msg: Option<&str>,
    last_active_ts: i64,
    last_sync_ts: i64,
    currently_active: bool,
) -> Result<(), StorageError> {
    let presence = NewPresence { state, status_msg, last_active_ts, last_sync_ts, currently_active };
    services.presence.set_touched(user_id, None);
    services.storage.set_presence(user_id, presence).await?;
    services.stream_advanced(Stream::Presence);
    Ok(())
}

/// One pass of the timer: idle users become `unavailable`, gone ones `offline`.
pub async fn expire(services: &Services) -> Result<(), StorageError> {
    let now = now_ms();
    for row in services.storage.present_users().await? {
        let Ok(user_id) = <&UserId>::try_from(row.user_id.as_str()) else { continue };
        if user_id.server_name() != services.server_name {
            // Another server's user: their server says when they go idle or offline.
            if now - row.last_sync_ts > crate::federation::presence::REMOTE_TIMEOUT_MS {
                write(services, user_id, "offline", row.status_msg.as_deref(), row.last_active_ts, row.last_sync_ts, false).await?;
            }
            continue;
        }
        let gone = now - row.last_sync_ts > SYNC_TIMEOUT_MS && !services.presence.is_syncing(&row.user_id);
        let (state, active) = if gone {
            ("offline", false)
        } else if row.state == "online" && now - row.last_active_ts > IDLE_TIMEOUT_MS {
            ("unavailable", false)
        } else if row.currently_active && now - row.last_active_ts > ACTIVE_MS {
            (row.state.as_str(), false)
        } else {
            continue;
        };
        write(services, user_id, state, row.status_msg.as_deref(), row.last_active_ts, row.last_sync_ts, active).await?;
    }
    Ok(())
}

/// The `presence` stream's replication handler: announces this process's
/// syncing users after a (re)connect and every `USER_SYNC_REFRESH`, and on
/// the writer takes other processes' USER_SYNC and CLEAR_USER_SYNC.
pub struct RemoteSyncs {
    last_refresh: Mutex<Instant>,
}

impl Default for RemoteSyncs {
    fn default() -> Self {
        Self { last_refresh: Mutex::new(Instant::now()) }
    }
}

impl StreamHandler for RemoteSyncs {
    fn stream(&self) -> Stream {
        Stream::Presence
    }

    fn caught_up(&self, state: &AppState) {
        refresh_remote_syncs(state);
    }

    fn tick(&self, state: &AppState) {
        {
            let mut last = self.last_refresh.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if last.elapsed() < USER_SYNC_REFRESH {
                return;
            }
            *last = Instant::now();
        }
        refresh_remote_syncs(state);
    }

    fn command(&self, state: &AppState, command: &Command) -> Option<BoxFuture<'static, ()>> {
        match command {
            Command::UserSync { process_id, user_id, syncing, last_sync_ms, .. } => {
                let (state, process_id, user_id, syncing, last_sync_ms) = (state.clone(), process_id.clone(), user_id.clone(), *syncing, *last_sync_ms);
                Some(async move { remote_sync(&state, &process_id, &user_id, syncing, last_sync_ms).await }.boxed())
            }
            Command::ClearUserSync { process_id } => {
                clear_remote_syncs(state, process_id);
                None
            }
            _ => None,
        }
    }
}
