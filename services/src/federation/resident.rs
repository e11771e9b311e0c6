//! This server as a room's resident server, answering other servers:
//! `make_join`, `make_leave` and `make_knock` (a template on the current
//! state, checked against the authorization rules), `send_join`,
//! `send_leave` and `send_knock` (the signed event checked as any PDU,
//! persisted and passed on; for a join, the state before it and its auth
//! chain returned; for a knock, the room's stripped state),
//! `get_missing_events` (walking back from the events named), `event`,
//! `state` and `state_ids` (the state before an event, with its auth
//! chain), `event_auth` and `backfill`. Other servers are answered about a
//! room's events only while one of their users is joined to it, and never
//! when the room's server ACL denies them; the events of `backfill`,
//! `get_missing_events` and `event` are redacted where the room's history
//! visibility hides them from the asking server (`server_visibility`).

use std::collections::{BTreeSet, HashSet, VecDeque};

use ruma::{EventId, OwnedEventId, OwnedRoomId, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::{json, value::RawValue};

use weft_storage::StoredEvent;

use super::{
    FederationRoomError,
    inbound::{self, Accepted, PduError},
    pdus,
    server_visibility::ServerVisibility,
};
use crate::{replication::room_writes, rooms::RoomState, services::Services};

/// The most events `get_missing_events` returns.
const MAX_MISSING_EVENTS: usize = 20;

/// `make_join`: an unsigned join of `user_id` on the room's current state,
/// with the room's version.
pub async fn make_join(
    services: &Services,
    origin: &ServerName,
    room_id: &OwnedRoomId,
    user_id: &UserId,
    supported: &[RoomVersionId],
) -> Result<(RoomVersionId, Box<RawValue>), FederationRoomError> {
    make_membership(services, origin, room_id, user_id, "join", Some(supported)).await
}

/// `make_leave`: an unsigned leave of `user_id` (who is invited or joined)
/// on the room's current state, with the room's version.
pub async fn make_leave(
    services: &Services,
    origin: &ServerName,
    room_id: &OwnedRoomId,
    user_id: &UserId,
) -> Result<(RoomVersionId, Box<RawValue>), FederationRoomError> {
    make_membership(services, origin, room_id, user_id, "leave", None).await
}

/// `make_knock`: an unsigned knock of `user_id` on the room's current state,
/// in a room whose version allows knocking and is among `supported`.
pub async fn make_knock(
    services: &Services,
    origin: &ServerName,
    room_id: &OwnedRoomId,
    user_id: &UserId,
    supported: &[RoomVersionId],
) -> Result<(RoomVersionId, Box<RawValue>), FederationRoomError> {
    ensure_knocking(services, room_id).await?;
    make_membership(services, origin, room_id, user_id, "knock", Some(supported)).await
}

/// `send_knock`: the knock `origin` signed, checked as any PDU, persisted
/// and passed on; returns the room's stripped state (full PDUs), as for an
/// invite.
pub async fn send_knock(
    services: &Services,
    origin: &ServerName,
    room_id: &OwnedRoomId,
    event_id: &EventId,
    raw: &RawValue,
) -> Result<Vec<Box<RawValue>>, FederationRoomError> {
    ensure_knocking(services, room_id).await?;
    send_membership(services, origin, room_id, event_id, raw, "knock").await?;
    let state = services.storage.current_state(room_id).await?;
    Ok(state.iter().filter(|event| super::invite::INVITE_STATE_TYPES.contains(&event.kind.as_str())).filter_map(|event| pdus::outgoing(&event.json)).collect())
}

/// Knocking exists from room version 7 (400 `M_INCOMPATIBLE_ROOM_VERSION` before).
async fn ensure_knocking(services: &Services, room_id: &OwnedRoomId) -> Result<(), FederationRoomError> {
    let (version, rules) = inbound::known_room(services, room_id).await?;
    if rules.authorization.knocking { Ok(()) } else { Err(FederationRoomError::IncompatibleRoomVersion(version.to_string())) }
}

/// A template of `user_id`'s `membership` event, checked against the
/// authorization rules on the current state; `supported`: the versions
/// the asking server lists (a join's `ver`).
async fn make_membership(
    services: &Services,
    origin: &ServerName,
    room_id: &OwnedRoomId,
    user_id: &UserId,
    membership: &str,
    supported: Option<&[RoomVersionId]>,
) -> Result<(RoomVersionId, Box<RawValue>), FederationRoomError> {
    if user_id.server_name() != origin {
        return Err(FederationRoomError::Forbidden("The user is not of the requesting server".into()));
    }
    let (version, _) = inbound::known_room(services, room_id).await?;
    super::acl::check(services, room_id, origin).await?;
    if supported.is_some_and(|supported| !supported.contains(&version)) {
        return Err(FederationRoomError::IncompatibleRoomVersion(version.to_string()));
    }
    ensure_persisted_here(services, room_id)?;
    let template = services
        .rooms
        .with_room(services, room_id, async |state: &RoomState| {
            let object = state.template(user_id, "m.room.member", user_id.as_str(), &json!({"membership": membership}), weft_storage::now_ms())?;
            Ok((object, Vec::new()))
        })
        .await?;
    let raw = serde_json::value::to_raw_value(&template).map_err(|e| FederationRoomError::BadRequest(e.to_string()))?;
    Ok((version, raw))
}

/// What `send_join` answers: the state before the join, its auth chain, and
/// the servers in the room.
pub struct JoinAnswer {
    pub state: Vec<Box<RawValue>>,
    pub auth_chain: Vec<Box<RawValue>>,
    pub servers_in_room: Vec<String>,
}

/// `send_join`: the join `origin` signed, checked as any PDU and persisted.
pub async fn send_join(
    services: &Services,
    origin: &ServerName,
    room_id: &OwnedRoomId,
    event_id: &EventId,
    raw: &RawValue,
) -> Result<JoinAnswer, FederationRoomError> {
    let join = send_membership(services, origin, room_id, event_id, raw, "join").await?;
    let state = super::state::state_events_before(services, &join).await?;
    let auth_chain = auth_chain(services, state.iter().chain(std::iter::once(&join))).await?;
    Ok(JoinAnswer {
        state: state.iter().filter_map(|event| pdus::outgoing(&event.json)).collect(),
        auth_chain: auth_chain.iter().filter_map(|(_, json)| pdus::outgoing(json)).collect(),
        servers_in_room: inbound::servers_in_room(services, room_id).await?,
    })
}

/// `send_leave`: the leave `origin` signed (rejecting an invite, or
/// leaving), checked as any PDU and persisted.
pub async fn send_leave(
    services: &Services,
    origin: &ServerName,
    room_id: &OwnedRoomId,
    event_id: &EventId,
    raw: &RawValue,
) -> Result<(), FederationRoomError> {
    send_membership(services, origin, room_id, event_id, raw, "leave").await.map(|_| ())
}

/// A membership event of a user of `origin` about themselves, checked as
/// any PDU, persisted, and passed on to the room's other servers.
async fn send_membership(
    services: &Services,
    origin: &ServerName,
    room_id: &OwnedRoomId,
    event_id: &EventId,
    raw: &RawValue,
    expected: &str,
) -> Result<StoredEvent, FederationRoomError> {
    let (_, rules) = inbound::known_room(services, room_id).await?;
    super::acl::check(services, room_id, origin).await?;
    ensure_persisted_here(services, room_id)?;
    let object = pdus::parse_object(raw).map_err(FederationRoomError::BadRequest)?;
    let computed = pdus::event_id_of(&object, &rules).map_err(FederationRoomError::BadRequest)?;
    if computed != event_id {
        return Err(FederationRoomError::BadRequest(format!("the event's id is {computed}, not {event_id}")));
    }
    if pdus::room_of(&object).as_ref() != Some(room_id) {
        return Err(FederationRoomError::BadRequest("the event is not in this room".into()));
    }
    let field = |name: &str| pdus::string_field(&object, name);
    let membership = pdus::membership_of(&object);
    let sender = field("sender").unwrap_or_default();
    if field("type").as_deref() != Some("m.room.member") || membership.as_deref() != Some(expected) || field("state_key").as_deref() != Some(sender.as_str()) {
        return Err(FederationRoomError::BadRequest(format!("not a {expected} event of its sender")));
    }
    if UserId::parse(&sender).map_err(|e| FederationRoomError::BadRequest(e.to_string()))?.server_name() != origin {
        return Err(FederationRoomError::Forbidden("The user is not of the requesting server".into()));
    }
    let received = pdus::ReceivedPdu { event_id: event_id.to_owned(), room_id: room_id.clone(), object };
    match inbound::handle_pdu(services, origin, received, false, weft_storage::Durability::Flushed).await {
        Ok(Accepted::Timeline) => {}
        Ok(Accepted::SoftFailed) => return Err(FederationRoomError::Forbidden(format!("The {expected} is not allowed by the room's current state"))),
        Err(PduError::Refused(reason)) => return Err(FederationRoomError::Forbidden(reason)),
        Err(PduError::Storage(error)) => return Err(error.into()),
    }
    let stored = services.storage.event(event_id).await?.ok_or_else(|| FederationRoomError::NotFound(format!("the {expected} was not stored")))?;
    // As Synapse, the resident server passes the event on to the room's other servers.
    let forward: Vec<weft_storage::OutboxRow> = inbound::servers_in_room(services, room_id)
        .await?
        .into_iter()
        .filter(|server| server != origin.as_str() && server != services.server_name.as_str())
        .map(|destination| weft_storage::OutboxRow {
            destination,
            stream_ordering: stored.stream_ordering,
            room_id: room_id.clone(),
            event_id: event_id.to_string(),
        })
        .collect();
    if !forward.is_empty() {
        services.storage.forward_events(&forward).await?;
    }
    Ok(stored)
}

/// Every event reachable from `events` through `auth_events`, with its JSON.
async fn auth_chain<'a>(services: &Services, events: impl Iterator<Item = &'a StoredEvent>) -> Result<Vec<(OwnedEventId, String)>, FederationRoomError> {
    let mut seen: HashSet<OwnedEventId> = HashSet::new();
    let mut queue: VecDeque<OwnedEventId> = VecDeque::new();
    for event in events {
        queue.extend(auth_events_of(&event.json));
    }
    let mut chain = Vec::new();
    while let Some(id) = queue.pop_front() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let json = match services.storage.event(&id).await? {
            Some(event) => event.json,
            None => match services.storage.outlier(&id).await? {
                Some((_, _, json)) => json,
                None => continue,
            },
        };
        queue.extend(auth_events_of(&json));
        chain.push((id, json));
    }
    Ok(chain)
}

