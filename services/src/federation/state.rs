//! The state of rooms shared with other servers at their events, and state
//! resolution at forks.
//!
//! A room's state stays linear in stream order (`weft_storage`'s `state_at`,
//! with the resets below); where that does not give the state before an
//! event (an event of another server that forks), the keys that differ are
//! kept with the event (`event_state_overrides`). The state before a new
//! event is then, as the specification says, the state after its prev event,
//! or for several the resolution of the states after each (ruma's
//! `state_res::resolve`, state resolution v2 with the room version's rules;
//! room version 1's own algorithm is not in ruma, so v2 serves it too). The
//! room's current state after an event that leaves several forward
//! extremities is the resolution of their states; where it differs from
//! appending the event, the differences are written as state resets at the
//! event's position, which the current state, the state at a position and
//! `/sync` read.
//!
//! May call: `weft_storage`, `rooms` (the PDU form the rules read).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::{
    EventId, OwnedEventId, RoomId,
    events::StateEventType,
    room_version_rules::{RoomVersionRules, StateResolutionV2Rules},
    state_res::{self, StateMap, utils::event_id_set::EventIdSet},
};

use weft_storage::{StateOverride, StorageError, StoredEvent};

use crate::{
    rooms::{RoomError, pdu::Pdu},
    services::Services,
};

/// A room's state as event ids.
pub type StateIds = StateMap<OwnedEventId>;

/// The key of a state event.
pub fn key_of(pdu: &Pdu) -> Option<(StateEventType, String)> {
    pdu.state_key.as_ref().map(|key| (StateEventType::from(pdu.kind.to_string()), key.clone()))
}

fn ids_of(events: Vec<StoredEvent>) -> StateIds {
    events.into_iter().map(|event| ((StateEventType::from(event.kind.as_str()), event.state_key.unwrap_or_default()), event.event_id)).collect()
}

/// The state before a stored event: the room's linear state just before
/// it, with the keys kept for the event where that was not its state.
pub async fn state_before_stored(services: &Services, event: &StoredEvent) -> Result<StateIds, StorageError> {
    let mut state = ids_of(services.storage.state_at(&event.room_id, event.stream_ordering - 1).await?);
    for StateOverride { kind, state_key, event_id } in services.storage.state_overrides(&event.event_id).await? {
        let key = (StateEventType::from(kind.as_str()), state_key);
        match event_id.and_then(|id| OwnedEventId::try_from(id).ok()) {
            Some(id) => state.insert(key, id),
            None => state.remove(&key),
        };
    }
    Ok(state)
}

/// The state events before a stored event (as `state_before_stored`).
pub async fn state_events_before(services: &Services, event: &StoredEvent) -> Result<Vec<StoredEvent>, StorageError> {
    let mut state = services.storage.state_at(&event.room_id, event.stream_ordering - 1).await?;
    for StateOverride { kind, state_key, event_id } in services.storage.state_overrides(&event.event_id).await? {
        state.retain(|held| held.kind != kind || held.state_key.as_deref() != Some(state_key.as_str()));
        if let Some(id) = event_id.and_then(|id| OwnedEventId::try_from(id).ok())
            && let Some(held) = services.storage.event(&id).await?
        {
            state.push(held);
        }
    }
    Ok(state)
}

/// The state after a stored event: the state before it, and the event itself.
pub async fn state_after_stored(services: &Services, event: &StoredEvent) -> Result<StateIds, StorageError> {
    let mut state = state_before_stored(services, event).await?;
    if let Some(state_key) = &event.state_key {
        state.insert((StateEventType::from(event.kind.as_str()), state_key.clone()), event.event_id.clone());
    }
    Ok(state)
}

/// The states after the events `ids` this server has in its timeline; the
/// others are left out.
pub async fn states_after(services: &Services, ids: &[OwnedEventId]) -> Result<Vec<StateIds>, StorageError> {
    let mut states = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(event) = services.storage.event(id).await? {
            states.push(state_after_stored(services, &event).await?);
        }
    }
    Ok(states)
}

