//! History from before this server joined a room, fetched from the room's
//! other servers (`GET /backfill`) when a client's `/messages` reaches the
//! earliest event this server has.
//!
//! One round: the room's backward extremities are asked of one of its
//! servers (those of its joined members, the creator's first, tried in
//! turn, through the federation client with its address policy and
//! timeouts); each PDU
//! answered is checked as inbound PDUs are (`inbound`: format, signatures
//! and content hash, a mismatch stored redacted, the authorization rules
//! against its auth events, taken from the batch or what this server has),
//! then the batch is stored below everything already there
//! (`Storage::persist_backfilled`: negative orderings, never current state,
//! never the sync stream) and the backward extremities move to the prev
//! events not fetched yet. A room whose walk reached its create event has
//! none left and is not asked about again.
//!
//! Runs only on the room's persister (another instance serves `/messages`
//! from what it has). May call: `inbound`, `pdus`, `rooms` (the room's
//! write lock and rules), `weft_storage`, `weft_federation`.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::{
    CanonicalJsonValue, EventId, OwnedEventId, OwnedServerName, RoomId, ServerName, UInt, api::federation::backfill::get_backfill, events::StateEventType,
};
use serde_json::value::RawValue;

use weft_storage::{NewEvent, StorageError};

use super::{inbound, pdus};
use crate::{
    replication::room_writes,
    rooms::{BuiltEvent, RoomError, RoomState, pdu::Pdu, versions},
    services::Services,
};

/// The most events asked for at once (Synapse asks for 100).
const MAX_BACKFILL: usize = 100;
/// The fewest asked for: a page of `/messages` asks for twice its limit.
const MIN_BACKFILL: usize = 20;
/// How many of the room's servers are tried in one round.
const MAX_SERVERS_TRIED: usize = 5;

/// Fetches and stores one batch of the room's history from before what
/// this server has, about `wanted` events. Returns how many events the
/// walk passed (stored, or already here as the state of the join): 0 when
/// there is nothing to fetch, no server answered, or nothing was new.
pub async fn backfill(services: &Services, room_id: &RoomId, wanted: usize) -> Result<usize, StorageError> {
    if room_writes::remote_persister(services, room_id).is_some() {
        return Ok(0);
    }
    let extremities = services.storage.backward_extremities(room_id).await?;
    if extremities.is_empty() {
        return Ok(0);
    }
    let Some((origin, pdus)) = fetch(services, room_id, &extremities, wanted.clamp(MIN_BACKFILL, MAX_BACKFILL)).await? else {
        return Ok(0);
    };
    match store(services, room_id, &origin, &extremities, &pdus).await {
        Ok(stored) => Ok(stored),
        Err(RoomError::Storage(error)) => Err(error),
        Err(error) => {
            tracing::info!(%room_id, %origin, %error, "a backfilled batch was not stored");
            Ok(0)
        }
    }
}

/// Asks the room's servers in turn for the history before `extremities`:
/// the servers with joined members, the creator's first (the one most
/// likely to hold it all); one that fails or has nothing is followed by
/// the next.
async fn fetch(
    services: &Services,
    room_id: &RoomId,
    extremities: &[OwnedEventId],
    limit: usize,
) -> Result<Option<(OwnedServerName, Vec<Box<RawValue>>)>, StorageError> {
    let mut servers = inbound::servers_in_room(services, room_id).await?;
    if let Some(create) = services.storage.current_state_event(room_id, "m.room.create", "").await? {
        let creator = create.sender.server_name().as_str();
        if let Some(at) = servers.iter().position(|server| server == creator) {
            let first = servers.remove(at);
            servers.insert(0, first);
        }
    }
    let servers = servers.iter().filter(|server| server.as_str() != services.server_name.as_str()).take(MAX_SERVERS_TRIED);
    for server in servers {
        let Ok(server) = OwnedServerName::try_from(server.as_str()) else { continue };
        let request = get_backfill::v1::Request::new(room_id.to_owned(), extremities.to_vec(), UInt::try_from(limit).unwrap_or(UInt::MIN));
        match services.federation.client.send_request(&server, request).await {
            Ok(response) if !response.pdus.is_empty() => return Ok(Some((server, response.pdus))),
            Ok(_) => tracing::info!(%room_id, %server, "backfill: the server has nothing before the extremities"),
            Err(error) => tracing::info!(%room_id, %server, %error, "backfill request failed"),
        }
    }
    Ok(None)
}

/// One PDU of a backfill answer, its signatures and hash checked.
struct Fetched {
    pdu: Arc<Pdu>,
    built: BuiltEvent,
}

/// Checks the answer's PDUs and stores those that pass, then moves the
/// backward extremities.
async fn store(services: &Services, room_id: &RoomId, origin: &ServerName, asked: &[OwnedEventId], raws: &[Box<RawValue>]) -> Result<usize, RoomError> {
    let (_, rules) = inbound::room_rules(services, room_id).await?.ok_or_else(|| RoomError::Invalid("unknown room".into()))?;
    let mut fetched: HashMap<OwnedEventId, Fetched> = HashMap::new();
    for raw in raws.iter().take(MAX_BACKFILL) {
        let Ok(object) = pdus::parse_object(raw) else { continue };
        let is_create = matches!(object.get("type"), Some(CanonicalJsonValue::String(kind)) if kind == "m.room.create");
        let in_room = match pdus::room_of(&object) {
            Some(other) => other == room_id,
            None => is_create && versions::room_id_is_create_hash(&rules),
        };
        let Ok(event_id) = pdus::event_id_of(&object, &rules) else { continue };
        if !in_room || fetched.contains_key(&event_id) {
            continue;
        }
        if let Err(reason) = inbound::check_format(&object, &rules).map_err(|e| e.to_string()) {
            tracing::info!(%origin, %event_id, %reason, "a backfilled event was refused");
            continue;
        }
        let (object, redacted) = match pdus::verify(services, &object, &rules).await {
            Ok(verified) => verified,
            Err(reason) => {
                tracing::info!(%origin, %event_id, %reason, "a backfilled event was refused");
                continue;
            }
        };
        if redacted {
            tracing::info!(%event_id, "content hash mismatch: the backfilled event is kept redacted");
        }
        let object = inbound::without_unsigned(&object);
        let json = CanonicalJsonValue::Object(object.clone()).to_string();
        let Ok(pdu) = Pdu::parse(event_id.clone(), &json) else { continue };
        let Ok(built) = inbound::built_event(&pdu, &object, &json, &rules) else { continue };
        fetched.insert(event_id, Fetched { pdu: Arc::new(pdu), built });
    }

    services
        .rooms
        .with_room(services, room_id, async |state: &RoomState| {
            let stored = store_checked(services, state, asked, &fetched).await?;
            Ok((stored, Vec::new()))
        })
        .await
}