/// The auth events a PDU names (ids, or `[id, hashes]` pairs).
fn auth_events_of(json: &str) -> Vec<OwnedEventId> {
    references(json, "auth_events")
}

fn references(json: &str, field: &str) -> Vec<OwnedEventId> {
    let Ok(object) = serde_json::from_str::<serde_json::Value>(json) else { return Vec::new() };
    object[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.as_str().or_else(|| entry.get(0).and_then(|id| id.as_str())))
        .filter_map(|id| OwnedEventId::try_from(id).ok())
        .collect()
}

/// `get_missing_events`: events before `latest` and not before `earliest`,
/// walking `prev_events` breadth first, oldest first in the answer.
pub async fn missing_events(
    services: &Services,
    origin: &ServerName,
    room_id: &RoomId,
    earliest: &[OwnedEventId],
    latest: &[OwnedEventId],
    limit: usize,
    min_depth: i64,
) -> Result<Vec<Box<RawValue>>, FederationRoomError> {
    ensure_origin_in_room(services, origin, room_id).await?;
    let stop: BTreeSet<&OwnedEventId> = earliest.iter().collect();
    let mut seen: HashSet<OwnedEventId> = latest.iter().cloned().collect();
    let mut queue: VecDeque<OwnedEventId> = VecDeque::new();
    for id in latest {
        if let Some(event) = services.storage.event(id).await?
            && event.room_id == room_id
        {
            queue.extend(references(&event.json, "prev_events"));
        }
    }
    let mut found: Vec<StoredEvent> = Vec::new();
    let limit = limit.min(MAX_MISSING_EVENTS);
    while let Some(id) = queue.pop_front() {
        if found.len() >= limit {
            break;
        }
        if stop.contains(&id) || !seen.insert(id.clone()) {
            continue;
        }
        let Some(event) = services.storage.event(&id).await? else { continue };
        if event.room_id != room_id || event.depth < min_depth {
            continue;
        }
        queue.extend(references(&event.json, "prev_events"));
        found.push(event);
    }
    found.sort_by_key(|event| event.stream_ordering);
    shown_to(services, origin, room_id, &found).await
}

