//! Transactions received from other servers (`PUT /send/{txnId}`) and the
//! checks every PDU passes before it is stored, in the specification's order:
//! its format and room (a room this server is in, of a known version), its
//! signatures and content hash (`pdus`), its prev events (missing ones asked
//! of the origin with `get_missing_events`), then the authorization rules
//! against its own auth events, against the state before it, and against the
//! room's current state. Failing any but the last refuses the event: it is
//! named in the answer's `pdus` with the reason and nothing of it is stored.
//! Failing only the last (soft failure) keeps it as an outlier, outside the
//! timeline. An event that passes is persisted like a local one, under the
//! room's write lock, and wakes `/sync`.
//!
//! A transaction's answer is kept per origin and transaction id: the same
//! transaction sent again gets the same answer and changes nothing.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, OwnedRoomId, RoomId, RoomVersionId, ServerName, UInt,
    api::federation::event::get_missing_events, events::StateEventType, room_version_rules::RoomVersionRules, state_res,
};
use serde_json::{Value, value::RawValue};

use weft_storage::{NewEvent, StorageError};

use super::pdus::{self, ReceivedPdu};
use crate::{
    replication::room_writes,
    rooms::{BuiltEvent, RoomError, RoomState, pdu::Pdu, relation_of, search_text_of, versions},
    services::Services,
};

/// How many missing prev events are asked for at once (Synapse's 10).
const MISSING_EVENTS_LIMIT: u32 = 10;

/// What became of one PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// In the room's timeline (now or before).
    Timeline,
    /// Kept outside the timeline: it fails the room's current state.
    SoftFailed,
}

/// Handles one transaction's PDUs; the answer for each, by event id.
/// `edus` are not handled yet.
pub async fn transaction(
    services: &Services,
    origin: &ServerName,
    txn_id: &str,
    pdus: &[Box<RawValue>],
) -> Result<BTreeMap<OwnedEventId, Result<(), String>>, StorageError> {
    if let Some(answer) = services.storage.received_txn(origin.as_str(), txn_id).await? {
        let stored: BTreeMap<OwnedEventId, Option<String>> = serde_json::from_str(&answer).unwrap_or_default();
        return Ok(stored.into_iter().map(|(id, error)| (id, error.map_or(Ok(()), Err))).collect());
    }
    let mut answer = BTreeMap::new();
    for raw in pdus {
        let Some(received) = identify(services, raw).await? else {
            tracing::info!(%origin, "dropped a PDU that names no known room or cannot be identified");
            continue;
        };
        let event_id = received.event_id.clone();
        if !super::acl::allows(services, &received.room_id, origin).await? {
            tracing::info!(%origin, %event_id, "dropped a PDU: the room's server ACL denies the origin");
            answer.insert(event_id, Err("Server is banned from room".into()));
            continue;
        }
        if should_drop(services, &received).await {
            // As Synapse: dropped silently, answered as accepted.
            tracing::info!(%origin, %event_id, "dropped a PDU: the spam checker's should-drop-federated-event");
            answer.insert(event_id, Ok(()));
            continue;
        }
        let outcome = match handle_pdu(services, origin, received, true).await {
            Ok(_) => Ok(()),
            Err(PduError::Storage(error)) => return Err(error),
            Err(PduError::Refused(reason)) => {
                tracing::info!(%origin, %event_id, %reason, "refused a PDU");
                Err(reason)
            }
        };
        answer.insert(event_id, outcome);
    }
    let stored: BTreeMap<&OwnedEventId, Option<&String>> = answer.iter().map(|(id, outcome)| (id, outcome.as_ref().err())).collect();
    services.storage.store_received_txn(origin.as_str(), txn_id, &serde_json::to_string(&stored).unwrap_or_default()).await?;
    Ok(answer)
}

/// The spam checkers' `should-drop-federated-event` on a PDU of a transaction.
async fn should_drop(services: &Services, received: &ReceivedPdu) -> bool {
    if services.spam_checker.is_empty() {
        return false;
    }
    let mut json = serde_json::to_value(&received.object).unwrap_or_default();
    json["event_id"] = Value::String(received.event_id.to_string());
    match crate::plugins::spam::SpamEvent::from_json(json) {
        Some(event) => services.spam_checker.should_drop_federated_event(&event).await,
        None => false,
    }
}

