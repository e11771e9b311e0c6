//! `POST /user/{userId}/openid/request_token`: a token a third party (a
//! widget, an integration manager) can check with this server's
//! `/_matrix/federation/v1/openid/userinfo` to learn who the user is.

use std::time::Duration;

use ruma::{api::client::account::request_openid_token, authentication::TokenType};

use weft_core::crypto::token;
use weft_services::services::AppState;

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

/// How long a token is valid (Synapse's `openid_token_lifetime` default).
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

pub async fn request_token(state: AppState, request: Ruma<request_openid_token::v3::Request>) -> ApiResult<request_openid_token::v3::Response> {
    let sender = request.sender()?;
    if request.body.user_id != sender.user_id {
        return Err(ApiError::forbidden("Cannot request tokens for other users."));
    }
    let token = token::random_string(32);
    let valid_until = weft_storage::now_ms() + TOKEN_LIFETIME.as_millis() as i64;
    state.storage.add_openid_token(&token, &sender.user_id, valid_until).await?;
    let server_name = state.server_name.clone();
    Ok(request_openid_token::v3::Response::new(token, TokenType::Bearer, server_name, TOKEN_LIFETIME))
}
