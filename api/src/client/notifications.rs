//! `GET /notifications`: the events the user's push rules notified them
//! of, newest first, paginated by an opaque `from` token, with `only=highlight`.

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, UInt,
    api::client::push::get_notifications::{self, v3::Notification},
};

use weft_services::rooms::pdu;
use weft_services::services::AppState;

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 1000;

pub async fn list(state: AppState, request: Ruma<get_notifications::v3::Request>) -> ApiResult<get_notifications::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let before = body.from.as_deref().map(|from| from.parse::<i64>().map_err(|_| ApiError::invalid_param("Invalid from token"))).transpose()?;
    let limit = body.limit.map_or(DEFAULT_LIMIT, u64::from).clamp(1, MAX_LIMIT) as i64;
    let only_highlight = body.only.as_deref() == Some("highlight");
    let rows = state.storage.notifications(&sender.user_id, before, limit + 1, only_highlight).await?;
    let next_token = (rows.len() as i64 > limit).then(|| rows[limit as usize - 1].stream_ordering.to_string());
    let mut notifications = Vec::new();
    for row in rows.into_iter().take(limit as usize) {
        let Ok(event_id) = OwnedEventId::try_from(row.event_id.as_str()) else { continue };
        let Some(event) = state.storage.event(&event_id).await? else { continue };
        let Ok(room_id) = OwnedRoomId::try_from(row.room_id.as_str()) else { continue };
        let actions = serde_json::from_value(row.actions.clone()).unwrap_or_default();
        let event = weft_core::json::raw(&pdu::client_event(&event, false));
        let ts = MilliSecondsSinceUnixEpoch(UInt::try_from(row.ts.max(0)).unwrap_or_default());
        notifications.push(Notification::new(actions, event, row.read, room_id, ts));
    }
    let mut response = get_notifications::v3::Response::new(notifications);
    response.next_token = next_token;
    Ok(response)
}
