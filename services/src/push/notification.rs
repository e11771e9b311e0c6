//! What one notification for one pusher carries, as Synapse's HTTP pusher
//! builds it: the event (or only its id, for a pusher whose `data.format` is
//! `event_id_only`), the room's name as the user would see it and the
//! sender's display name, both from the room's state before the event; the
//! tweaks of the matched rule's `set_tweak` actions (a missing value is
//! `true`); the priority; and the badge (`counts.unread`): the user's
//! pending invites plus, per room with unread notifications, one
//! (`push.group_unread_count_by_room`, the default) or the number of them.
//!
//! An event's context is the same for every member it notifies, so it is
//! read once and kept for a while (`ContextCache`).
//!
//! May call: `weft_storage` (events, state, memberships, unread counts),
//! `sync::shared` (the once-per-key cache).

use std::{collections::HashMap, sync::Arc};

use ruma::{OwnedEventId, OwnedRoomAliasId, UserId};
use serde_json::{Map, Value};

use weft_plugin_runtime::pusher::{Counts, Notification, Priority, PushEvent, PusherInfo, Subject};
use weft_storage::{PendingPush, Storage, StorageError, StoredEvent, StoredPusher};

use crate::sync::shared::Shared;

/// Contexts kept, the oldest dropped first (a burst of messages into busy
/// rooms reuses each one for every member).
const CONTEXT_CACHE_SIZE: usize = 2048;

/// An event and what its room's state said just before it.
#[derive(Debug)]
pub struct EventContext {
    pub event: StoredEvent,
    content: Value,
    name: Option<String>,
    canonical_alias: Option<OwnedRoomAliasId>,
    /// Joined and invited members, oldest member event first: user id,
    /// display name, membership, who sent the membership.
    members: Vec<(String, Option<String>, String, String)>,
    sender_display_name: Option<String>,
}

impl EventContext {
    fn from_state(event: StoredEvent, state: &[StoredEvent]) -> Self {
        let json: Value = serde_json::from_str(&event.json).unwrap_or_default();
        let content = json.get("content").cloned().unwrap_or(Value::Object(Map::new()));
        let mut name = None;
        let mut canonical_alias = None;
        let mut members = Vec::new();
        let mut sender_display_name = None;
        let mut member_events: Vec<(&StoredEvent, Value)> = Vec::new();
        for state_event in state {
            let content = serde_json::from_str::<Value>(&state_event.json).ok().and_then(|json| json.get("content").cloned()).unwrap_or_default();
            match (state_event.kind.as_str(), state_event.state_key.as_deref()) {
                ("m.room.name", Some("")) => name = content["name"].as_str().filter(|n| !n.is_empty()).map(str::to_owned),
                ("m.room.canonical_alias", Some("")) => {
                    canonical_alias = content["alias"].as_str().and_then(|alias| OwnedRoomAliasId::try_from(alias).ok());
                }
                ("m.room.member", Some(_)) => member_events.push((state_event, content)),
                _ => {}
            }
        }
        member_events.sort_by_key(|(member, _)| member.origin_server_ts);
        for (member, content) in member_events {
            let user = member.state_key.clone().unwrap_or_default();
            let display_name = content["displayname"].as_str().filter(|n| !n.is_empty()).map(str::to_owned);
            if user == event.sender.as_str() {
                sender_display_name = Some(display_name.clone().unwrap_or_else(|| user.clone()));
            }
            let membership = content["membership"].as_str().unwrap_or_default().to_owned();
            if membership == "join" || membership == "invite" {
                members.push((user, display_name, membership, member.sender.to_string()));
            }
        }
        // The sender's own first join has no member event before it.
        if sender_display_name.is_none() && event.kind == "m.room.member" && event.state_key.as_deref() == Some(event.sender.as_str()) {
            sender_display_name = content["displayname"].as_str().filter(|n| !n.is_empty()).map(str::to_owned);
        }
        Self { event, content, name, canonical_alias, members, sender_display_name }
    }