/// `before` compared with `linear` (the room's state just before an event's
/// position): the keys to keep with the event.
pub fn overrides(before: &StateIds, linear: &StateIds) -> Vec<StateOverride> {
    let mut out: Vec<StateOverride> = before
        .iter()
        .filter(|(key, id)| linear.get(*key) != Some(*id))
        .map(|((kind, state_key), id)| StateOverride { kind: kind.to_string(), state_key: state_key.clone(), event_id: Some(id.to_string()) })
        .collect();
    out.extend(linear.keys().filter(|key| !before.contains_key(*key)).map(|(kind, state_key)| StateOverride {
        kind: kind.to_string(),
        state_key: state_key.clone(),
        event_id: None,
    }));
    out
}

/// The resolution of `states` (the states after each of a room's forks);
/// `pending`: an event they hold that is not stored yet.
pub async fn resolve(
    services: &Services,
    rules: &RoomVersionRules,
    room_id: &RoomId,
    states: Vec<StateIds>,
    pending: Option<&Pdu>,
) -> Result<StateIds, RoomError> {
    let mut states = states;
    states.dedup();
    if states.len() <= 1 {
        return Ok(states.pop().unwrap_or_default());
    }
    if !conflicted(&states) {
        let mut union = StateIds::new();
        for state in states {
            union.extend(state);
        }
        return Ok(union);
    }
    let mut events = EventCache::default();
    if let Some(pdu) = pending {
        events.by_id.insert(pdu.event_id.clone(), Arc::new(pdu.clone()));
    }
    let mut auth_chains = Vec::with_capacity(states.len());
    for state in &states {
        let mut chain = EventIdSet::new();
        let mut stack: Vec<OwnedEventId> = Vec::new();
        for id in state.values() {
            if let Some(event) = events.load(services, room_id, id).await? {
                stack.extend(event.auth_events.iter().cloned());
            }
        }
        while let Some(id) = stack.pop() {
            if chain.contains(&id) {
                continue;
            }
            if let Some(event) = events.load(services, room_id, &id).await? {
                stack.extend(event.auth_events.iter().filter(|next| !chain.contains(next)).cloned());
            }
            chain.insert(id);
        }
        auth_chains.push(chain);
    }
    let v2_rules = rules.state_res.v2_rules().copied().unwrap_or(StateResolutionV2Rules::V2_0);
    let by_id = &events.by_id;
    let fetch = |id: &EventId| by_id.get(id).cloned();
    let subgraph = |conflicted: &StateMap<Vec<OwnedEventId>>| Some(conflicted_subgraph(conflicted, by_id));
    state_res::resolve(&rules.authorization, &v2_rules, states.iter(), auth_chains, fetch, subgraph)
        .map_err(|error| RoomError::Invalid(format!("state resolution failed: {error}")))
}

/// Whether the states disagree on some key (one lacking it counts).
fn conflicted(states: &[StateIds]) -> bool {
    let first = &states[0];
    states[1..].iter().any(|state| state != first)
}

/// Events of one resolution, read once each.
#[derive(Default)]
struct EventCache {
    by_id: HashMap<OwnedEventId, Arc<Pdu>>,
    missing: HashSet<OwnedEventId>,
}

impl EventCache {
    async fn load(&mut self, services: &Services, room_id: &RoomId, id: &EventId) -> Result<Option<Arc<Pdu>>, StorageError> {
        if let Some(event) = self.by_id.get(id) {
            return Ok(Some(event.clone()));
        }
        if self.missing.contains(id) {
            return Ok(None);
        }
        let event = super::inbound::load_event(services, id).await?.filter(|event| *event.room_id == *room_id);
        match &event {
            Some(event) => {
                self.by_id.insert(id.to_owned(), event.clone());
            }
            None => {
                self.missing.insert(id.to_owned());
            }
        }
        Ok(event)
    }
}

