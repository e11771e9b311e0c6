//! The authenticated federation media endpoints, this server's media for
//! other servers: `GET /_matrix/federation/v1/media/download/{mediaId}` and
//! `/thumbnail/{mediaId}`. The caller's X-Matrix signature is checked here
//! (these are plain handlers, not ruma routes: the body is a file). The
//! answer is `multipart/mixed` as the specification gives it: a JSON part
//! (`{}`, the metadata) then the file with its `Content-Type` and
//! `Content-Disposition`; the file is streamed from the store, never a
//! `Location`. Only this server's media is served (no proxying of other
//! servers'), including media uploaded under `enable_authenticated_media`.

use axum::{
    body::Body,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http::{HeaderValue, header, request::Parts};

use weft_services::media::Access;
use weft_services::services::AppState;

use super::{
    PathArgs,
    download::{disposition, insert, served_type, thumbnail_disposition, thumbnail_request, wait_of},
    path_args, query_params, repository,
};
use crate::{
    error::{ApiError, ApiResult},
    ruma_route::inbound_error,
};

pub async fn download(State(state): State<AppState>, path: PathArgs, request: Request) -> Response {
    serve_file(state, path, request).await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn thumbnail(State(state): State<AppState>, path: PathArgs, request: Request) -> Response {
    serve_thumbnail(state, path, request).await.unwrap_or_else(IntoResponse::into_response)
}

/// Checks the request's X-Matrix signature (a `GET` signs no body).
async fn check_origin(state: &AppState, parts: &Parts) -> ApiResult<ruma::OwnedServerName> {
    let xmatrix = state.federation.authorization(&parts.headers, &state.server_name).map_err(inbound_error)?;
    let signed = http::Request::builder().method(parts.method.clone()).uri(parts.uri.clone()).body(&b""[..]).map_err(|_| ApiError::internal())?;
    state.federation.verify(&xmatrix, &signed, &state.server_name).await.map_err(inbound_error)
}

async fn serve_file(state: AppState, path: PathArgs, request: Request) -> ApiResult<Response> {
    let media = repository(&state)?;
    let media_id = path_args(path)?.into_iter().next().unwrap_or_default();
    let (parts, _) = request.into_parts();
    check_origin(&state, &parts).await?;
    let wait = wait_of(&query_params(&parts))?;
    let download = media.open(&state.storage, &media_id, Access::Authenticated, wait).await?;
    let content_type = served_type(download.content.media_type.as_deref());
    let content_disposition = disposition(&content_type, download.content.upload_name.as_deref());
    let file = tokio_util::io::ReaderStream::new(download.file);
    Ok(multipart(&content_type, &content_disposition, download.content.length.max(0) as u64, file))
}

async fn serve_thumbnail(state: AppState, path: PathArgs, request: Request) -> ApiResult<Response> {
    let media = repository(&state)?;
    let media_id = path_args(path)?.into_iter().next().unwrap_or_default();
    let (parts, _) = request.into_parts();
    check_origin(&state, &parts).await?;
    let params = query_params(&parts);
    let wanted = thumbnail_request(&params)?;
    let wait = wait_of(&params)?;
    let thumbnail = media.thumbnail(&state.storage, &media_id, wanted, Access::Authenticated, wait).await?;
    let length = thumbnail.bytes.len() as u64;
    let file = stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(thumbnail.bytes)) });
    Ok(multipart(thumbnail.content_type, thumbnail_disposition(thumbnail.content_type), length, file))
}

/// The two-part answer: the metadata, then `length` bytes of `file`.
fn multipart(
    content_type: &str,
    content_disposition: &str,
    length: u64,
    file: impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) -> Response {
    // 122 random bits: no file holds it by chance.
    let boundary = ruma::TransactionId::new().to_string();
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Disposition: {content_disposition}\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let total = head.len() as u64 + length + tail.len() as u64;
    let body = stream::once(async move { Ok(Bytes::from(head)) }).chain(file).chain(stream::once(async move { Ok(Bytes::from(tail)) }));
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    insert(headers, header::CONTENT_TYPE, &format!("multipart/mixed; boundary={boundary}"));
    insert(headers, header::CONTENT_LENGTH, &total.to_string());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public,max-age=86400,s-maxage=86400"));
    response
}
