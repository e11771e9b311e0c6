//! `/thirdparty/*`: the protocols, locations and users that application
//! services bridge to. Empty until appservices arrive, answered as Synapse
//! answers with none: empty lists, and 404 for a named protocol. Element's
//! room directory asks for the protocols on every opening, and a 404 there
//! is logged as an error.

use ruma::api::client::thirdparty::{
    get_location_for_protocol, get_location_for_room_alias, get_protocol, get_protocols, get_user_for_protocol, get_user_for_user_id,
};

use weft_services::services::AppState;

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

pub async fn protocols(_: AppState, request: Ruma<get_protocols::v3::Request>) -> ApiResult<get_protocols::v3::Response> {
    request.sender()?;
    Ok(get_protocols::v3::Response::new(Default::default()))
}

pub async fn protocol(_: AppState, request: Ruma<get_protocol::v3::Request>) -> ApiResult<get_protocol::v3::Response> {
    request.sender()?;
    Err(ApiError::not_found(format!("Unknown protocol `{}`", request.body.protocol)))
}

pub async fn locations(_: AppState, request: Ruma<get_location_for_protocol::v3::Request>) -> ApiResult<get_location_for_protocol::v3::Response> {
    request.sender()?;
    Ok(get_location_for_protocol::v3::Response::new(Vec::new()))
}

pub async fn locations_for_alias(_: AppState, request: Ruma<get_location_for_room_alias::v3::Request>) -> ApiResult<get_location_for_room_alias::v3::Response> {
    request.sender()?;
    Ok(get_location_for_room_alias::v3::Response::new(Vec::new()))
}

pub async fn users(_: AppState, request: Ruma<get_user_for_protocol::v3::Request>) -> ApiResult<get_user_for_protocol::v3::Response> {
    request.sender()?;
    Ok(get_user_for_protocol::v3::Response::new(Vec::new()))
}

pub async fn users_for_id(_: AppState, request: Ruma<get_user_for_user_id::v3::Request>) -> ApiResult<get_user_for_user_id::v3::Response> {
    request.sender()?;
    Ok(get_user_for_user_id::v3::Response::new(Vec::new()))
}
