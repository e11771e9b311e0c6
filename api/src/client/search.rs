//! `POST /search`: room events whose body (or room name or topic) matches,
//! in rooms the user has joined and only where history visibility lets them
//! see the event; ordered by rank or recency, paginated by offset into the
//! matches. Honours the criteria's `keys` and room event `filter`, gives
//! each result its `context` (events around it, optionally the senders'
//! profiles), the rooms' current `state` on request, and `groups` by room or
//! sender. `count` is the number of matches in the user's rooms before
//! history visibility is applied, an estimate as in Synapse.

use std::collections::{BTreeMap, HashMap};

use ruma::{
    OwnedRoomId, OwnedUserId, RoomId, UInt, UserId,
    api::client::search::search_events::v3::{
        Criteria, EventContextResult, GroupingKey, OrderBy, ResultCategories, ResultGroup, ResultGroupMap, ResultRoomEvents, SearchResult, UserProfile,
    },
};
use serde_json::Value;

use weft_core::json::raw;
use weft_services::rooms::{aggregations::Aggregations, pdu::client_event, visibility::Visibility};
use weft_services::services::{AppState, Services};
use weft_services::sync::filter::event_matches;
use weft_storage::StoredEvent;

use super::{
    listed::{
        search_events::{Request, Response},
        with_lists,
    },
    room_events::token_at,
};
use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

const DEFAULT_LIMIT: u64 = 10;
const MAX_LIMIT: u64 = 100;
/// Matches read per query while filling a page.
const SCAN_PAGE: i64 = 100;
/// Most matches one request reads past the filter and history visibility.
const MAX_SCANNED: i64 = 1000;
/// Most events of context on either side of a result.
const MAX_CONTEXT: u64 = 20;

pub async fn search(state: AppState, request: Ruma<Request>) -> ApiResult<Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let Some(criteria) = &body.search_categories.room_events else {
        return respond(ResultCategories::new());
    };
    let offset = match &body.next_batch {
        None => 0,
        Some(token) => token.strip_prefix('o').and_then(|n| n.parse::<i64>().ok()).ok_or_else(|| ApiError::invalid_param("Invalid next_batch"))?,
    };
    let group_by = grouping_keys(criteria)?;
    let searched_types = searched_types(criteria)?;
    let limit = criteria.filter.limit.map_or(DEFAULT_LIMIT, u64::from).clamp(1, MAX_LIMIT) as usize;
    let recent = matches!(criteria.order_by, Some(OrderBy::Recent));
    let one_room = match criteria.filter.rooms.as_deref() {
        Some([room]) => Some(room.as_ref()),
        _ => None,
    };
    let user_id = &sender.user_id;

    let mut visibilities: HashMap<OwnedRoomId, Visibility> = HashMap::new();
    let mut hits: Vec<(StoredEvent, f64)> = Vec::new();
    let mut cursor = offset;
    let mut more = false;
    'scan: loop {
        let batch = state.storage.search_events(user_id, &criteria.search_term, one_room, recent, SCAN_PAGE, cursor).await?;
        let exhausted = (batch.len() as i64) < SCAN_PAGE;
        for (event, rank) in batch {
            if hits.len() == limit {
                more = true;
                break 'scan;
            }
            cursor += 1;
            if !searched_types.contains(&event.kind.as_str()) || !event_matches(&criteria.filter, &event) {
                continue;
            }
            if !visibilities.contains_key(&event.room_id) {
                visibilities.insert(event.room_id.clone(), Visibility::load(&state.storage, &event.room_id, user_id).await?);
            }
            if visibilities[&event.room_id].can_see(&event, user_id) {
                hits.push((event, rank));
            }
        }
        if exhausted {
            break;
        }
        if cursor - offset >= MAX_SCANNED {
            more = true;
            break;
        }
    }

    let shown = hits.iter().map(|(event, _)| event);
    let aggregations = Aggregations::load(&state.storage, user_id, shown, true).await?;
    let mut results = Vec::with_capacity(hits.len());
    for (event, rank) in &hits {
        let mut result = SearchResult::new();
        result.rank = Some(*rank);
        result.result = Some(raw(&aggregations.bundle(event, client_event(event, true))));
        result.context = context(&state, criteria, event, &visibilities[&event.room_id], user_id).await?;
        results.push(result);
    }

    let mut room_events = ResultRoomEvents::new();
    room_events.count = Some(UInt::new_saturating(state.storage.count_search_matches(user_id, &criteria.search_term, one_room).await?.max(0) as u64));
    room_events.highlights = criteria.search_term.split_whitespace().map(str::to_lowercase).collect();
    room_events.results = results;
    room_events.next_batch = more.then(|| format!("o{cursor}"));
    room_events.groups.extend(groups(&group_by, &hits));
    if criteria.include_state == Some(true) {
        for room_id in visibilities.keys().filter(|room_id| hits.iter().any(|(event, _)| &event.room_id == *room_id)) {
            let current = state.storage.current_state(room_id).await?;
            room_events.state.insert(room_id.clone(), current.iter().map(|event| raw(&client_event(event, true))).collect());
        }
    }
    let mut categories = ResultCategories::new();
    categories.room_events = room_events;
    respond(categories)
}