    /// The room's name as `user_id` would see it: its name, else its
    /// canonical alias, else its other members (Synapse's
    /// `calculate_room_name` without naming a room after a single other
    /// member, as its pushers call it).
    pub fn room_name(&self, user_id: &UserId) -> Option<String> {
        if let Some(name) = &self.name {
            return Some(name.clone());
        }
        if let Some(alias) = &self.canonical_alias {
            return Some(alias.to_string());
        }
        let own = self.members.iter().find(|(user, ..)| user == user_id.as_str());
        if let Some((_, _, membership, inviter)) = own
            && membership == "invite"
        {
            // Synapse names it after the inviter, or nothing without a single member fallback.
            return if self.members.iter().any(|(user, ..)| user == inviter) { None } else { Some("Room Invite".to_owned()) };
        }
        let shown = |(user, display_name, ..): &(String, Option<String>, String, String)| display_name.clone().unwrap_or_else(|| user.clone());
        let others: Vec<_> = self.members.iter().filter(|(user, ..)| user != user_id.as_str()).collect();
        match others.as_slice() {
            [] => match self.members.as_slice() {
                [only] if only.3 != user_id.as_str() => Some(shown(only)),
                _ => Some("Empty Room".to_owned()),
            },
            [_] => None,
            [first, second] => Some(format!("{} and {}", shown(first), shown(second))),
            [first, rest @ ..] => Some(format!("{} and {} others", shown(first), rest.len())),
        }
    }
}

/// Event contexts by event id, each read once: the members an event
/// notifies are woken together, and those arriving while the first reads it
/// wait for that read.
pub struct ContextCache {
    contexts: Shared<OwnedEventId, Option<Arc<EventContext>>>,
}

impl Default for ContextCache {
    fn default() -> Self {
        Self { contexts: Shared::new(CONTEXT_CACHE_SIZE) }
    }
}

impl ContextCache {
    /// The event's context; `None` when the event is not stored (the push
    /// is then skipped, as Synapse does).
    pub async fn get(&self, storage: &Storage, event_id: &str) -> Result<Option<Arc<EventContext>>, StorageError> {
        let Ok(event_id) = OwnedEventId::try_from(event_id) else { return Ok(None) };
        let context = self
            .contexts
            .get(event_id.clone(), async || {
                let Some(event) = storage.event(&event_id).await? else { return Ok::<_, StorageError>(None) };
                let state = storage.state_at(&event.room_id, event.stream_ordering - 1).await?;
                Ok(Some(Arc::new(EventContext::from_state(event, &state))))
            })
            .await?;
        Ok(context.as_ref().clone())
    }
}

/// The pusher as the plugin sees it.
pub fn pusher_info(pusher: &StoredPusher) -> PusherInfo {
    PusherInfo {
        user_id: pusher.user_id.clone(),
        kind: pusher.kind.clone(),
        app_id: pusher.app_id.clone(),
        pushkey: pusher.pushkey.clone(),
        pushkey_ts: u64::try_from(pusher.created_ts).unwrap_or_default(),
        app_display_name: pusher.app_display_name.clone(),
        device_display_name: pusher.device_display_name.clone(),
        profile_tag: pusher.profile_tag.clone(),
        lang: pusher.lang.clone(),
        data: pusher.data.clone(),
    }
}

/// The `set_tweak` actions of a rule's actions: `{"sound": "default",
/// "highlight": true}`.
pub fn tweaks(actions: &Value) -> Map<String, Value> {
    let mut tweaks = Map::new();
    for action in actions.as_array().into_iter().flatten() {
        if let Some(name) = action.get("set_tweak").and_then(Value::as_str) {
            tweaks.insert(name.to_owned(), action.get("value").cloned().unwrap_or(Value::Bool(true)));
        }
    }
    tweaks
}

/// A user's badge as of a position, kept up to date as their later
/// notifications go out: pending invites, plus per joined room with unread
/// notifications one (`push.group_unread_count_by_room`, the default) or
/// the number of them. What else moves it (a read receipt, the user's own
/// membership) is the reader's to notice: it reads the badge again.
#[derive(Debug)]
pub struct Badge {
    by_room: bool,
    invites: u64,
    /// The rooms the user is joined to, and the position of their
    /// membership event in each (earlier notifications do not count).
    joined: HashMap<String, i64>,
    /// Unread notifications per room with any (when by room, at least 1).
    unread: HashMap<String, u64>,
    /// The last position counted.
    counted: i64,
}

