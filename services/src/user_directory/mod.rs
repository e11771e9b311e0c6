//! The user directory: whom a local user finds with `/user_directory/search`.
//! As Synapse with `user_directory.search_all_users: false`, a searcher finds
//! the users joined to a public room (join rule `public` or history
//! visibility `world_readable`) and those sharing a room with them.
//!
//! One instance keeps the directory: the one `update_user_directory_from_worker`
//! names (main when unset). Its updater, started with the server, follows the
//! events stream from the position saved in the database up to what the
//! notifier says is persisted, in batches, and wakes when the notifier moves.
//! It reacts to memberships (joins, leaves, and the profile a member event
//! carries: profile changes arrive as member events) and to join rules and
//! history visibility (a room turning public or private). Handling an event
//! re-derives rows from the room's current state, so events may be replayed
//! safely and a restart resumes from the saved position without missing any.
//! The position is saved after a batch that held such events, and otherwise
//! once per `SAVE_INTERVAL`: most events are messages, and a write per
//! message would be one more commit to flush beside every send's own.
//!
//! A local user's entry shows their global profile (as in Synapse, not a
//! per-room nickname); a remote user's, the profile in their member event.
//!
//! An event it cannot handle is skipped by the rule of [`crate::jobs`].
//!
//! May call: `weft_storage`, the notifier, jobs. Must not: write anything but the
//! directory's tables.

mod words;

use std::time::Duration;

use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::Value;
use tokio::sync::watch;

use weft_core::config::{Config, MAIN_INSTANCE};
use weft_storage::{DirectoryEntry, Storage, StorageError, StoredEvent, Stream};

use crate::services::{AppState, Services};

/// Events read per batch.
const BATCH: i64 = 500;
/// The longest the saved position lags behind the events handled while
/// they change nothing here: at most one write per interval for them.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// The most matches ranked for one search (Synapse ranks at most 10 000 too).
const MAX_CANDIDATES: i64 = 10_000;
/// How long to wait before trying again after a database error.
const RETRY_DELAY: Duration = Duration::from_secs(5);
/// The least time between two catch-ups: under a stream of messages the
/// notifier moves for every event, and one catch-up per event would cost
/// two queries each for what is almost never a membership or profile change.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// Whether this instance keeps the directory up to date.
pub fn updates_here(config: &Config) -> bool {
    config.update_user_directory_from_worker.as_deref().unwrap_or(MAIN_INSTANCE) == config.instance_name()
}

/// Up to `limit` entries matching `term` that `searcher` may see, best first,
/// and whether more matched.
pub async fn search(storage: &Storage, searcher: &UserId, term: &str, limit: usize) -> Result<(Vec<DirectoryEntry>, bool), StorageError> {
    let query = words::query_words(term);
    if query.is_empty() {
        return Ok((Vec::new(), false));
    }
    let matches = storage.search_user_directory(searcher, &query, MAX_CANDIDATES).await?;
    let mut ranked = words::rank(matches, &query);
    let limited = ranked.len() > limit;
    ranked.truncate(limit);
    Ok((ranked, limited))
}

