//! `GET /sync` and the filters it names: `POST /user/{userId}/filter`,
//! `GET /user/{userId}/filter/{filterId}`.

use std::time::Duration;

use ruma::api::client::{
    filter::{EventFormat, FilterDefinition, create_filter, get_filter},
    sync::sync_events::{self, v3::Filter},
};

use weft_services::services::AppState;
use weft_services::sync::{self as sync_service, StreamToken, SyncOptions};

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

pub async fn sync(state: AppState, request: Ruma<sync_events::v3::Request>) -> ApiResult<sync_events::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let since = body.since.as_deref().map(StreamToken::parse).transpose().map_err(|e| ApiError::invalid_param(e.to_string()))?;
    // Below 0 is history fetched from other servers: a pagination token, never a sync position.
    if since.as_ref().is_some_and(|token| token.events.min < 0) {
        return Err(ApiError::invalid_param("not a valid sync token"));
    }
    let filter = match &body.filter {
        None => FilterDefinition::default(),
        Some(Filter::FilterDefinition(definition)) => definition.clone(),
        // ruma reads whatever is not a valid filter definition as an id; JSON that failed to parse is no id.
        Some(Filter::FilterId(id)) if id.trim_start().starts_with(['{', '[']) => return Err(ApiError::not_json("Invalid filter JSON")),
        Some(Filter::FilterId(id)) => {
            let json = state.storage.filter(&sender.user_id, id).await?.ok_or_else(|| ApiError::not_found("Unknown filter"))?;
            serde_json::from_str(&json).map_err(|_| ApiError::invalid_param("Stored filter is unreadable"))?
        }
        Some(_) => FilterDefinition::default(),
    };
    let options = SyncOptions {
        since,
        device_id: sender.device_id.clone(),
        timeout: body.timeout.unwrap_or(Duration::ZERO),
        full_state: body.full_state,
        timeline_limit: filter.room.timeline.limit.map_or(sync_service::DEFAULT_TIMELINE_LIMIT, |limit| u64::from(limit) as usize).min(1000),
        include_leave: filter.room.include_leave,
        lazy_load_members: !filter.room.state.lazy_load_options.is_disabled(),
        unread_thread_notifications: filter.room.timeline.unread_thread_notifications,
        filter,
        ignored_users: state.push_rulesets.ignored(&state, &sender.user_id).await?,
    };
    let set_presence = body.set_presence.as_str().to_owned();
    if !weft_services::presence::SETTABLE_STATES.contains(&set_presence.as_str()) {
        return Err(ApiError::invalid_param("set_presence must be one of online, unavailable, offline"));
    }
    weft_services::presence::on_sync(&state, &sender.user_id, &set_presence).await?;
    let _syncing = weft_services::presence::track_sync(&state, &sender.user_id, &set_presence);
    Ok(sync_service::sync(&state, &sender.user_id, &options).await?)
}

pub async fn create_filter(state: AppState, request: Ruma<create_filter::v3::Request>) -> ApiResult<create_filter::v3::Response> {
    let sender = request.sender()?;
    if request.body.user_id != sender.user_id {
        return Err(ApiError::forbidden("Cannot create filters for other users"));
    }
    if !matches!(request.body.filter.event_format, EventFormat::Client | EventFormat::Federation) {
        return Err(ApiError::bad_json("'event_format' must be 'client' or 'federation'"));
    }
    let json = serde_json::to_string(&request.body.filter).map_err(|_| ApiError::bad_json("Invalid filter"))?;
    let filter_id = state.storage.create_filter(&sender.user_id, &json).await?;
    Ok(create_filter::v3::Response::new(filter_id))
}

pub async fn get_filter(state: AppState, request: Ruma<get_filter::v3::Request>) -> ApiResult<get_filter::v3::Response> {
    let sender = request.sender()?;
    if request.body.user_id != sender.user_id {
        return Err(ApiError::forbidden("Cannot read other users' filters"));
    }
    let json = state.storage.filter(&sender.user_id, &request.body.filter_id).await?.ok_or_else(|| ApiError::not_found("Unknown filter"))?;
    let filter: FilterDefinition = serde_json::from_str(&json).map_err(|_| ApiError::internal())?;
    Ok(get_filter::v3::Response::new(filter))
}