impl Badge {
    /// The badge counting notifications up to `upto`.
    pub async fn read(storage: &Storage, user_id: &UserId, by_room: bool, upto: i64) -> Result<Self, StorageError> {
        let memberships = storage.memberships_of(user_id).await?;
        let invites = memberships.iter().filter(|(_, membership, _)| membership == "invite").count() as u64;
        let joined = memberships.into_iter().filter(|(_, membership, _)| membership == "join").map(|(room, _, at)| (room.to_string(), at)).collect();
        let unread = storage.unread_notifications_by_room(user_id, upto, by_room).await?;
        let unread = unread.into_iter().map(|(room, count)| (room, count.max(0) as u64)).collect();
        Ok(Self { by_room, invites, joined, unread, counted: upto })
    }

    /// Counts a notification after those already counted (it is unread:
    /// a pusher's pending notifications leave out the read ones).
    pub fn count(&mut self, push: &PendingPush) {
        if push.stream_ordering <= self.counted {
            return;
        }
        self.counted = push.stream_ordering;
        if self.joined.get(&push.room_id).is_some_and(|&joined_at| push.stream_ordering > joined_at) {
            *self.unread.entry(push.room_id.clone()).or_default() += 1;
        }
    }

    pub fn value(&self) -> u64 {
        let unread = if self.by_room { self.unread.len() as u64 } else { self.unread.values().sum() };
        self.invites + unread
    }
}

/// How the push options shape a notification.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub include_content: bool,
}

/// The notification of `push` for `pusher`, with the badge `badge`.
pub fn for_event(pusher: &StoredPusher, push: &PendingPush, context: &EventContext, badge: u64, shape: Shape) -> Notification {
    let tweaks = tweaks(&push.actions);
    let event = &context.event;
    let priority = Priority::for_event(&event.kind, &tweaks);
    let counts = Counts { unread: Some(badge), missed_calls: None };
    let info = pusher_info(pusher);
    if pusher.data.get("format").and_then(Value::as_str) == Some("event_id_only") {
        let subject = Subject::EventIdOnly { event_id: event.event_id.clone(), room_id: event.room_id.clone() };
        return Notification { pusher: info, subject, counts, tweaks: Map::new(), priority };
    }
    let is_member = event.kind == "m.room.member" && event.state_key.is_some();
    let content = (shape.include_content && context.content.as_object().is_some_and(|c| !c.is_empty())).then(|| context.content.clone());
    let push_event = PushEvent {
        event_id: event.event_id.clone(),
        room_id: event.room_id.clone(),
        event_type: event.kind.clone(),
        sender: event.sender.clone(),
        state_key: event.state_key.clone(),
        content,
        membership: if is_member { context.content["membership"].as_str().map(str::to_owned) } else { None },
        user_is_target: is_member.then(|| event.state_key.as_deref() == Some(pusher.user_id.as_str())),
        sender_display_name: context.sender_display_name.clone(),
        room_name: context.room_name(&pusher.user_id),
        room_alias: context.canonical_alias.clone(),
    };
    Notification { pusher: info, subject: Subject::Event(Box::new(push_event)), counts, tweaks, priority }
}

/// A badge-only update for `pusher`.
pub fn badge_update(pusher: &StoredPusher, badge: u64) -> Notification {
    Notification {
        pusher: pusher_info(pusher),
        subject: Subject::Badge,
        counts: Counts { unread: Some(badge), missed_calls: None },
        tweaks: Map::new(),
        priority: Priority::Low,
    }
}

#[cfg(test)]
mod tests {
    use ruma::{OwnedRoomId, OwnedUserId};
    use serde_json::json;

    use super::*;

    fn state_event(ordering: i64, kind: &str, state_key: &str, sender: &str, content: Value) -> StoredEvent {
        StoredEvent {
            stream_ordering: ordering,
            event_id: OwnedEventId::try_from(format!("$e{ordering}")).unwrap(),
            room_id: OwnedRoomId::try_from("!r:x").unwrap(),
            sender: OwnedUserId::try_from(sender).unwrap(),
            kind: kind.into(),
            state_key: Some(state_key.into()),
            depth: ordering,
            origin_server_ts: ordering,
            json: json!({"content": content}).to_string(),
        }
    }

