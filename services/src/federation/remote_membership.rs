//! A local user's membership in a room this server is not in, known only
//! from an invite or a knock: rejecting the invite or withdrawing the knock
//! (`make_leave`, then `send_leave` v2, through the inviting server, then the
//! other servers the room's stripped state names), and knocking
//! (`make_knock`, `send_knock`, for room versions with knocking). The
//! template a resident server offers is filled in, hashed and signed here;
//! the event is stored on its own (the room known by its version only), and
//! the stripped state the other server gave is kept for `/sync`. When no
//! server takes a leave, the leave is made here alone, as Synapse's
//! out-of-band leave, so that the user is rid of the invite.
//!
//! May call: `weft_federation` (requests), `pdus`, `rooms::versions`,
//! `rooms::membership` (the user's profile), `weft_storage`.

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, OwnedServerName, RoomId, RoomVersionId, UserId,
    api::federation::membership::{RawStrippedState, create_knock_event, create_leave_event, prepare_knock_event, prepare_leave_event},
    room_version_rules::RoomVersionRules,
};
use serde_json::{Value, json, value::RawValue};

use weft_storage::{NewEvent, NewRoom, StorageError, StoredEvent};

use super::pdus;
use crate::{
    rooms::{RoomError, versions},
    services::Services,
};

/// The user's member event in a room this server knows only from an invite
/// or a knock (no create event here), with the room's version and rules.
async fn out_of_room_membership(
    services: &Services,
    room_id: &RoomId,
    user_id: &UserId,
) -> Result<Option<(StoredEvent, String, RoomVersionId, RoomVersionRules)>, RoomError> {
    let storage = &services.storage;
    let Some(version) = storage.room_version(room_id).await? else { return Ok(None) };
    if storage.current_state_event(room_id, "m.room.create", "").await?.is_some() {
        return Ok(None);
    }
    let Some(own) = storage.current_state_event(room_id, "m.room.member", user_id.as_str()).await? else { return Ok(None) };
    let version = RoomVersionId::try_from(version.as_str()).map_err(|_| RoomError::UnsupportedVersion(version.clone()))?;
    let rules = versions::rules(&version).ok_or_else(|| RoomError::UnsupportedVersion(version.to_string()))?;
    let object: CanonicalJsonObject = serde_json::from_str(&own.json).map_err(|e| RoomError::Invalid(e.to_string()))?;
    let membership = pdus::membership_of(&object).unwrap_or_default();
    Ok(Some((own, membership, version, rules)))
}

/// `user_id` leaves a room this server is not in: rejects the invite or
/// withdraws the knock. `None` when the room is not such a room (the
/// ordinary leave applies). A leave no server takes is made here alone.
pub async fn leave(services: &Services, room_id: &RoomId, user_id: &UserId, reason: Option<&str>) -> Result<Option<OwnedEventId>, RoomError> {
    let Some((own, membership, version, rules)) = out_of_room_membership(services, room_id, user_id).await? else { return Ok(None) };
    match membership.as_str() {
        "leave" => return Ok(Some(own.event_id)),
        "invite" | "knock" => {}
        _ => return Ok(None),
    }
    for server in servers_to_ask(services, room_id, user_id, &own).await? {
        match leave_through(services, &server, room_id, user_id, reason).await {
            Ok(event_id) => return Ok(Some(event_id)),
            Err(error) => tracing::info!(%server, %room_id, %error, "a remote leave failed"),
        }
    }
    tracing::warn!(%room_id, %user_id, "no server took the leave: it is made here alone");
    out_of_band_leave(services, room_id, user_id, &own, &version, &rules, reason).await.map(Some)
}

