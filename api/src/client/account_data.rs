//! Account data, global and per room (`/user/{userId}/account_data/{type}`,
//! `/user/{userId}/rooms/{roomId}/account_data/{type}`), and room tags
//! (`/user/{userId}/rooms/{roomId}/tags`), kept as the room's `m.tag` account
//! data as clients receive it in `/sync`. Only for the user themselves.

use http::StatusCode;
use ruma::{
    RoomId, UserId,
    api::{
        client::{
            config::{get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data},
            tag::{create_tag, delete_tag, get_tags},
        },
        error::ErrorKind,
    },
    serde::Raw,
};
use serde_json::{Value, json};

use weft_core::json::raw;
use weft_services::services::AppState;
use weft_storage::Stream;

use crate::{
    auth::Sender,
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

/// Types the server maintains itself; the spec has clients use other APIs.
const SERVER_MANAGED: [&str; 2] = ["m.fully_read", "m.push_rules"];

fn own(sender: &Sender, user_id: &UserId) -> ApiResult<()> {
    if sender.user_id != user_id {
        return Err(ApiError::forbidden("Cannot access another user's account data"));
    }
    Ok(())
}

fn settable(kind: &str) -> ApiResult<()> {
    if SERVER_MANAGED.contains(&kind) {
        return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, ErrorKind::BadJson, format!("Cannot set {kind} through this API")));
    }
    Ok(())
}

/// The body as a JSON object: account data content is always one.
fn object<T>(data: &Raw<T>) -> ApiResult<Value> {
    weft_core::json::object_of(data).map(Value::Object).ok_or_else(|| ApiError::bad_json("Content must be a JSON object"))
}

pub async fn set_global(state: AppState, request: Ruma<set_global_account_data::v3::Request>) -> ApiResult<set_global_account_data::v3::Response> {
    let sender = request.sender()?;
    own(sender, &request.body.user_id)?;
    let kind = request.body.event_type.to_string();
    settable(&kind)?;
    let content = object(&request.body.data)?;
    state.storage.set_account_data(&sender.user_id, None, &kind, &content).await?;
    state.stream_advanced(Stream::AccountData);
    Ok(set_global_account_data::v3::Response::new())
}

pub async fn get_global(state: AppState, request: Ruma<get_global_account_data::v3::Request>) -> ApiResult<get_global_account_data::v3::Response> {
    let sender = request.sender()?;
    own(sender, &request.body.user_id)?;
    let kind = request.body.event_type.to_string();
    if kind == "m.push_rules" {
        // Kept apart from account data; Synapse serves them here too.
        let ruleset = state.storage.push_ruleset(&sender.user_id).await?;
        return Ok(get_global_account_data::v3::Response::new(raw(&json!({"global": weft_services::push::client_format::global(&ruleset)}))));
    }
    let content = state.storage.account_data(&sender.user_id, None, &kind).await?.ok_or_else(|| ApiError::not_found("Account data not found"))?;
    Ok(get_global_account_data::v3::Response::new(raw(&content)))
}

pub async fn set_room(state: AppState, request: Ruma<set_room_account_data::v3::Request>) -> ApiResult<set_room_account_data::v3::Response> {
    let sender = request.sender()?;
    own(sender, &request.body.user_id)?;
    let kind = request.body.event_type.to_string();
    settable(&kind)?;
    let content = object(&request.body.data)?;
    state.storage.set_account_data(&sender.user_id, Some(&request.body.room_id), &kind, &content).await?;
    state.stream_advanced(Stream::AccountData);
    Ok(set_room_account_data::v3::Response::new())
}

pub async fn get_room(state: AppState, request: Ruma<get_room_account_data::v3::Request>) -> ApiResult<get_room_account_data::v3::Response> {
    let sender = request.sender()?;
    own(sender, &request.body.user_id)?;
    let kind = request.body.event_type.to_string();
    let content =
        state.storage.account_data(&sender.user_id, Some(&request.body.room_id), &kind).await?.ok_or_else(|| ApiError::not_found("Account data not found"))?;
    Ok(get_room_account_data::v3::Response::new(raw(&content)))
}

async fn tags_of(state: &AppState, user_id: &UserId, room_id: &RoomId) -> ApiResult<serde_json::Map<String, Value>> {
    let content = state.storage.account_data(user_id, Some(room_id), "m.tag").await?;
    Ok(content.and_then(|mut content| content.get_mut("tags").and_then(|tags| tags.as_object_mut()).map(std::mem::take)).unwrap_or_default())
}

pub async fn get_tags(state: AppState, request: Ruma<get_tags::v3::Request>) -> ApiResult<get_tags::v3::Response> {
    let sender = request.sender()?;
    own(sender, &request.body.user_id)?;
    let tags = tags_of(&state, &sender.user_id, &request.body.room_id).await?;
    let tags = serde_json::from_value(Value::Object(tags)).map_err(|_| ApiError::internal())?;
    Ok(get_tags::v3::Response::new(tags))
}

pub async fn put_tag(state: AppState, request: Ruma<create_tag::v3::Request>) -> ApiResult<create_tag::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    own(sender, &body.user_id)?;
    let mut tags = tags_of(&state, &sender.user_id, &body.room_id).await?;
    let info = serde_json::to_value(&body.tag_info).map_err(|_| ApiError::bad_json("Invalid tag"))?;
    tags.insert(body.tag.clone(), info);
    state.storage.set_account_data(&sender.user_id, Some(&body.room_id), "m.tag", &json!({"tags": tags})).await?;
    state.stream_advanced(Stream::AccountData);
    Ok(create_tag::v3::Response::new())
}

pub async fn delete_tag(state: AppState, request: Ruma<delete_tag::v3::Request>) -> ApiResult<delete_tag::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    own(sender, &body.user_id)?;
    let mut tags = tags_of(&state, &sender.user_id, &body.room_id).await?;
    if tags.remove(&body.tag).is_some() {
        state.storage.set_account_data(&sender.user_id, Some(&body.room_id), "m.tag", &json!({"tags": tags})).await?;
        state.stream_advanced(Stream::AccountData);
    }
    Ok(delete_tag::v3::Response::new())
}