/// Why a PDU was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PduError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<RoomError> for PduError {
    fn from(error: RoomError) -> Self {
        match error {
            RoomError::Storage(error) => Self::Storage(error),
            other => Self::Refused(other.to_string()),
        }
    }
}

/// The room and id of a raw PDU, when it names a room this server knows.
pub async fn identify(services: &Services, raw: &RawValue) -> Result<Option<ReceivedPdu>, StorageError> {
    let Ok(object) = pdus::parse_object(raw) else { return Ok(None) };
    let Some(room_id) = pdus::room_of(&object) else { return Ok(None) };
    let Some((_, rules)) = room_rules(services, &room_id).await? else { return Ok(None) };
    let Ok(event_id) = pdus::event_id_of(&object, &rules) else { return Ok(None) };
    Ok(Some(ReceivedPdu { event_id, room_id, object }))
}

/// The version and rules of a room this server knows.
pub async fn room_rules(services: &Services, room_id: &RoomId) -> Result<Option<(RoomVersionId, RoomVersionRules)>, StorageError> {
    let Some(version) = services.storage.room_version(room_id).await? else { return Ok(None) };
    let Ok(version) = RoomVersionId::try_from(version.as_str()) else { return Ok(None) };
    Ok(versions::rules(&version).map(|rules| (version, rules)))
}

/// Every check of one PDU, then persisting it. `fetch_missing`: whether
/// missing prev events may be asked of `origin` (not for the events such a
/// request returned).
pub async fn handle_pdu(services: &Services, origin: &ServerName, received: ReceivedPdu, fetch_missing: bool) -> Result<Accepted, PduError> {
    let storage = &services.storage;
    if storage.event(&received.event_id).await?.is_some() {
        return Ok(Accepted::Timeline);
    }
    if let Some((_, kind, _)) = storage.outlier(&received.event_id).await?
        && kind == "soft_failed"
    {
        return Ok(Accepted::SoftFailed);
    }
    if room_writes::remote_persister(services, &received.room_id).is_some() {
        return Err(PduError::Refused("this instance does not persist the room".into()));
    }
    let (_, rules) = room_rules(services, &received.room_id).await?.ok_or_else(|| PduError::Refused("unknown room".into()))?;
    check_format(&received.object, &rules)?;
    let (object, redacted) = pdus::verify(services, &received.object, &rules).await.map_err(PduError::Refused)?;
    if redacted {
        tracing::info!(event_id = %received.event_id, "content hash mismatch: the event is redacted");
    }
    let json = CanonicalJsonValue::Object(without_unsigned(&object)).to_string();
    let pdu = Pdu::parse(received.event_id.clone(), &json).map_err(|e| PduError::Refused(format!("malformed event: {e}")))?;
    if pdu.room_id != received.room_id {
        return Err(PduError::Refused("the event is not in the room it names".into()));
    }

    if fetch_missing {
        fetch_missing_prev_events(services, origin, &pdu).await?;
    }

    let auth_events = load_auth_events(services, &pdu).await?;
    let rooms = &services.rooms;
    let room_id = received.room_id.clone();
    let mut fork = false;
    let accepted = rooms
        .with_room(services, &room_id, async |state: &RoomState| {
            check_against_auth_events(state, &pdu, &auth_events)?;
            let extremities: std::collections::BTreeSet<&OwnedEventId> = state.prev_events().iter().collect();
            let prevs: std::collections::BTreeSet<&OwnedEventId> = pdu.prev_events.iter().collect();
            fork = extremities != prevs;
            if fork {
                let before = state_before(services, &pdu).await?;
                check_against(&rules, &pdu, |kind, key| before.get(&(kind.clone(), key.to_owned())).cloned())
                    .map_err(|reason| RoomError::Forbidden(format!("not allowed by the state before the event: {reason}")))?;
            }
            if let Err(reason) = check_against(&rules, &pdu, |kind, key| state.get(kind, key).cloned()) {
                if !fork {
                    return Err(RoomError::Forbidden(format!("not allowed by the state before the event: {reason}")));
                }
                tracing::info!(event_id = %pdu.event_id, %reason, "soft-failed an event: the current state does not allow it");
                services.storage.store_outlier(&pdu.event_id, &pdu.room_id, "soft_failed", &json).await?;
                return Ok((Accepted::SoftFailed, Vec::new()));
            }
            let built = built_event(&pdu, &object, &json, &rules)?;
            let push_actions = crate::push::evaluate(services, state, &built).await?;
            let redaction = redaction_of(services, state, &pdu, &built).await?;
            if redaction.as_ref().is_some_and(|(_, _, state_event)| *state_event) {
                fork = true;
            }
            let new = NewEvent {
                push_actions: &push_actions,
                redaction: redaction.as_ref().map(|(target, json, _)| (target.as_ref(), json.as_str())),
                ..built.as_new_event()
            };
            match services.storage.persist_events(None, &[new]).await {
                Ok(_) => {}
                // Another transaction brought the same event first.
                Err(StorageError::Conflict) => return Ok((Accepted::Timeline, Vec::new())),
                Err(error) => return Err(error.into()),
            }
            services.events_persisted(pdu.room_id.as_str(), &[pdu.event_id.as_str()]);
            Ok((Accepted::Timeline, vec![built]))
        })
        .await?;
    if fork {
        // The cached tip assumed a line; the database has the extremities.
        rooms.forget(&room_id).await;
    }
    Ok(accepted)
}