    fn message(sender: &str) -> StoredEvent {
        let mut event = state_event(100, "m.room.message", "", sender, json!({"body": "hi", "msgtype": "m.text"}));
        event.state_key = None;
        event
    }

    fn member(ordering: i64, user: &str, membership: &str, name: Option<&str>) -> StoredEvent {
        let mut content = json!({"membership": membership});
        if let Some(name) = name {
            content["displayname"] = name.into();
        }
        state_event(ordering, "m.room.member", user, user, content)
    }

    #[test]
    fn room_names_follow_synapse() {
        let me = <&UserId>::try_from("@me:x").unwrap();
        let two = [member(1, "@me:x", "join", None), member(2, "@bob:x", "join", Some("Bob"))];
        let context = EventContext::from_state(message("@bob:x"), &two);
        assert_eq!(context.room_name(me), None, "one other member: no name");
        assert_eq!(context.sender_display_name.as_deref(), Some("Bob"));
        let three = [member(1, "@me:x", "join", None), member(2, "@bob:x", "join", Some("Bob")), member(3, "@carol:x", "join", None)];
        assert_eq!(EventContext::from_state(message("@carol:x"), &three).room_name(me).as_deref(), Some("Bob and @carol:x"));
        let mut four = three.to_vec();
        four.push(member(4, "@dan:x", "invite", None));
        assert_eq!(EventContext::from_state(message("@bob:x"), &four).room_name(me).as_deref(), Some("Bob and 2 others"));
        let mut named = four.clone();
        named.push(state_event(5, "m.room.canonical_alias", "", "@bob:x", json!({"alias": "#room:x"})));
        assert_eq!(EventContext::from_state(message("@bob:x"), &named).room_name(me).as_deref(), Some("#room:x"));
        named.push(state_event(6, "m.room.name", "", "@bob:x", json!({"name": "Lounge"})));
        assert_eq!(EventContext::from_state(message("@bob:x"), &named).room_name(me).as_deref(), Some("Lounge"));
    }

    #[test]
    fn tweaks_default_to_true() {
        let actions = json!(["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]);
        assert_eq!(Value::Object(tweaks(&actions)), json!({"sound": "default", "highlight": true}));
        assert!(tweaks(&json!(["notify"])).is_empty());
    }
    #[test]
    fn a_badge_counts_later_notifications_once_in_joined_rooms_after_the_join() {
        let push = |ordering: i64, room: &str| PendingPush {
            stream_ordering: ordering,
            event_id: format!("$e{ordering}"),
            room_id: room.into(),
            actions: json!(["notify"]),
            ts: 0,
        };
        let read = |by_room: bool| Badge {
            by_room,
            invites: 1,
            joined: [("!a:x".to_owned(), 5), ("!b:x".to_owned(), 50)].into(),
            unread: [("!a:x".to_owned(), 1)].into(),
            counted: 10,
        };
        let mut badge = read(true);
        assert_eq!(badge.value(), 2, "the invite and room a");
        for ordering in [9, 10] {
            badge.count(&push(ordering, "!b:x"));
        }
        assert_eq!(badge.value(), 2, "already counted by the read");
        badge.count(&push(11, "!a:x"));
        assert_eq!(badge.value(), 2, "room a counts once by room");
        badge.count(&push(12, "!c:x"));
        assert_eq!(badge.value(), 2, "not joined to room c");
        badge.count(&push(51, "!b:x"));
        badge.count(&push(51, "!b:x"));
        assert_eq!(badge.value(), 3, "room b after the join, once");

        let mut badge = read(false);
        for (ordering, room) in [(11, "!a:x"), (11, "!a:x"), (12, "!a:x"), (40, "!b:x"), (60, "!b:x")] {
            badge.count(&push(ordering, room));
        }
        assert_eq!(badge.value(), 1 + 3 + 1, "the invite, three in room a, the one after the join in room b");
    }
}