/// The events as `origin` may see them (`server_visibility`): whole or
/// redacted, in the given order.
async fn shown_to(services: &Services, origin: &ServerName, room_id: &RoomId, events: &[StoredEvent]) -> Result<Vec<Box<RawValue>>, FederationRoomError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let (_, rules) = inbound::room_rules(services, room_id).await?.ok_or_else(|| FederationRoomError::NotFound("Unknown room".into()))?;
    let visibility = ServerVisibility::load(&services.storage, room_id, origin).await?;
    Ok(events.iter().filter_map(|event| visibility.shown(event, &rules)).filter_map(|json| pdus::outgoing(&json)).collect())
}

/// `event/{eventId}`: one event of a room `origin` has a member in.
pub async fn event(services: &Services, origin: &ServerName, event_id: &EventId) -> Result<Box<RawValue>, FederationRoomError> {
    let not_found = || FederationRoomError::NotFound("Event not found".into());
    if let Some(event) = services.storage.event(event_id).await? {
        ensure_origin_in_room(services, origin, &event.room_id).await?;
        return shown_to(services, origin, &event.room_id, std::slice::from_ref(&event)).await?.pop().ok_or_else(not_found);
    }
    // An outlier carries no state to judge it by: visible, as in Synapse.
    let (room_id, json) = match services.storage.outlier(event_id).await? {
        Some((room_id, kind, json)) if kind == "outlier" => (room_id, json),
        _ => return Err(not_found()),
    };
    ensure_origin_in_room(services, origin, &room_id).await?;
    pdus::outgoing(&json).ok_or_else(not_found)
}

