//! What other servers ask about this server's users and aliases:
//! `query/profile`, `query/directory`, and `version`.

use ruma::api::federation::{
    discovery::get_server_version,
    query::{get_profile_information, get_room_information},
};

use weft_services::services::AppState;

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

pub async fn version(_: AppState, _: Ruma<get_server_version::v1::Request>) -> ApiResult<get_server_version::v1::Response> {
    let mut server = get_server_version::v1::Server::new();
    server.name = Some("Weft".into());
    server.version = Some(env!("CARGO_PKG_VERSION").into());
    let mut response = get_server_version::v1::Response::new();
    response.server = Some(server);
    Ok(response)
}

pub async fn profile(state: AppState, request: Ruma<get_profile_information::v1::Request>) -> ApiResult<get_profile_information::v1::Response> {
    request.origin()?;
    let body = &request.body;
    if body.user_id.server_name() != state.server_name {
        return Err(ApiError::invalid_param("User is not hosted on this homeserver"));
    }
    match state.storage.user(&body.user_id).await? {
        Some(user) if !user.deactivated => {}
        _ => return Err(ApiError::not_found("Profile was not found")),
    }
    let mut response = get_profile_information::v1::Response::new();
    for (field, value) in state.storage.profile(&body.user_id).await? {
        if body.field.as_ref().is_none_or(|wanted| wanted.as_str() == field) {
            response.data.set(field, value);
        }
    }
    Ok(response)
}

pub async fn directory(state: AppState, request: Ruma<get_room_information::v1::Request>) -> ApiResult<get_room_information::v1::Response> {
    request.origin()?;
    let alias = &request.body.room_alias;
    if alias.server_name() != state.server_name {
        return Err(ApiError::invalid_param("Room alias is not hosted on this homeserver"));
    }
    let room_id = crate::client::directory::resolve_alias(&state, alias).await?.ok_or_else(|| ApiError::not_found("Room alias not found"))?;
    Ok(get_room_information::v1::Response::new(room_id, vec![state.server_name.clone()]))
}
