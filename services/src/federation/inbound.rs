//! Transactions received from other servers (`PUT /send/{txnId}`) and the
//! checks every PDU passes before it is stored, in the specification's order:
//! its format and room (a room this server is in, of a known version), its
//! signatures and content hash (`pdus`), its prev events (missing ones asked
//! of the origin with `get_missing_events`) and auth events (missing ones
//! asked of the origin, `auth_events`), then the authorization rules
//! against its own auth events, against the state before it (resolved at
//! forks, `state`), and against the room's current state. Failing any but the last refuses the event: it is
//! named in the answer's `pdus` with the reason and nothing of it is stored.
//! Failing only the last (soft failure) keeps it as an outlier, outside the
//! timeline. An event that passes is persisted like a local one, under the
//! room's write lock, and wakes `/sync`; one that forks with what state
//! resolution changed in the room's current state.
//!
//! A transaction's answer is kept per origin and transaction id: the same
//! transaction sent again gets the same answer and changes nothing.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, OwnedRoomId, RoomId, RoomVersionId, ServerName, UInt,
    api::federation::event::get_missing_events, events::StateEventType, room_version_rules::RoomVersionRules, state_res,
};
use serde_json::{Value, value::RawValue};

use weft_storage::{Durability, NewEvent, NewStateReset, StateOverride, StorageError};

use super::{
    pdus::{self, ReceivedPdu},
    state,
};
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