/// For a redaction this server applies now: the target, its redacted PDU,
/// and whether it is a state event. Applied, as for local redactions, when
/// the target is in the room and the redacting user sent it, is of the same
/// server, or has the room's `redact` power level; otherwise the redaction
/// is kept without effect.
async fn redaction_of(services: &Services, state: &RoomState, pdu: &Pdu, built: &BuiltEvent) -> Result<Option<(OwnedEventId, String, bool)>, RoomError> {
    if pdu.kind != ruma::events::TimelineEventType::RoomRedaction {
        return Ok(None);
    }
    let content: Value = serde_json::from_str(pdu.content.get()).unwrap_or_default();
    let target_id = pdu.redacts.clone().or_else(|| content.get("redacts").and_then(Value::as_str).and_then(|id| OwnedEventId::try_from(id).ok()));
    let Some(target_id) = target_id else { return Ok(None) };
    let Some(target) = services.storage.event(&target_id).await?.filter(|target| target.room_id == pdu.room_id) else { return Ok(None) };
    let levels = state.content_of(&StateEventType::RoomPowerLevels, "").unwrap_or_default();
    let needed = levels.get("redact").and_then(Value::as_i64).unwrap_or(50);
    let allowed = target.sender == pdu.sender || state.power_level_of(&pdu.sender) >= needed;
    if !allowed {
        return Ok(None);
    }
    let CanonicalJsonValue::Object(mut because) = serde_json::from_str::<CanonicalJsonValue>(&built.json).map_err(|e| RoomError::Invalid(e.to_string()))?
    else {
        return Ok(None);
    };
    because.insert("event_id".into(), CanonicalJsonValue::String(built.event_id.to_string()));
    let original: CanonicalJsonObject = serde_json::from_str(&target.json).map_err(|e| RoomError::Invalid(e.to_string()))?;
    let redacted = ruma::canonical_json::redact(original, &state.rules.redaction, Some(ruma::canonical_json::RedactedBecause::from_json(because)))
        .map_err(|e| RoomError::Invalid(e.to_string()))?;
    Ok(Some((target_id, CanonicalJsonValue::Object(redacted).to_string(), target.state_key.is_some())))
}

