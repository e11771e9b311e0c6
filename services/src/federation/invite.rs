//! Invites across servers (`invite` v2). Outbound: an invite of another
//! server's user is built and authorised here, sent to the invitee's server
//! with the room's stripped state (as full PDUs), and persisted only once
//! that server returned it countersigned (its signature checked). Inbound:
//! an invite of a local user into a room of another server is checked (the
//! room version, the inviting server's signature, an invite of a local
//! user by a user of the calling server), countersigned, and, when this
//! server is not in the room, stored on its own so that the user sees it in
//! `/sync` and can accept it (a join through the inviting server).

use ruma::{
    CanonicalJsonValue, EventId, OwnedEventId, RoomId, RoomVersionId, ServerName, UserId,
    api::federation::membership::{RawStrippedState, create_invite},
    canonical_json::redact,
    signatures::PublicKeyMap,
};
use serde_json::{json, value::RawValue};

use weft_storage::NewEvent;

use super::{FederationRoomError, inbound, pdus};
use crate::{
    plugins::spam::{SpamEvent, SpamVerdict},
    rooms::{BuiltEvent, Outgoing, RoomError, RoomState, versions},
    services::Services,
};

/// State types sent with an invite (as Synapse's `room_prejoin_state`).
pub(super) const INVITE_STATE_TYPES: [&str; 7] =
    ["m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.canonical_alias", "m.room.encryption", "m.room.topic"];

/// Builds an invite of the remote user `target`, has the target's server
/// countersign it, and persists it. Runs under the room's write lock.
pub async fn invite_remote(
    services: &Services,
    state: &RoomState,
    sender: &UserId,
    target: &UserId,
    outgoing: &Outgoing<'_>,
) -> Result<(OwnedEventId, Vec<BuiltEvent>), RoomError> {
    let built = state.build(services, sender, outgoing)?;
    let event = pdus::outgoing(&built.json).ok_or_else(|| RoomError::Invalid("cannot serialise the invite".into()))?;
    let mut stripped = Vec::new();
    for pdu in state.events() {
        let kind = pdu.kind.to_string();
        let wanted = INVITE_STATE_TYPES.contains(&kind.as_str()) || (kind == "m.room.member" && pdu.state_key.as_deref() == Some(sender.as_str()));
        if wanted
            && let Some(stored) = services.storage.event(&pdu.event_id).await?
            && let Some(raw) = pdus::outgoing(&stored.json)
        {
            stripped.push(RawStrippedState::Pdu(raw));
        }
    }
    let request = create_invite::v2::Request::new(state.room_id.clone(), built.event_id.clone(), state.version.clone(), event, stripped);
    let server = target.server_name();
    let answer = services.federation.client.send_request(server, request).await.map_err(|error| match error {
        weft_federation::FederationError::Remote { status, body, .. } if status.is_client_error() => RoomError::Remote { status: status.as_u16(), body },
        other => {
            RoomError::Remote { status: 502, body: json!({"errcode": "M_UNKNOWN", "error": format!("The invitee's server could not be reached: {other}")}) }
        }
    })?;
    let returned = pdus::parse_object(&answer.event).map_err(RoomError::Invalid)?;
    if pdus::event_id_of(&returned, &state.rules).map_err(RoomError::Invalid)? != built.event_id {
        return Err(RoomError::Invalid(format!("{server} returned another event than the invite")));
    }
    // Only the invitee server's signature is taken from its copy: the invite
    // stored and sent is the one this server built and signed.
    let ours: ruma::CanonicalJsonObject = serde_json::from_str(&built.json).map_err(|e| RoomError::Invalid(e.to_string()))?;
    let mut signed = pdus::with_countersignatures(ours, &returned, services.server_name.as_str());
    check_signed_by(services, &signed, server, &state.rules).await?;
    signed.remove("unsigned");
    let json = CanonicalJsonValue::Object(signed).to_string();
    let built = BuiltEvent { json, ..built };
    let push_actions = crate::push::evaluate(services, state, &built).await?;
    let new = NewEvent { push_actions: &push_actions, ..built.as_new_event() };
    services.storage.persist_events(None, &[new]).await?;
    services.events_persisted(state.room_id.as_str(), &[built.event_id.as_str()]);
    Ok((built.event_id.clone(), vec![built]))
}

/// Checks that `server` signed the (redacted) event.
async fn check_signed_by(
    services: &Services,
    object: &ruma::CanonicalJsonObject,
    server: &ServerName,
    rules: &ruma::room_version_rules::RoomVersionRules,
) -> Result<(), RoomError> {
    let refuse = |reason: String| RoomError::Forbidden(format!("the invite is not countersigned by {server}: {reason}"));
    let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else { return Err(refuse("no signatures".into())) };
    let Some(CanonicalJsonValue::Object(by_key)) = signatures.get(server.as_str()) else { return Err(refuse("no signature".into())) };
    let mut keys = std::collections::BTreeMap::new();
    for key_id in by_key.keys() {
        if let Ok(Some(key)) = services.federation.keys.key(server, key_id, weft_storage::now_ms()).await {
            keys.insert(key_id.clone(), key);
        }
    }
    let map: PublicKeyMap = [(server.to_string(), keys)].into();
    let mut only = redact(object.clone(), &rules.redaction, None).map_err(|e| refuse(e.to_string()))?;
    only.insert("signatures".into(), CanonicalJsonValue::Object([(server.to_string(), CanonicalJsonValue::Object(by_key.clone()))].into_iter().collect()));
    ruma::signatures::verify_json(&map, &only).map_err(|e| refuse(e.to_string()))
}

