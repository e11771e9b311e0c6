//! Joining a room of another server: `make_join` to a resident server (the
//! ones the client named, the alias's, the room id's), the template filled
//! in, hashed and signed here, `send_join`, and then the answer checked
//! before anything is stored or the client told: every event of the state
//! and auth chain must be in the room and carry valid signatures (a bad
//! content hash redacts it), each must pass the authorization rules against
//! its own auth events (one that does not is left out), and the join must
//! pass them against the returned state. Then, in one transaction: the room,
//! the auth chain as outliers, the state and the join on the events stream
//! (the state model is linear, see the module doc of `federation`).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::{
    CanonicalJsonValue, EventId, OwnedEventId, OwnedServerName, RoomId, RoomVersionId, UserId,
    api::federation::membership::{create_join_event, prepare_join_event},
    events::StateEventType,
    room_version_rules::RoomVersionRules,
    state_res,
};
use serde_json::{Value, json, value::RawValue};

use weft_storage::{NewEvent, NewRoom};

use super::pdus;
use crate::{
    rooms::{RoomError, pdu::Pdu, versions},
    services::Services,
};

/// A checked event of the answer: its canonical JSON and parsed fields.
struct Checked {
    json: String,
    kind: String,
    pdu: Arc<Pdu>,
    depth: i64,
}

/// Joins `user_id` to the remote room `room_id` through one of `servers`;
/// returns the join's event id once the room is stored here.
pub async fn join(
    services: &Services,
    room_id: &RoomId,
    user_id: &UserId,
    servers: &[OwnedServerName],
    reason: Option<&str>,
) -> Result<OwnedEventId, RoomError> {
    let supported: Vec<RoomVersionId> = versions::supported().into_iter().map(|(version, _)| version).collect();
    let mut named = HashSet::new();
    let candidates: Vec<OwnedServerName> = servers.iter().filter(|server| **server != services.server_name && named.insert(server.as_str())).cloned().collect();
    if candidates.is_empty() {
        return Err(RoomError::Remote { status: 404, body: json!({"errcode": "M_NOT_FOUND", "error": "No known servers to join the room through"}) });
    }
    let mut failures = Vec::new();
    for server in &candidates {
        let mut request = prepare_join_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
        request.ver = supported.clone();
        let template = match services.federation.client.send_request(server, request).await {
            Ok(template) => template,
            Err(error) => {
                tracing::info!(%server, %room_id, %error, "make_join failed");
                failures.push((server.clone(), error));
                continue;
            }
        };
        let version = template.room_version.clone().unwrap_or(RoomVersionId::V1);
        let rules = versions::rules(&version).ok_or_else(|| RoomError::UnsupportedVersion(version.to_string()))?;
        return join_through(services, server, room_id, user_id, &version, &rules, &template.event, reason).await;
    }
    let (server, error) = failures.pop().expect("a candidate was tried");
    let status = match &error {
        weft_federation::FederationError::Remote { status, .. } => status.as_u16(),
        _ => 502,
    };
    let body = match error {
        weft_federation::FederationError::Remote { body, .. } if body.is_object() => body,
        other => json!({"errcode": "M_UNKNOWN", "error": format!("Failed to join through {server}: {other}")}),
    };
    Err(RoomError::Remote { status, body })
}

