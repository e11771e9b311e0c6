//! Rooms: building, authorising, signing and persisting events, room
//! creation, membership changes, and who may see which event.
//!
//! Owns: the event pipeline. `Rooms::send` takes a sender and an event's
//! type, state key and content; builds the PDU on the room's forward
//! extremities with the auth events its room version asks for; checks it with
//! ruma's authorization rules for that version; hashes and signs it; persists
//! it in one transaction; and wakes `/sync`. Sends to one room are serialised
//! by a per-room lock; different rooms proceed in parallel. May call:
//! `storage`, `crypto`, `sync::notifier`. Must not: build HTTP responses.

mod build;
pub mod create;
mod error;
mod membership;
pub mod pdu;
pub mod versions;
pub mod visibility;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::{DeviceId, OwnedEventId, OwnedRoomId, RoomId, UserId};
use serde_json::Value;

pub use build::RoomState;
pub use create::CreateRoom;
pub use error::RoomError;
pub use membership::Membership;

use crate::{
    services::Services,
    storage::{NewEvent, StorageError},
};

/// The largest event, in bytes of canonical JSON, that a room accepts.
pub const MAX_EVENT_SIZE: usize = 65_536;

/// Per-room write locks. Held while an event is built, checked and
/// persisted, so events of one room get distinct, ordered positions and each
/// builds on the previous one; a tokio mutex because the hold spans awaits.
#[derive(Default)]
pub struct Rooms {
    locks: Mutex<HashMap<OwnedRoomId, Arc<tokio::sync::Mutex<()>>>>,
}

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
    /// `(device, transaction id)` for idempotent client sends.
    pub txn: Option<(&'a DeviceId, &'a str)>,
    /// Top-level `redacts` (room versions before 11 carry it outside content).
    pub redacts: Option<OwnedEventId>,
}

impl Rooms {
    fn lock_for(&self, room_id: &RoomId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if locks.len() > 10_000 {
            // Forget locks nobody holds, so the map does not grow with every room ever written.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        locks.entry(room_id.to_owned()).or_default().clone()
    }

    /// Builds, authorises, signs and persists one event; returns its id. A
    /// repeated client transaction returns the first event's id.
    pub async fn send(&self, services: &Services, room_id: &RoomId, sender: &UserId, outgoing: Outgoing<'_>) -> Result<OwnedEventId, RoomError> {
        let storage = &services.storage;
        if let Some((device, txn_id)) = outgoing.txn
            && let Some(existing) = storage.txn_event(sender, device, txn_id).await?
        {
            return Ok(existing);
        }
        let lock = self.lock_for(room_id);
        let _guard = lock.lock().await;

        let state = RoomState::load(services, room_id).await?;
        let built = state.build(services, sender, &outgoing)?;
        let txn = outgoing.txn.map(|(device, txn_id)| (sender, device, txn_id));
        let new = NewEvent { txn, ..built.as_new_event() };
        match storage.persist_events(None, &[new]).await {
            Ok(_) => {}
            Err(StorageError::Conflict) if txn.is_some() => {
                // The same transaction raced in through another request.
                if let Some((device, txn_id)) = outgoing.txn
                    && let Some(existing) = storage.txn_event(sender, device, txn_id).await?
                {
                    return Ok(existing);
                }
                return Err(StorageError::Conflict.into());
            }
            Err(error) => return Err(error.into()),
        }
        services.notifier.notify(storage.persisted_events_position());
        Ok(built.event_id)
    }
}
