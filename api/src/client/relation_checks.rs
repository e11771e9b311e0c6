//! The checks Synapse makes on a new event's `m.relates_to` before sending
//! it, so that clients cannot make relations no one else could follow:
//! the parent is in the same room and known (or already a relation's
//! target); an annotation has a key of at most 500 bytes and is not the
//! sender's second identical one (`M_DUPLICATE_ANNOTATION`); a thread does
//! not start from an event that is itself a relation.

use http::StatusCode;
use ruma::{EventId, RoomId, UserId, api::error::ErrorKind};
use serde_json::Value;

use weft_services::services::Services;

use crate::error::{ApiError, ApiResult};

/// Synapse's limit on an annotation's key, in bytes.
const MAX_KEY_LEN: usize = 500;
/// Most of a parent's annotations of one type read to look for a duplicate.
const MAX_ANNOTATIONS_READ: i64 = 10_000;

pub(super) async fn check(state: &Services, room_id: &RoomId, sender: &UserId, kind: &str, content: &Value) -> ApiResult<()> {
    let relation = &content["m.relates_to"];
    let (Some(rel_type), Some(parent_id)) = (relation["rel_type"].as_str(), relation["event_id"].as_str()) else { return Ok(()) };
    let refused = |message: &str| ApiError::unknown(StatusCode::BAD_REQUEST, message);
    let parent_id = EventId::parse(parent_id).map_err(|_| ApiError::invalid_param("m.relates_to.event_id is not an event id"))?;
    let storage = &state.storage;
    let parent = storage.event(&parent_id).await?;
    match &parent {
        Some(parent) if parent.room_id != room_id => return Err(refused("Relations must be in the same room")),
        Some(_) => {}
        None => {
            let known = !storage.relating_events(room_id, parent_id.as_str(), None, None, 0, i64::MAX, 1, false, 1).await?.is_empty();
            if !known {
                return Err(refused("Can't send relation to unknown event"));
            }
        }
    }
    match rel_type {
        "m.annotation" => {
            let key = relation["key"].as_str().ok_or_else(|| refused("Missing aggregation key"))?;
            if key.len() > MAX_KEY_LEN {
                return Err(refused("Aggregation key is too long"));
            }
            let annotations =
                storage.relating_events(room_id, parent_id.as_str(), Some("m.annotation"), Some(kind), 0, i64::MAX, MAX_ANNOTATIONS_READ, false, 1).await?;
            let same = annotations
                .iter()
                .filter(|annotation| annotation.sender == sender)
                .any(|annotation| serde_json::from_str::<Value>(&annotation.json).is_ok_and(|pdu| pdu["content"]["m.relates_to"]["key"].as_str() == Some(key)));
            if same {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::DuplicateAnnotation, "Can't send same reaction twice"));
            }
        }
        "m.thread" => {
            let parent_relates = parent
                .as_ref()
                .and_then(|parent| serde_json::from_str::<Value>(&parent.json).ok())
                .is_some_and(|pdu| pdu["content"]["m.relates_to"]["rel_type"].is_string());
            if parent_relates {
                return Err(refused("Cannot start threads from an event with a relation"));
            }
        }
        _ => {}
    }
    Ok(())
}
