//! Federation work that writes into a room runs on the room's events
//! persister, whichever instance received the request: an incoming PDU,
//! `make_join`/`make_leave` (built on the persister's view of the room),
//! `send_join`/`send_leave`, an incoming invite, and a local user's join,
//! knock, or rejection of an invite, in a remote room. Here the call either runs in place (this instance
//! persists the room, as in a single process) or travels over the internal
//! API as a room write (`replication::room_writes`), and the persister runs
//! it through the same functions (`apply`).
//!
//! May call: `replication::room_writes` (the internal API), `inbound`,
//! `resident`, `invite`, `join_remote`, `remote_membership`.

use ruma::{OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, RoomVersionId, ServerName, UserId, api::federation::membership::RawStrippedState};
use serde::{Deserialize, Serialize};
use serde_json::{json, value::RawValue};

use super::{FederationRoomError, inbound, invite, join_remote, pdus::ReceivedPdu, remote_membership, resident};
use crate::{
    replication::room_writes::{self, RoomWrite, RoomWriteOutcome},
    rooms::RoomError,
    services::Services,
};

/// A federation call the room's persister makes. Events travel as their
/// JSON text (room writes are internally tagged, which a `RawValue` cannot
/// pass through), so the persister checks the very bytes the origin sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum FederationWrite {
    /// One PDU of an incoming transaction; answers `PduAnswer`.
    Pdu { origin: OwnedServerName, pdu: String },
    /// `make_join` (`supported` set) or `make_leave`; answers `(RoomVersionId, event)`.
    MakeMembership { origin: OwnedServerName, user_id: OwnedUserId, membership: String, supported: Option<Vec<RoomVersionId>> },
    /// `send_join` or `send_leave`; answers `JoinAnswer` for a join, `null` for a leave.
    SendMembership { origin: OwnedServerName, event_id: OwnedEventId, pdu: String, membership: String },
    /// An incoming invite (with the inviting server's stripped state, as
    /// JSON text); answers the countersigned event.
    Invite { origin: OwnedServerName, event_id: OwnedEventId, room_version: RoomVersionId, event: String, invite_room_state: String },
    /// A local user joining a remote room; answers the join's event id.
    JoinRemote { user_id: OwnedUserId, servers: Vec<OwnedServerName>, reason: Option<String> },
    /// A local user knocking on a remote room; answers the knock's event id.
    KnockRemote { user_id: OwnedUserId, servers: Vec<OwnedServerName>, reason: Option<String> },
    /// A local user leaving a room they are only invited to or knocked on;
    /// answers the leave's event id, or `null` when that is not the case.
    LeaveRemote { user_id: OwnedUserId, reason: Option<String> },
}

/// What became of a forwarded PDU: accepted, or refused with the reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PduAnswer {
    pub refused: Option<String>,
}

/// `send_join`'s answer as it travels between instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JoinAnswerWire {
    state: Vec<Box<RawValue>>,
    auth_chain: Vec<Box<RawValue>>,
    servers_in_room: Vec<String>,
}

/// Sends `call` to the persister of `room_id` when that is another
/// instance; `None` when this instance persists the room.
async fn at_remote<T: serde::de::DeserializeOwned>(
    services: &Services,
    room_id: &RoomId,
    call: impl FnOnce() -> FederationWrite,
) -> Result<Option<T>, RoomError> {
    let Some(persister) = room_writes::remote_persister(services, room_id) else { return Ok(None) };
    match room_writes::call(services, &persister, room_id, RoomWrite::Federation(call())).await? {
        RoomWriteOutcome::Federation(answer) => {
            serde_json::from_str(&answer).map(Some).map_err(|e| RoomError::Invalid(format!("malformed federation answer from the room's persister: {e}")))
        }
        other => Err(RoomError::Invalid(format!("unexpected reply from the room's persister: {other:?}"))),
    }
}

/// Every check of one incoming PDU, then persisting it, on the room's persister.
/// `Err` only when the PDU could not be handled at all (the transaction
/// then fails, and the origin sends it again).
pub async fn pdu(services: &Services, origin: &ServerName, received: ReceivedPdu, raw: &RawValue) -> Result<Result<(), String>, RoomError> {
    let remote = at_remote::<PduAnswer>(services, &received.room_id, || FederationWrite::Pdu { origin: origin.to_owned(), pdu: raw.get().to_owned() }).await;
    match remote? {
        Some(answer) => Ok(answer.refused.map_or(Ok(()), Err)),
        None => local_pdu(services, origin, received).await,
    }
}

