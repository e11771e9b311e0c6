//! `POST /rooms/{roomId}/report/{eventId}` and `POST /rooms/{roomId}/report`:
//! a user reports an event or a room to this server's administrators, who
//! read them with `GET /_synapse/admin/v1/event_reports`. An event is
//! reportable only by someone who may see it; as Synapse, anything else is
//! the same 404, so a report does not reveal whether an event exists.

use ruma::api::client::room::{report_content, report_room};

use weft_services::rooms::visibility::Visibility;
use weft_services::services::AppState;

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

/// Longest reason kept, in bytes (Synapse's limit).
const MAX_REASON_LEN: usize = 1000;

fn checked_reason(reason: Option<&str>) -> ApiResult<Option<&str>> {
    match reason {
        Some(reason) if reason.len() > MAX_REASON_LEN => Err(ApiError::invalid_param(format!("reason must be at most {MAX_REASON_LEN} bytes"))),
        other => Ok(other),
    }
}

pub async fn report_event(state: AppState, request: Ruma<report_content::v3::Request>) -> ApiResult<report_content::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let reason = checked_reason(body.reason.as_deref())?;
    let not_found = || ApiError::not_found("Unable to report event: it does not exist or you aren't able to see it.");
    let visibility = Visibility::load(&state.storage, &body.room_id, &sender.user_id).await?;
    let event = state.storage.event(&body.event_id).await?.filter(|event| event.room_id == body.room_id).ok_or_else(not_found)?;
    if !visibility.can_see(&event, &sender.user_id) {
        return Err(not_found());
    }
    state.storage.add_report(&body.room_id, Some(&body.event_id), &sender.user_id, reason).await?;
    Ok(report_content::v3::Response::new())
}

pub async fn report_room(state: AppState, request: Ruma<report_room::v3::Request>) -> ApiResult<report_room::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let reason = checked_reason(Some(&body.reason))?;
    if state.storage.room_version(&body.room_id).await?.is_none() {
        return Err(ApiError::not_found("Room not found"));
    }
    state.storage.add_report(&body.room_id, None, &sender.user_id, reason).await?;
    Ok(report_room::v3::Response::new())
}