/// The servers to send a leave through: the inviter's, those of the
/// stripped state's senders, the room id's.
async fn servers_to_ask(services: &Services, room_id: &RoomId, user_id: &UserId, own: &StoredEvent) -> Result<Vec<OwnedServerName>, StorageError> {
    let mut servers: Vec<OwnedServerName> = Vec::new();
    if own.sender != user_id {
        servers.push(own.sender.server_name().to_owned());
    }
    if let Some(json) = services.storage.remote_stripped_state(room_id, user_id).await? {
        let events: Vec<Value> = serde_json::from_str(&json).unwrap_or_default();
        for event in events {
            if let Some(sender) = event["sender"].as_str().and_then(|sender| UserId::parse(sender).ok()) {
                servers.push(sender.server_name().to_owned());
            }
        }
    }
    if let Some(server) = room_id.server_name() {
        servers.push(server.to_owned());
    }
    let mut seen = std::collections::HashSet::new();
    servers.retain(|server| *server != services.server_name && seen.insert(server.clone()));
    Ok(servers)
}

async fn leave_through(
    services: &Services,
    server: &OwnedServerName,
    room_id: &RoomId,
    user_id: &UserId,
    reason: Option<&str>,
) -> Result<OwnedEventId, String> {
    let client = &services.federation.client;
    let template = client
        .send_request(server, prepare_leave_event::v1::Request::new(room_id.to_owned(), user_id.to_owned()))
        .await
        .map_err(|e| format!("make_leave: {e}"))?;
    let version = template.room_version.clone().unwrap_or(RoomVersionId::V1);
    let rules = versions::rules(&version).ok_or_else(|| format!("unsupported room version {version}"))?;
    let mut content = json!({"membership": "leave"});
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    let object = fill_template(services, &template.event, room_id, user_id, content, &rules)?;
    let event_id = pdus::event_id_of(&object, &rules)?;
    let raw = serde_json::value::to_raw_value(&object).map_err(|e| e.to_string())?;
    client
        .send_request(server, create_leave_event::v2::Request::new(room_id.to_owned(), event_id.clone(), raw))
        .await
        .map_err(|e| format!("send_leave: {e}"))?;
    store_alone(services, room_id, &version, user_id, &event_id, &object, "leave").await.map_err(|e| e.to_string())?;
    Ok(event_id)
}

/// A leave built here on the user's invite or knock alone (its only prev
/// and auth event), signed by this server and stored; no other server is
/// told (Synapse's out-of-band leave).
async fn out_of_band_leave(
    services: &Services,
    room_id: &RoomId,
    user_id: &UserId,
    own: &StoredEvent,
    version: &RoomVersionId,
    rules: &RoomVersionRules,
    reason: Option<&str>,
) -> Result<OwnedEventId, RoomError> {
    let invalid = |e: String| RoomError::Invalid(e);
    let reference = if versions::references_carry_hashes(rules) {
        let own_object: CanonicalJsonObject = serde_json::from_str(&own.json).map_err(|e| invalid(e.to_string()))?;
        let hash = ruma::signatures::reference_hash(&own_object, rules).map_err(|e| invalid(e.to_string()))?;
        json!([own.event_id, {"sha256": hash}])
    } else {
        json!(own.event_id)
    };
    let mut content = json!({"membership": "leave"});
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    let template = json!({
        "auth_events": [reference.clone()],
        "content": content,
        "depth": own.depth.saturating_add(1),
        "origin_server_ts": weft_storage::now_ms(),
        "prev_events": [reference],
        "room_id": room_id,
        "sender": user_id,
        "state_key": user_id,
        "type": "m.room.member",
    });
    let raw = serde_json::value::to_raw_value(&template).map_err(|e| invalid(e.to_string()))?;
    let object = fill_template(services, &raw, room_id, user_id, template["content"].clone(), rules).map_err(invalid)?;
    let event_id = pdus::event_id_of(&object, rules).map_err(invalid)?;
    store_alone(services, room_id, version, user_id, &event_id, &object, "leave").await?;
    Ok(event_id)
}

