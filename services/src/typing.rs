//! Typing notifications: kept in memory on the `typing` stream's writer, as
//! in Synapse. Each change (a user starts, stops, or times out) takes the
//! next serial, which is the stream's position; `/sync` sends a room's
//! current typists when the room changed after the client's position. The
//! serial starts at the clock's milliseconds, so it keeps growing across a
//! restart of the writer (a client position from the future counts as 0).
//!
//! Other instances keep a mirror, fed by the writer's RDATA rows (a room
//! and its typists) and by snapshots fetched from the writer after a gap:
//! [`Mirror`] is the stream's replication handler. A row that does not
//! follow the last one seen, or a position that differs from the mirror's,
//! also triggers a fetch.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use weft_storage::Stream;

use crate::{
    replication::{Follow, StreamHandler},
    services::AppState,
};

/// The longest a client may say it will be typing for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub struct Typing {
    state: Mutex<State>,
}

impl Default for Typing {
    fn default() -> Self {
        Self { state: Mutex::new(State { serial: weft_storage::now_ms(), rooms: HashMap::new() }) }
    }
}

/// Everyone typing, as of `position`: what a reader fetches from the writer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TypingSnapshot {
    pub position: i64,
    pub rooms: Vec<(OwnedRoomId, Vec<OwnedUserId>)>,
}

#[derive(Debug, Default)]
struct State {
    serial: i64,
    rooms: HashMap<OwnedRoomId, RoomTyping>,
}

#[derive(Debug, Default)]
struct RoomTyping {
    /// The serial of the room's last change.
    serial: i64,
    until: HashMap<OwnedUserId, Instant>,
}

impl Typing {
    /// Marks `user_id` typing in a room until `timeout` from now; returns the
    /// new position. The caller arranges `expire` to run at the deadline.
    pub fn start(&self, room_id: &RoomId, user_id: &UserId, timeout: Duration) -> (i64, Instant) {
        let until = Instant::now() + timeout.min(MAX_TIMEOUT);
        let mut state = self.lock();
        state.serial += 1;
        let serial = state.serial;
        let room = state.rooms.entry(room_id.to_owned()).or_default();
        room.serial = serial;
        room.until.insert(user_id.to_owned(), until);
        (serial, until)
    }

    /// Stops `user_id` typing; `None` when they were not.
    pub fn stop(&self, room_id: &RoomId, user_id: &UserId) -> Option<i64> {
        self.remove_if(room_id, user_id, |_| true)
    }

    /// Stops `user_id` typing if their deadline is still `until` (a later
    /// `start` replaced it otherwise).
    pub fn expire(&self, room_id: &RoomId, user_id: &UserId, until: Instant) -> Option<i64> {
        self.remove_if(room_id, user_id, |current| current == until)
    }

    fn remove_if(&self, room_id: &RoomId, user_id: &UserId, matches: impl FnOnce(Instant) -> bool) -> Option<i64> {
        let mut state = self.lock();
        let next = state.serial + 1;
        let room = state.rooms.get_mut(room_id)?;
        let until = *room.until.get(user_id)?;
        if !matches(until) {
            return None;
        }
        room.until.remove(user_id);
        room.serial = next;
        state.serial = next;
        Some(next)
    }

    pub fn position(&self) -> i64 {
        self.lock().serial
    }

    /// Who is typing in `room_id` now.
    pub fn current(&self, room_id: &RoomId) -> Vec<OwnedUserId> {
        let state = self.lock();
        let now = Instant::now();
        let mut users: Vec<OwnedUserId> = state
            .rooms
            .get(room_id)
            .map(|room| room.until.iter().filter(|(_, until)| **until > now).map(|(user, _)| user.clone()).collect())
            .unwrap_or_default();
        users.sort();
        users
    }

    pub fn snapshot(&self) -> TypingSnapshot {
        let rooms: Vec<OwnedRoomId> = self.lock().rooms.keys().cloned().collect();
        let position = self.position();
        TypingSnapshot {
            position,
            rooms: rooms
                .into_iter()
                .map(|room| {
                    let users = self.current(&room);
                    (room, users)
                })
                .collect(),
        }
    }

