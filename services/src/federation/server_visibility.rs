//! Which of a room's events another server may see, as the specification's
//! server behaviour for `m.room.history_visibility` and Synapse's
//! `filter_events_for_server` decide: an event is visible to a server when
//! the room's history visibility at the event (the state after it) is
//! `world_readable` or `shared`, or when one of the server's users was
//! joined at the event, or invited and the visibility is `invited`. An
//! event a server may not see is sent redacted (as Synapse does for
//! `backfill`, `get_missing_events` and `event`). Events this server has
//! only as outliers carry no state and are visible, as in Synapse.
//!
//! May call: `weft_storage`, `rooms::visibility` (the settings it reads).

use ruma::{CanonicalJsonObject, CanonicalJsonValue, RoomId, ServerName, room_version_rules::RoomVersionRules};

use weft_storage::{Storage, StorageError, StoredEvent};

/// What one server may see of one room, loaded once for any number of events.
pub struct ServerVisibility {
    /// The room's `history_visibility` changes, oldest first.
    settings: Vec<(i64, String)>,
    /// The membership changes of the server's users, oldest first.
    memberships: Vec<(i64, String, String)>,
}

impl ServerVisibility {
    pub async fn load(storage: &Storage, room_id: &RoomId, server: &ServerName) -> Result<Self, StorageError> {
        let settings = crate::rooms::visibility::settings(storage, room_id).await?;
        // Memberships matter only where the history is `invited` or `joined`.
        let restricted = settings.iter().any(|(_, value): &(i64, String)| value == "invited" || value == "joined");
        let memberships = if restricted {
            storage
                .server_membership_history(room_id, server.as_str())
                .await?
                .into_iter()
                .map(|(ordering, user, membership)| (ordering, user.to_string(), membership))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Self { settings, memberships })
    }

    /// Whether the server may see `event` (a timeline event of the room).
    pub fn can_see(&self, event: &StoredEvent) -> bool {
        let at = event.stream_ordering;
        let setting = self.settings.iter().take_while(|(ordering, _)| *ordering <= at).last().map_or("shared", |(_, value)| value.as_str());
        if setting != "invited" && setting != "joined" {
            return true;
        }
        let mut latest: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        for (_, user, membership) in self.memberships.iter().take_while(|(ordering, ..)| *ordering <= at) {
            latest.insert(user.as_str(), membership.as_str());
        }
        latest.values().any(|membership| *membership == "join" || (*membership == "invite" && setting == "invited"))
    }

    /// The event as the server may receive it: whole, or redacted.
    pub fn shown(&self, event: &StoredEvent, rules: &RoomVersionRules) -> Option<String> {
        if self.can_see(event) {
            return Some(event.json.clone());
        }
        let object: CanonicalJsonObject = serde_json::from_str(&event.json).ok()?;
        let redacted = ruma::canonical_json::redact(object, &rules.redaction, None).ok()?;
        Some(CanonicalJsonValue::Object(redacted).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_at(ordering: i64) -> StoredEvent {
        StoredEvent {
            stream_ordering: ordering,
            event_id: ruma::OwnedEventId::try_from(format!("$e{ordering}")).unwrap(),
            room_id: ruma::OwnedRoomId::try_from("!r:here").unwrap(),
            sender: ruma::OwnedUserId::try_from("@a:here").unwrap(),
            kind: "m.room.message".into(),
            state_key: None,
            depth: ordering,
            origin_server_ts: 0,
            json: r#"{"type":"m.room.message","content":{"body":"hi"},"sender":"@a:here","room_id":"!r:here","origin_server_ts":0,"depth":1,"hashes":{"sha256":"x"},"signatures":{},"prev_events":[],"auth_events":[]}"#.into(),
        }
    }

    fn visibility(settings: &[(i64, &str)], memberships: &[(i64, &str, &str)]) -> ServerVisibility {
        ServerVisibility {
            settings: settings.iter().map(|(at, value)| (*at, (*value).to_owned())).collect(),
            memberships: memberships.iter().map(|(at, user, membership)| (*at, (*user).to_owned(), (*membership).to_owned())).collect(),
        }
    }

    #[test]
    fn shared_and_world_readable_history_is_visible_to_any_server() {
        assert!(visibility(&[], &[]).can_see(&event_at(5)));
        assert!(visibility(&[(1, "shared")], &[]).can_see(&event_at(5)));
        assert!(visibility(&[(1, "world_readable")], &[]).can_see(&event_at(5)));
    }

    #[test]
    fn joined_history_is_visible_only_while_a_user_of_the_server_is_joined() {
        let seen = visibility(&[(1, "joined")], &[(10, "@b:there", "join"), (20, "@b:there", "leave"), (30, "@c:there", "invite")]);
        assert!(!seen.can_see(&event_at(5)), "before the join");
        assert!(seen.can_see(&event_at(10)), "the join itself");
        assert!(seen.can_see(&event_at(15)));
        assert!(!seen.can_see(&event_at(25)), "after the leave");
        assert!(!seen.can_see(&event_at(35)), "an invite is not enough under `joined`");
    }

    #[test]
    fn invited_history_is_visible_to_a_server_with_an_invited_user() {
        let seen = visibility(&[(1, "invited")], &[(10, "@b:there", "invite")]);
        assert!(!seen.can_see(&event_at(5)));
        assert!(seen.can_see(&event_at(15)));
    }

    #[test]
    fn what_a_server_may_not_see_is_redacted() {
        let seen = visibility(&[(1, "joined")], &[]);
        let rules = ruma::RoomVersionId::V11.rules().unwrap();
        let shown: serde_json::Value = serde_json::from_str(&seen.shown(&event_at(5), &rules).unwrap()).unwrap();
        assert_eq!(shown["content"], serde_json::json!({}));
        assert_eq!(shown["type"], "m.room.message");
    }
}
