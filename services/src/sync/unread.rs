//! Unread counts kept per user and room between syncs, so that a listener
//! woken by one new event does not count its unread notifications again.
//!
//! An entry holds the counts as of the room's events up to a position,
//! with what they were counted against (`UnreadBase`: the user's read
//! receipts and membership). Push actions are written with their event
//! and never change, so a later position's counts are the entry's plus
//! the actions of the room's new events that the entry's receipts and
//! membership leave unread. Those actions are read once per room and
//! window for every listener (`actions`). The entry is read again from
//! the database when a receipt may have been written since (the
//! `receipts` stream's `progress` moved), when the user's own member event
//! (or a state reset) is among the new events, or when the recent-events
//! log does not hold the window.
//!
//! May call: `weft_storage`, `recent`, `shared`.

use std::{collections::HashMap, sync::Mutex};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use weft_storage::{StorageError, Stream, UnreadBase};

use super::shared::Shared;
use crate::services::Services;

/// Most `(user, room)` entries kept; all are forgotten past it.
const MAX_ENTRIES: usize = 200_000;
/// Most windows whose push actions are kept.
const ACTION_WINDOWS: usize = 256;

/// Per user: `(stream_ordering, thread_id, highlight)` of their push actions.
type ActionsByUser = HashMap<String, Vec<(i64, String, bool)>>;

struct Held {
    /// The room's position the counts are as of.
    upto: i64,
    /// The `receipts` stream's progress before the base was read.
    receipts: i64,
    base: UnreadBase,
}

pub struct UnreadCounts {
    held: Mutex<HashMap<(OwnedUserId, OwnedRoomId), Held>>,
    /// `(room, after, upto)` → the push actions of that window, by user.
    actions: Shared<(OwnedRoomId, i64, i64), ActionsByUser>,
}

impl Default for UnreadCounts {
    fn default() -> Self {
        Self { held: Mutex::default(), actions: Shared::new(ACTION_WINDOWS) }
    }
}

impl UnreadCounts {
    /// `(notifications, highlights)` per thread id (`main` for the main
    /// timeline) of `user_id` in `room_id` (persisted by `writer`) as of
    /// the room's position `upto`. Call `recent.catch_up` first.
    pub async fn counts(
        &self,
        services: &Services,
        room_id: &RoomId,
        user_id: &UserId,
        writer: usize,
        upto: i64,
    ) -> Result<HashMap<String, (i64, i64)>, StorageError> {
        let receipts = services.notifier.progress(Stream::Receipts);
        let key = (user_id.to_owned(), room_id.to_owned());
        let held = {
            let held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            held.get(&key).filter(|held| held.receipts == receipts && held.upto <= upto).map(|held| (held.upto, held.base.clone()))
        };
        if let Some((from, mut base)) = held {
            if from == upto {
                return Ok(base.counts);
            }
            if self.add_window(services, room_id, user_id, writer, (from, upto), &mut base).await? {
                let counts = base.counts.clone();
                self.keep(key, Held { upto, receipts, base });
                return Ok(counts);
            }
        }
        let base = services.storage.unread_base(room_id, user_id, upto).await?;
        let counts = base.counts.clone();
        self.keep(key, Held { upto, receipts, base });
        Ok(counts)
    }

    /// Adds the push actions of the room's events in `(from, upto]` that
    /// `base` leaves unread; `false` (with `base` unusable) when the base
    /// must be read again: the log does not hold the window, or the user's
    /// membership may have changed in it.
    async fn add_window(
        &self,
        services: &Services,
        room_id: &RoomId,
        user_id: &UserId,
        writer: usize,
        (from, upto): (i64, i64),
        base: &mut UnreadBase,
    ) -> Result<bool, StorageError> {
        let Some(window) = services.sync_caches.recent.window(room_id, writer, from, upto) else { return Ok(false) };
        let own_membership = |held: &super::recent::RecentEvent| {
            held.resets_state || (held.event.kind == "m.room.member" && held.event.state_key.as_deref() == Some(user_id.as_str()))
        };
        if window.iter().any(|held| own_membership(held)) {
            return Ok(false);
        }
        if window.is_empty() {
            return Ok(true);
        }
        let storage = &services.storage;
        let actions = self
            .actions
            .get((room_id.to_owned(), from, upto), async || {
                let mut by_user = ActionsByUser::new();
                for action in storage.push_actions_between(room_id, from, upto).await? {
                    by_user.entry(action.user_id).or_default().push((action.stream_ordering, action.thread_id, action.highlight));
                }
                Ok::<_, StorageError>(by_user)
            })
            .await?;
        add_unread(base, actions.get(user_id.as_str()).into_iter().flatten());
        Ok(true)
    }

    fn keep(&self, key: (OwnedUserId, OwnedRoomId), entry: Held) {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if held.len() >= MAX_ENTRIES {
            held.clear();
        }
        held.insert(key, entry);
    }
}

impl std::fmt::Debug for UnreadCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnreadCounts").finish_non_exhaustive()
    }
}

/// Adds to `base` the actions (`(stream_ordering, thread_id, highlight)`) it leaves unread.
fn add_unread<'a>(base: &mut UnreadBase, actions: impl IntoIterator<Item = &'a (i64, String, bool)>) {
    for (ordering, thread, highlight) in actions {
        if base.counts_action(*ordering, thread) {
            base.add(thread, *highlight);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use weft_storage::UnreadBase;

    #[test]
    fn new_actions_count_after_the_receipt_that_covers_their_thread_and_the_membership() {
        let base = UnreadBase {
            counts: HashMap::from([("main".to_owned(), (2, 1))]),
            read: HashMap::from([("".to_owned(), 10), ("$root".to_owned(), 20)]),
            member: 5,
        };
        let counted = |mut base: UnreadBase, actions: &[(i64, &str, bool)]| {
            let actions: Vec<(i64, String, bool)> = actions.iter().map(|(ordering, thread, highlight)| (*ordering, thread.to_string(), *highlight)).collect();
            super::add_unread(&mut base, &actions);
            base.counts
        };
        let counts = counted(base, &[(11, "main", false), (15, "$root", true), (21, "$root", true), (22, "$other", false)]);
        assert_eq!(counts["main"], (3, 1), "after the unthreaded receipt");
        assert_eq!(counts["$root"], (1, 1), "the thread's own receipt covers 15");
        assert_eq!(counts["$other"], (1, 0));
        let joined_late = UnreadBase { member: 30, ..UnreadBase::default() };
        assert!(counted(joined_late, &[(25, "main", true)]).is_empty(), "before the membership");
    }
}
