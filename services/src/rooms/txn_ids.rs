//! `unsigned.transaction_id`: an event sent with a transaction id
//! (`PUT /send/{type}/{txnId}`, `PUT /redact/{eventId}/{txnId}`) carries it
//! when shown to the device that sent it, so the client can match its local
//! echo; other devices and users never see it.
//!
//! The id is not stored on its own: `event_txns` keeps the whole request
//! (method and path, which scope idempotency as Synapse does), and the
//! transaction id is that path's last segment, percent-decoded.

use std::collections::HashMap;

use ruma::{DeviceId, OwnedEventId, UserId};
use serde_json::Value;

use weft_storage::{Storage, StorageError, StoredEvent};

use super::pdu::client_event;

/// The transaction ids of the events a device sent, among some events it is shown.
#[derive(Debug, Default)]
pub struct TransactionIds(HashMap<OwnedEventId, String>);

impl TransactionIds {
    /// Looks up which of `events` the device sent with a transaction id.
    pub async fn load<'a>(
        storage: &Storage,
        user_id: &UserId,
        device_id: &DeviceId,
        events: impl IntoIterator<Item = &'a StoredEvent>,
    ) -> Result<Self, StorageError> {
        let own: Vec<&ruma::EventId> = events.into_iter().filter(|event| event.sender == user_id).map(|event| event.event_id.as_ref()).collect();
        let requests = storage.txn_requests(user_id, device_id, &own).await?;
        Ok(Self(requests.into_iter().filter_map(|(event_id, request)| Some((event_id, transaction_id_of(&request)?))).collect()))
    }

    /// The event in the client format, with `unsigned.transaction_id` if this device sent it.
    pub fn client_event(&self, event: &StoredEvent, with_room_id: bool) -> Value {
        let mut out = client_event(event, with_room_id);
        if let Some(txn_id) = self.0.get(&event.event_id)
            && let Some(Value::Object(unsigned)) = out.get_mut("unsigned")
        {
            unsigned.insert("transaction_id".into(), Value::String(txn_id.clone()));
        }
        out
    }
}

/// The transaction id in a stored request such as `PUT /_matrix/client/v3/rooms/{room}/send/{type}/{txnId}`.
fn transaction_id_of(request: &str) -> Option<String> {
    let segment = request.rsplit('/').next().filter(|segment| !segment.is_empty())?;
    percent_encoding::percent_decode_str(segment).decode_utf8().ok().map(|id| id.into_owned())
}

#[cfg(test)]
mod tests {
    use super::transaction_id_of;

    #[test]
    fn the_last_segment_decoded() {
        assert_eq!(transaction_id_of("PUT /_matrix/client/v3/rooms/!a:b/send/m.room.message/t%2F1").as_deref(), Some("t/1"));
        assert_eq!(transaction_id_of("PUT /_matrix/client/v3/rooms/!a:b/redact/$e/abc").as_deref(), Some("abc"));
        assert_eq!(transaction_id_of("PUT /x/").as_deref(), None);
    }
}
