//! Threads aggregated on their roots (the spec's bundled `m.thread` in
//! `unsigned.m.relations`): for a batch of events a client is about to get,
//! each thread root carries its reply count, its latest reply and whether
//! the user took part (sent the root or a reply), as Synapse bundles them.
//! Clients show a thread's summary under its root from this alone.

use std::collections::HashMap;

use ruma::{RoomId, UserId};
use serde_json::{Value, json};

use super::pdu::client_event;
use crate::storage::{Storage, StorageError, StoredEvent};

#[derive(Default)]
pub struct ThreadSummaries {
    by_root: HashMap<String, Value>,
}

impl ThreadSummaries {
    /// The summaries of the threads rooted among `events`, their latest
    /// replies in the client format with or without `room_id`.
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
        let mut by_root = HashMap::new();
        for (room_id, events) in by_room {
            let roots: Vec<&str> = events.iter().map(|event| event.event_id.as_str()).collect();
            for thread in storage.thread_summaries(room_id, &roots, user_id).await? {
                let latest = storage.relating_events(room_id, &thread.root, Some("m.thread"), None, thread.latest - 1, thread.latest, 1, true).await?;
                let Some(latest) = latest.first() else { continue };
                let started = events.iter().any(|event| event.event_id.as_str() == thread.root && event.sender == user_id);
                let summary = json!({
                    "latest_event": client_event(latest, with_room_id),
                    "count": thread.replies,
                    "current_user_participated": started || thread.user_replied,
                });
                by_root.insert(thread.root, summary);
            }
        }
        Ok(Self { by_root })
    }

    /// Adds `event`'s thread summary, if it is a thread root, to its client form.
    pub fn bundle(&self, event: &StoredEvent, mut client_form: Value) -> Value {
        if let Some(summary) = self.by_root.get(event.event_id.as_str()) {
            client_form["unsigned"]["m.relations"]["m.thread"] = summary.clone();
        }
        client_form
    }
}
