//! `/thirdparty/*`: the protocols, locations and users that application
//! services bridge to, answered from the registrations' `protocols` by
//! asking the appservices (`weft_services::appservices`), as Synapse: a
//! protocol no appservice describes is left out (404 when asked by name),
//! lookups answer every serving appservice's results (an empty list when
//! none serves). With no appservice every list is empty: Element's room
//! directory asks for the protocols on every opening, and a 404 there is
//! logged as an error.

use std::collections::BTreeMap;

use ruma::api::client::thirdparty::{
    get_location_for_protocol, get_location_for_room_alias, get_protocol, get_protocols, get_user_for_protocol, get_user_for_user_id,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use weft_services::{appservices, plugins::appservice::ThirdpartyKind, services::AppState};

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

/// The entries of `found` that ruma can read; others are logged and left out.
fn typed<T: DeserializeOwned>(found: Vec<Value>) -> Vec<T> {
    found
        .into_iter()
        .filter_map(|value| serde_json::from_value(value).map_err(|error| tracing::info!(%error, "an appservice's third-party answer is malformed")).ok())
        .collect()
}

pub async fn protocols(state: AppState, request: Ruma<get_protocols::v3::Request>) -> ApiResult<get_protocols::v3::Response> {
    request.sender()?;
    let found = appservices::protocols(&state, None).await;
    let protocols: BTreeMap<String, _> =
        found.into_iter().filter_map(|(name, value)| serde_json::from_value(value).ok().map(|protocol| (name, protocol))).collect();
    Ok(get_protocols::v3::Response::new(protocols))
}

pub async fn protocol(state: AppState, request: Ruma<get_protocol::v3::Request>) -> ApiResult<get_protocol::v3::Response> {
    request.sender()?;
    let name = &request.body.protocol;
    let found = appservices::protocols(&state, Some(name)).await;
    match found.get(name).cloned().map(serde_json::from_value) {
        Some(Ok(protocol)) => Ok(get_protocol::v3::Response::new(protocol)),
        _ => Err(ApiError::not_found(format!("Unknown protocol `{name}`"))),
    }
}

fn fields(map: &BTreeMap<String, String>) -> Vec<(String, String)> {
    map.iter().filter(|(key, _)| key.as_str() != "access_token").map(|(key, value)| (key.clone(), value.clone())).collect()
}

pub async fn locations(state: AppState, request: Ruma<get_location_for_protocol::v3::Request>) -> ApiResult<get_location_for_protocol::v3::Response> {
    request.sender()?;
    let body = &request.body;
    let found = appservices::lookup(&state, ThirdpartyKind::Location, Some(&body.protocol), fields(&body.fields)).await;
    Ok(get_location_for_protocol::v3::Response::new(typed(found)))
}

pub async fn locations_for_alias(
    state: AppState,
    request: Ruma<get_location_for_room_alias::v3::Request>,
) -> ApiResult<get_location_for_room_alias::v3::Response> {
    request.sender()?;
    let fields = vec![("alias".to_owned(), request.body.alias.to_string())];
    let found = appservices::lookup(&state, ThirdpartyKind::Location, None, fields).await;
    Ok(get_location_for_room_alias::v3::Response::new(typed(found)))
}

pub async fn users(state: AppState, request: Ruma<get_user_for_protocol::v3::Request>) -> ApiResult<get_user_for_protocol::v3::Response> {
    request.sender()?;
    let body = &request.body;
    let found = appservices::lookup(&state, ThirdpartyKind::User, Some(&body.protocol), fields(&body.fields)).await;
    Ok(get_user_for_protocol::v3::Response::new(typed(found)))
}

pub async fn users_for_id(state: AppState, request: Ruma<get_user_for_user_id::v3::Request>) -> ApiResult<get_user_for_user_id::v3::Response> {
    request.sender()?;
    let fields = vec![("userid".to_owned(), request.body.userid.to_string())];
    let found = appservices::lookup(&state, ThirdpartyKind::User, None, fields).await;
    Ok(get_user_for_user_id::v3::Response::new(typed(found)))
}
