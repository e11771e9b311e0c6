//! `POST /logout` and `POST /logout/all`: as the spec says, logging out
//! deletes the device (and so every token of it), not only the token.

use ruma::api::client::session::{logout, logout_all};

use weft_services::services::AppState;

use crate::{error::ApiResult, ruma_route::Ruma};

pub async fn logout(state: AppState, request: Ruma<logout::v3::Request>) -> ApiResult<logout::v3::Response> {
    let sender = request.sender()?;
    state.storage.delete_devices(&sender.user_id, &[&sender.device_id]).await?;
    state.stream_advanced(weft_storage::Stream::DeviceLists);
    Ok(logout::v3::Response::new())
}

pub async fn logout_all(state: AppState, request: Ruma<logout_all::v3::Request>) -> ApiResult<logout_all::v3::Response> {
    let sender = request.sender()?;
    state.storage.delete_all_devices(&sender.user_id).await?;
    state.stream_advanced(weft_storage::Stream::DeviceLists);
    Ok(logout_all::v3::Response::new())
}