/// The response, with `results` even when nothing matched (as Synapse).
fn respond(categories: ResultCategories) -> ApiResult<Response> {
    let Ok(Value::Object(mut categories)) = serde_json::to_value(&categories) else { return Err(ApiError::internal()) };
    if let Some(Value::Object(room_events)) = categories.remove("room_events") {
        categories.insert("room_events".into(), Value::Object(with_lists(room_events, &["results"])));
    }
    let mut body = ruma::serde::JsonObject::new();
    body.insert("search_categories".into(), Value::Object(categories));
    Ok(Response { body })
}

/// The `group_by` keys asked for; only `room_id` and `sender` exist.
fn grouping_keys(criteria: &Criteria) -> ApiResult<Vec<GroupingKey>> {
    criteria
        .groupings
        .group_by
        .iter()
        .filter_map(|grouping| grouping.key.clone())
        .map(|key| match key {
            GroupingKey::RoomId | GroupingKey::Sender => Ok(key),
            other => Err(ApiError::invalid_param(format!("Invalid group by key `{}`", other.as_str()))),
        })
        .collect()
}

/// The event types whose searched field `keys` names (all three by default).
fn searched_types(criteria: &Criteria) -> ApiResult<Vec<&'static str>> {
    let Some(keys) = &criteria.keys else { return Ok(vec!["m.room.message", "m.room.name", "m.room.topic"]) };
    keys.iter()
        .map(|key| match key.as_str() {
            "content.body" => Ok("m.room.message"),
            "content.name" => Ok("m.room.name"),
            "content.topic" => Ok("m.room.topic"),
            other => Err(ApiError::invalid_param(format!("Unknown search key `{other}`"))),
        })
        .collect()
}

/// The visible events around `event`, their bounds as tokens, and on
/// request the profiles of everyone who sent one of them.
async fn context(state: &Services, criteria: &Criteria, event: &StoredEvent, visibility: &Visibility, user_id: &UserId) -> ApiResult<EventContextResult> {
    let mut result = EventContextResult::new();
    let before_limit = u64::from(criteria.event_context.before_limit).min(MAX_CONTEXT) as i64;
    let after_limit = u64::from(criteria.event_context.after_limit).min(MAX_CONTEXT) as i64;
    let at = event.stream_ordering;
    let storage = &state.storage;
    let before: Vec<StoredEvent> =
        storage.room_events(&event.room_id, 0, at - 1, before_limit, true).await?.into_iter().filter(|e| visibility.can_see(e, user_id)).collect();
    let after: Vec<StoredEvent> =
        storage.room_events(&event.room_id, at, i64::MAX, after_limit, false).await?.into_iter().filter(|e| visibility.can_see(e, user_id)).collect();
    result.start = Some(token_at(before.last().map_or(at - 1, |e| e.stream_ordering - 1)));
    result.end = Some(token_at(after.last().map_or(at, |e| e.stream_ordering)));
    result.events_before = before.iter().map(|e| raw(&client_event(e, true))).collect();
    result.events_after = after.iter().map(|e| raw(&client_event(e, true))).collect();
    if criteria.event_context.include_profile {
        for sender in before.iter().chain(&after).chain([event]).map(|e| &e.sender) {
            if !result.profile_info.contains_key(sender) {
                result.profile_info.insert(sender.clone(), profile_in_room(state, &event.room_id, sender).await?);
            }
        }
    }
    Ok(result)
}

/// A member's display name and avatar in a room, from their member event.
async fn profile_in_room(state: &Services, room_id: &RoomId, user_id: &OwnedUserId) -> ApiResult<UserProfile> {
    let mut profile = UserProfile::new();
    let member = state.storage.current_state_event(room_id, "m.room.member", user_id.as_str()).await?;
    if let Some(content) = member.and_then(|event| serde_json::from_str::<Value>(&event.json).ok()).map(|pdu| pdu["content"].clone()) {
        profile.displayname = content.get("displayname").and_then(Value::as_str).map(str::to_owned);
        profile.avatar_url = content.get("avatar_url").and_then(Value::as_str).map(Into::into);
    }
    Ok(profile)
}

/// The results grouped by each key asked for, each group's `order` the
/// place of its first result (results come best or newest first).
fn groups(keys: &[GroupingKey], hits: &[(StoredEvent, f64)]) -> Vec<ResultGroupMap> {
    keys.iter()
        .filter_map(|key| match key {
            GroupingKey::RoomId => Some(ResultGroupMap::RoomId(group_by(hits, |event| event.room_id.clone()))),
            GroupingKey::Sender => Some(ResultGroupMap::Sender(group_by(hits, |event| event.sender.clone()))),
            _ => None,
        })
        .collect()
}

fn group_by<K: Ord>(hits: &[(StoredEvent, f64)], key: impl Fn(&StoredEvent) -> K) -> BTreeMap<K, ResultGroup> {
    let mut groups: BTreeMap<K, ResultGroup> = BTreeMap::new();
    for (index, (event, _)) in hits.iter().enumerate() {
        let group = groups.entry(key(event)).or_insert_with(|| first_of_group(UInt::new_saturating(index as u64)));
        group.results.push(event.event_id.clone());
    }
    groups
}

fn first_of_group(order: UInt) -> ResultGroup {
    let mut group = ResultGroup::new();
    group.order = Some(order);
    group
}