#[allow(clippy::too_many_arguments)]
async fn join_through(
    services: &Services,
    server: &OwnedServerName,
    room_id: &RoomId,
    user_id: &UserId,
    version: &RoomVersionId,
    rules: &RoomVersionRules,
    template: &RawValue,
    reason: Option<&str>,
) -> Result<OwnedEventId, RoomError> {
    let invalid = |reason: String| RoomError::Invalid(format!("{server}: {reason}"));
    let template = pdus::membership_template(template, room_id, user_id).map_err(invalid)?;
    let mut content = json!({"membership": "join"});
    crate::rooms::membership::add_profile(services, user_id, &mut content).await?;
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    if let Some(CanonicalJsonValue::Object(offered)) = template.get("content")
        && let Some(CanonicalJsonValue::String(authoriser)) = offered.get("join_authorised_via_users_server")
    {
        content["join_authorised_via_users_server"] = json!(authoriser);
    }
    let object = pdus::sign_template(services, template, content, rules).map_err(invalid)?;
    let event_id = pdus::event_id_of(&object, rules).map_err(invalid)?;
    let raw = serde_json::value::to_raw_value(&object).map_err(|e| invalid(e.to_string()))?;
    let answer =
        services.federation.client.send_request(server, create_join_event::v2::Request::new(room_id.to_owned(), event_id.clone(), raw)).await.map_err(
            |error| RoomError::Remote { status: 502, body: json!({"errcode": "M_UNKNOWN", "error": format!("send_join to {server} failed: {error}")}) },
        )?;
    let room_state = answer.room_state;
    // A countersigned join (restricted rooms) brings signatures, nothing else:
    // the join stored and sent as this server's is the one it signed.
    let join_object = match &room_state.event {
        Some(event) => {
            let signed = pdus::parse_object(event).map_err(invalid)?;
            if pdus::event_id_of(&signed, rules).map_err(invalid)? != event_id {
                return Err(invalid("the countersigned join is another event".into()));
            }
            pdus::with_countersignatures(object, &signed, services.server_name.as_str())
        }
        None => object,
    };

    // Every event of the answer: in this room, signed, checked against its auth events.
    let mut received: HashMap<OwnedEventId, Checked> = HashMap::new();
    let state_ids = check_events(services, room_id, rules, &room_state.state, &mut received).await?;
    check_events(services, room_id, rules, &room_state.auth_chain, &mut received).await?;
    let create = received
        .values()
        .find(|event| event.pdu.kind.to_string() == "m.room.create" && event.pdu.state_key.as_deref() == Some(""))
        .map(|event| event.pdu.clone())
        .ok_or_else(|| invalid("the answer has no create event".into()))?;
    if versions::room_id_is_create_hash(rules) && format!("!{}", create.event_id.as_str().trim_start_matches('$')) != room_id.as_str() {
        return Err(invalid("the create event is not this room's".into()));
    }
    let accepted = authorise_all(rules, &received, &create);
    let mut state: Vec<&Checked> = state_ids.iter().filter(|id| accepted.contains(*id)).filter_map(|id| received.get(id)).collect();
    state.sort_by_key(|event| event.depth);
    // Events stored before (an invite received here, an earlier stay in the room) are not stored again.
    let mut stored_before = HashSet::new();
    for event in &state {
        if services.storage.event(&event.pdu.event_id).await?.is_some() {
            stored_before.insert(event.pdu.event_id.clone());
        }
    }
    let by_key: HashMap<(StateEventType, String), Arc<Pdu>> =
        state.iter().filter_map(|event| Some(((StateEventType::from(event.pdu.kind.to_string()), event.pdu.state_key.clone()?), event.pdu.clone()))).collect();

    let join_json = CanonicalJsonValue::Object(join_object.clone()).to_string();
    let join_pdu = Arc::new(Pdu::parse(event_id.clone(), &join_json).map_err(|e| invalid(e.to_string()))?);
    let by_id = |id: &EventId| {
        received.get(id).filter(|_| accepted.contains(id)).map(|event| event.pdu.clone()).or_else(|| (*create.event_id == *id).then(|| create.clone()))
    };
    state_res::check_state_independent_auth_rules(&rules.authorization, &*join_pdu, by_id).map_err(|e| RoomError::Forbidden(format!("the join: {e}")))?;
    state_res::check_state_dependent_auth_rules(&rules.authorization, &*join_pdu, |kind, key| by_key.get(&(kind.clone(), key.to_owned())).cloned())
        .map_err(|e| RoomError::Forbidden(format!("the join is not allowed by the room's state: {e}")))?;

    // Stored: outliers, the state, then the join.
    let state_set: HashSet<&OwnedEventId> = state.iter().map(|event| &event.pdu.event_id).collect();
    let outliers: Vec<(&EventId, &str)> =
        received.iter().filter(|(id, _)| accepted.contains(*id) && !state_set.contains(id)).map(|(id, event)| (&**id, event.json.as_str())).collect();
    let new_events: Vec<NewEvent<'_>> = state
        .iter()
        .filter(|event| !stored_before.contains(&event.pdu.event_id))
        .map(|event| new_event(&event.pdu, &event.kind, &event.json, event.depth))
        .collect();
    let join_depth = match join_object.get("depth") {
        Some(CanonicalJsonValue::Integer(depth)) => i64::from(*depth),
        _ => 0,
    };
    let join_new = new_event(&join_pdu, "m.room.member", &join_json, join_depth);
    let room = NewRoom { room_id, room_version: version.as_str(), creator: &create.sender, published: false, alias: None };
    services.storage.persist_remote_join(room, &outliers, &new_events, &join_new, true).await?;
    let mut ids: Vec<&str> = new_events.iter().map(|event| event.event_id.as_str()).collect();
    ids.push(event_id.as_str());
    services.events_persisted(room_id.as_str(), &ids);
    services.rooms.forget(room_id).await;
    // The join stands without it: the room's history is then not fetched.
    if let Err(error) = super::backfill::record_join(services, room_id, &join_pdu.prev_events).await {
        tracing::warn!(%room_id, %error, "the start of the room's history was not recorded");
    }
    Ok(event_id)
}

