//! Relations aggregated on their parents (the spec's bundled aggregations in
//! `unsigned.m.relations`), for a batch of events a client is about to get:
//!
//! - `m.thread` on a thread root: the reply count, the latest reply (with
//!   its own latest edit) and whether the user took part (sent the root or
//!   a reply);
//! - `m.replace` on an edited event: the most recent valid edit, by
//!   `origin_server_ts` then event id, as the spec picks it; none on a
//!   redacted event;
//! - `m.reference`: the ids of the events that reference it.
//!
//! One query per room finds which events have children at all; only those
//! cost more.

use std::collections::HashMap;

use ruma::{RoomId, UserId};
use serde_json::{Value, json};

use weft_storage::{Storage, StorageError, StoredEvent};

use super::pdu::client_event;

/// Most edits or references read for one event.
const MAX_CHILDREN_READ: i64 = 1000;

#[derive(Default)]
pub struct Aggregations {
    by_parent: HashMap<String, serde_json::Map<String, Value>>,
}

impl Aggregations {
    /// The aggregations of the relations to `events`, child events in the
    /// client format with or without `room_id`.
    pub async fn load<'a>(
        storage: &Storage,
        user_id: &UserId,
        events: impl IntoIterator<Item = &'a StoredEvent>,
        with_room_id: bool,
    ) -> Result<Self, StorageError> {
        let mut by_room: HashMap<&RoomId, Vec<&StoredEvent>> = HashMap::new();
        for event in events {
            by_room.entry(&event.room_id).or_default().push(event);
        }
        let mut by_parent: HashMap<String, serde_json::Map<String, Value>> = HashMap::new();
        for (room_id, events) in by_room {
            let parents: Vec<&str> = events.iter().map(|event| event.event_id.as_str()).collect();
            for count in storage.relation_counts(room_id, &parents, user_id).await? {
                let Some(parent) = events.iter().find(|event| event.event_id.as_str() == count.parent) else { continue };
                let children = |rel_type: &'static str, after: i64, limit: i64| {
                    storage.relating_events(room_id, &count.parent, Some(rel_type), None, after, i64::MAX, limit, true, 1)
                };
                let aggregation = match count.rel_type.as_str() {
                    "m.thread" => {
                        let latest = children("m.thread", count.latest - 1, 1).await?;
                        let Some(latest) = latest.first() else { continue };
                        // The latest reply as clients show it: with its own latest edit.
                        let mut latest_form = client_event(latest, with_room_id);
                        let edits = storage
                            .relating_events(room_id, latest.event_id.as_str(), Some("m.replace"), None, 0, i64::MAX, MAX_CHILDREN_READ, true, 1)
                            .await?;
                        if let Some(edit) = latest_valid_edit(latest, &edits) {
                            latest_form["unsigned"]["m.relations"]["m.replace"] = client_event(edit, with_room_id);
                        }
                        json!({
                            "latest_event": latest_form,
                            "count": count.children,
                            "current_user_participated": parent.sender == user_id || count.user_sent_one,
                        })
                    }
                    "m.replace" => {
                        let edits = children("m.replace", 0, MAX_CHILDREN_READ).await?;
                        match latest_valid_edit(parent, &edits) {
                            Some(edit) => client_event(edit, with_room_id),
                            None => continue,
                        }
                    }
                    "m.reference" => {
                        let references = children("m.reference", 0, MAX_CHILDREN_READ).await?;
                        let chunk: Vec<Value> = references.iter().rev().map(|child| json!({"event_id": child.event_id})).collect();
                        json!({ "chunk": chunk })
                    }
                    _ => continue,
                };
                by_parent.entry(count.parent).or_default().insert(count.rel_type, aggregation);
            }
        }
        Ok(Self { by_parent })
    }

    /// Adds `event`'s aggregations, if it has any, to its client form.
    pub fn bundle(&self, event: &StoredEvent, mut client_form: Value) -> Value {
        if let Some(aggregations) = self.by_parent.get(event.event_id.as_str()) {
            for (rel_type, aggregation) in aggregations {
                client_form["unsigned"]["m.relations"][rel_type] = aggregation.clone();
            }
        }
        client_form
    }
}

/// The edit that replaces `original`, among `edits` (its `m.replace`
/// children): the spec's rules of a valid replacement, then the latest by
/// `origin_server_ts`, ties broken by the greater event id.
fn latest_valid_edit<'a>(original: &StoredEvent, edits: &'a [StoredEvent]) -> Option<&'a StoredEvent> {
    let original_pdu: Value = serde_json::from_str(&original.json).ok()?;
    let redacted = original_pdu.pointer("/unsigned/redacted_because").is_some();
    let is_an_edit = original_pdu.pointer("/content/m.relates_to/rel_type").and_then(Value::as_str) == Some("m.replace");
    if redacted || is_an_edit || original.state_key.is_some() {
        return None;
    }
    edits
        .iter()
        .filter(|edit| edit.sender == original.sender && edit.kind == original.kind && edit.state_key.is_none())
        .filter(|edit| {
            // An encrypted edit carries `m.new_content` inside its ciphertext.
            edit.kind == "m.room.encrypted"
                || serde_json::from_str::<Value>(&edit.json).is_ok_and(|pdu| pdu.pointer("/content/m.new_content").is_some_and(Value::is_object))
        })
        .max_by(|a, b| a.origin_server_ts.cmp(&b.origin_server_ts).then_with(|| a.event_id.as_str().cmp(b.event_id.as_str())))
}
