//! Endpoints only an application service calls: publishing a room in the
//! directory of one of its third-party networks
//! (`PUT /directory/list/appservice/{networkId}/{roomId}`) and the ping.

use http::StatusCode;
use ruma::api::client::{
    appservice::{request_ping, set_room_visibility},
    room::Visibility,
};
use serde_json::json;

use weft_services::services::AppState;

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

/// As Synapse: only an appservice's token, for any room and network id (the
/// room is listed under `{appservice_id}|{network_id}`).
pub async fn set_network_visibility(state: AppState, request: Ruma<set_room_visibility::v3::Request>) -> ApiResult<set_room_visibility::v3::Response> {
    let sender = request.sender()?;
    let Some(service) = &sender.appservice else {
        return Err(ApiError::forbidden("Only appservices can edit the appservice published room list"));
    };
    let body = &request.body;
    let listed = match &body.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        other => return Err(ApiError::invalid_param(format!("unknown visibility `{}`", other.as_str()))),
    };
    if state.storage.room_published(&body.room_id).await?.is_none() {
        return Err(ApiError::not_found("Unknown room"));
    }
    state.storage.set_appservice_room_listed(&service.id, &body.network_id, &body.room_id, listed).await?;
    Ok(set_room_visibility::v3::Response::new())
}

/// `POST /_matrix/client/v1/appservice/{appserviceId}/ping`, as Synapse:
/// 403 for another appservice's id or a user's token, 400 `M_URL_NOT_SET`
/// for an appservice without `url`, 502 `M_BAD_STATUS` (with the
/// appservice's `status` and `body`) or `M_CONNECTION_FAILED`, 504
/// `M_CONNECTION_TIMEOUT`.
pub async fn ping(state: AppState, request: Ruma<request_ping::v1::Request>) -> ApiResult<request_ping::v1::Response> {
    use weft_services::appservices::PingFailure;
    let sender = request.sender()?;
    let Some(service) = &sender.appservice else {
        return Err(ApiError::forbidden("Only application services can use the /appservice/ping endpoint."));
    };
    if service.id != request.body.appservice_id {
        return Err(ApiError::forbidden("Mismatching application service ID in path"));
    }
    let txn_id = request.body.transaction_id.as_ref().map(ToString::to_string);
    match weft_services::appservices::ping(&state, service, txn_id).await {
        Ok(duration) => Ok(request_ping::v1::Response::new(duration)),
        Err(PingFailure::NoUrl) => Err(ApiError::custom(StatusCode::BAD_REQUEST, "M_URL_NOT_SET", "The application service does not have a URL set")),
        Err(PingFailure::BadStatus { status, body }) => {
            let mut error = ApiError::custom(StatusCode::BAD_GATEWAY, "M_BAD_STATUS", "The application service returned an error status");
            error.extra.insert("status".into(), json!(status));
            error.extra.insert("body".into(), json!(body));
            Err(error)
        }
        Err(PingFailure::Timeout) => Err(ApiError::custom(StatusCode::GATEWAY_TIMEOUT, "M_CONNECTION_TIMEOUT", "Timeout while pinging application service")),
        Err(PingFailure::ConnectionFailed(reason)) => {
            tracing::info!(appservice = %service.id, %reason, "pinging an appservice failed");
            Err(ApiError::custom(StatusCode::BAD_GATEWAY, "M_CONNECTION_FAILED", "Failed to send request to application service"))
        }
    }
}