/// The fields every PDU must carry with the right JSON types.
fn check_format(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<(), PduError> {
    let refuse = |field: &str| PduError::Refused(format!("missing or malformed '{field}'"));
    for field in ["type", "sender", "room_id"] {
        if !matches!(object.get(field), Some(CanonicalJsonValue::String(_))) {
            return Err(refuse(field));
        }
    }
    for field in ["prev_events", "auth_events"] {
        if !matches!(object.get(field), Some(CanonicalJsonValue::Array(_))) {
            return Err(refuse(field));
        }
    }
    for field in ["depth", "origin_server_ts"] {
        if !matches!(object.get(field), Some(CanonicalJsonValue::Integer(_))) {
            return Err(refuse(field));
        }
    }
    for field in ["content", "hashes", "signatures"] {
        if !matches!(object.get(field), Some(CanonicalJsonValue::Object(_))) {
            return Err(refuse(field));
        }
    }
    if object.get("state_key").is_some_and(|key| !matches!(key, CanonicalJsonValue::String(_))) {
        return Err(refuse("state_key"));
    }
    let size = CanonicalJsonValue::Object(object.clone()).to_string().len();
    if size > crate::rooms::MAX_EVENT_SIZE {
        return Err(PduError::Refused(format!("event too large: {size} bytes")));
    }
    let _ = rules;
    Ok(())
}

fn without_unsigned(object: &CanonicalJsonObject) -> CanonicalJsonObject {
    let mut object = object.clone();
    object.remove("unsigned");
    object
}

/// Asks `origin` for the prev events of `pdu` this server lacks, and
/// handles what it returns, oldest first. A gap that remains is accepted:
/// the event is then checked against the state this server has.
async fn fetch_missing_prev_events(services: &Services, origin: &ServerName, pdu: &Pdu) -> Result<(), PduError> {
    let mut missing = false;
    for prev in &pdu.prev_events {
        if services.storage.event(prev).await?.is_none() {
            missing = true;
            break;
        }
    }
    if !missing || origin == services.server_name {
        return Ok(());
    }
    let earliest: Vec<OwnedEventId> = services.storage.forward_extremities(&pdu.room_id).await?.into_iter().map(|(id, _)| id).collect();
    let mut request = get_missing_events::v1::Request::new(pdu.room_id.clone(), earliest, vec![pdu.event_id.clone()]);
    request.limit = UInt::from(MISSING_EVENTS_LIMIT);
    let response = match services.federation.client.send_request(origin, request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(%origin, event_id = %pdu.event_id, %error, "get_missing_events failed");
            return Ok(());
        }
    };
    let mut fetched = Vec::new();
    for raw in &response.events {
        if let Some(received) = identify(services, raw).await?
            && received.room_id == pdu.room_id
            && received.event_id != pdu.event_id
        {
            let depth = match received.object.get("depth") {
                Some(CanonicalJsonValue::Integer(depth)) => i64::from(*depth),
                _ => 0,
            };
            fetched.push((depth, received));
        }
    }
    fetched.sort_by_key(|(depth, _)| *depth);
    for (_, received) in fetched {
        let event_id = received.event_id.clone();
        if let Err(error) = Box::pin(handle_pdu(services, origin, received, false)).await {
            match error {
                PduError::Storage(error) => return Err(error.into()),
                PduError::Refused(reason) => tracing::info!(%event_id, %reason, "a missing prev event was refused"),
            }
        }
    }
    Ok(())
}

/// The events `pdu` names as its auth events, from the timeline or the
/// outliers; one this server does not have refuses the event.
async fn load_auth_events(services: &Services, pdu: &Pdu) -> Result<Vec<Arc<Pdu>>, PduError> {
    let mut events = Vec::with_capacity(pdu.auth_events.len());
    for id in &pdu.auth_events {
        let event = load_event(services, id).await?.ok_or_else(|| PduError::Refused(format!("unknown auth event {id}")))?;
        if event.room_id != pdu.room_id {
            return Err(PduError::Refused(format!("auth event {id} is in another room")));
        }
        events.push(event);
    }
    Ok(events)
}

/// An event this server has, in a timeline or as an outlier (not a soft-failed one).
pub async fn load_event(services: &Services, id: &EventId) -> Result<Option<Arc<Pdu>>, StorageError> {
    if let Some(event) = services.storage.event(id).await? {
        return Ok(Pdu::from_stored(&event).ok().map(Arc::new));
    }
    match services.storage.outlier(id).await? {
        Some((_, kind, json)) if kind == "outlier" => Ok(Pdu::parse(id.to_owned(), &json).ok().map(Arc::new)),
        _ => Ok(None),
    }
}

