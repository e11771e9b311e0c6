//! Redactions. The authorization rules let anyone on the sender's server
//! redact; the server then applies a redaction only when the sender sent the
//! event or has the room's `redact` power level, so that check is made here,
//! before the redaction is even created. The redacted event is rewritten to
//! its redacted form (the room version's rules) in the same transaction.

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, DeviceId, EventId, OwnedEventId, RoomId, UserId,
    canonical_json::{RedactedBecause, redact},
    events::StateEventType,
};
use serde_json::{Value, json};

use weft_storage::{NewEvent, StorageError};

use super::{Outgoing, RoomError, RoomState, versions};
use crate::{
    replication::room_writes::{self, RoomWrite},
    services::Services,
};

impl super::Rooms {
    pub async fn redact(
        &self,
        services: &Services,
        room_id: &RoomId,
        sender: &UserId,
        target_id: &EventId,
        reason: Option<&str>,
        txn: (&DeviceId, &str),
    ) -> Result<OwnedEventId, RoomError> {
        if let Some(answer) = room_writes::at_remote_persister(services, room_id, || RoomWrite::Redact {
            sender: sender.to_owned(),
            target: target_id.to_owned(),
            reason: reason.map(str::to_owned),
            device_id: txn.0.to_owned(),
            txn_id: txn.1.to_owned(),
        })
        .await?
        {
            return Ok(answer);
        }
        let storage = &services.storage;
        let target = storage.event(target_id).await?.filter(|event| event.room_id == room_id).ok_or(RoomError::UnknownEvent)?;
        let (event_id, redacted_state) = self
            .with_room(services, room_id, async |state: &RoomState| {
                if target.sender != sender {
                    let levels = state.content_of(&StateEventType::RoomPowerLevels, "").unwrap_or_default();
                    let needed = levels.get("redact").and_then(Value::as_i64).unwrap_or(50);
                    if state.power_level_of(sender) < needed {
                        return Err(RoomError::Forbidden("You may only redact your own events".into()));
                    }
                }
                let mut content = json!({});
                if let Some(reason) = reason {
                    content["reason"] = json!(reason);
                }
                let in_content = versions::redacts_in_content(&state.rules);
                if in_content {
                    content["redacts"] = json!(target_id);
                }
                let outgoing =
                    Outgoing { kind: "m.room.redaction", state_key: None, content, txn: Some(txn), redacts: (!in_content).then(|| target_id.to_owned()) };
                let built = state.build(services, sender, &outgoing)?;

                let CanonicalJsonValue::Object(mut because) =
                    serde_json::from_str::<CanonicalJsonValue>(&built.json).map_err(|e| RoomError::Invalid(e.to_string()))?
                else {
                    return Err(RoomError::Invalid("the redaction is not an object".into()));
                };
                because.insert("event_id".into(), CanonicalJsonValue::String(built.event_id.to_string()));
                let original: CanonicalJsonObject =
                    serde_json::from_str(&target.json).map_err(|e| RoomError::Invalid(format!("stored event {target_id}: {e}")))?;
                let redacted =
                    redact(original, &state.rules.redaction, Some(RedactedBecause::from_json(because))).map_err(|e| RoomError::Invalid(e.to_string()))?;
                let redacted_json = CanonicalJsonValue::Object(redacted).to_string();

                let new = NewEvent { txn: Some((sender, txn.0, txn.1)), redaction: Some((target_id, &redacted_json)), ..built.as_new_event() };
                match storage.persist_events(None, &[new]).await {
                    Ok(_) => {
                        services.events_persisted(room_id.as_str(), &[built.event_id.as_str()]);
                        Ok(((built.event_id.clone(), target.state_key.is_some()), vec![built]))
                    }
                    Err(StorageError::Conflict) => {
                        let existing = storage.txn_event(sender, txn.0, txn.1).await?.ok_or(StorageError::Conflict)?;
                        Ok(((existing, false), Vec::new()))
                    }
                    Err(error) => Err(error.into()),
                }
            })
            .await?;
        if redacted_state {
            // The cached state holds the unredacted content; reload it.
            self.forget(room_id).await;
        }
        Ok(event_id)
    }
}