/// The updater: catches up, then waits for the events stream to move, until `stopped`.
pub async fn run(state: AppState, mut stopped: watch::Receiver<bool>) {
    let mut positions = state.notifier.subscribe();
    // Read from the database once, then kept here: the notifier wakes this
    // loop for every stream, and most wake-ups find nothing new.
    let mut position = None;
    loop {
        let delay = match catch_up(&state, &stopped, &mut position).await {
            Ok(()) => None,
            Err(error) => {
                tracing::warn!(%error, "the user directory updater failed; retrying");
                Some(RETRY_DELAY)
            }
        };
        let caught_up = tokio::time::Instant::now();
        let save_due = position.as_ref().filter(|position| position.at > position.saved).map(|position| position.saved_at + SAVE_INTERVAL);
        let save_now = tokio::select! {
            moved = positions.changed(), if delay.is_none() => {
                if moved.is_err() {
                    break;
                }
                false
            }
            _ = tokio::time::sleep(delay.unwrap_or_default()), if delay.is_some() => continue,
            _ = tokio::time::sleep_until(save_due.unwrap_or(caught_up)), if delay.is_none() && save_due.is_some() => true,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        if save_now {
            if let Some(position) = &mut position
                && let Err(error) = save(&state.storage, position).await
            {
                tracing::warn!(%error, "the user directory updater could not save its position");
            }
            continue;
        }
        tokio::time::sleep_until(caught_up + MIN_INTERVAL).await;
    }
    if let Some(position) = &mut position
        && position.at > position.saved
        && let Err(error) = save(&state.storage, position).await
    {
        tracing::warn!(%error, "the user directory updater could not save its position on stop");
    }
}

/// How far the updater has handled the events stream, and saved that.
struct Position {
    at: i64,
    saved: i64,
    saved_at: tokio::time::Instant,
}

/// Saves the position handled. After a failure the next save comes an
/// interval later, and a start meanwhile reads again from the last one saved.
async fn save(storage: &Storage, position: &mut Position) -> Result<(), StorageError> {
    position.saved_at = tokio::time::Instant::now();
    storage.set_user_directory_position(position.at).await?;
    position.saved = position.at;
    Ok(())
}

async fn catch_up(state: &Services, stopped: &watch::Receiver<bool>, position: &mut Option<Position>) -> Result<(), StorageError> {
    let position = match position {
        Some(position) => position,
        None => {
            let saved = state.storage.user_directory_position().await?;
            position.insert(Position { at: saved, saved, saved_at: tokio::time::Instant::now() })
        }
    };
    loop {
        let upto = state.notifier.position(Stream::Events);
        if position.at >= upto || *stopped.borrow() {
            return Ok(());
        }
        let events = state.storage.user_directory_events(position.at, upto, BATCH).await?;
        let reached = match events.last() {
            Some(last) if events.len() as i64 == BATCH => last.stream_ordering,
            _ => upto,
        };
        for event in &events {
            crate::jobs::process_item("user_directory", event.event_id.as_str(), &state.storage, || apply(state, event)).await?;
        }
        position.at = reached;
        if !events.is_empty() || position.saved_at.elapsed() >= SAVE_INTERVAL {
            save(&state.storage, position).await?;
        }
    }
}

async fn apply(state: &Services, event: &StoredEvent) -> Result<(), StorageError> {
    match (event.kind.as_str(), event.state_key.as_deref()) {
        ("m.room.member", Some(state_key)) => match OwnedUserId::try_from(state_key) {
            Ok(user_id) => member_changed(state, &event.room_id, &user_id).await,
            Err(_) => Ok(()),
        },
        ("m.room.join_rules" | "m.room.history_visibility", Some("")) => {
            let public = room_is_public(&state.storage, &event.room_id).await?;
            if state.storage.user_directory_room_public(&event.room_id).await? != Some(public) {
                state.storage.rebuild_user_directory_room(&event.room_id, public).await?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Brings the directory in line with the user's current membership of the room.
async fn member_changed(state: &Services, room_id: &RoomId, user_id: &UserId) -> Result<(), StorageError> {
    let member = state.storage.current_state_event(room_id, "m.room.member", user_id.as_str()).await?;
    let content = member.as_ref().map(content).unwrap_or(Value::Null);
    if content["membership"] != "join" {
        return state.storage.remove_user_directory_member(room_id, user_id).await;
    }
    let public = match state.storage.user_directory_room_public(room_id).await? {
        Some(public) => public,
        None => {
            // A room not seen before: record it, with whoever is joined already.
            let public = room_is_public(&state.storage, room_id).await?;
            state.storage.rebuild_user_directory_room(room_id, public).await?;
            public
        }
    };
    let local = user_id.server_name() == state.server_name;
    let (display_name, avatar_url) = if local {
        let profile = state.storage.profile(user_id).await?;
        (text(profile.get("displayname")), text(profile.get("avatar_url")))
    } else {
        (text(content.get("displayname")), text(content.get("avatar_url")))
    };
    let words = words::index_words(user_id, display_name.as_deref());
    let entry = DirectoryEntry { user_id: user_id.to_owned(), display_name, avatar_url };
    state.storage.add_user_directory_member(room_id, &entry, &words, public, local).await
}

/// Synapse's test: joinable by anyone, or readable by anyone.
async fn room_is_public(storage: &Storage, room_id: &RoomId) -> Result<bool, StorageError> {
    let setting = |event: Option<StoredEvent>, key: &str| event.map(|event| content(&event)[key].clone()).unwrap_or(Value::Null);
    let join_rule = setting(storage.current_state_event(room_id, "m.room.join_rules", "").await?, "join_rule");
    if join_rule == "public" {
        return Ok(true);
    }
    let visibility = setting(storage.current_state_event(room_id, "m.room.history_visibility", "").await?, "history_visibility");
    Ok(visibility == "world_readable")
}

fn content(event: &StoredEvent) -> Value {
    serde_json::from_str::<Value>(&event.json).map(|mut pdu| pdu["content"].take()).unwrap_or(Value::Null)
}

fn text(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).filter(|text| !text.is_empty()).map(str::to_owned)
}