/// The conflicted state subgraph (state resolution v2.1, room version 12):
/// the events on an auth path from one conflicted event to another.
fn conflicted_subgraph(conflicted: &StateMap<Vec<OwnedEventId>>, by_id: &HashMap<OwnedEventId, Arc<Pdu>>) -> EventIdSet<OwnedEventId> {
    let targets: HashSet<&EventId> = conflicted.values().flatten().map(|id| &**id).collect();
    // Whether an event reaches a conflicted event along auth events (memoised).
    let mut reaches: HashMap<OwnedEventId, bool> = HashMap::new();
    fn visit(id: &EventId, by_id: &HashMap<OwnedEventId, Arc<Pdu>>, targets: &HashSet<&EventId>, reaches: &mut HashMap<OwnedEventId, bool>) -> bool {
        if let Some(known) = reaches.get(id) {
            return *known;
        }
        // Guards cycles, which a valid auth DAG has not.
        reaches.insert(id.to_owned(), false);
        let mut found = false;
        if let Some(event) = by_id.get(id) {
            for parent in &event.auth_events {
                if targets.contains(&**parent) || visit(parent, by_id, targets, reaches) {
                    found = true;
                }
            }
        }
        reaches.insert(id.to_owned(), found);
        found
    }
    let mut subgraph = EventIdSet::new();
    for target in &targets {
        visit(target, by_id, &targets, &mut reaches);
    }
    for (id, reached) in &reaches {
        if *reached {
            subgraph.insert(id.clone());
        }
    }
    for target in targets {
        subgraph.insert(target.to_owned());
    }
    subgraph
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> OwnedEventId {
        OwnedEventId::try_from(format!("${name}")).unwrap()
    }

    fn key(kind: &str, state_key: &str) -> (StateEventType, String) {
        (StateEventType::from(kind), state_key.to_owned())
    }

    fn event(name: &str, auth: &[&str]) -> (OwnedEventId, Arc<Pdu>) {
        let auth: Vec<String> = auth.iter().map(|name| format!("${name}")).collect();
        let json = serde_json::json!({
            "room_id": "!room:example.org", "sender": "@a:example.org", "type": "m.room.topic", "state_key": "",
            "content": {}, "origin_server_ts": 1, "prev_events": [], "auth_events": auth,
        });
        (id(name), Arc::new(Pdu::parse(id(name), &json.to_string()).unwrap()))
    }

    #[test]
    fn overrides_name_the_keys_that_differ_and_those_absent() {
        let linear: StateIds = [(key("m.room.topic", ""), id("old")), (key("m.room.name", ""), id("name")), (key("m.room.avatar", ""), id("avatar"))].into();
        let before: StateIds = [(key("m.room.topic", ""), id("new")), (key("m.room.name", ""), id("name")), (key("m.room.member", "@b:x"), id("b"))].into();
        let mut found: Vec<(String, String, Option<String>)> =
            overrides(&before, &linear).into_iter().map(|entry| (entry.kind, entry.state_key, entry.event_id)).collect();
        found.sort();
        assert_eq!(
            found,
            vec![
                ("m.room.avatar".into(), String::new(), None),
                ("m.room.member".into(), "@b:x".into(), Some("$b".into())),
                ("m.room.topic".into(), String::new(), Some("$new".into())),
            ]
        );
        assert!(overrides(&linear, &linear).is_empty());
    }

    #[test]
    fn the_conflicted_subgraph_holds_the_auth_paths_between_conflicted_events() {
        // c -> b -> a, d -> a; conflicted: a and c.
        let by_id: HashMap<OwnedEventId, Arc<Pdu>> = [event("a", &[]), event("b", &["a"]), event("c", &["b"]), event("d", &["a"])].into();
        let conflicted: StateMap<Vec<OwnedEventId>> = [(key("m.room.topic", ""), vec![id("a"), id("c")])].into();
        let subgraph = conflicted_subgraph(&conflicted, &by_id);
        assert!(subgraph.contains(&id("b")), "on the path from c to a");
        assert!(subgraph.contains(&id("a")) && subgraph.contains(&id("c")));
        assert!(!subgraph.contains(&id("d")), "reaches a but descends from no conflicted event");
    }
}
