//! Auth events a received PDU names that this server does not have: the
//! PDU's auth chain is asked of the origin (`GET /event_auth`), and each
//! event of it this server lacks is checked as any PDU (its room, id,
//! signatures and content hash, then the authorization rules against its
//! own auth events), oldest first, and kept as an outlier (outside every
//! timeline). One failing a check is left out; the PDU is then refused
//! for the auth event it still lacks.
//!
//! May call: `weft_federation` (the request), `weft_storage`, `pdus`, `inbound`.

use std::{collections::HashMap, sync::Arc};

use ruma::{
    CanonicalJsonValue, EventId, ServerName, api::federation::authorization::get_event_authorization, events::StateEventType,
    room_version_rules::RoomVersionRules, state_res,
};

use super::{
    inbound::{PduError, load_event},
    pdus,
};
use crate::{rooms::pdu::Pdu, services::Services};

/// Fetches, checks and keeps the auth events of `pdu` this server lacks.
pub async fn fetch_missing(services: &Services, origin: &ServerName, rules: &RoomVersionRules, pdu: &Pdu) -> Result<(), PduError> {
    let mut missing = false;
    for id in &pdu.auth_events {
        if load_event(services, id).await?.is_none() {
            missing = true;
            break;
        }
    }
    if !missing || origin == services.server_name {
        return Ok(());
    }
    let request = get_event_authorization::v1::Request::new(pdu.room_id.clone(), pdu.event_id.clone());
    let response = match services.federation.client.send_request(origin, request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(%origin, event_id = %pdu.event_id, %error, "event_auth failed");
            return Ok(());
        }
    };
    let mut fetched: Vec<(i64, Pdu, String)> = Vec::new();
    for raw in &response.auth_chain {
        let Ok(object) = pdus::parse_object(raw) else { continue };
        let Ok(event_id) = pdus::event_id_of(&object, rules) else { continue };
        if load_event(services, &event_id).await?.is_some() {
            continue;
        }
        // A v12 create event names no room: this server has the room's.
        if pdus::room_of(&object).as_ref() != Some(&pdu.room_id) {
            continue;
        }
        let (object, _redacted) = match pdus::verify(services, &object, rules).await {
            Ok(verified) => verified,
            Err(reason) => {
                tracing::info!(%event_id, %reason, "a fetched auth event was refused");
                continue;
            }
        };
        let mut object = object;
        object.remove("unsigned");
        let json = CanonicalJsonValue::Object(object.clone()).to_string();
        let Ok(parsed) = Pdu::parse(event_id.clone(), &json) else { continue };
        let depth = match object.get("depth") {
            Some(CanonicalJsonValue::Integer(depth)) => i64::from(*depth),
            _ => 0,
        };
        fetched.push((depth, parsed, json));
    }
    fetched.sort_by_key(|(depth, ..)| *depth);
    let create = match services.storage.current_state_event(&pdu.room_id, "m.room.create", "").await? {
        Some(event) => Pdu::from_stored(&event).ok().map(Arc::new),
        None => None,
    };
    for (_, event, json) in fetched {
        let mut auth_events = Vec::with_capacity(event.auth_events.len());
        for id in &event.auth_events {
            match load_event(services, id).await? {
                Some(auth) if auth.room_id == event.room_id => auth_events.push(auth),
                _ => break,
            }
        }
        if auth_events.len() != event.auth_events.len() {
            tracing::info!(event_id = %event.event_id, "a fetched auth event names an auth event no one gave");
            continue;
        }
        if let Err(reason) = check_against_own_auth_events(rules, create.clone(), &event, &auth_events) {
            tracing::info!(event_id = %event.event_id, %reason, "a fetched auth event fails the authorization rules");
            continue;
        }
        services.storage.store_outlier(&event.event_id, &event.room_id, "outlier", &json).await?;
    }
    Ok(())
}

/// The authorization rules against an event's own auth events (and the
/// room's create event, which room version 12 leaves out of them).
pub fn check_against_own_auth_events(rules: &RoomVersionRules, create: Option<Arc<Pdu>>, pdu: &Pdu, auth_events: &[Arc<Pdu>]) -> Result<(), String> {
    let rules = &rules.authorization;
    let by_id = |id: &EventId| auth_events.iter().chain(create.iter()).find(|event| *event.event_id == *id).cloned();
    state_res::check_state_independent_auth_rules(rules, pdu, by_id).map_err(|reason| format!("auth events: {reason}"))?;
    let mut by_key: HashMap<(StateEventType, String), Arc<Pdu>> = HashMap::new();
    for event in auth_events.iter().chain(create.iter()) {
        if let Some(key) = &event.state_key {
            by_key.insert((StateEventType::from(event.kind.to_string()), key.clone()), event.clone());
        }
    }
    state_res::check_state_dependent_auth_rules(rules, pdu, |kind, key| by_key.get(&(kind.clone(), key.to_owned())).cloned())
        .map_err(|reason| format!("auth events: {reason}"))
}
