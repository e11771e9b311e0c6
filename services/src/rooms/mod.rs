//! Rooms: building, authorising, signing and persisting events, room
//! creation, membership changes, and who may see which event.
//!
//! Owns: the event pipeline. `Rooms::send` takes a sender and an event's
//! type, state key and content; builds the PDU on the room's forward
//! extremities with the auth events its room version asks for; checks it with
//! ruma's authorization rules for that version; hashes and signs it; persists
//! it in one transaction; and wakes `/sync`. Sends to one room are serialised
//! by a per-room lock; different rooms proceed in parallel. May call:
//! `weft_storage`, `weft_core::crypto`, `sync::notifier`. Must not: build HTTP responses.

pub mod aggregations;
mod build;
pub(crate) mod content_checks;
pub mod create;
mod error;
pub(crate) mod membership;
pub mod pdu;
mod redact;
pub(crate) mod restricted;
pub mod server_acl;
pub mod txn_ids;
mod upgrade;
pub mod versions;
pub mod visibility;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::{DeviceId, OwnedEventId, OwnedRoomId, RoomId, UserId};
use serde_json::Value;

pub use build::{BuiltEvent, RoomState, relation_of, search_text_of};
pub use create::CreateRoom;
pub use error::RoomError;
pub use membership::Membership;

use weft_storage::{NewEvent, StorageError};

use crate::{
    replication::room_writes::{self, RoomWrite},
    services::Services,
};

/// The largest event, in bytes of canonical JSON, that a room accepts.
pub const MAX_EVENT_SIZE: usize = 65_536;

/// Per-room write locks, each guarding the room's state as this writer last
/// left it. Held while an event is built, checked and persisted, so events
/// of one room get distinct, ordered positions and each builds on the
/// previous one; a tokio mutex because the hold spans awaits.
///
/// The cached state is valid because an instance is the only writer of its
/// rooms (`stream_writers.events` shards rooms over persisters); it is
/// dropped after any failed write and reloaded from the database.
#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<OwnedRoomId, RoomSlot>>,
    /// v12 room ids chosen by a `createRoom` of this instance still under
    /// way (`create`): another one in the same millisecond draws again.
    creating: Mutex<std::collections::HashSet<OwnedRoomId>>,
}

type RoomSlot = Arc<tokio::sync::Mutex<Option<RoomState>>>;

/// Rooms kept in memory before idle ones are forgotten.
const MAX_CACHED_ROOMS: usize = 10_000;

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rooms").finish_non_exhaustive()
    }
}

/// What a client asks to send into a room.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub kind: &'a str,
    pub state_key: Option<&'a str>,
    pub content: Value,
    /// `(device, request)` for idempotent client sends: the request's method
    /// and path, which contain the client's transaction id.
    pub txn: Option<(&'a DeviceId, &'a str)>,
    /// Top-level `redacts` (room versions before 11 carry it outside content).
    pub redacts: Option<OwnedEventId>,
}

impl Rooms {
    fn slot(&self, room_id: &RoomId) -> RoomSlot {
        let mut rooms = self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if rooms.len() > MAX_CACHED_ROOMS {
            // Forget rooms nobody is writing to, so memory does not grow with every room ever written.
            rooms.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        rooms.entry(room_id.to_owned()).or_default().clone()
    }

    /// Runs `write` with the room's state under the room's lock, loading the
    /// state first if it is not in memory. `write` returns the events it
    /// persisted; they are applied to the cached state, and any error drops it.
    pub(crate) async fn with_room<T>(
        &self,
        services: &Services,
        room_id: &RoomId,
        write: impl AsyncFnOnce(&RoomState) -> Result<(T, Vec<BuiltEvent>), RoomError>,
    ) -> Result<T, RoomError> {
        let slot = self.slot(room_id);
        let mut cached = slot.lock().await;
        if cached.is_none() {
            *cached = Some(RoomState::load(services, room_id).await?);
        }
        let state = cached.as_mut().expect("loaded above");
        match write(state).await {
            Ok((value, persisted)) => {
                for event in &persisted {
                    state.apply(event);
                }
                Ok(value)
            }
            Err(error) => {
                *cached = None;
                Err(error)
            }
        }
    }

    /// Drops a room's cached state; the next write reloads it.
    pub(crate) async fn forget(&self, room_id: &RoomId) {
        *self.slot(room_id).lock().await = None;
    }

    /// Remembers the state of a room this instance just created.
    pub(super) async fn remember(&self, state: RoomState) {
        let slot = self.slot(&state.room_id.clone());
        *slot.lock().await = Some(state);
    }

    /// Builds, authorises, signs and persists one event; returns its id. A
    /// repeated client transaction returns the first event's id, and so does
    /// a state event identical to the current one (same sender and content):
    /// as Synapse, it persists nothing.
    pub async fn send(&self, services: &Services, room_id: &RoomId, sender: &UserId, outgoing: Outgoing<'_>) -> Result<OwnedEventId, RoomError> {
        if let Some(answer) = room_writes::at_remote_persister(services, room_id, || RoomWrite::Send {
            sender: sender.to_owned(),
            event_type: outgoing.kind.to_owned(),
            state_key: outgoing.state_key.map(str::to_owned),
            content: outgoing.content.clone(),
            txn: outgoing.txn.map(|(device, txn_id)| (device.to_owned(), txn_id.to_owned())),
            redacts: outgoing.redacts.clone(),
        })
        .await?
        {
            return Ok(answer);
        }
        self.with_room(services, room_id, async |state| {
            if let Some(existing) = identical_state(state, sender, &outgoing) {
                return Ok((existing, Vec::new()));
            }
            persist_one(services, state, sender, &outgoing).await
        })
        .await
    }
}

/// The current state event `outgoing` would repeat: same type, state key,
/// sender and content.
fn identical_state(state: &RoomState, sender: &UserId, outgoing: &Outgoing<'_>) -> Option<OwnedEventId> {
    let state_key = outgoing.state_key?;
    let current = state.get(&outgoing.kind.into(), state_key)?;
    let content: Value = serde_json::from_str(current.content.get()).ok()?;
    (current.sender == sender && content == outgoing.content).then(|| current.event_id.clone())
}

/// Builds one event on `state` and persists it; a client transaction seen
/// before (the unique key on device and transaction id says so) returns the
/// event it made, and writes nothing.
pub(super) async fn persist_one(
    services: &Services,
    state: &RoomState,
    sender: &UserId,
    outgoing: &Outgoing<'_>,
) -> Result<(OwnedEventId, Vec<BuiltEvent>), RoomError> {
    let storage = &services.storage;
    let built = state.build(services, sender, outgoing)?;
    let txn = outgoing.txn.map(|(device, txn_id)| (sender, device, txn_id));
    let push_actions = crate::push::evaluate(services, state, &built).await?;
    let new = NewEvent { txn, push_actions: &push_actions, ..built.as_new_event() };
    match storage.persist_events(None, &[new]).await {
        Ok(_) => {
            services.events_persisted(state.room_id.as_str(), &[built.event_id.as_str()]);
            Ok((built.event_id.clone(), vec![built]))
        }
        Err(StorageError::Conflict) if txn.is_some() => {
            let (device, txn_id) = outgoing.txn.expect("checked above");
            let existing = storage.txn_event(sender, device, txn_id).await?.ok_or(StorageError::Conflict)?;
            Ok((existing, Vec::new()))
        }
        Err(error) => Err(error.into()),
    }
}