/// A PDU of a transaction: its commit is flushed by the transaction's
/// stored answer (`inbound::transaction`), whichever instance stores it.
async fn local_pdu(services: &Services, origin: &ServerName, received: ReceivedPdu) -> Result<Result<(), String>, RoomError> {
    match inbound::handle_pdu(services, origin, received, true, weft_storage::Durability::WithNextFlush).await {
        Ok(_) => Ok(Ok(())),
        Err(inbound::PduError::Storage(error)) => Err(error.into()),
        Err(inbound::PduError::Refused(reason)) => Ok(Err(reason)),
    }
}

/// `make_join` (with the asking server's `supported` versions) or `make_leave`.
pub async fn make_membership(
    services: &Services,
    origin: &ServerName,
    room_id: &OwnedRoomId,
    user_id: &UserId,
    membership: &str,
    supported: Option<&[RoomVersionId]>,
) -> Result<(RoomVersionId, Box<RawValue>), FederationRoomError> {
    let call = || FederationWrite::MakeMembership {
        origin: origin.to_owned(),
        user_id: user_id.to_owned(),
        membership: membership.to_owned(),
        supported: supported.map(<[RoomVersionId]>::to_vec),
    };
    if let Some(answer) = at_remote(services, room_id, call).await? {
        return Ok(answer);
    }
    match supported {
        Some(supported) => resident::make_join(services, origin, room_id, user_id, supported).await,
        None => resident::make_leave(services, origin, room_id, user_id).await,
    }
}

/// `send_join`.
pub async fn send_join(
    services: &Services,
    origin: &ServerName,
    room_id: &OwnedRoomId,
    event_id: &OwnedEventId,
    raw: &RawValue,
) -> Result<resident::JoinAnswer, FederationRoomError> {
    let call =
        || FederationWrite::SendMembership { origin: origin.to_owned(), event_id: event_id.clone(), pdu: raw.get().to_owned(), membership: "join".into() };
    if let Some(JoinAnswerWire { state, auth_chain, servers_in_room }) = at_remote(services, room_id, call).await? {
        return Ok(resident::JoinAnswer { state, auth_chain, servers_in_room });
    }
    resident::send_join(services, origin, room_id, event_id, raw).await
}

/// `send_leave`.
pub async fn send_leave(
    services: &Services,
    origin: &ServerName,
    room_id: &OwnedRoomId,
    event_id: &OwnedEventId,
    raw: &RawValue,
) -> Result<(), FederationRoomError> {
    let call =
        || FederationWrite::SendMembership { origin: origin.to_owned(), event_id: event_id.clone(), pdu: raw.get().to_owned(), membership: "leave".into() };
    if at_remote::<()>(services, room_id, call).await?.is_some() {
        return Ok(());
    }
    resident::send_leave(services, origin, room_id, event_id, raw).await
}

/// An incoming invite, stored by the persister of its room.
pub async fn receive_invite(
    services: &Services,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &OwnedEventId,
    room_version: &RoomVersionId,
    raw: &RawValue,
    invite_room_state: &[RawStrippedState],
) -> Result<Box<RawValue>, FederationRoomError> {
    let call = || FederationWrite::Invite {
        origin: origin.to_owned(),
        event_id: event_id.clone(),
        room_version: room_version.clone(),
        event: raw.get().to_owned(),
        invite_room_state: json(&invite_room_state),
    };
    if let Some(event) = at_remote(services, room_id, call).await? {
        return Ok(event);
    }
    invite::receive_invite(services, origin, room_id, event_id, room_version, raw, invite_room_state).await
}

/// A local user's join of the remote room `room_id`, made by its persister.
pub async fn join_remote(
    services: &Services,
    room_id: &RoomId,
    user_id: &UserId,
    servers: &[OwnedServerName],
    reason: Option<&str>,
) -> Result<OwnedEventId, RoomError> {
    let call = || FederationWrite::JoinRemote { user_id: user_id.to_owned(), servers: servers.to_vec(), reason: reason.map(str::to_owned) };
    if let Some(event_id) = at_remote(services, room_id, call).await? {
        return Ok(event_id);
    }
    join_remote::join(services, room_id, user_id, servers, reason).await
}

/// A local user's knock on the remote room `room_id`, made by its persister.
pub async fn knock_remote(
    services: &Services,
    room_id: &RoomId,
    user_id: &UserId,
    servers: &[OwnedServerName],
    reason: Option<&str>,
) -> Result<OwnedEventId, RoomError> {
    let call = || FederationWrite::KnockRemote { user_id: user_id.to_owned(), servers: servers.to_vec(), reason: reason.map(str::to_owned) };
    if let Some(event_id) = at_remote(services, room_id, call).await? {
        return Ok(event_id);
    }
    remote_membership::knock(services, room_id, user_id, servers, reason).await
}

