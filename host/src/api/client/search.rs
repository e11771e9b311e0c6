//! `POST /search`: room events whose body (or room name or topic) matches,
//! in rooms the user has joined and only where history visibility lets them
//! see the event; ordered by rank or recency, paginated by offset.

use ruma::{
    UInt,
    api::client::search::search_events::v3::{OrderBy, Request, Response, ResultCategories, ResultRoomEvents, SearchResult},
    serde::Raw,
};
use serde_json::value::to_raw_value;

use crate::{
    api::{
        error::{ApiError, ApiResult},
        ruma_route::Ruma,
    },
    rooms::{pdu::client_event, visibility::Visibility},
    services::AppState,
};

const DEFAULT_LIMIT: u64 = 10;
const MAX_LIMIT: u64 = 100;

pub async fn search(state: AppState, request: Ruma<Request>) -> ApiResult<Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let Some(criteria) = &body.search_categories.room_events else {
        return Ok(Response::new(ResultCategories::new()));
    };
    let offset = match &body.next_batch {
        None => 0,
        Some(token) => token.strip_prefix('o').and_then(|n| n.parse::<i64>().ok()).ok_or_else(|| ApiError::invalid_param("Invalid next_batch"))?,
    };
    let limit = criteria.filter.limit.map_or(DEFAULT_LIMIT, u64::from).clamp(1, MAX_LIMIT) as i64;
    let recent = matches!(criteria.order_by, Some(OrderBy::Recent));
    let rooms: Vec<Option<&ruma::RoomId>> = match &criteria.filter.rooms {
        Some(rooms) => rooms.iter().map(|room| Some(room.as_ref())).collect(),
        None => vec![None],
    };
    let mut found = Vec::new();
    for room in rooms {
        found.extend(state.storage.search_events(&sender.user_id, &criteria.search_term, room, recent, limit + 1, offset).await?);
    }
    if recent {
        found.sort_by_key(|hit| std::cmp::Reverse(hit.0.stream_ordering));
    } else {
        found.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.stream_ordering.cmp(&a.0.stream_ordering)));
    }
    let more = found.len() as i64 > limit;
    found.truncate(limit as usize);

    let mut results = Vec::new();
    let mut visibilities = std::collections::HashMap::new();
    for (event, rank) in &found {
        if !visibilities.contains_key(&event.room_id) {
            visibilities.insert(event.room_id.clone(), Visibility::load(&state.storage, &event.room_id, &sender.user_id).await?);
        }
        if !visibilities[&event.room_id].can_see(event, &sender.user_id) {
            continue;
        }
        let mut result = SearchResult::new();
        result.rank = Some(*rank);
        result.result = Some(Raw::from_json(to_raw_value(&client_event(event, true)).map_err(|_| ApiError::internal())?));
        results.push(result);
    }
    let mut room_events = ResultRoomEvents::new();
    room_events.count = Some(UInt::new_saturating(results.len() as u64));
    room_events.highlights = criteria.search_term.split_whitespace().map(str::to_lowercase).collect();
    room_events.results = results;
    room_events.next_batch = more.then(|| format!("o{}", offset + limit));
    let mut categories = ResultCategories::new();
    categories.room_events = room_events;
    Ok(Response::new(categories))
}