/// Under the room's write lock: authorises the fetched events oldest first
/// (auth events from the batch or this server), stores those that pass and
/// are new, and moves the backward extremities.
async fn store_checked(services: &Services, state: &RoomState, asked: &[OwnedEventId], fetched: &HashMap<OwnedEventId, Fetched>) -> Result<usize, RoomError> {
    let storage = &services.storage;
    let ids: Vec<&EventId> = fetched.keys().map(|id| &**id).collect();
    let stored: HashMap<OwnedEventId, i64> = storage.stored_orderings(&ids).await?.into_iter().collect();

    let mut order: Vec<&Fetched> = fetched.values().collect();
    order.sort_by_key(|event| (event.built.depth, event.pdu.event_id.clone()));
    let mut accepted: HashSet<&EventId> = HashSet::new();
    // Events whose predecessors this walk follows: new ones and those
    // stored here only as state of the join (not yet walked past).
    let mut walked: Vec<&EventId> = Vec::new();
    let mut to_store: Vec<&Fetched> = Vec::new();
    for event in order {
        let id = &*event.pdu.event_id;
        match stored.get(id) {
            Some(ordering) if *ordering < 0 => continue,
            Some(_) => {
                walked.push(id);
                continue;
            }
            None => {}
        }
        walked.push(id);
        match authorise(services, state, &event.pdu, fetched, &accepted).await? {
            Ok(()) => {
                accepted.insert(id);
                to_store.push(event);
            }
            Err(reason) => tracing::info!(event_id = %id, %reason, "a backfilled event fails its auth events"),
        }
    }

    let walked_set: HashSet<&EventId> = walked.iter().copied().collect();
    let create_id = state.get(&StateEventType::RoomCreate, "").map(|create| create.event_id.clone());
    let mut prevs: Vec<&EventId> = Vec::new();
    for id in &walked {
        for prev in &fetched[*id].pdu.prev_events {
            if !walked_set.contains(&**prev) && create_id.as_deref() != Some(&**prev) && !prevs.contains(&&**prev) {
                prevs.push(prev);
            }
        }
    }
    let known_before: HashMap<OwnedEventId, i64> = storage.stored_orderings(&prevs).await?.into_iter().collect();
    // A prev event already backfilled needs nothing more.
    let extremities: Vec<&EventId> = prevs.into_iter().filter(|prev| known_before.get(*prev).is_none_or(|ordering| *ordering >= 0)).collect();
    // Asked-for events the answer held are walked; those it lacked stay.
    let mut done: Vec<&EventId> = walked.clone();
    done.extend(asked.iter().filter(|id| stored.get(*id).is_some_and(|ordering| *ordering < 0)).map(|id| &**id));

    to_store.sort_by_key(|event| std::cmp::Reverse((event.built.depth, event.pdu.event_id.clone())));
    let new_events: Vec<NewEvent<'_>> = to_store.iter().map(|event| event.built.as_new_event()).collect();
    match storage.persist_backfilled(&state.room_id, &new_events, &done, &extremities).await {
        Ok(orderings) => {
            tracing::info!(room_id = %state.room_id, stored = orderings.len(), extremities = extremities.len(), "backfilled");
            Ok(walked.len())
        }
        // Another instance stored some of them meanwhile: the next round sees it.
        Err(StorageError::Conflict) => Ok(0),
        Err(error) => Err(error.into()),
    }
}

/// The authorization rules against the event's own auth events: those of
/// the batch already accepted, or those this server has.
async fn authorise(
    services: &Services,
    state: &RoomState,
    pdu: &Pdu,
    fetched: &HashMap<OwnedEventId, Fetched>,
    accepted: &HashSet<&EventId>,
) -> Result<Result<(), String>, RoomError> {
    let mut auth_events = Vec::with_capacity(pdu.auth_events.len());
    for id in &pdu.auth_events {
        let event = match fetched.get(id) {
            Some(event) if accepted.contains(&**id) => Some(event.pdu.clone()),
            _ => inbound::load_event(services, id).await?,
        };
        match event {
            Some(event) if event.room_id == pdu.room_id => auth_events.push(event),
            Some(_) => return Ok(Err(format!("auth event {id} is in another room"))),
            None => return Ok(Err(format!("unknown auth event {id}"))),
        }
    }
    Ok(inbound::check_against_auth_events(state, pdu, &auth_events).map_err(|error| error.to_string()))
}

/// When a remote join is stored: its prev events are where the room's
/// history before this server begins.
pub async fn record_join(services: &Services, room_id: &RoomId, prev_events: &[OwnedEventId]) -> Result<(), StorageError> {
    services.storage.add_backward_extremities(room_id, prev_events).await
}