/// `user_id` knocks on a room this server is not in, through the first of
/// `servers` that offers a knock; the knock and the room's stripped state
/// are kept, so that `/sync` lists the room under `knock`.
pub async fn knock(
    services: &Services,
    room_id: &RoomId,
    user_id: &UserId,
    servers: &[OwnedServerName],
    reason: Option<&str>,
) -> Result<OwnedEventId, RoomError> {
    let supported: Vec<RoomVersionId> = versions::supported()
        .into_iter()
        .map(|(version, _)| version)
        .filter(|version| versions::rules(version).is_some_and(|rules| rules.authorization.knocking))
        .collect();
    let mut candidates: Vec<OwnedServerName> = servers.iter().filter(|server| **server != services.server_name).cloned().collect();
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|server| seen.insert(server.clone()));
    if candidates.is_empty() {
        return Err(RoomError::Remote { status: 404, body: json!({"errcode": "M_NOT_FOUND", "error": "No known servers to knock through"}) });
    }
    let mut last_failure = None;
    for server in &candidates {
        let mut request = prepare_knock_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
        request.ver = supported.clone();
        match services.federation.client.send_request(server, request).await {
            Ok(template) => return knock_through(services, server, room_id, user_id, template, reason).await,
            Err(error) => {
                tracing::info!(%server, %room_id, %error, "make_knock failed");
                last_failure = Some((server.clone(), error));
            }
        }
    }
    let (server, error) = last_failure.expect("a candidate was tried");
    Err(relay(&server, "make_knock", error))
}

async fn knock_through(
    services: &Services,
    server: &OwnedServerName,
    room_id: &RoomId,
    user_id: &UserId,
    template: prepare_knock_event::v1::Response,
    reason: Option<&str>,
) -> Result<OwnedEventId, RoomError> {
    let version = template.room_version;
    let rules = versions::rules(&version).ok_or_else(|| RoomError::UnsupportedVersion(version.to_string()))?;
    if !rules.authorization.knocking {
        return Err(RoomError::Remote {
            status: 400,
            body: json!({"errcode": "M_INCOMPATIBLE_ROOM_VERSION", "room_version": version, "error": "The room's version does not allow knocking"}),
        });
    }
    let mut content = json!({"membership": "knock"});
    crate::rooms::membership::add_profile(services, user_id, &mut content).await?;
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    let invalid = |reason: String| RoomError::Invalid(format!("{server}: {reason}"));
    let object = fill_template(services, &template.event, room_id, user_id, content, &rules).map_err(invalid)?;
    let event_id = pdus::event_id_of(&object, &rules).map_err(invalid)?;
    let raw = serde_json::value::to_raw_value(&object).map_err(|e| invalid(e.to_string()))?;
    let answer = services
        .federation
        .client
        .send_request(server, create_knock_event::v1::Request::new(room_id.to_owned(), event_id.clone(), raw))
        .await
        .map_err(|error| relay(server, "send_knock", error))?;
    let stripped = stripped_events(&answer.knock_room_state);
    let creator = stripped
        .iter()
        .find(|event| event["type"] == "m.room.create")
        .and_then(|create| create["sender"].as_str())
        .and_then(|sender| UserId::parse(sender).ok())
        .unwrap_or_else(|| user_id.to_owned());
    services.storage.set_remote_stripped_state(room_id, user_id, &Value::Array(stripped).to_string()).await?;
    store_alone(services, room_id, &version, &creator, &event_id, &object, "knock").await?;
    Ok(event_id)
}

/// A failed request to another server as the client's error: its own 4xx, 502 otherwise.
fn relay(server: &OwnedServerName, what: &str, error: weft_federation::FederationError) -> RoomError {
    match error {
        weft_federation::FederationError::Remote { status, body, .. } if status.is_client_error() && body.is_object() => {
            RoomError::Remote { status: status.as_u16(), body }
        }
        other => RoomError::Remote { status: 502, body: json!({"errcode": "M_UNKNOWN", "error": format!("{what} to {server} failed: {other}")}) },
    }
}

