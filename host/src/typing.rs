//! Typing notifications: kept in memory on the `typing` stream's writer, as
//! in Synapse. Each change (a user starts, stops, or times out) takes the
//! next serial, which is the stream's position; `/sync` sends a room's
//! current typists when the room changed after the client's position. The
//! serial restarts at 0 with the process, so a client position from before a
//! restart counts as 0.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

/// The longest a client may say it will be typing for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
pub struct Typing {
    state: Mutex<State>,
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
