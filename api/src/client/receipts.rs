//! Receipts and read markers: `POST /rooms/{roomId}/receipt/{type}/{eventId}`
//! (`m.read`, `m.read.private`, and `m.fully_read` as a read marker, with
//! threads) and `POST /rooms/{roomId}/read_markers`. The fully-read marker
//! is the room account data `m.fully_read`.

use ruma::{
    EventId, RoomId,
    api::client::{
        read_marker::set_read_marker,
        receipt::create_receipt::{self, v3::ReceiptType},
    },
    events::receipt::ReceiptThread,
};
use serde_json::{Value, json};

use weft_services::services::AppState;
use weft_storage::{NewReceipt, StoredEvent, Stream, UNTHREADED};

use crate::{
    auth::Sender,
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

pub async fn receipt(state: AppState, request: Ruma<create_receipt::v3::Request>) -> ApiResult<create_receipt::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let thread_id = match &body.thread {
        ReceiptThread::Unthreaded => UNTHREADED.to_owned(),
        ReceiptThread::Main => "main".to_owned(),
        ReceiptThread::Thread(root) => root.to_string(),
        _ => return Err(ApiError::invalid_param("Unknown thread_id")),
    };
    let kind = match &body.receipt_type {
        ReceiptType::Read => "m.read",
        ReceiptType::ReadPrivate => "m.read.private",
        ReceiptType::FullyRead if thread_id.is_empty() => {
            set_fully_read(&state, sender, &body.room_id, &body.event_id).await?;
            return Ok(create_receipt::v3::Response::new());
        }
        ReceiptType::FullyRead => return Err(ApiError::invalid_param("thread_id is not allowed with m.fully_read")),
        _ => return Err(ApiError::invalid_param("Unknown receipt type")),
    };
    record(&state, sender, &body.room_id, kind, &thread_id, &body.event_id).await?;
    Ok(create_receipt::v3::Response::new())
}

pub async fn read_markers(state: AppState, request: Ruma<set_read_marker::v3::Request>) -> ApiResult<set_read_marker::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    if let Some(event_id) = &body.fully_read {
        set_fully_read(&state, sender, &body.room_id, event_id).await?;
    }
    if let Some(event_id) = &body.read_receipt {
        record(&state, sender, &body.room_id, "m.read", UNTHREADED, event_id).await?;
    }
    if let Some(event_id) = &body.private_read_receipt {
        record(&state, sender, &body.room_id, "m.read.private", UNTHREADED, event_id).await?;
    }
    Ok(set_read_marker::v3::Response::new())
}

/// The receipted event, once the user may receipt it: joined to the room,
/// and the event is in it.
async fn receiptable(state: &AppState, sender: &Sender, room_id: &RoomId, event_id: &EventId) -> ApiResult<StoredEvent> {
    if state.storage.current_membership(room_id, &sender.user_id).await?.as_deref() != Some("join") {
        return Err(ApiError::forbidden("You are not joined to this room"));
    }
    match state.storage.event(event_id).await? {
        Some(event) if event.room_id == room_id => Ok(event),
        _ => Err(ApiError::not_found("Event not found in this room")),
    }
}

/// Whether a threaded receipt names the event's thread, as Synapse checks
/// it: `main` for an event in no thread (a root counts as main), else the
/// thread's root, which is the event's own thread, the event itself, or
/// what it relates to (a reaction to the root).
fn in_thread(event: &StoredEvent, thread_id: &str) -> bool {
    let pdu: Value = serde_json::from_str(&event.json).unwrap_or_default();
    let relation = &pdu["content"]["m.relates_to"];
    let thread_root = (relation["rel_type"] == "m.thread").then(|| relation["event_id"].as_str()).flatten();
    match thread_id {
        UNTHREADED => true,
        "main" => thread_root.is_none(),
        root => thread_root == Some(root) || event.event_id.as_str() == root || relation["event_id"].as_str() == Some(root),
    }
}

async fn record(state: &AppState, sender: &Sender, room_id: &RoomId, kind: &str, thread_id: &str, event_id: &EventId) -> ApiResult<()> {
    let event = receiptable(state, sender, room_id, event_id).await?;
    if !in_thread(&event, thread_id) {
        return Err(ApiError::invalid_param("thread_id does not match the event's thread"));
    }
    let ordering = event.stream_ordering;
    let receipt = NewReceipt { room_id, receipt_type: kind, user_id: &sender.user_id, thread_id, event_id: event_id.as_str(), event_stream_ordering: ordering };
    if state.storage.set_receipt(receipt).await?.is_some() {
        // Public read receipts reach the room's other servers as an `m.receipt` EDU.
        if kind == "m.read" {
            let mut data = json!({"ts": weft_storage::now_ms()});
            if thread_id != UNTHREADED {
                data["thread_id"] = json!(thread_id);
            }
            let edu =
                json!({"edu_type": "m.receipt", "content": {room_id.as_str(): {"m.read": {sender.user_id.as_str(): {"event_ids": [event_id], "data": data}}}}});
            weft_services::federation::sender::queue_room_edu(state, room_id, &edu).await?;
        }
        state.stream_advanced(Stream::Receipts);
    }
    Ok(())
}

async fn set_fully_read(state: &AppState, sender: &Sender, room_id: &RoomId, event_id: &EventId) -> ApiResult<()> {
    receiptable(state, sender, room_id, event_id).await?;
    state.storage.set_account_data(&sender.user_id, Some(room_id), "m.fully_read", &json!({"event_id": event_id})).await?;
    state.stream_advanced(Stream::AccountData);
    Ok(())
}
