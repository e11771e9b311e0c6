//! Profiles: `GET /profile/{userId}` and `GET/PUT/DELETE
//! /profile/{userId}/{field}` (`displayname`, `avatar_url` and custom
//! fields). Changing `displayname` or `avatar_url` updates the user's member
//! event in every room they have joined, as Synapse does. Setting either to
//! "" removes it.

use ruma::{
    UserId,
    api::client::profile::{delete_profile_field, get_profile, get_profile_field},
    profile::{ProfileFieldName, ProfileFieldValue},
};

use weft_services::services::{AppState, Services};

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

/// Synapse's limit on display names.
const MAX_DISPLAYNAME_LENGTH: usize = 256;
/// Synapse's limit on avatar URLs.
const MAX_AVATAR_URL_LENGTH: usize = 1000;
/// Any one field's JSON, as the spec's limit on a whole profile suggests.
const MAX_FIELD_BYTES: usize = 65_536;

async fn known_local_user(state: &Services, user_id: &UserId) -> ApiResult<()> {
    if user_id.server_name() != state.server_name {
        return Err(ApiError::forbidden("Cannot change the profile of a user of another server"));
    }
    match state.storage.user(user_id).await? {
        Some(user) if !user.deactivated => Ok(()),
        _ => Err(ApiError::not_found("Profile not found")),
    }
}

pub async fn get(state: AppState, request: Ruma<get_profile::v3::Request>) -> ApiResult<get_profile::v3::Response> {
    let user_id = &request.body.user_id;
    let profile = if user_id.server_name() != state.server_name {
        super::federated::profile(&state, user_id, None).await?
    } else {
        known_local_user(&state, user_id).await?;
        state.storage.profile(user_id).await?
    };
    let mut response = get_profile::v3::Response::new();
    for (field, value) in profile {
        response.set(field, value);
    }
    Ok(response)
}

pub async fn get_field(state: AppState, request: Ruma<get_profile_field::v3::Request>) -> ApiResult<get_profile_field::v3::Response> {
    let body = &request.body;
    let field = body.field.as_str();
    let profile = if body.user_id.server_name() != state.server_name {
        super::federated::profile(&state, &body.user_id, Some(field)).await?
    } else {
        known_local_user(&state, &body.user_id).await?;
        state.storage.profile(&body.user_id).await?
    };
    let value = profile.get(field).ok_or_else(|| ApiError::not_found("Profile field not set"))?;
    let value = ProfileFieldValue::new(field, value.clone()).map_err(|_| ApiError::internal())?;
    Ok(get_profile_field::v3::Response::new(value))
}

pub mod set_profile_field {
    //! `PUT /profile/{userId}/{field}`, declared here because ruma's request
    //! takes a body of exactly one key, where Synapse reads the field's key
    //! and ignores the others (clients send `displayname` and `avatar_url`
    //! together).
    use ruma::{
        OwnedUserId,
        api::{auth_scheme::AccessToken, metadata, request, response},
        serde::JsonObject,
    };

    metadata! {
        method: PUT,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            unstable("uk.tcpip.msc4133") => "/_matrix/client/unstable/uk.tcpip.msc4133/profile/{user_id}/{field}",
            1.0 => "/_matrix/client/r0/profile/{user_id}/{field}",
            1.1 => "/_matrix/client/v3/profile/{user_id}/{field}",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub user_id: OwnedUserId,
        #[ruma_api(path)]
        pub field: String,
        #[ruma_api(body)]
        pub content: JsonObject,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

pub async fn set_field(state: AppState, request: Ruma<set_profile_field::Request>) -> ApiResult<set_profile_field::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    if body.user_id != sender.user_id {
        return Err(ApiError::forbidden("Cannot change another user's profile"));
    }
    let value = body.content.get(&body.field).ok_or_else(|| ApiError::missing_param(format!("Missing key '{}'", body.field)))?;
    let value = ProfileFieldValue::new(&body.field, value.clone()).map_err(|e| ApiError::bad_json(format!("Invalid '{}': {e}", body.field)))?;
    set_value(&state, &sender.user_id, value).await?;
    Ok(set_profile_field::Response::default())
}

async fn set_value(state: &Services, user_id: &UserId, typed: ProfileFieldValue) -> ApiResult<()> {
    let field = typed.field_name();
    let value = typed.value().into_owned();
    // As Synapse: an empty display name or avatar URL removes it (Element
    // clears an avatar by setting "").
    if matches!(field, ProfileFieldName::DisplayName | ProfileFieldName::AvatarUrl) && value.as_str() == Some("") {
        state.storage.delete_profile_field(user_id, field.as_str()).await?;
        return propagate(state, user_id, &field).await;
    }
    match &typed {
        ProfileFieldValue::DisplayName(name) if name.chars().count() > MAX_DISPLAYNAME_LENGTH => {
            return Err(ApiError::bad_json(format!("Display names are at most {MAX_DISPLAYNAME_LENGTH} characters")));
        }
        ProfileFieldValue::AvatarUrl(uri) if !uri.is_valid() => return Err(ApiError::invalid_param("avatar_url must be an mxc:// URI")),
        ProfileFieldValue::AvatarUrl(uri) if uri.as_str().len() > MAX_AVATAR_URL_LENGTH => {
            return Err(ApiError::bad_json(format!("Avatar URLs are at most {MAX_AVATAR_URL_LENGTH} characters")));
        }
        _ => {}
    }
    if value.to_string().len() > MAX_FIELD_BYTES {
        return Err(ApiError::too_large(MAX_FIELD_BYTES as u64));
    }
    state.storage.set_profile_field(user_id, field.as_str(), &value).await?;
    propagate(state, user_id, &field).await
}

pub async fn delete_field(state: AppState, request: Ruma<delete_profile_field::v3::Request>) -> ApiResult<delete_profile_field::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    if body.user_id != sender.user_id {
        return Err(ApiError::forbidden("Cannot change another user's profile"));
    }
    state.storage.delete_profile_field(&sender.user_id, body.field.as_str()).await?;
    propagate(&state, &sender.user_id, &body.field).await?;
    Ok(delete_profile_field::v3::Response::new())
}

/// Member events carry the display name and avatar: re-send them.
async fn propagate(state: &Services, user_id: &UserId, field: &ProfileFieldName) -> ApiResult<()> {
    if !matches!(field, ProfileFieldName::DisplayName | ProfileFieldName::AvatarUrl) {
        return Ok(());
    }
    for (room_id, membership, _) in state.storage.memberships_of(user_id).await? {
        if membership == "join"
            && let Err(error) = state.rooms.refresh_member_profile(state, &room_id, user_id).await
        {
            // One room refusing (say, the user may not change their member event there) must not undo the rest.
            tracing::warn!(%room_id, %error, "could not update the member event with the new profile");
        }
    }
    Ok(())
}
