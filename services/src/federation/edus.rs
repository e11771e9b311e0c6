//! EDUs received in a transaction: typing (`m.typing`) and read receipts
//! (`m.receipt`) of the origin's users in rooms they are joined to here,
//! and to-device messages (`m.direct_to_device`) from the origin's users to
//! local devices, once per `message_id`; device-list and signing-key
//! updates (`device_lists`) and presence (`presence`).
//! Each is applied by the instance that writes its stream (main by
//! default): an instance that does not sends it there over the internal
//! API (`FORWARD_PATH`), and a transaction whose EDUs could not be passed
//! on fails, so that the origin sends it again. Unknown EDU types are
//! dropped with a log line.

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use ruma::{EventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, ServerName, UserId, api::federation::transactions::edu::Edu, serde::Raw};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use weft_core::config::MAIN_INSTANCE;
use weft_storage::{Delivery, NewReceipt, StorageError, Stream, UNTHREADED};

use crate::services::AppState;

/// How long a remote user is shown typing without a refresh (Synapse's 30 s).
const REMOTE_TYPING_TIMEOUT: Duration = Duration::from_secs(30);

/// The internal route on which a stream's writer takes the EDUs another
/// instance received (`{txn_id}` makes a retried call answer once).
pub const FORWARD_PATH: &str = "/_weft/replication/v1/federation/edus/{txn_id}";

/// EDUs another instance received from `origin`, for this one to apply.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardedEdus {
    pub origin: OwnedServerName,
    pub edus: Vec<Raw<Edu>>,
}

/// Why received EDUs were not all applied.
#[derive(Debug, thiserror::Error)]
pub enum EduError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the writer `{instance}` of the EDUs' stream could not take them: {reason}")]
    Writer { instance: String, reason: String },
}

pub async fn handle(state: &AppState, origin: &ServerName, edus: &[Raw<Edu>]) -> Result<(), EduError> {
    let mut elsewhere: BTreeMap<String, Vec<Raw<Edu>>> = BTreeMap::new();
    for raw in edus {
        let Ok(edu) = serde_json::from_str::<Value>(raw.json().get()) else { continue };
        let edu_type = edu["edu_type"].as_str();
        if let Some(writer) = edu_type.and_then(|edu_type| writer_of(state, edu_type))
            && writer != state.config.instance_name()
        {
            elsewhere.entry(writer.to_owned()).or_default().push(raw.clone());
            continue;
        }
        let content = &edu["content"];
        match edu_type {
            Some("m.typing") => typing(state, origin, content).await?,
            Some("m.receipt") => receipts(state, origin, content).await?,
            Some("m.direct_to_device") => to_device(state, origin, content).await?,
            Some("m.device_list_update") => super::device_lists::device_list_update(state, origin, content).await?,
            Some("m.signing_key_update") => super::device_lists::signing_key_update(state, origin, content).await?,
            Some("m.presence") => super::presence::received(state, origin, content).await?,
            other => tracing::debug!(%origin, edu_type = ?other, "an EDU type not handled yet"),
        }
    }
    for (instance, edus) in elsewhere {
        forward(state, &instance, ForwardedEdus { origin: origin.to_owned(), edus }).await?;
    }
    Ok(())
}

/// The instance that writes the stream an EDU type changes.
fn writer_of<'a>(state: &'a AppState, edu_type: &str) -> Option<&'a str> {
    let writers = &state.config.stream_writers;
    let list = match edu_type {
        "m.typing" => &writers.typing,
        "m.receipt" => &writers.receipts,
        "m.direct_to_device" => &writers.to_device,
        "m.device_list_update" | "m.signing_key_update" => &writers.device_lists,
        "m.presence" => &writers.presence,
        _ => return None,
    };
    Some(list.first().map_or(MAIN_INSTANCE, String::as_str))
}

async fn forward(state: &AppState, instance: &str, edus: ForwardedEdus) -> Result<(), EduError> {
    let failed = |reason: String| EduError::Writer { instance: instance.to_owned(), reason };
    let body = serde_json::to_vec(&edus).map_err(|e| failed(e.to_string()))?;
    let path = FORWARD_PATH.replace("{txn_id}", &crate::replication::room_writes::new_txn_id());
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    let reply = state.replication.client.call(instance, Method::POST, &path, headers, Bytes::from(body)).await.map_err(|e| failed(e.to_string()))?;
    if reply.status != StatusCode::OK {
        return Err(failed(format!("status {}", reply.status)));
    }
    Ok(())
}

fn writes(state: &AppState, writers: &[String]) -> bool {
    writers.first().map_or(MAIN_INSTANCE, String::as_str) == state.config.instance_name()
}

/// A user of `origin` joined to the room, and the room's server ACL allows `origin`.
async fn member_of(state: &AppState, origin: &ServerName, room_id: &RoomId, user_id: &UserId) -> Result<bool, StorageError> {
    Ok(user_id.server_name() == origin
        && state.storage.current_membership(room_id, user_id).await?.as_deref() == Some("join")
        && super::acl::allows(state, room_id, origin).await?)
}

