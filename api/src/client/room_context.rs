//! `/rooms/{roomId}/context/{eventId}`, `/rooms/{roomId}/timestamp_to_event`
//! and the legacy `/rooms/{roomId}/initialSync`, all within what the user may
//! see.

use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::{
        Direction,
        client::{peeking::get_current_state, room::get_event_by_timestamp},
    },
};

use weft_core::json::raw;
use weft_services::rooms::{aggregations::Aggregations, pdu::client_event, txn_ids::TransactionIds};
use weft_services::services::AppState;

use super::{
    listed::get_context,
    room_events::{token_at, visibility, visible_events},
};
use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

/// The most events `/context` returns on each side.
const MAX_CONTEXT: u64 = 100;

pub async fn context(state: AppState, request: Ruma<get_context::Request>) -> ApiResult<get_context::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let visibility = visibility(&state, &body.room_id, &sender.user_id).await?;
    let not_found = || ApiError::not_found("Event not found");
    let event = state.storage.event(&body.event_id).await?.filter(|event| event.room_id == body.room_id).ok_or_else(not_found)?;
    if !visibility.can_see(&event, &sender.user_id) {
        return Err(not_found());
    }
    let limit = u64::from(body.limit).min(MAX_CONTEXT) as usize;
    // Synapse's split: half before (rounded down), the rest after.
    let (before_limit, after_limit) = (limit / 2, limit - limit / 2);
    let now = state.notifier.room_position(body.room_id.as_str());
    let at = event.stream_ordering;
    // The filter picks the events around the one asked for, never that one.
    let wanted = |event: &weft_storage::StoredEvent| weft_services::sync::filter::event_matches(&body.filter, event);
    let before = visible_events(&state, &body.room_id, &sender.user_id, &visibility, 0, at - 1, before_limit, true, wanted).await?;
    let after = visible_events(&state, &body.room_id, &sender.user_id, &visibility, at, now, after_limit, false, wanted).await?;

    let start = token_at(before.events.last().map_or(at - 1, |e| e.stream_ordering - 1));
    let end = token_at(after.events.last().map_or(at, |e| e.stream_ordering));
    let shown: Vec<&weft_storage::StoredEvent> = before.events.iter().chain(&after.events).chain([&event]).collect();
    let txn_ids = TransactionIds::load(&state.storage, &sender.user_id, &sender.device_id, shown.iter().copied()).await?;
    let aggregations = Aggregations::load(&state.storage, &sender.user_id, shown.iter().copied(), true).await?;
    let client_form = |e: &weft_storage::StoredEvent| aggregations.bundle(e, txn_ids.client_event(e, true));
    let mut room_state = state.storage.state_at(&body.room_id, at).await?;
    if !body.filter.lazy_load_options.is_disabled() {
        // Only the members who sent something shown, as in `/messages`.
        room_state.retain(|e| e.kind != "m.room.member" || shown.iter().any(|shown| Some(shown.sender.as_str()) == e.state_key.as_deref()));
    }
    let response = serde_json::json!({
        "start": start,
        "end": end,
        "event": client_form(&event),
        "events_before": before.events.iter().map(client_form).collect::<Vec<_>>(),
        "events_after": after.events.iter().map(client_form).collect::<Vec<_>>(),
        "state": room_state.iter().map(|e| client_event(e, true)).collect::<Vec<_>>(),
    });
    let serde_json::Value::Object(body) = response else { unreachable!("built as an object") };
    Ok(get_context::Response { body })
}

pub async fn timestamp_to_event(state: AppState, request: Ruma<get_event_by_timestamp::v1::Request>) -> ApiResult<get_event_by_timestamp::v1::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let visibility = visibility(&state, &body.room_id, &sender.user_id).await?;
    let forward = body.dir == Direction::Forward;
    let ts = i64::try_from(u64::from(body.ts.0)).unwrap_or(i64::MAX);
    let event = state
        .storage
        .event_near_timestamp(&body.room_id, ts, forward)
        .await?
        .filter(|event| visibility.can_see(event, &sender.user_id))
        .ok_or_else(|| ApiError::not_found("No event found in that direction"))?;
    let origin = MilliSecondsSinceUnixEpoch(UInt::new_saturating(event.origin_server_ts.max(0) as u64));
    Ok(get_event_by_timestamp::v1::Response::new(event.event_id, origin))
}

pub async fn initial_sync(state: AppState, request: Ruma<get_current_state::v3::Request>) -> ApiResult<get_current_state::v3::Response> {
    let sender = request.sender()?;
    let room_id = &request.body.room_id;
    let visibility = visibility(&state, room_id, &sender.user_id).await?;
    let now = state.notifier.room_position(room_id.as_str());
    let walk = visible_events(&state, room_id, &sender.user_id, &visibility, 0, now, 20, true, |_| true).await?;
    let mut messages: Vec<_> = walk.events;
    messages.reverse();
    let start = token_at(messages.first().map_or(now, |e| e.stream_ordering - 1));
    let chunk = get_current_state::v3::PaginationChunk::new(messages.iter().map(|e| raw(&client_event(e, true))).collect(), token_at(now));
    let mut chunk = chunk;
    chunk.start = Some(start);
    let membership = visibility.current_membership().map(|(_, m)| m.into());
    let state_events = match visibility.current_membership() {
        Some((at, "leave" | "ban")) if !visibility.can_read_room_now() => state.storage.state_at(room_id, at).await?,
        _ => state.storage.current_state(room_id).await?,
    };
    let mut response = get_current_state::v3::Response::new(room_id.clone());
    response.messages = Some(chunk);
    response.membership = membership;
    response.state = state_events.iter().map(|e| raw(&client_event(e, true))).collect();
    let published = state.storage.room_published(room_id).await?.unwrap_or(false);
    response.visibility = Some(if published { ruma::api::client::room::Visibility::Public } else { ruma::api::client::room::Visibility::Private });
    Ok(response)
}
