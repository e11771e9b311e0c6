//! `PUT /rooms/{roomId}/typing/{userId}`: typing notifications, for the
//! user themselves, in rooms they have joined. They expire on their own.


use ruma::api::client::typing::create_typing_event::{self, v3::Typing};

use crate::{
    api::{
        error::{ApiError, ApiResult},
        ruma_route::Ruma,
    },
    services::AppState,
};

pub async fn set(state: AppState, request: Ruma<create_typing_event::v3::Request>) -> ApiResult<create_typing_event::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    if body.user_id != sender.user_id {
        return Err(ApiError::forbidden("Cannot set another user's typing state"));
    }
    if state.storage.current_membership(&body.room_id, &sender.user_id).await?.as_deref() != Some("join") {
        return Err(ApiError::forbidden("You are not joined to this room"));
    }
    match &body.state {
        Typing::Yes(info) => {
            let (position, until) = state.typing.start(&body.room_id, &sender.user_id, info.timeout);
            state.typing_changed(&body.room_id, position);
            let (services, room_id, user_id) = (state.clone(), body.room_id.clone(), sender.user_id.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(until.into()).await;
                if let Some(position) = services.typing.expire(&room_id, &user_id, until) {
                    services.typing_changed(&room_id, position);
                }
            });
        }
        Typing::No => {
            if let Some(position) = state.typing.stop(&body.room_id, &sender.user_id) {
                state.typing_changed(&body.room_id, position);
            }
        }
    }
    Ok(create_typing_event::v3::Response::new())
}
