//! Downloads and thumbnails, authenticated (`/_matrix/client/v1/media/*`)
//! and unauthenticated (`/_matrix/media/*`, for media uploaded while
//! `enable_authenticated_media` was off: Synapse's freeze); and the upload
//! limit (`/config`).
//!
//! Every response carries the headers that keep a browser from running what
//! it downloads: a sandboxing `Content-Security-Policy`, and a
//! `Content-Disposition` that is `inline` only for types that are safe to
//! show (Synapse's list).

use std::time::Duration;

use axum::{
    Json,
    body::Body,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use http::{HeaderValue, header, request::Parts};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::json;

use weft_core::config::ThumbnailMethod;
use weft_services::media::{Access, ThumbnailRequest};
use weft_services::services::AppState;

use super::{PathArgs, authenticated, is_local, param, path_args, query_params, remote_server, repository};
use crate::error::{ApiError, ApiResult};

/// How long a download waits for content still being uploaded, unless it says.
const DEFAULT_WAIT: Duration = Duration::from_secs(20);

/// Types a browser may show in place: the rest are attachments.
const INLINE_CONTENT_TYPES: [&str; 26] = [
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

const CONTENT_SECURITY_POLICY: &str =
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/// What RFC 3986 leaves unreserved stays as it is in an encoded file name.
const FILENAME_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The upload limit; both endpoints need an access token, as in Synapse.
pub async fn config(State(state): State<AppState>, request: Request) -> Response {
    let (request, _) = request.into_parts();
    let answer = async {
        let media = repository(&state)?;
        authenticated(&state, &request).await?;
        Ok::<_, ApiError>(Json(json!({ "m.upload.size": media.max_upload_size() })).into_response())
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn download(State(state): State<AppState>, path: PathArgs, request: Request) -> Response {
    respond(serve_file(state, Access::Authenticated, path, request).await)
}

pub async fn legacy_download(State(state): State<AppState>, path: PathArgs, request: Request) -> Response {
    respond(serve_file(state, Access::Legacy, path, request).await)
}

pub async fn thumbnail(State(state): State<AppState>, path: PathArgs, request: Request) -> Response {
    respond(serve_thumbnail(state, Access::Authenticated, path, request).await)
}

pub async fn legacy_thumbnail(State(state): State<AppState>, path: PathArgs, request: Request) -> Response {
    respond(serve_thumbnail(state, Access::Legacy, path, request).await)
}

pub(super) fn respond(result: ApiResult<Response>) -> Response {
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert("x-content-security-policy", HeaderValue::from_static("sandbox;"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    response
}

/// Who may read: an authenticated endpoint needs a user; a legacy one
/// anyone, for media from before the freeze (`MediaRepository` checks).
async fn admit(state: &AppState, access: Access, request: &Parts) -> ApiResult<()> {
    match access {
        Access::Authenticated => authenticated(state, request).await.map(drop),
        Access::Legacy => Ok(()),
    }
}

pub(super) fn wait_of(params: &[(String, String)]) -> ApiResult<Duration> {
    match param(params, "timeout_ms") {
        None => Ok(DEFAULT_WAIT),
        Some(value) => value.parse::<u64>().map(Duration::from_millis).map_err(|_| ApiError::invalid_param("`timeout_ms` must be a non-negative integer")),
    }
}

async fn serve_file(state: AppState, access: Access, path: PathArgs, request: Request) -> ApiResult<Response> {
    let media = repository(&state)?;
    let mut path = path_args(path)?.into_iter();
    let (server_name, media_id, file_name) = (path.next().unwrap_or_default(), path.next().unwrap_or_default(), path.next());
    let (request, _) = request.into_parts();
    admit(&state, access, &request).await?;
    let wait = wait_of(&query_params(&request))?;
    let download = if is_local(&state, &server_name) {
        media.open(&state.storage, &media_id, access, wait).await?
    } else {
        let origin = remote_server(&server_name)?;
        media.open_remote(&state.storage, &state.federation.client, &origin, &media_id, access, wait).await?
    };
    let content_type = served_type(download.content.media_type.as_deref());
    let name = file_name.or(download.content.upload_name.clone());
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(download.file));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    insert(headers, header::CONTENT_TYPE, &content_type);
    insert(headers, header::CONTENT_LENGTH, &download.content.length.to_string());
    insert(headers, header::CONTENT_DISPOSITION, &disposition(&content_type, name.as_deref()));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public,max-age=86400,s-maxage=86400"));
    Ok(response)
}

async fn serve_thumbnail(state: AppState, access: Access, path: PathArgs, request: Request) -> ApiResult<Response> {
    let media = repository(&state)?;
    let mut path = path_args(path)?.into_iter();
    let (server_name, media_id) = (path.next().unwrap_or_default(), path.next().unwrap_or_default());
    let (request, _) = request.into_parts();
    admit(&state, access, &request).await?;
    let params = query_params(&request);
    let wanted = thumbnail_request(&params)?;
    let wait = wait_of(&params)?;
    let thumbnail = if is_local(&state, &server_name) {
        media.thumbnail(&state.storage, &media_id, wanted, access, wait).await?
    } else {
        let origin = remote_server(&server_name)?;
        media.remote_thumbnail(&state.storage, &state.federation.client, &origin, &media_id, wanted, access, wait).await?
    };
    let mut response = Response::new(Body::from(thumbnail.bytes));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(thumbnail.content_type));
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static(thumbnail_disposition(thumbnail.content_type)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public,max-age=86400,s-maxage=86400"));
    Ok(response)
}

/// The `Content-Disposition` of a thumbnail of `content_type`.
pub(super) fn thumbnail_disposition(content_type: &str) -> &'static str {
    if content_type == "image/png" { "inline; filename=thumbnail.png" } else { "inline; filename=thumbnail.jpg" }
}

/// The size and method a thumbnail request asks for.
pub(super) fn thumbnail_request(params: &[(String, String)]) -> ApiResult<ThumbnailRequest> {
    let dimension = |name: &str| -> ApiResult<u32> {
        let value = param(params, name).ok_or_else(|| ApiError::missing_param(format!("Missing `{name}`")))?;
        value.parse::<u32>().ok().filter(|&v| v > 0).ok_or_else(|| ApiError::invalid_param(format!("`{name}` must be a positive integer")))
    };
    let (width, height) = (dimension("width")?, dimension("height")?);
    let method = match param(params, "method") {
        None | Some("scale") => ThumbnailMethod::Scale,
        Some("crop") => ThumbnailMethod::Crop,
        Some(other) => return Err(ApiError::invalid_param(format!("`{other}` is not a thumbnail method: `crop` or `scale`"))),
    };
    Ok(ThumbnailRequest { width, height, method })
}

pub(super) fn insert(headers: &mut http::HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Types Synapse serves with `charset=UTF-8` when they name no charset.
const TEXT_CONTENT_TYPES: [&str; 11] = [
    "text/css",
    "text/csv",
    "text/html",
    "text/calendar",
    "text/plain",
    "text/javascript",
    "application/json",
    "application/ld+json",
    "application/rtf",
    "image/svg+xml",
    "text/xml",
];

/// The stored type, with a charset for text as Synapse adds it.
pub(super) fn served_type(stored: Option<&str>) -> String {
    match stored {
        None => "application/octet-stream".to_owned(),
        Some(kind) if TEXT_CONTENT_TYPES.contains(&kind.trim().to_ascii_lowercase().as_str()) => format!("{kind}; charset=UTF-8"),
        Some(kind) => kind.to_owned(),
    }
}

/// `inline` for types safe to show, `attachment` otherwise, with the file's
/// name as a plain token when it is one and RFC 5987's encoding when not.
pub(super) fn disposition(content_type: &str, name: Option<&str>) -> String {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let kind = if INLINE_CONTENT_TYPES.contains(&essence.as_str()) { "inline" } else { "attachment" };
    match name.filter(|name| !name.is_empty()) {
        None => kind.to_owned(),
        Some(name) if name.bytes().all(is_token_byte) => format!("{kind}; filename={name}"),
        Some(name) => format!("{kind}; filename*=utf-8''{}", utf8_percent_encode(name, FILENAME_ESCAPED)),
    }
}

/// RFC 9110's `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::{disposition, served_type};

    #[test]
    fn safe_types_inline_and_names_encoded_when_not_tokens() {
        assert_eq!(disposition("image/png", Some("cat.png")), "inline; filename=cat.png");
        assert_eq!(disposition("text/html", Some("page.html")), "attachment; filename=page.html");
        assert_eq!(disposition("application/octet-stream", None), "attachment");
        assert_eq!(disposition("text/plain; charset=UTF-8", Some("a b.txt")), "inline; filename*=utf-8''a%20b.txt");
        assert_eq!(disposition("image/jpeg", Some("été.jpg")), "inline; filename*=utf-8''%C3%A9t%C3%A9.jpg");
    }

    #[test]
    fn text_gets_a_charset() {
        assert_eq!(served_type(Some("text/plain")), "text/plain; charset=UTF-8");
        assert_eq!(served_type(Some("text/plain; charset=latin1")), "text/plain; charset=latin1");
        assert_eq!(served_type(Some("application/json")), "application/json; charset=UTF-8");
        assert_eq!(served_type(Some("text/markdown")), "text/markdown", "only Synapse's list");
        assert_eq!(served_type(None), "application/octet-stream");
    }
}