/// Parses and checks the signatures of `events`, adding them to `received`;
/// returns their ids. An event of another room refuses the whole answer;
/// one with a bad signature is left out.
async fn check_events(
    services: &Services,
    room_id: &RoomId,
    rules: &RoomVersionRules,
    events: &[Box<RawValue>],
    received: &mut HashMap<OwnedEventId, Checked>,
) -> Result<Vec<OwnedEventId>, RoomError> {
    let mut ids = Vec::with_capacity(events.len());
    for raw in events {
        let object = pdus::parse_object(raw).map_err(RoomError::Invalid)?;
        let event_id = pdus::event_id_of(&object, rules).map_err(RoomError::Invalid)?;
        if received.contains_key(&event_id) {
            ids.push(event_id);
            continue;
        }
        let is_create = matches!(object.get("type"), Some(CanonicalJsonValue::String(kind)) if kind == "m.room.create");
        let in_room = match pdus::room_of(&object) {
            Some(other) => other == room_id,
            None => is_create && versions::room_id_is_create_hash(rules),
        };
        if !in_room {
            return Err(RoomError::Invalid(format!("event {event_id} of the answer is in another room")));
        }
        let (object, _) = match pdus::verify(services, &object, rules).await {
            Ok(verified) => verified,
            Err(reason) => {
                tracing::info!(%event_id, %reason, "left out an event of a join's answer");
                continue;
            }
        };
        let mut object = object;
        object.remove("unsigned");
        let json = CanonicalJsonValue::Object(object.clone()).to_string();
        let Ok(pdu) = Pdu::parse(event_id.clone(), &json) else { continue };
        let depth = match object.get("depth") {
            Some(CanonicalJsonValue::Integer(depth)) => i64::from(*depth),
            _ => 0,
        };
        let kind = pdu.kind.to_string();
        received.insert(event_id.clone(), Checked { json, kind, pdu: Arc::new(pdu), depth });
        ids.push(event_id);
    }
    Ok(ids)
}

/// The events that pass the authorization rules against their own auth
/// events, those checked first (by depth); an event whose auth events are
/// missing or refused is refused.
fn authorise_all(rules: &RoomVersionRules, received: &HashMap<OwnedEventId, Checked>, create: &Arc<Pdu>) -> HashSet<OwnedEventId> {
    let mut order: Vec<&Checked> = received.values().collect();
    order.sort_by_key(|event| (event.depth, event.pdu.event_id.clone()));
    let mut accepted: HashSet<OwnedEventId> = HashSet::new();
    for event in order {
        let pdu = &event.pdu;
        if pdu.event_id == create.event_id {
            if state_res::check_state_independent_auth_rules(&rules.authorization, &**pdu, |_: &EventId| None::<Arc<Pdu>>).is_ok() {
                accepted.insert(pdu.event_id.clone());
            }
            continue;
        }
        let mut auth: Vec<Arc<Pdu>> = Vec::new();
        let mut complete = true;
        for id in &pdu.auth_events {
            match received.get(id) {
                Some(auth_event) if accepted.contains(id) => auth.push(auth_event.pdu.clone()),
                _ => complete = false,
            }
        }
        if !complete {
            continue;
        }
        let by_id = |id: &EventId| auth.iter().chain(std::iter::once(create)).find(|event| *event.event_id == *id).cloned();
        let mut by_key: HashMap<(StateEventType, String), Arc<Pdu>> = HashMap::new();
        for auth_event in auth.iter().chain(std::iter::once(create)) {
            if let Some(key) = &auth_event.state_key {
                by_key.insert((StateEventType::from(auth_event.kind.to_string()), key.clone()), auth_event.clone());
            }
        }
        let independent = state_res::check_state_independent_auth_rules(&rules.authorization, &**pdu, by_id);
        let dependent =
            state_res::check_state_dependent_auth_rules(&rules.authorization, &**pdu, |kind, key| by_key.get(&(kind.clone(), key.to_owned())).cloned());
        match (independent, dependent) {
            (Ok(()), Ok(())) => {
                accepted.insert(pdu.event_id.clone());
            }
            (Err(reason), _) | (_, Err(reason)) => tracing::info!(event_id = %pdu.event_id, %reason, "an event of a join's answer fails its auth events"),
        }
    }
    accepted
}

fn new_event<'a>(pdu: &'a Pdu, kind: &'a str, json: &'a str, depth: i64) -> NewEvent<'a> {
    let content: Value = serde_json::from_str(pdu.content.get()).unwrap_or_default();
    let membership = (kind == "m.room.member").then(|| content.get("membership").and_then(Value::as_str).map(membership_str)).flatten();
    NewEvent {
        event_id: &pdu.event_id,
        room_id: &pdu.room_id,
        sender: &pdu.sender,
        kind,
        state_key: pdu.state_key.as_deref(),
        depth,
        origin_server_ts: i64::from(pdu.origin_server_ts.get()),
        json,
        prev_events: &pdu.prev_events,
        membership,
        txn: None,
        redaction: None,
        relation: None,
        search_text: None,
        push_actions: &[],
    }
}

/// A membership value as a static string (the five the spec defines).
fn membership_str(membership: &str) -> &'static str {
    match membership {
        "join" => "join",
        "invite" => "invite",
        "leave" => "leave",
        "ban" => "ban",
        "knock" => "knock",
        _ => "leave",
    }
}
