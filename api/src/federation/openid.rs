//! `GET /_matrix/federation/v1/openid/userinfo`: who an OpenID token
//! (`/user/{userId}/openid/request_token`) belongs to, for third parties.

use ruma::api::federation::openid::get_openid_userinfo;

use weft_services::services::AppState;

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

pub async fn userinfo(state: AppState, request: Ruma<get_openid_userinfo::v1::Request>) -> ApiResult<get_openid_userinfo::v1::Response> {
    match state.storage.openid_token_user(&request.body.access_token).await? {
        Some(user_id) => Ok(get_openid_userinfo::v1::Response::new(user_id)),
        None => Err(ApiError::unknown_token(false)),
    }
}
