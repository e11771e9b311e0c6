//! Writes into a room are made by the room's events persister: an instance
//! that does not persist a room sends the write (a message, a membership
//! change, a profile refresh, a redaction, a new room) over the internal
//! API, and the persister runs it through the same pipeline (federation
//! calls through `federation::at_persister`). Also the
//! typing snapshot readers fetch from the typing writer.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use ruma::{OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::{CallError, decode_positions, wait_for_positions};
use crate::{
    federation::at_persister::{self, FederationWrite},
    rooms::{CreateRoom, Membership, RoomError},
    services::Services,
    typing::TypingSnapshot,
};

/// A write into a room, as the persister receives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "write", rename_all = "snake_case")]
pub enum RoomWrite {
    Send {
        sender: OwnedUserId,
        event_type: String,
        state_key: Option<String>,
        content: Value,
        txn: Option<(OwnedDeviceId, String)>,
        redacts: Option<OwnedEventId>,
    },
    Membership {
        sender: OwnedUserId,
        target: OwnedUserId,
        membership: Membership,
        reason: Option<String>,
    },
    RefreshProfile {
        user_id: OwnedUserId,
    },
    Redact {
        sender: OwnedUserId,
        target: OwnedEventId,
        reason: Option<String>,
        device_id: OwnedDeviceId,
        txn_id: String,
    },
    Create {
        creator: OwnedUserId,
        request: CreateRoom,
    },
    /// Another server's request about the room, or a join of a remote room.
    Federation(FederationWrite),
}

/// What a room write returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomWriteOutcome {
    EventId(OwnedEventId),
    Changed(bool),
    RoomId(OwnedRoomId),
    /// A federation call's answer, as JSON text.
    Federation(String),
}

impl TryFrom<RoomWriteOutcome> for OwnedEventId {
    type Error = RoomWriteOutcome;
    fn try_from(outcome: RoomWriteOutcome) -> Result<Self, RoomWriteOutcome> {
        match outcome {
            RoomWriteOutcome::EventId(event_id) => Ok(event_id),
            other => Err(other),
        }
    }
}

impl TryFrom<RoomWriteOutcome> for bool {
    type Error = RoomWriteOutcome;
    fn try_from(outcome: RoomWriteOutcome) -> Result<Self, RoomWriteOutcome> {
        match outcome {
            RoomWriteOutcome::Changed(changed) => Ok(changed),
            other => Err(other),
        }
    }
}

impl TryFrom<RoomWriteOutcome> for OwnedRoomId {
    type Error = RoomWriteOutcome;
    fn try_from(outcome: RoomWriteOutcome) -> Result<Self, RoomWriteOutcome> {
        match outcome {
            RoomWriteOutcome::RoomId(room_id) => Ok(room_id),
            other => Err(other),
        }
    }
}

/// When another instance persists `room_id`: sends it the write `write`
/// makes and returns its answer. `None` when this instance persists the
/// room and must make the write itself.
pub async fn at_remote_persister<T>(services: &Services, room_id: &RoomId, write: impl FnOnce() -> RoomWrite) -> Result<Option<T>, RoomError>
where
    T: TryFrom<RoomWriteOutcome, Error = RoomWriteOutcome>,
{
    let Some(persister) = remote_persister(services, room_id) else { return Ok(None) };
    answer(call(services, &persister, room_id, write()).await?).map(Some)
}

/// The persister's answer as the kind the write expects.
pub fn answer<T: TryFrom<RoomWriteOutcome, Error = RoomWriteOutcome>>(outcome: RoomWriteOutcome) -> Result<T, RoomError> {
    T::try_from(outcome).map_err(|other| RoomError::Invalid(format!("unexpected reply from the room's persister: {other:?}")))
}

/// The persister of `room_id` when it is another instance.
pub fn remote_persister(services: &Services, room_id: &RoomId) -> Option<String> {
    let writers = services.replication.writers();
    (!writers.persists_room(room_id.as_str())).then(|| writers.events_writer(room_id.as_str()).to_owned())
}

pub fn new_txn_id() -> String {
    use rand::Rng;
    rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(20).map(char::from).collect()
}

/// Sends `write` to the persister of `room_id` and waits to see its result.
pub async fn call(services: &Services, persister: &str, room_id: &RoomId, write: RoomWrite) -> Result<RoomWriteOutcome, RoomError> {
    let body = serde_json::to_vec(&write).map_err(|e| RoomError::Invalid(e.to_string()))?;
    let path = format!("/_weft/replication/v1/rooms/{}/write/{}", urlencode(room_id.as_str()), new_txn_id());
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    let reply = services.replication.client.call(persister, Method::POST, &path, headers, Bytes::from(body)).await.map_err(unreachable)?;
    if reply.status != StatusCode::OK {
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        return Err(RoomError::Remote { status: reply.status.as_u16(), body });
    }
    wait_for_positions(&services.notifier, &decode_positions(&reply.positions)).await;
    serde_json::from_slice(&reply.body).map_err(|e| RoomError::Invalid(format!("malformed reply from the room's persister: {e}")))
}

fn unreachable(error: CallError) -> RoomError {
    tracing::error!(%error, "the room's events persister is unreachable");
    RoomError::Remote {
        status: StatusCode::SERVICE_UNAVAILABLE.as_u16(),
        body: serde_json::json!({"errcode": "M_UNKNOWN", "error": format!("The room's events persister is unreachable: {error}")}),
    }
}

/// Runs `write` here, on the room's persister.
pub async fn apply(services: &Services, room_id: &RoomId, write: RoomWrite) -> Result<RoomWriteOutcome, RoomError> {
    let rooms = &services.rooms;
    Ok(match write {
        RoomWrite::Send { sender, event_type, state_key, content, txn, redacts } => {
            let txn = txn.as_ref().map(|(device, txn_id)| (device.as_ref(), txn_id.as_str()));
            let outgoing = crate::rooms::Outgoing { kind: &event_type, state_key: state_key.as_deref(), content, txn, redacts };
            RoomWriteOutcome::EventId(rooms.send(services, room_id, &sender, outgoing).await?)
        }
        RoomWrite::Membership { sender, target, membership, reason } => {
            RoomWriteOutcome::EventId(rooms.set_membership(services, room_id, &sender, &target, membership, reason.as_deref()).await?)
        }
        RoomWrite::RefreshProfile { user_id } => RoomWriteOutcome::Changed(rooms.refresh_member_profile(services, room_id, &user_id).await?),
        RoomWrite::Redact { sender, target, reason, device_id, txn_id } => {
            RoomWriteOutcome::EventId(rooms.redact(services, room_id, &sender, &target, reason.as_deref(), (&device_id, &txn_id)).await?)
        }
        RoomWrite::Create { creator, request } => RoomWriteOutcome::RoomId(rooms.create_room_with_id(services, &creator, request, room_id.to_owned()).await?),
        RoomWrite::Federation(call) => RoomWriteOutcome::Federation(at_persister::apply(services, room_id, call).await?),
    })
}

/// The typing state of the typing writer.
pub async fn fetch_typing(services: &Services, writer: &str) -> Result<TypingSnapshot, String> {
    let reply = services
        .replication
        .client
        .call(writer, Method::GET, "/_weft/replication/v1/streams/typing", HeaderMap::new(), Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    if reply.status != StatusCode::OK {
        return Err(format!("status {}", reply.status));
    }
    serde_json::from_slice(&reply.body).map_err(|e| e.to_string())
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
