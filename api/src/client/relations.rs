//! `/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]` and
//! `/rooms/{roomId}/threads`, within what the user may see: the parent must
//! be visible, and only visible children are returned.

use ruma::{
    RoomId, UInt, UserId,
    api::{
        Direction,
        client::{
            relations::{get_relating_events, get_relating_events_with_rel_type, get_relating_events_with_rel_type_and_event_type},
            threads::get_threads,
        },
    },
};
use serde_json::Value;

use weft_core::json::raw;
use weft_services::rooms::{aggregations::Aggregations, pdu::client_event};
use weft_services::services::{AppState, Services};

use super::room_events::{token_at, visibility};
use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 1000;
/// How many levels of relations `recurse` follows (Synapse's depth).
const RECURSION_DEPTH: u32 = 3;

fn position(state: &Services, room_id: &RoomId, token: &str) -> ApiResult<i64> {
    super::room_events::room_token_position(state, room_id, token)
}

struct Query<'a> {
    room_id: &'a RoomId,
    parent: &'a ruma::EventId,
    rel_type: Option<&'a str>,
    event_type: Option<&'a str>,
    from: Option<&'a str>,
    to: Option<&'a str>,
    dir: &'a Direction,
    limit: Option<UInt>,
    recurse: bool,
}

/// One page of children: the events, and the token to continue from.
async fn children(state: &Services, user_id: &UserId, query: Query<'_>) -> ApiResult<(Vec<Value>, Option<String>)> {
    let visibility = visibility(state, query.room_id, user_id).await?;
    let not_found = || ApiError::not_found("Event not found");
    let parent = state.storage.event(query.parent).await?.filter(|e| e.room_id == query.room_id).ok_or_else(not_found)?;
    if !visibility.can_see(&parent, user_id) {
        return Err(not_found());
    }
    let backwards = *query.dir == Direction::Backward;
    let now = state.notifier.room_position(query.room_id.as_str());
    let from = query.from.map(|token| position(state, query.room_id, token)).transpose()?;
    let to = query.to.map(|token| position(state, query.room_id, token)).transpose()?;
    let limit = query.limit.map_or(DEFAULT_LIMIT, u64::from).min(MAX_LIMIT) as i64;
    let depth = if query.recurse { RECURSION_DEPTH } else { 1 };
    let (after, upto) = if backwards { (to.unwrap_or(0), from.unwrap_or(now)) } else { (from.unwrap_or(0), to.unwrap_or(now)) };
    let events = state
        .storage
        .relating_events(query.room_id, parent.event_id.as_str(), query.rel_type, query.event_type, after, upto, limit + 1, backwards, depth.into())
        .await?;
    let more = events.len() as i64 > limit;
    let page: Vec<_> = events.into_iter().take(limit as usize).collect();
    let next = match (more, page.last()) {
        (true, Some(last)) => Some(token_at(if backwards { last.stream_ordering - 1 } else { last.stream_ordering })),
        _ => None,
    };
    let visible: Vec<_> = page.iter().filter(|event| visibility.can_see(event, user_id)).collect();
    let aggregations = Aggregations::load(&state.storage, user_id, visible.iter().copied(), true).await?;
    Ok((visible.into_iter().map(|event| aggregations.bundle(event, client_event(event, true))).collect(), next))
}

pub async fn relating(state: AppState, request: Ruma<get_relating_events::v1::Request>) -> ApiResult<get_relating_events::v1::Response> {
    let sender = request.sender()?;
    let b = &request.body;
    let query = Query {
        room_id: &b.room_id,
        parent: &b.event_id,
        rel_type: None,
        event_type: None,
        from: b.from.as_deref(),
        to: b.to.as_deref(),
        dir: &b.dir,
        limit: b.limit,
        recurse: b.recurse,
    };
    let (chunk, next) = children(&state, &sender.user_id, query).await?;
    let mut response = get_relating_events::v1::Response::new(chunk.iter().map(raw).collect());
    response.next_batch = next;
    response.recursion_depth = b.recurse.then(|| RECURSION_DEPTH.into());
    Ok(response)
}