/// Inbound `invite` v2: returns the event countersigned by this server.
pub async fn receive_invite(
    services: &Services,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &EventId,
    version: &RoomVersionId,
    raw: &RawValue,
    invite_room_state: &[RawStrippedState],
) -> Result<Box<RawValue>, FederationRoomError> {
    let rules = versions::rules(version).ok_or_else(|| FederationRoomError::IncompatibleRoomVersion(version.to_string()))?;
    let object = pdus::parse_object(raw).map_err(FederationRoomError::BadRequest)?;
    if pdus::event_id_of(&object, &rules).map_err(FederationRoomError::BadRequest)? != event_id {
        return Err(FederationRoomError::BadRequest("the event id does not match the event".into()));
    }
    if pdus::room_of(&object).as_deref() != Some(room_id) {
        return Err(FederationRoomError::BadRequest("the event is not in this room".into()));
    }
    let text = |name: &str| pdus::string_field(&object, name);
    let membership = pdus::membership_of(&object);
    if text("type").as_deref() != Some("m.room.member") || membership.as_deref() != Some("invite") {
        return Err(FederationRoomError::BadRequest("not an invite".into()));
    }
    let sender = text("sender").and_then(|sender| UserId::parse(sender).ok()).ok_or_else(|| FederationRoomError::BadRequest("bad sender".into()))?;
    if sender.server_name() != origin {
        return Err(FederationRoomError::Forbidden("The inviter is not of the requesting server".into()));
    }
    let invitee = text("state_key").and_then(|key| UserId::parse(key).ok()).ok_or_else(|| FederationRoomError::BadRequest("bad state_key".into()))?;
    if invitee.server_name() != services.server_name {
        return Err(FederationRoomError::BadRequest("The invitee is not a user of this server".into()));
    }
    match services.storage.user(&invitee).await? {
        Some(user) if !user.deactivated => {}
        _ => return Err(FederationRoomError::NotFound("Unknown user".into())),
    }
    let (verified, redacted) = pdus::verify(services, &object, &rules).await.map_err(FederationRoomError::Forbidden)?;
    if redacted {
        return Err(FederationRoomError::Forbidden("The invite's content hash does not match".into()));
    }
    may_invite(services, &verified, event_id, &sender, &invitee, room_id).await?;
    let mut signed = verified;
    signed.remove("unsigned");
    ruma::signatures::sign_event(services.server_name.as_str(), &services.signing_key.pair, &mut signed, &rules.redaction)
        .map_err(|e| FederationRoomError::BadRequest(format!("cannot countersign: {e}")))?;

    super::acl::check(services, room_id, origin).await?;
    let in_room = services.storage.room_version(room_id).await?.is_some()
        && services.storage.members_with(room_id, "join").await?.iter().any(|user| user.server_name() == services.server_name);
    if in_room {
        // This server is in the room: the invite comes as any event.
        let received = pdus::ReceivedPdu { event_id: event_id.to_owned(), room_id: room_id.to_owned(), object: signed.clone() };
        match inbound::handle_pdu(services, origin, received, true, weft_storage::Durability::Flushed).await {
            Ok(_) => {}
            Err(inbound::PduError::Refused(reason)) => return Err(FederationRoomError::Forbidden(reason)),
            Err(inbound::PduError::Storage(error)) => return Err(error.into()),
        }
    } else if services.storage.event(event_id).await?.is_none() {
        // Kept first, so that the /sync the invite wakes shows it.
        let stripped = super::remote_membership::stripped_events(invite_room_state);
        services.storage.set_remote_stripped_state(room_id, &invitee, &serde_json::Value::Array(stripped).to_string()).await?;
        super::remote_membership::store_alone(services, room_id, version, &sender, event_id, &signed, "invite").await?;
    }
    serde_json::value::to_raw_value(&signed).map_err(|e| FederationRoomError::BadRequest(e.to_string()))
}

/// The spam checkers' `federated-user-may-invite`, then (as Synapse)
/// `user-may-invite` with the invite's sender and target.
async fn may_invite(
    services: &Services,
    object: &ruma::CanonicalJsonObject,
    event_id: &EventId,
    sender: &UserId,
    invitee: &UserId,
    room_id: &RoomId,
) -> Result<(), FederationRoomError> {
    let mut json = serde_json::to_value(object).map_err(|e| FederationRoomError::BadRequest(e.to_string()))?;
    json["event_id"] = json!(event_id);
    let checkers = &services.spam_checker;
    if let Some(event) = SpamEvent::from_json(json)
        && let SpamVerdict::Reject(rejection) = checkers.federated_user_may_invite(&event).await
    {
        return Err(FederationRoomError::SpamRejected(rejection));
    }
    match checkers.user_may_invite(sender, invitee, room_id).await {
        SpamVerdict::Allow => Ok(()),
        SpamVerdict::Reject(rejection) => Err(FederationRoomError::SpamRejected(rejection)),
    }
}
