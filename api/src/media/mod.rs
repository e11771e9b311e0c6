//! The media endpoints: `/_matrix/media/*` (uploads, and the deprecated
//! unauthenticated downloads), `/_matrix/client/v1/media/*`
//! (authenticated downloads, thumbnails, configuration; other servers'
//! media is downloaded over federation and kept) and
//! `/_matrix/federation/v1/media/*` (this server's media for other servers,
//! `federation`).
//!
//! Their bodies are files, not JSON, so they are plain axum handlers rather
//! than ruma-typed routes; `route_list` declares their paths for the
//! router. Served where `Config::runs_media_repo` says, on listeners with a
//! `client`, `federation` or `media` resource, as Synapse serves them (the
//! federation ones on `federation` and `media` listeners only).

mod download;
mod federation;
mod upload;

use std::{sync::Arc, time::Instant};

use axum::{
    Router,
    extract::{Path, Request, rejection::PathRejection},
    middleware::Next,
    response::Response,
    routing::{get, post, put},
};
use http::{HeaderMap, StatusCode, request::Parts};

use weft_services::media::MediaError;
use weft_services::services::AppState;

use super::{
    auth::{self, Sender},
    error::{ApiError, ApiResult},
};

/// The media routes, or `None` on an instance that does not run the media
/// repository (its media requests are unknown endpoints, as in Synapse);
/// with `federation`, also those other servers call.
pub fn routes(state: &AppState, federation: bool) -> Option<Router<AppState>> {
    state.media.as_ref()?;
    // Synapse also takes uploads on v1, which old bridges still use.
    let mut router = Router::new().route("/_matrix/media/v1/create", post(upload::create)).route("/_matrix/media/v1/upload", post(upload::upload));
    for version in ["v3", "r0"] {
        router = router
            .route(&format!("/_matrix/media/{version}/upload"), post(upload::upload))
            .route(&format!("/_matrix/media/{version}/upload/{{server_name}}/{{media_id}}"), put(upload::upload_to))
            .route(&format!("/_matrix/media/{version}/config"), get(download::config))
            .route(&format!("/_matrix/media/{version}/download/{{server_name}}/{{media_id}}"), get(download::legacy_download))
            .route(&format!("/_matrix/media/{version}/download/{{server_name}}/{{media_id}}/{{file_name}}"), get(download::legacy_download))
            .route(&format!("/_matrix/media/{version}/thumbnail/{{server_name}}/{{media_id}}"), get(download::legacy_thumbnail));
    }
    router = router
        .route("/_matrix/client/v1/media/config", get(download::config))
        .route("/_matrix/client/v1/media/download/{server_name}/{media_id}", get(download::download))
        .route("/_matrix/client/v1/media/download/{server_name}/{media_id}/{file_name}", get(download::download))
        .route("/_matrix/client/v1/media/thumbnail/{server_name}/{media_id}", get(download::thumbnail));
    if federation {
        router = router
            .route("/_matrix/federation/v1/media/download/{media_id}", get(federation::download))
            .route("/_matrix/federation/v1/media/thumbnail/{media_id}", get(federation::thumbnail));
    }
    Some(router.route_layer(axum::middleware::from_fn(record)))
}

async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    weft_core::telemetry::record_request("media", &method, response.status(), started.elapsed());
    response
}

/// The media repository of an instance that serves these routes.
fn repository(state: &AppState) -> ApiResult<&weft_services::media::MediaRepository> {
    state.media.as_ref().ok_or_else(|| ApiError::unrecognized(StatusCode::NOT_FOUND))
}

/// The caller, who must present an access token.
async fn authenticated(state: &AppState, request: &Parts) -> ApiResult<Sender> {
    let token = auth::access_token(&request.headers, request.uri.query())?.ok_or_else(ApiError::missing_token)?;
    let addr = super::ruma_route::client_addr(&request.headers, &request.extensions);
    auth::authenticate(state, &token, &addr, request.uri.query()).await
}

/// The path's parameters in order, or why they could not be read.
type PathArgs = Result<Path<Vec<String>>, PathRejection>;

fn path_args(path: PathArgs) -> ApiResult<Vec<String>> {
    path.map(|Path(args)| args).map_err(|_| ApiError::invalid_param("A path parameter is not valid UTF-8"))
}

/// The query string's parameters, decoded.
fn query_params(request: &Parts) -> Vec<(String, String)> {
    form_urlencoded::parse(request.uri.query().unwrap_or("").as_bytes()).into_owned().collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers.get(http::header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::trim).filter(|value| !value.is_empty()).map(str::to_owned)
}

fn is_local(state: &Arc<weft_services::services::Services>, server_name: &str) -> bool {
    server_name == state.server_name.as_str()
}

/// The server named in a media path, when it is another one.
fn remote_server(server_name: &str) -> ApiResult<ruma::OwnedServerName> {
    ruma::ServerName::parse(server_name).map_err(|_| ApiError::invalid_param(format!("`{server_name}` is not a server name")))
}

impl From<MediaError> for ApiError {
    fn from(error: MediaError) -> Self {
        match error {
            MediaError::TooLarge { limit } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, ruma::api::error::ErrorKind::TooLarge, format!("Uploads may be at most {limit} bytes"))
            }
            MediaError::BodyRead => Self::unknown(StatusCode::BAD_REQUEST, "Could not read the upload"),
            MediaError::BodyTimeout => Self::body_timeout(),
            MediaError::NotFound | MediaError::Expired => Self::not_found("Not found"),
            MediaError::NotYetUploaded => Self::custom(StatusCode::GATEWAY_TIMEOUT, "M_NOT_YET_UPLOADED", "The media has not been uploaded yet"),
            MediaError::TooManyPending => {
                let mut error = Self::limit_exceeded(std::time::Duration::from_secs(60));
                error.message = "Too many media ids are waiting for their uploads".into();
                error
            }
            MediaError::CannotOverwrite => Self::custom(StatusCode::CONFLICT, "M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content"),
            MediaError::NotOwner => Self::forbidden("You must be the creator of the media ID to upload its content"),
            MediaError::CannotThumbnail => Self::unknown(StatusCode::BAD_REQUEST, "This content cannot be thumbnailed"),
            MediaError::ImageTooLarge => Self::new(StatusCode::PAYLOAD_TOO_LARGE, ruma::api::error::ErrorKind::TooLarge, "The image is too large to thumbnail"),
            MediaError::RemoteDenied(server) => Self::forbidden(format!("Federation denied with {server}.")),
            MediaError::RemoteFailed(_) => Self::unknown(StatusCode::BAD_GATEWAY, "Failed to fetch remote media"),
            MediaError::RemoteTooLarge { limit } => {
                Self::new(StatusCode::BAD_GATEWAY, ruma::api::error::ErrorKind::TooLarge, format!("Requested file is too large > {limit} bytes"))
            }
            MediaError::Io(error) => {
                tracing::error!(%error, "media store failure");
                Self::internal()
            }
            MediaError::Storage(error) => error.into(),
        }
    }
}