/// Handles one transaction's PDUs, each on its room's persister; the
/// answer for each, by event id. An error (the database, or a persister
/// that cannot be reached) fails the whole transaction: the origin sends it
/// again, and nothing of it was recorded as answered.
pub async fn transaction(
    services: &Services,
    origin: &ServerName,
    txn_id: &str,
    pdus: &[Box<RawValue>],
) -> Result<BTreeMap<OwnedEventId, Result<(), String>>, RoomError> {
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
        let outcome = super::at_persister::pdu(services, origin, received, raw).await?;
        if let Err(reason) = &outcome {
            tracing::info!(%origin, %event_id, %reason, "refused a PDU");
        }
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
/// request returned). `durability`: `WithNextFlush` only where a flushed
/// commit follows before anyone is told the event was received (a
/// transaction's stored answer).
pub async fn handle_pdu(
    services: &Services,
    origin: &ServerName,
    received: ReceivedPdu,
    fetch_missing: bool,
    durability: Durability,
) -> Result<Accepted, PduError> {
    let storage = &services.storage;
    if storage.event(&received.event_id).await?.is_some() {
        // A sender that lost its acknowledgement sends events again.
        metrics::counter!("weft_federation_pdus_repeated_total", "origin" => origin.to_string()).increment(1);
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
        fetch_missing_prev_events(services, origin, &pdu, durability).await?;
    }

    super::auth_events::fetch_missing(services, origin, &rules, &pdu).await?;
    let auth_events = load_auth_events(services, &pdu).await?;
    let rooms = &services.rooms;
    let room_id = received.room_id.clone();
    // Whether the cached state must be reloaded: after a fork (it assumed a
    // line; the database has the extremities) or a redacted state event.
    let mut reload = false;
    let accepted = rooms
        .with_room(services, &room_id, async |state: &RoomState| {
            check_against_auth_events(state, &pdu, &auth_events)?;
            let extremities: BTreeSet<&OwnedEventId> = state.prev_events().iter().collect();
            let prevs: BTreeSet<&OwnedEventId> = pdu.prev_events.iter().collect();
            if extremities == prevs {
                // The state before the event is the current state: the fast path.
                check_against(&rules, &pdu, |kind, key| state.get(kind, key).cloned())
                    .map_err(|reason| RoomError::Forbidden(format!("not allowed by the state before the event: {reason}")))?;
                let (accepted, built, redacted_state) = persist(services, state, &pdu, &object, &json, &rules, None, durability).await?;
                reload = redacted_state;
                return Ok((accepted, built));
            }
            reload = true;
            // The state after each prev event this server has.
            let prev_states = state::states_after(services, &pdu.prev_events).await?;
            let current = state.state_ids();
            let before = match prev_states.len() {
                0 => current.clone(),
                _ => state::resolve(services, &rules, &room_id, prev_states, None).await?,
            };
            let before_events = auth_state(services, &rules, &pdu, &before).await?;
            check_against(&rules, &pdu, |kind, key| before_events.get(&(kind.clone(), key.to_owned())).cloned())
                .map_err(|reason| RoomError::Forbidden(format!("not allowed by the state before the event: {reason}")))?;
            // Soft failure: against the current state as if the event were
            // persisted (its state before resolved with the other forks).
            let others: Vec<OwnedEventId> = extremities.iter().filter(|id| !prevs.contains(**id)).map(|id| (*id).clone()).collect();
            let mut other_states = state::states_after(services, &others).await?;
            let mut states = vec![before.clone()];
            states.extend(other_states.iter().cloned());
            let as_if = state::resolve(services, &rules, &room_id, states, None).await?;
            let as_if_events = auth_state(services, &rules, &pdu, &as_if).await?;
            if let Err(reason) = check_against(&rules, &pdu, |kind, key| as_if_events.get(&(kind.clone(), key.to_owned())).cloned()) {
                tracing::info!(event_id = %pdu.event_id, %reason, "soft-failed an event: the current state does not allow it");
                services.storage.store_outlier(&pdu.event_id, &pdu.room_id, "soft_failed", &json).await?;
                return Ok((Accepted::SoftFailed, Vec::new()));
            }
            // The room's current state: the resolution of the forward
            // extremities' states once this event is one of them.
            let mut after = before.clone();
            if let Some(key) = state::key_of(&pdu) {
                after.insert(key, pdu.event_id.clone());
            }
            let new_current = if other_states.is_empty() {
                after
            } else {
                other_states.insert(0, after);
                state::resolve(services, &rules, &room_id, other_states, Some(&pdu)).await?
            };
            let resolution = Resolution { overrides: state::overrides(&before, &current), current, new_current };
            let (accepted, built, _) = persist(services, state, &pdu, &object, &json, &rules, Some(resolution), durability).await?;
            Ok((accepted, built))
        })
        .await?;
    if reload {
        rooms.forget(&room_id).await;
    }
    Ok(accepted)
}

/// What persisting an event that forks writes besides it: the keys of the
/// state before it that the linear state does not give, and the room's
/// current state before (`current`) and after (`new_current`) it.
struct Resolution {
    overrides: Vec<StateOverride>,
    current: state::StateIds,
    new_current: state::StateIds,
}

/// Persists a checked event (with `resolution` when it forks) and wakes
/// `/sync`; also whether the room's cached state must be reloaded (a state
/// event was redacted).
#[allow(clippy::too_many_arguments)]
async fn persist(
    services: &Services,
    state: &RoomState,
    pdu: &Pdu,
    object: &CanonicalJsonObject,
    json: &str,
    rules: &RoomVersionRules,
    resolution: Option<Resolution>,
    durability: Durability,
) -> Result<(Accepted, Vec<BuiltEvent>, bool), RoomError> {
    let built = built_event(pdu, object, json, rules)?;
    let push_actions = crate::push::evaluate(services, state, &built).await?;
    let redaction = redaction_of(services, state, pdu, &built).await?;
    let new = NewEvent {
        push_actions: &push_actions,
        redaction: redaction.as_ref().map(|(target, json, _)| (target.as_ref(), json.as_str())),
        ..built.as_new_event()
    };
    let written = match &resolution {
        None => services.storage.persist_events_with(None, &[new], durability).await.map(|_| ()),
        Some(resolution) => {
            let resets = resets(services, pdu, resolution).await?;
            let resets: Vec<NewStateReset<'_>> = resets
                .iter()
                .map(|(kind, key, id, membership)| NewStateReset { kind: kind.as_str(), state_key: key, event_id: id, membership: membership.as_deref() })
                .collect();
            services.storage.persist_resolved_event(&new, &resolution.overrides, &resets, durability).await.map(|_| ())
        }
    };
    match written {
        Ok(()) => {}
        // Another transaction brought the same event first.
        Err(StorageError::Conflict) => return Ok((Accepted::Timeline, Vec::new(), false)),
        Err(error) => return Err(error.into()),
    }
    services.events_persisted(pdu.room_id.as_str(), &[pdu.event_id.as_str()]);
    let redacted_state = redaction.as_ref().is_some_and(|(_, _, state_event)| *state_event);
    Ok((Accepted::Timeline, vec![built], redacted_state))
}

/// The keys where the resolved current state differs from the current
/// state with the event appended: `(type, state_key, event id, membership)`.
async fn resets(services: &Services, pdu: &Pdu, resolution: &Resolution) -> Result<Vec<(String, String, OwnedEventId, Option<String>)>, RoomError> {
    let mut appended = resolution.current.clone();
    if let Some(key) = state::key_of(pdu) {
        appended.insert(key, pdu.event_id.clone());
    }
    let mut out = Vec::new();
    for (key, id) in &resolution.new_current {
        if appended.get(key) == Some(id) {
            continue;
        }
        let Some(winner) = services.storage.event(id).await? else {
            tracing::warn!(event_id = %id, "state resolution chose an event outside the timeline; the current state keeps its event");
            continue;
        };
        let membership = (key.0 == StateEventType::RoomMember)
            .then(|| serde_json::from_str::<Value>(&winner.json).ok()?.pointer("/content/membership")?.as_str().map(str::to_owned))
            .flatten();
        out.push((key.0.to_string(), key.1.clone(), id.clone(), membership));
    }
    for key in appended.keys().filter(|key| !resolution.new_current.contains_key(*key)) {
        tracing::warn!(kind = %key.0, state_key = %key.1, "state resolution left out a key; the current state keeps it");
    }
    Ok(out)
}

/// The events of `state` the authorization rules read for `pdu`.
async fn auth_state(
    services: &Services,
    rules: &RoomVersionRules,
    pdu: &Pdu,
    state: &state::StateIds,
) -> Result<HashMap<(StateEventType, String), Arc<Pdu>>, RoomError> {
    let mut keys = state_res::auth_types_for_event(&pdu.kind, &pdu.sender, pdu.state_key.as_deref(), &pdu.content, &rules.authorization)
        .map_err(|reason| RoomError::Forbidden(format!("malformed event: {reason}")))?;
    keys.push((StateEventType::RoomCreate, String::new()));
    let mut out = HashMap::new();
    for key in keys {
        if let Some(id) = state.get(&key)
            && let Some(event) = load_event(services, id).await?
        {
            out.insert(key, event);
        }
    }
    Ok(out)
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
pub(super) fn check_format(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<(), PduError> {
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

pub(super) fn without_unsigned(object: &CanonicalJsonObject) -> CanonicalJsonObject {
    let mut object = object.clone();
    object.remove("unsigned");
    object
}

/// Asks `origin` for the prev events of `pdu` this server lacks, and
/// handles what it returns, oldest first. A gap that remains is accepted:
/// the event is then checked against the state this server has.
async fn fetch_missing_prev_events(services: &Services, origin: &ServerName, pdu: &Pdu, durability: Durability) -> Result<(), PduError> {
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
        if let Err(error) = Box::pin(handle_pdu(services, origin, received, false, durability)).await {
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
pub(super) fn check_against_auth_events(state: &RoomState, pdu: &Pdu, auth_events: &[Arc<Pdu>]) -> Result<(), RoomError> {
    let create = state.get(&StateEventType::RoomCreate, "").cloned();
    super::auth_events::check_against_own_auth_events(&state.rules, create, pdu, auth_events).map_err(RoomError::Forbidden)
}

fn check_against(rules: &RoomVersionRules, pdu: &Pdu, fetch: impl Fn(&StateEventType, &str) -> Option<Arc<Pdu>>) -> Result<(), String> {
    state_res::check_state_dependent_auth_rules(&rules.authorization, pdu, fetch)
}

/// A received event in the form the event pipeline persists.
pub(super) fn built_event(pdu: &Pdu, object: &CanonicalJsonObject, json: &str, rules: &RoomVersionRules) -> Result<BuiltEvent, RoomError> {
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