/// The authorization rules against the event's own auth events (and the
/// room's create event, which room version 12 leaves out of them).
fn check_against_auth_events(state: &RoomState, pdu: &Pdu, auth_events: &[Arc<Pdu>]) -> Result<(), RoomError> {
    let rules = &state.rules.authorization;
    let create = state.get(&StateEventType::RoomCreate, "").cloned();
    let by_id = |id: &EventId| auth_events.iter().chain(create.iter()).find(|event| *event.event_id == *id).cloned();
    state_res::check_state_independent_auth_rules(rules, pdu, by_id).map_err(|reason| RoomError::Forbidden(format!("auth events: {reason}")))?;
    let mut by_key: HashMap<(StateEventType, String), Arc<Pdu>> = HashMap::new();
    for event in auth_events.iter().chain(create.iter()) {
        if let Some(key) = &event.state_key {
            by_key.insert((StateEventType::from(event.kind.to_string()), key.clone()), event.clone());
        }
    }
    state_res::check_state_dependent_auth_rules(rules, pdu, |kind, key| by_key.get(&(kind.clone(), key.to_owned())).cloned())
        .map_err(|reason| RoomError::Forbidden(format!("auth events: {reason}")))
}

fn check_against(rules: &RoomVersionRules, pdu: &Pdu, fetch: impl Fn(&StateEventType, &str) -> Option<Arc<Pdu>>) -> Result<(), String> {
    state_res::check_state_dependent_auth_rules(&rules.authorization, pdu, fetch)
}

/// The state before an event that does not build on the room's forward
/// extremities: the state after its newest prev event this server has
/// (the room's state is linear in stream order, see the module doc).
async fn state_before(services: &Services, pdu: &Pdu) -> Result<HashMap<(StateEventType, String), Arc<Pdu>>, RoomError> {
    let mut newest = None;
    for prev in &pdu.prev_events {
        if let Some(event) = services.storage.event(prev).await?
            && newest.is_none_or(|at| event.stream_ordering > at)
        {
            newest = Some(event.stream_ordering);
        }
    }
    let events = match newest {
        Some(at) => services.storage.state_at(&pdu.room_id, at).await?,
        None => services.storage.current_state(&pdu.room_id).await?,
    };
    let mut state = HashMap::new();
    for event in events {
        let parsed = Pdu::from_stored(&event).map_err(|e| RoomError::Invalid(e.to_string()))?;
        state.insert((StateEventType::from(event.kind.as_str()), event.state_key.clone().unwrap_or_default()), Arc::new(parsed));
    }
    Ok(state)
}

/// A received event in the form the event pipeline persists.
fn built_event(pdu: &Pdu, object: &CanonicalJsonObject, json: &str, rules: &RoomVersionRules) -> Result<BuiltEvent, RoomError> {
    let content: Value = serde_json::from_str(pdu.content.get()).unwrap_or_default();
    let kind = pdu.kind.to_string();
    let membership = (kind == "m.room.member").then(|| content.get("membership").and_then(Value::as_str).map(str::to_owned)).flatten();
    let depth = match object.get("depth") {
        Some(CanonicalJsonValue::Integer(depth)) => i64::from(*depth),
        _ => 0,
    };
    let reference_hash = ruma::signatures::reference_hash(object, rules).map_err(|e| RoomError::Invalid(e.to_string()))?;
    Ok(BuiltEvent {
        event_id: pdu.event_id.clone(),
        pdu: Arc::new(pdu.clone()),
        kind: kind.clone(),
        state_key: pdu.state_key.clone(),
        membership,
        depth,
        origin_server_ts: i64::from(pdu.origin_server_ts.get()),
        prev_events: pdu.prev_events.clone(),
        json: json.to_owned(),
        relation: relation_of(&content),
        search_text: search_text_of(&kind, &content),
        reference_hash,
    })
}

/// The room's servers: those of its joined members.
pub async fn servers_in_room(services: &Services, room_id: &RoomId) -> Result<Vec<String>, StorageError> {
    let mut servers: Vec<String> = services.storage.members_with(room_id, "join").await?.iter().map(|user| user.server_name().to_string()).collect();
    servers.sort();
    servers.dedup();
    Ok(servers)
}

/// Rooms whose id is given in a request: the room must be known here.
pub async fn known_room(services: &Services, room_id: &OwnedRoomId) -> Result<(RoomVersionId, RoomVersionRules), super::FederationRoomError> {
    room_rules(services, room_id).await?.ok_or_else(|| super::FederationRoomError::NotFound("Unknown room".into()))
}
