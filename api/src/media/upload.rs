//! Uploads: `POST /upload` stores content under a new media id; `POST
//! /create` hands out an id whose content `PUT /upload/{server}/{id}`
//! brings later. Every upload is checked by the spam checkers before it is
//! kept.

use axum::{
    Json,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use http::request::Parts;
use serde_json::json;

use weft_services::media::{MediaRepository, Received};
use weft_services::plugins::spam::MediaFile;
use weft_services::services::AppState;

use super::{PathArgs, authenticated, content_type, is_local, param, path_args, query_params, repository};
use crate::{
    client::spam_allows,
    error::{ApiError, ApiResult},
};

pub async fn upload(State(state): State<AppState>, request: Request) -> Response {
    respond(upload_new(state, request).await)
}

pub async fn create(State(state): State<AppState>, request: Request) -> Response {
    respond(create_id(state, request).await)
}

pub async fn upload_to(State(state): State<AppState>, path: PathArgs, request: Request) -> Response {
    let result = match path_args(path) {
        Ok(mut args) if args.len() == 2 => {
            let media_id = args.pop().unwrap_or_default();
            let server_name = args.pop().unwrap_or_default();
            upload_into(state, server_name, media_id, request).await
        }
        Ok(_) => Err(ApiError::unrecognized(http::StatusCode::NOT_FOUND)),
        Err(error) => Err(error),
    };
    respond(result)
}

fn respond(result: ApiResult<serde_json::Value>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn upload_new(state: AppState, request: Request) -> ApiResult<serde_json::Value> {
    let media = repository(&state)?;
    let (parts, body) = request.into_parts();
    let sender = authenticated(&state, &parts).await?;
    let (media_type, upload_name) = described(&parts);
    let received = receive(media, &parts, body).await?;
    if let Err(error) = check_spam(&state, &sender.user_id, &received, &media_type, &upload_name).await {
        media.discard(&received).await;
        return Err(error);
    }
    let stored = media.store_new(&state.storage, sender.user_id.as_str(), &received, media_type, upload_name).await;
    media.discard(&received).await;
    let media_id = stored?;
    Ok(json!({ "content_uri": format!("mxc://{}/{media_id}", state.server_name) }))
}

async fn create_id(state: AppState, request: Request) -> ApiResult<serde_json::Value> {
    let media = repository(&state)?;
    let (parts, _) = request.into_parts();
    let sender = authenticated(&state, &parts).await?;
    if sender.rate_limited {
        state.rate_limits.media_create.acquire(sender.user_id.as_str()).map_err(ApiError::limit_exceeded)?;
    }
    let (media_id, expires_at) = media.create(&state.storage, sender.user_id.as_str()).await?;
    Ok(json!({ "content_uri": format!("mxc://{}/{media_id}", state.server_name), "unused_expires_at": expires_at }))
}

async fn upload_into(state: AppState, server_name: String, media_id: String, request: Request) -> ApiResult<serde_json::Value> {
    let media = repository(&state)?;
    let (parts, body) = request.into_parts();
    let sender = authenticated(&state, &parts).await?;
    if !is_local(&state, &server_name) {
        return Err(ApiError::not_found("Non-local server name specified"));
    }
    media.check_can_upload(&state.storage, &media_id, sender.user_id.as_str()).await?;
    let (media_type, upload_name) = described(&parts);
    let received = receive(media, &parts, body).await?;
    if let Err(error) = check_spam(&state, &sender.user_id, &received, &media_type, &upload_name).await {
        media.discard(&received).await;
        return Err(error);
    }
    let stored = media.store_into(&state.storage, &media_id, sender.user_id.as_str(), &received, media_type, upload_name).await;
    media.discard(&received).await;
    stored?;
    Ok(json!({}))
}

/// The upload's type (its `Content-Type`) and name (`?filename=`).
fn described(request: &Parts) -> (Option<String>, Option<String>) {
    let params = query_params(request);
    let upload_name = param(&params, "filename").filter(|name| !name.is_empty()).map(str::to_owned);
    (content_type(&request.headers), upload_name)
}

async fn receive(media: &MediaRepository, request: &Parts, body: axum::body::Body) -> ApiResult<Received> {
    let limit = media.max_upload_size();
    let declared = request.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(weft_services::media::MediaError::TooLarge { limit }.into());
    }
    Ok(media.receive(body.into_data_stream()).await?)
}

async fn check_spam(
    state: &AppState,
    uploader: &ruma::UserId,
    received: &Received,
    media_type: &Option<String>,
    upload_name: &Option<String>,
) -> ApiResult<()> {
    let file = MediaFile {
        origin: "local".into(),
        uploader: Some(uploader.to_owned()),
        content_type: media_type.clone(),
        filename: upload_name.clone(),
        length: received.length,
        head: received.head.clone(),
    };
    let verdict = state.spam_checker.check_media_file_for_spam(&file).await;
    spam_allows(verdict, "File rejected by the server's spam checker")
}