/// Stripped state another server sent (full PDUs, or stripped events from
/// older servers) as stripped events: `type`, `state_key`, `sender`, `content`.
pub fn stripped_events(state: &[RawStrippedState]) -> Vec<Value> {
    state
        .iter()
        .filter_map(|event| serde_json::to_value(event).ok())
        .filter(|event| event["type"].is_string() && event["sender"].is_string() && event["state_key"].is_string())
        .map(|event| json!({"type": event["type"], "state_key": event["state_key"], "sender": event["sender"], "content": event["content"]}))
        .collect()
}

/// A membership template another server offered (`make_leave`,
/// `make_knock`), checked to be about `user_id` in `room_id`, with this
/// server's `content`, time and (room versions 1 and 2) event id, hashed and
/// signed.
fn fill_template(
    services: &Services,
    template: &RawValue,
    room_id: &RoomId,
    user_id: &UserId,
    content: Value,
    rules: &RoomVersionRules,
) -> Result<CanonicalJsonObject, String> {
    let object = pdus::membership_template(template, room_id, user_id)?;
    let membership = content["membership"].as_str().unwrap_or_default();
    if pdus::membership_of(&object).as_deref().is_some_and(|offered| offered != membership) {
        return Err(format!("the template is not a {membership}"));
    }
    pdus::sign_template(services, object, content, rules)
}

/// A member event of a room this server is not in, stored on its own (the
/// room known by its version only) so that the user's `/sync` lists it.
pub(super) async fn store_alone(
    services: &Services,
    room_id: &RoomId,
    version: &RoomVersionId,
    creator: &UserId,
    event_id: &EventId,
    object: &CanonicalJsonObject,
    membership: &str,
) -> Result<(), StorageError> {
    let integer = |name: &str| match object.get(name) {
        Some(CanonicalJsonValue::Integer(value)) => Some(i64::from(*value)),
        _ => None,
    };
    let sender = pdus::string_field(object, "sender").and_then(|sender| UserId::parse(sender).ok()).unwrap_or_else(|| creator.to_owned());
    let state_key = pdus::string_field(object, "state_key").unwrap_or_default();
    let mut stored = object.clone();
    stored.remove("unsigned");
    let json = CanonicalJsonValue::Object(stored).to_string();
    let event = NewEvent {
        event_id,
        room_id,
        sender: &sender,
        kind: "m.room.member",
        state_key: Some(state_key.as_str()),
        depth: integer("depth").unwrap_or(0),
        origin_server_ts: integer("origin_server_ts").unwrap_or_else(weft_storage::now_ms),
        json: &json,
        prev_events: &[],
        membership: Some(membership),
        txn: None,
        redaction: None,
        relation: None,
        search_text: None,
        push_actions: &[],
    };
    let room = NewRoom { room_id, room_version: version.as_str(), creator, published: false, alias: None };
    services.storage.persist_remote_join(room, &[], &[], &event, false).await?;
    services.events_persisted(room_id.as_str(), &[event_id.as_str()]);
    services.rooms.forget(room_id).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use ruma::api::federation::membership::RawStrippedState;
    use serde_json::json;

    #[test]
    fn stripped_state_in_either_form_becomes_stripped_events() {
        let pdu = json!({
            "type": "m.room.name", "state_key": "", "sender": "@a:x", "content": {"name": "Room"},
            "room_id": "!r:x", "auth_events": [], "prev_events": [], "depth": 3, "origin_server_ts": 1,
            "hashes": {"sha256": "h"}, "signatures": {"x": {"ed25519:k": "s"}},
        });
        let stripped = json!({"type": "m.room.join_rules", "state_key": "", "sender": "@a:x", "content": {"join_rule": "knock"}});
        let malformed = json!({"type": "m.room.topic", "content": {"topic": "no sender"}});
        let state: Vec<RawStrippedState> = [pdu, stripped.clone(), malformed].into_iter().map(|event| serde_json::from_value(event).unwrap()).collect();
        assert!(matches!(state[0], RawStrippedState::Pdu(_)));
        assert_eq!(
            super::stripped_events(&state),
            vec![json!({"type": "m.room.name", "state_key": "", "sender": "@a:x", "content": {"name": "Room"}}), stripped]
        );
    }
}
