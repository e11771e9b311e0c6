//! `PUT /rooms/{roomId}/typing/{userId}`: typing notifications, for the
//! user themselves, in rooms they have joined. They expire on their own,
//! after `timeout` (30 s when not given, as Synapse).

use std::time::Duration;

use weft_services::services::AppState;

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

/// How long a user types when the client gives no `timeout` (Synapse's default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub mod create_typing_event {
    //! `PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}`, declared here
    //! because ruma requires `timeout` with `typing: true`, which the spec
    //! makes optional.
    use ruma::{
        OwnedRoomId, OwnedUserId,
        api::{auth_scheme::AccessToken, metadata, request, response},
    };

    metadata! {
        method: PUT,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/rooms/{room_id}/typing/{user_id}",
            1.1 => "/_matrix/client/v3/rooms/{room_id}/typing/{user_id}",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id: OwnedRoomId,
        #[ruma_api(path)]
        pub user_id: OwnedUserId,
        pub typing: bool,
        /// Milliseconds.
        pub timeout: Option<u64>,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

pub async fn set(state: AppState, request: Ruma<create_typing_event::Request>) -> ApiResult<create_typing_event::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    if body.user_id != sender.user_id {
        return Err(ApiError::forbidden("Cannot set another user's typing state"));
    }
    if state.storage.current_membership(&body.room_id, &sender.user_id).await?.as_deref() != Some("join") {
        return Err(ApiError::forbidden("You are not joined to this room"));
    }
    // Other servers in the room hear it as an `m.typing` EDU, queued before
    // the change wakes the federation sender.
    let edu = serde_json::json!({"edu_type": "m.typing", "content": {"room_id": body.room_id, "user_id": sender.user_id, "typing": body.typing}});
    weft_services::federation::sender::queue_room_edu(&state, &body.room_id, &edu).await?;
    if body.typing {
        let timeout = body.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        let (position, until) = state.typing.start(&body.room_id, &sender.user_id, timeout);
        state.typing_changed(&body.room_id, position);
        let (services, room_id, user_id) = (state.clone(), body.room_id.clone(), sender.user_id.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(until.into()).await;
            if let Some(position) = services.typing.expire(&room_id, &user_id, until) {
                services.typing_changed(&room_id, position);
            }
        });
    } else if let Some(position) = state.typing.stop(&body.room_id, &sender.user_id) {
        state.typing_changed(&body.room_id, position);
    }
    Ok(create_typing_event::Response {})
}