    /// Replaces the mirror with the writer's state; rooms whose typists
    /// differ count as changed at the snapshot's position.
    pub fn restore(&self, snapshot: TypingSnapshot) {
        let mut state = self.lock();
        let until = Instant::now() + MAX_TIMEOUT;
        let mut rooms: HashMap<OwnedRoomId, RoomTyping> = HashMap::new();
        for (room_id, users) in snapshot.rooms {
            rooms.insert(room_id, RoomTyping { serial: snapshot.position, until: users.into_iter().map(|user| (user, until)).collect() });
        }
        for (room_id, room) in &state.rooms {
            if !room.until.is_empty() && !rooms.contains_key(room_id) {
                rooms.insert(room_id.clone(), RoomTyping { serial: snapshot.position, until: HashMap::new() });
            }
        }
        state.rooms = rooms;
        state.serial = snapshot.position;
    }

    /// Applies one RDATA row of the writer, `[room_id, [user_ids], ...]`;
    /// `false` when the row is malformed.
    pub fn apply_row(&self, row: &serde_json::Value, position: i64) -> bool {
        let Some(room_id) = row.get(0).and_then(|v| v.as_str()).and_then(|v| OwnedRoomId::try_from(v).ok()) else { return false };
        let Some(users) = row.get(1).and_then(|v| serde_json::from_value::<Vec<OwnedUserId>>(v.clone()).ok()) else { return false };
        let until = Instant::now() + MAX_TIMEOUT;
        let mut state = self.lock();
        state.serial = state.serial.max(position);
        let room = state.rooms.entry(room_id).or_default();
        room.serial = position;
        room.until = users.into_iter().map(|user| (user, until)).collect();
        true
    }

    /// Every room whose typists changed after `since`, with who types there now.
    pub fn rooms_changed_since(&self, since: i64) -> Vec<(OwnedRoomId, Vec<OwnedUserId>)> {
        let rooms: Vec<OwnedRoomId> = self.lock().rooms.iter().filter(|(_, room)| room.serial > since).map(|(room_id, _)| room_id.clone()).collect();
        rooms
            .into_iter()
            .map(|room_id| {
                let users = self.current(&room_id);
                (room_id, users)
            })
            .collect()
    }

    /// The room's typists if it changed after `since` (capped to the current
    /// position, see the module doc).
    pub fn changed_since(&self, room_id: &RoomId, since: i64) -> Option<Vec<OwnedUserId>> {
        let state = self.lock();
        let since = if since > state.serial { 0 } else { since };
        let room = state.rooms.get(room_id)?;
        if room.serial <= since {
            return None;
        }
        let now = Instant::now();
        let mut users: Vec<OwnedUserId> = room.until.iter().filter(|(_, until)| **until > now).map(|(user, _)| user.clone()).collect();
        users.sort();
        Some(users)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The `typing` stream's replication handler: keeps this instance's mirror
/// up to date from the writer's rows, and fetches the writer's state when a
/// row or position shows the mirror missed something.
pub struct Mirror;

impl StreamHandler for Mirror {
    fn stream(&self) -> Stream {
        Stream::Typing
    }

    fn row(&self, state: &AppState, writer: &str, token: i64, row: &serde_json::Value) -> Follow {
        let known = state.notifier.writer_position(Stream::Typing, writer);
        if token <= known {
            return Follow::Hold;
        }
        if token != known + 1 || !state.typing.apply_row(row, token) {
            fetch(state);
            return Follow::Hold;
        }
        Follow::Advance
    }

    fn position(&self, state: &AppState, writer: &str, position: i64) -> Follow {
        if position != state.notifier.writer_position(Stream::Typing, writer) {
            fetch(state);
            return Follow::Hold;
        }
        Follow::Advance
    }

    fn caught_up(&self, state: &AppState) {
        if !state.replication.writers().writes(Stream::Typing) {
            fetch(state);
        }
    }
}

/// Fetches the typing state from its writer in the background, so that a
/// writer that is down holds up nothing else.
fn fetch(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let writer = state.replication.writers().writer_of(Stream::Typing).to_owned();
        match crate::replication::room_writes::fetch_typing(&state, &writer).await {
            Ok(snapshot) => {
                let position = snapshot.position;
                state.typing.restore(snapshot);
                state.notifier.advance(Stream::Typing, &writer, position);
            }
            Err(error) => tracing::warn!(%error, "replication: cannot fetch typing state from its writer"),
        }
    });
}