/// Other servers read a room's events only while one of their users is
/// joined to it; `backfill`, `get_missing_events` and `event` then show
/// each event as its history visibility lets the server see it
/// (`server_visibility`), as Synapse; `state`, `state_ids` and
/// `event_auth` only need the joined user, as in Synapse.
async fn ensure_origin_in_room(services: &Services, origin: &ServerName, room_id: &RoomId) -> Result<(), FederationRoomError> {
    super::acl::check(services, room_id, origin).await?;
    // A server whose users left, were banned or only invited reads nothing more.
    let members = services.storage.members_with(room_id, "join").await?;
    if members.iter().any(|user| user.server_name() == origin) {
        Ok(())
    } else {
        Err(FederationRoomError::Forbidden("The requesting server is not in the room".into()))
    }
}

fn ensure_persisted_here(services: &Services, room_id: &RoomId) -> Result<(), FederationRoomError> {
    match room_writes::remote_persister(services, room_id) {
        None => Ok(()),
        Some(_) => Err(FederationRoomError::NotFound("The room is persisted by another instance".into())),
    }
}

/// The state before `event_id` (a timeline event of the room) and the auth
/// chain of that state: `state` and `state_ids`.
pub async fn state_before(
    services: &Services,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &EventId,
) -> Result<(Vec<(OwnedEventId, String)>, Vec<(OwnedEventId, String)>), FederationRoomError> {
    ensure_origin_in_room(services, origin, room_id).await?;
    let event = services
        .storage
        .event(event_id)
        .await?
        .filter(|event| event.room_id == room_id)
        .ok_or_else(|| FederationRoomError::NotFound("Event not found".into()))?;
    let state = super::state::state_events_before(services, &event).await?;
    let chain = auth_chain(services, state.iter()).await?;
    Ok((state.into_iter().map(|event| (event.event_id, event.json)).collect(), chain))
}

/// `event_auth`: the auth chain of one event.
pub async fn event_auth(services: &Services, origin: &ServerName, room_id: &RoomId, event_id: &EventId) -> Result<Vec<Box<RawValue>>, FederationRoomError> {
    ensure_origin_in_room(services, origin, room_id).await?;
    let event = services
        .storage
        .event(event_id)
        .await?
        .filter(|event| event.room_id == room_id)
        .ok_or_else(|| FederationRoomError::NotFound("Event not found".into()))?;
    let chain = auth_chain(services, std::iter::once(&event)).await?;
    Ok(chain.iter().filter_map(|(_, json)| pdus::outgoing(json)).collect())
}

/// `backfill`: the events named and those before them along `prev_events`,
/// newest first, at most `limit` (100 at most).
pub async fn backfill(
    services: &Services,
    origin: &ServerName,
    room_id: &RoomId,
    from: &[OwnedEventId],
    limit: usize,
) -> Result<Vec<Box<RawValue>>, FederationRoomError> {
    ensure_origin_in_room(services, origin, room_id).await?;
    let limit = limit.min(100);
    let mut seen: HashSet<OwnedEventId> = HashSet::new();
    let mut queue: VecDeque<OwnedEventId> = from.iter().cloned().collect();
    let mut found: Vec<StoredEvent> = Vec::new();
    while let Some(id) = queue.pop_front() {
        if found.len() >= limit {
            break;
        }
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(event) = services.storage.event(&id).await? else { continue };
        if event.room_id != room_id {
            continue;
        }
        queue.extend(references(&event.json, "prev_events"));
        found.push(event);
    }
    found.sort_by_key(|event| std::cmp::Reverse(event.stream_ordering));
    shown_to(services, origin, room_id, &found).await
}
