//! `PUT/GET /presence/{userId}/status`. Users set only their own; they see
//! their own and that of users they share a room with.

use std::time::Duration;

use ruma::{
    api::client::presence::{get_presence, set_presence},
    presence::PresenceState,
};

use weft_services::presence;
use weft_services::services::AppState;
use weft_storage::now_ms;

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

pub async fn set(state: AppState, request: Ruma<set_presence::v3::Request>) -> ApiResult<set_presence::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    if body.user_id != sender.user_id {
        return Err(ApiError::forbidden("Cannot set another user's presence"));
    }
    let wanted = match body.presence {
        PresenceState::Online => "online",
        PresenceState::Unavailable => "unavailable",
        PresenceState::Offline => "offline",
        _ => return Err(ApiError::invalid_param("presence must be online, unavailable or offline")),
    };
    if body.status_msg.as_ref().is_some_and(|status| status.len() > 2048) {
        return Err(ApiError::invalid_param("status_msg is too long"));
    }
    presence::set(&state, &sender.user_id, wanted, Some(body.status_msg.as_deref())).await?;
    Ok(set_presence::v3::Response::new())
}

pub async fn get(state: AppState, request: Ruma<get_presence::v3::Request>) -> ApiResult<get_presence::v3::Response> {
    let sender = request.sender()?;
    let user_id = &request.body.user_id;
    if user_id.server_name() == state.server_name && state.storage.user(user_id).await?.is_none() {
        return Err(ApiError::not_found("Unknown user"));
    }
    if !state.storage.share_a_room(&sender.user_id, user_id).await? {
        return Err(ApiError::forbidden("You are not allowed to see their presence"));
    }
    let row = if state.config.presence.enabled { state.storage.presence(user_id).await? } else { None };
    let Some(row) = row else {
        return Ok(get_presence::v3::Response::new(PresenceState::Offline));
    };
    let mut response = get_presence::v3::Response::new(PresenceState::from(row.state.as_str()));
    response.status_msg = row.status_msg.clone();
    response.last_active_ago = Some(Duration::from_millis((now_ms() - row.last_active_ts).max(0) as u64));
    if row.state != "offline" {
        response.currently_active = Some(row.currently_active);
    }
    Ok(response)
}
