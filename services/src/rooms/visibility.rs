//! Who may see an event, by the spec's history-visibility rules: an event is
//! visible to a user if the room's `history_visibility` at the event was
//! `world_readable`; or the user's membership at the event was `join`; or it
//! was `shared` and the user joined at any point after it; or it was
//! `invited` and the user's membership at the event was `invite` (a user
//! always sees their own membership events).
//!
//! An `m.room.history_visibility` event is visible if the setting before it
//! or the one it makes would show it (the spec's rule for that event). Events
//! other than state from users the user ignores (`m.ignored_user_list`) are
//! never visible to them, as the spec's "Ignoring Users" asks.
//!
//! History fetched from other servers (negative orderings) may come
//! without the setting of its time, which this server holds at its join:
//! such events are judged by the earliest setting known.
//!
//! One `Visibility` is loaded per (room, user) from the user's membership
//! history and the room's visibility history, then answers for any number of
//! events without further queries.

use std::{collections::HashSet, sync::Arc};

use ruma::{OwnedUserId, RoomId, UserId};

use weft_storage::{Storage, StorageError, StoredEvent};

pub struct Visibility {
    /// The user's memberships, oldest first: `(ordering, membership)`.
    memberships: Vec<(i64, String)>,
    /// The room's `history_visibility` changes, oldest first.
    settings: Vec<(i64, String)>,
    /// Senders whose messages the user ignores.
    ignored: Arc<HashSet<OwnedUserId>>,
}

impl Visibility {
    pub async fn load(storage: &Storage, room_id: &RoomId, user_id: &UserId) -> Result<Self, StorageError> {
        let memberships = storage.membership_history(room_id, user_id).await?;
        let settings = settings(storage, room_id).await?;
        Ok(Self { memberships, settings, ignored: Arc::default() })
    }

    /// The same, hiding what users the user ignores sent.
    pub fn ignoring(mut self, ignored: Arc<HashSet<OwnedUserId>>) -> Self {
        self.ignored = ignored;
        self
    }

    fn latest_at(list: &[(i64, String)], ordering: i64) -> Option<&str> {
        list.iter().take_while(|(at, _)| *at <= ordering).last().map(|(_, value)| value.as_str())
    }

    pub fn can_see(&self, event: &StoredEvent, user_id: &UserId) -> bool {
        if event.kind == "m.room.member" && event.state_key.as_deref() == Some(user_id.as_str()) {
            return true;
        }
        if event.state_key.is_none() && self.ignored.contains(&event.sender) {
            return false;
        }
        let ordering = event.stream_ordering;
        let setting = self.setting_at(ordering);
        if event.kind == "m.room.history_visibility" {
            let before = self.setting_at(ordering - 1);
            return self.visible_under(before, ordering) || self.visible_under(setting, ordering);
        }
        self.visible_under(setting, ordering)
    }

    /// The setting in force at `ordering`. History fetched from other
    /// servers (negative orderings) may lack the setting of its time (this
    /// server holds the room's state as of its join, later in order): it
    /// is judged by the earliest setting known, not the default.
    fn setting_at(&self, ordering: i64) -> &str {
        match Self::latest_at(&self.settings, ordering) {
            Some(setting) => setting,
            None if ordering < 0 => self.settings.first().map_or("shared", |(_, setting)| setting.as_str()),
            None => "shared",
        }
    }

    fn visible_under(&self, setting: &str, ordering: i64) -> bool {
        // Membership "at the event": the state the event was sent into.
        let membership = Self::latest_at(&self.memberships, ordering - 1);
        match setting {
            "world_readable" => true,
            _ if membership == Some("join") => true,
            "shared" => self.memberships.iter().any(|(at, m)| *at > ordering && m == "join"),
            "invited" => membership == Some("invite"),
            _ => false,
        }
    }

    /// Whether the user could see anything in the room now (member, or world-readable).
    pub fn can_read_room_now(&self) -> bool {
        self.memberships.last().is_some_and(|(_, m)| m == "join") || self.settings.last().is_some_and(|(_, setting)| setting == "world_readable")
    }

    /// The user's latest membership, and where it was set.
    pub fn current_membership(&self) -> Option<(i64, &str)> {
        self.memberships.last().map(|(at, m)| (*at, m.as_str()))
    }
}

/// The room's `history_visibility` settings, oldest first: `(ordering, value)`
/// (`shared` where the content names none). Also read for other servers
/// (`federation::server_visibility`).
pub(crate) async fn settings(storage: &Storage, room_id: &RoomId) -> Result<Vec<(i64, String)>, StorageError> {
    Ok(storage
        .state_history(room_id, "m.room.history_visibility")
        .await?
        .into_iter()
        .map(|event| {
            let value = serde_json::from_str::<serde_json::Value>(&event.json)
                .ok()
                .and_then(|pdu| pdu["content"]["history_visibility"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "shared".to_owned());
            (event.stream_ordering, value)
        })
        .collect())
}
