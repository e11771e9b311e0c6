//! Synapse's media admin API, on the instances that run the media
//! repository (the router sends these paths to the `media` group):
//! `GET /_synapse/admin/v1/users/{userId}/media` lists what a user uploaded,
//! newest first; `DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}`
//! deletes a local file, its thumbnails and its row.

use ruma::UserId;

use weft_services::services::AppState;

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

const DEFAULT_LIMIT: u64 = 100;

pub mod list {
    //! `GET /_synapse/admin/v1/users/{userId}/media`
    use ruma::{
        OwnedUserId,
        api::{auth_scheme::AccessToken, metadata, request, response},
    };

    metadata! {
        method: GET,
        rate_limited: false,
        authentication: AccessToken,
        path: "/_synapse/admin/v1/users/{user_id}/media",
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub user_id: OwnedUserId,
        #[ruma_api(query)]
        pub from: Option<u64>,
        #[ruma_api(query)]
        pub limit: Option<u64>,
    }

    #[response]
    pub struct Response {
        pub media: Vec<super::MediaEntry>,
        pub total: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub next_token: Option<u64>,
    }
}

pub mod delete {
    //! `DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}`
    use ruma::{
        OwnedServerName,
        api::{auth_scheme::AccessToken, metadata, request, response},
    };

    metadata! {
        method: DELETE,
        rate_limited: false,
        authentication: AccessToken,
        path: "/_synapse/admin/v1/media/{server_name}/{media_id}",
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub server_name: OwnedServerName,
        #[ruma_api(path)]
        pub media_id: String,
    }

    #[response]
    pub struct Response {
        pub deleted_media: Vec<String>,
        pub total: u64,
    }
}

/// One upload as Synapse's admin API lists it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MediaEntry {
    pub media_id: String,
    pub media_type: Option<String>,
    pub media_length: Option<i64>,
    pub upload_name: Option<String>,
    pub created_ts: i64,
    pub quarantined_by: Option<String>,
    pub safe_from_quarantine: bool,
}

pub async fn list(state: AppState, request: Ruma<list::Request>) -> ApiResult<list::Response> {
    super::require_admin(request.sender()?)?;
    let user_id: &UserId = &request.body.user_id;
    if user_id.server_name() != state.server_name {
        return Err(ApiError::unknown(http::StatusCode::BAD_REQUEST, "Can only look up local users"));
    }
    if state.storage.user(user_id).await?.is_none() {
        return Err(ApiError::not_found("Unknown user"));
    }
    let from = request.body.from.unwrap_or(0);
    let limit = request.body.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, 1000);
    let (uploads, total) = state.storage.media_of_user(user_id.as_str(), limit as i64, from as i64).await?;
    let media: Vec<MediaEntry> = uploads
        .into_iter()
        .map(|upload| MediaEntry {
            media_id: upload.media_id,
            media_type: upload.content.as_ref().and_then(|content| content.media_type.clone()),
            media_length: upload.content.as_ref().map(|content| content.length),
            upload_name: upload.content.and_then(|content| content.upload_name),
            created_ts: upload.created_ts,
            quarantined_by: None,
            safe_from_quarantine: false,
        })
        .collect();
    let next_token = super::next_token(from, media.len(), total);
    Ok(list::Response { media, total, next_token })
}

pub async fn delete(state: AppState, request: Ruma<delete::Request>) -> ApiResult<delete::Response> {
    super::require_admin(request.sender()?)?;
    let media = state.media.as_ref().ok_or_else(|| ApiError::unrecognized(http::StatusCode::NOT_FOUND))?;
    if request.body.server_name != state.server_name {
        return Err(ApiError::unknown(http::StatusCode::BAD_REQUEST, "Can only delete local media"));
    }
    media.delete(&state.storage, &request.body.media_id).await?;
    Ok(delete::Response { deleted_media: vec![request.body.media_id.clone()], total: 1 })
}