/// A local user's leave of a room this server is not in (rejecting an
/// invite, withdrawing a knock), made by its persister; `None` when the
/// user is neither invited nor knocking there.
pub async fn leave_remote(services: &Services, room_id: &RoomId, user_id: &UserId, reason: Option<&str>) -> Result<Option<OwnedEventId>, RoomError> {
    let call = || FederationWrite::LeaveRemote { user_id: user_id.to_owned(), reason: reason.map(str::to_owned) };
    if let Some(answer) = at_remote(services, room_id, call).await? {
        return Ok(answer);
    }
    remote_membership::leave(services, room_id, user_id, reason).await
}

/// Runs `call` here, on the room's persister; the answer as JSON text.
pub async fn apply(services: &Services, room_id: &RoomId, call: FederationWrite) -> Result<String, RoomError> {
    let room_id = room_id.to_owned();
    Ok(match call {
        FederationWrite::Pdu { origin, pdu } => {
            let refused = match inbound::identify(services, &parse_raw(pdu)?).await? {
                Some(received) if received.room_id == room_id => local_pdu(services, &origin, received).await?.err(),
                _ => Some("the PDU names another room".to_owned()),
            };
            json(&PduAnswer { refused })
        }
        FederationWrite::MakeMembership { origin, user_id, membership: _, supported } => {
            let answer = match supported {
                Some(supported) => resident::make_join(services, &origin, &room_id, &user_id, &supported).await,
                None => resident::make_leave(services, &origin, &room_id, &user_id).await,
            };
            json(&answer.map_err(federation_to_room)?)
        }
        FederationWrite::SendMembership { origin, event_id, pdu, membership } if membership == "join" => {
            let answer = resident::send_join(services, &origin, &room_id, &event_id, &parse_raw(pdu)?).await.map_err(federation_to_room)?;
            json(&JoinAnswerWire { state: answer.state, auth_chain: answer.auth_chain, servers_in_room: answer.servers_in_room })
        }
        FederationWrite::SendMembership { origin, event_id, pdu, .. } => {
            resident::send_leave(services, &origin, &room_id, &event_id, &parse_raw(pdu)?).await.map_err(federation_to_room)?;
            json(&())
        }
        FederationWrite::Invite { origin, event_id, room_version, event, invite_room_state } => {
            let stripped: Vec<RawStrippedState> =
                serde_json::from_str(&invite_room_state).map_err(|e| RoomError::Invalid(format!("malformed stripped state: {e}")))?;
            let event = parse_raw(event)?;
            json(&invite::receive_invite(services, &origin, &room_id, &event_id, &room_version, &event, &stripped).await.map_err(federation_to_room)?)
        }
        FederationWrite::JoinRemote { user_id, servers, reason } => json(&join_remote::join(services, &room_id, &user_id, &servers, reason.as_deref()).await?),
        FederationWrite::KnockRemote { user_id, servers, reason } => {
            json(&remote_membership::knock(services, &room_id, &user_id, &servers, reason.as_deref()).await?)
        }
        FederationWrite::LeaveRemote { user_id, reason } => json(&remote_membership::leave(services, &room_id, &user_id, reason.as_deref()).await?),
    })
}

fn parse_raw(text: String) -> Result<Box<RawValue>, RoomError> {
    RawValue::from_string(text).map_err(|e| RoomError::Invalid(format!("not JSON: {e}")))
}

fn json<T: Serialize>(answer: &T) -> String {
    serde_json::to_string(answer).unwrap_or_else(|_| "null".to_owned())
}

/// A refusal as the caller's instance relays it: the same status and error code.
fn federation_to_room(error: FederationRoomError) -> RoomError {
    let (status, body) = match error {
        FederationRoomError::Room(error) => return error,
        FederationRoomError::Storage(error) => return error.into(),
        FederationRoomError::Forbidden(reason) => (403, json!({"errcode": "M_FORBIDDEN", "error": reason})),
        FederationRoomError::NotFound(reason) => (404, json!({"errcode": "M_NOT_FOUND", "error": reason})),
        FederationRoomError::BadRequest(reason) => (400, json!({"errcode": "M_BAD_JSON", "error": reason})),
        FederationRoomError::SpamRejected(rejection) => {
            let mut body = rejection.fields;
            body.insert("errcode".into(), rejection.errcode.into());
            let message = rejection.message.unwrap_or_else(|| "This user is not permitted to send invites to this server/user".into());
            body.insert("error".into(), message.into());
            (403, body.into())
        }
        FederationRoomError::IncompatibleRoomVersion(version) => (
            400,
            json!({
                "errcode": "M_INCOMPATIBLE_ROOM_VERSION",
                "error": format!("Your homeserver does not support the features required to join this room (version {version})"),
                "room_version": version,
            }),
        ),
    };
    RoomError::Remote { status, body }
}