async fn typing(state: &AppState, origin: &ServerName, content: &Value) -> Result<(), StorageError> {
    if !writes(state, &state.config.stream_writers.typing) {
        return Ok(());
    }
    let room_id = content["room_id"].as_str().and_then(|id| OwnedRoomId::try_from(id).ok());
    let user_id = content["user_id"].as_str().and_then(|id| OwnedUserId::try_from(id).ok());
    let (Some(room_id), Some(user_id)) = (room_id, user_id) else { return Ok(()) };
    if !member_of(state, origin, &room_id, &user_id).await? {
        return Ok(());
    }
    if content["typing"].as_bool() == Some(true) {
        let (position, until) = state.typing.start(&room_id, &user_id, REMOTE_TYPING_TIMEOUT);
        state.typing_changed(&room_id, position);
        let services = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(until.into()).await;
            if let Some(position) = services.typing.expire(&room_id, &user_id, until) {
                services.typing_changed(&room_id, position);
            }
        });
    } else if let Some(position) = state.typing.stop(&room_id, &user_id) {
        state.typing_changed(&room_id, position);
    }
    Ok(())
}

/// `{room_id: {receipt_type: {user_id: {event_ids, data}}}}`
async fn receipts(state: &AppState, origin: &ServerName, content: &Value) -> Result<(), StorageError> {
    if !writes(state, &state.config.stream_writers.receipts) {
        return Ok(());
    }
    let Some(rooms) = content.as_object() else { return Ok(()) };
    let mut advanced = false;
    for (room_id, by_type) in rooms {
        let Ok(room_id) = OwnedRoomId::try_from(room_id.as_str()) else { continue };
        let Some(by_type) = by_type.as_object() else { continue };
        for (receipt_type, by_user) in by_type {
            if receipt_type != "m.read" {
                continue;
            }
            let Some(by_user) = by_user.as_object() else { continue };
            for (user_id, receipt) in by_user {
                let Ok(user_id) = OwnedUserId::try_from(user_id.as_str()) else { continue };
                if !member_of(state, origin, &room_id, &user_id).await? {
                    continue;
                }
                let thread_id = receipt["data"]["thread_id"].as_str().unwrap_or(UNTHREADED);
                for event_id in receipt["event_ids"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    let Ok(event_id) = <&EventId>::try_from(event_id) else { continue };
                    let Some(event) = state.storage.event(event_id).await?.filter(|event| event.room_id == room_id) else { continue };
                    let new = NewReceipt {
                        room_id: &room_id,
                        receipt_type: "m.read",
                        user_id: &user_id,
                        thread_id,
                        event_id: event_id.as_str(),
                        event_stream_ordering: event.stream_ordering,
                    };
                    advanced |= state.storage.set_receipt(new).await?.is_some();
                }
            }
        }
    }
    if advanced {
        state.stream_advanced(Stream::Receipts);
    }
    Ok(())
}

/// `{sender, type, message_id, messages: {user_id: {device_id | "*": content}}}`
async fn to_device(state: &AppState, origin: &ServerName, content: &Value) -> Result<(), StorageError> {
    if !writes(state, &state.config.stream_writers.to_device) {
        return Ok(());
    }
    let sender = content["sender"].as_str().and_then(|id| OwnedUserId::try_from(id).ok());
    let (Some(sender), Some(kind), Some(message_id)) = (sender, content["type"].as_str(), content["message_id"].as_str()) else { return Ok(()) };
    if sender.server_name() != origin {
        return Ok(());
    }
    let Some(messages) = content["messages"].as_object() else { return Ok(()) };
    let mut targets: Vec<(OwnedUserId, ruma::OwnedDeviceId, Value)> = Vec::new();
    for (user_id, devices) in messages {
        let Ok(user_id) = OwnedUserId::try_from(user_id.as_str()) else { continue };
        if user_id.server_name() != state.server_name {
            continue;
        }
        let known = state.storage.device_ids_of_users(&[user_id.as_ref()]).await?.remove(user_id.as_str()).unwrap_or_default();
        for (device, body) in devices.as_object().into_iter().flatten() {
            if !body.is_object() {
                continue;
            }
            let message = serde_json::json!({"type": kind, "sender": sender, "content": body});
            let chosen: Vec<&String> = if device == "*" { known.iter().collect() } else { known.iter().filter(|known| *known == device).collect() };
            for device_id in chosen {
                targets.push((user_id.clone(), device_id.as_str().into(), message.clone()));
            }
        }
    }
    let deliveries = targets.iter().map(|(user_id, device_id, message)| Delivery { user_id, device_id, message: message.clone() }).collect();
    // Idempotent per sending server and message id.
    let origin_device: ruma::OwnedDeviceId = format!("federation:{origin}").into();
    if state.storage.send_to_devices(&sender, &origin_device, &format!("{kind}/{message_id}"), deliveries).await? {
        state.stream_advanced(Stream::ToDevice);
    }
    Ok(())
}