pub async fn relating_with_type(
    state: AppState,
    request: Ruma<get_relating_events_with_rel_type::v1::Request>,
) -> ApiResult<get_relating_events_with_rel_type::v1::Response> {
    let sender = request.sender()?;
    let b = &request.body;
    let rel_type = b.rel_type.to_string();
    let query = Query {
        room_id: &b.room_id,
        parent: &b.event_id,
        rel_type: Some(&rel_type),
        event_type: None,
        from: b.from.as_deref(),
        to: b.to.as_deref(),
        dir: &b.dir,
        limit: b.limit,
        recurse: b.recurse,
    };
    let (chunk, next) = children(&state, &sender.user_id, query).await?;
    let mut response = get_relating_events_with_rel_type::v1::Response::new(chunk.iter().map(raw).collect());
    response.next_batch = next;
    response.recursion_depth = b.recurse.then(|| RECURSION_DEPTH.into());
    Ok(response)
}

pub async fn relating_with_types(
    state: AppState,
    request: Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> ApiResult<get_relating_events_with_rel_type_and_event_type::v1::Response> {
    let sender = request.sender()?;
    let b = &request.body;
    let (rel_type, event_type) = (b.rel_type.to_string(), b.event_type.to_string());
    let query = Query {
        room_id: &b.room_id,
        parent: &b.event_id,
        rel_type: Some(&rel_type),
        event_type: Some(&event_type),
        from: b.from.as_deref(),
        to: b.to.as_deref(),
        dir: &b.dir,
        limit: b.limit,
        recurse: b.recurse,
    };
    let (chunk, next) = children(&state, &sender.user_id, query).await?;
    let mut response = get_relating_events_with_rel_type_and_event_type::v1::Response::new(chunk.iter().map(raw).collect());
    response.next_batch = next;
    response.recursion_depth = b.recurse.then(|| RECURSION_DEPTH.into());
    Ok(response)
}

pub async fn threads(state: AppState, request: Ruma<get_threads::v1::Request>) -> ApiResult<get_threads::v1::Response> {
    let sender = request.sender()?;
    let b = &request.body;
    let visibility = visibility(&state, &b.room_id, &sender.user_id).await?;
    let before = match &b.from {
        Some(token) => position(&state, &b.room_id, token)?,
        None => i64::MAX,
    };
    let limit = b.limit.map_or(DEFAULT_LIMIT, u64::from).min(MAX_LIMIT) as i64;
    let participant = match b.include {
        get_threads::v1::IncludeThreads::All => None,
        get_threads::v1::IncludeThreads::Participated => Some(sender.user_id.as_ref()),
        _ => return Err(ApiError::invalid_param("'include' must be 'all' or 'participated'")),
    };
    let roots = state.storage.thread_roots(&b.room_id, participant, before, limit + 1).await?;
    let more = roots.len() as i64 > limit;
    let mut shown = Vec::new();
    let mut last_activity = None;
    for (root_id, latest) in roots.into_iter().take(limit as usize) {
        last_activity = Some(latest);
        let Ok(root_id) = ruma::OwnedEventId::try_from(root_id) else { continue };
        if let Some(root) = state.storage.event(&root_id).await?.filter(|root| root.room_id == b.room_id)
            && visibility.can_see(&root, &sender.user_id)
        {
            shown.push(root);
        }
    }
    let aggregations = Aggregations::load(&state.storage, &sender.user_id, &shown, true).await?;
    let chunk = shown.iter().map(|root| raw(&aggregations.bundle(root, client_event(root, true)))).collect();
    let mut response = get_threads::v1::Response::new(chunk);
    response.next_batch = if more { last_activity.map(token_at) } else { None };
    Ok(response)
}
