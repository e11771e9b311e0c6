//! The internal HTTP API, served on `replication` listeners only:
//! persisting writes into the rooms this instance persists, answering
//! client requests forwarded to the writer of their stream, EDUs received
//! over federation by another instance, running the
//! calls of plugins this instance hosts for the others (every role, one
//! route: `weft_services::plugins::remote`), stream
//! positions and the typing state for catch-up, and federation requests of
//! instances that may not connect out (`weft_federation::egress`). Every call needs
//! `Authorization: Bearer <worker_replication_secret>`; without it, or with
//! another secret, the answer is 401 with a Matrix error and nothing runs.

use std::sync::OnceLock;

use axum::{
    Router,
    body::Body,
    extract::DefaultBodyLimit,
    extract::{Path, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body_util::BodyExt;
use ruma::OwnedRoomId;
use tower::ServiceExt;

use weft_federation::egress;
use weft_services::plugins::remote::{self, ServeError};
use weft_services::replication::{
    client::{POSITIONS_HEADER, StoredReply, encode_positions},
    handler::own_positions,
    room_writes::{self, RoomWrite},
};
use weft_services::services::AppState;

use super::{
    error::ApiError,
    forward::{self, Forwarded},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_weft/replication/v1/rooms/{room_id}/write/{txn_id}", post(room_write))
        .route("/_weft/replication/v1/forward/{txn_id}", post(forwarded))
        .route(weft_services::federation::edus::FORWARD_PATH, post(federation_edus))
        .route(remote::ROUTE, post(plugin_call))
        .route("/_weft/replication/v1/positions", get(positions))
        .route("/_weft/replication/v1/streams/typing", get(typing))
        .route(weft_services::presence::SYNC_STATE_PATH, post(presence_sync))
        .route(egress::PROXY_PATH, post(federation_outbound).layer(DefaultBodyLimit::max(MAX_OUTBOUND_BODY)))
}

/// The most of a federation request another instance sends out through this
/// one (the largest transactions and joins are a few MiB).
const MAX_OUTBOUND_BODY: usize = 100 * 1024 * 1024;

/// Refuses any call without the replication secret.
pub async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let expected = state.config.worker_replication_secret.as_deref().filter(|secret| !secret.is_empty());
    let given = request.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match (expected, given) {
        (_, None) => ApiError::missing_token().into_response(),
        (Some(expected), Some(given)) if constant_time_eq(expected.as_bytes(), given.as_bytes()) => next.run(request).await,
        _ => ApiError::custom(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN", "Wrong replication secret").into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn with_positions(state: &AppState, mut response: Response) -> Response {
    if let Ok(value) = HeaderValue::from_str(&encode_positions(&own_positions(state))) {
        response.headers_mut().insert(POSITIONS_HEADER, value);
    }
    response
}

fn replay(reply: StoredReply) -> Response {
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = reply.status;
    if let Some(content_type) = reply.content_type {
        response.headers_mut().insert(http::header::CONTENT_TYPE, content_type);
    }
    if let Ok(positions) = HeaderValue::from_str(&reply.positions) {
        response.headers_mut().insert(POSITIONS_HEADER, positions);
    }
    response
}

async fn room_write(State(state): State<AppState>, Path((room_id, txn_id)): Path<(String, String)>, body: Bytes) -> Response {
    if let Some(reply) = state.replication.cached_reply(&txn_id) {
        return replay(reply);
    }
    let Ok(room_id) = OwnedRoomId::try_from(room_id) else {
        return ApiError::invalid_param("Invalid room id").into_response();
    };
    if !state.replication.writers().persists_room(room_id.as_str()) {
        return ApiError::custom(StatusCode::CONFLICT, "M_UNKNOWN", format!("`{}` does not persist {room_id}", state.replication.instance())).into_response();
    }
    let write: RoomWrite = match serde_json::from_slice(&body) {
        Ok(write) => write,
        Err(error) => return ApiError::bad_json(error.to_string()).into_response(),
    };
    let response = match room_writes::apply(&state, &room_id, write).await {
        Ok(outcome) => axum::Json(outcome).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    };
    remember(&state, txn_id, with_positions(&state, response)).await
}

async fn remember(state: &AppState, txn_id: String, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|collected| collected.to_bytes()).unwrap_or_default();
    let reply = StoredReply {
        status: parts.status,
        content_type: parts.headers.get(http::header::CONTENT_TYPE).cloned(),
        positions: parts.headers.get(POSITIONS_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned(),
        body,
    };
    if reply.status.is_success() {
        state.replication.remember_reply(txn_id, reply.clone());
    }
    replay(reply)
}

/// The client routes, built once (they hold no state; it is added per call).
fn client_router() -> Router<AppState> {
    static ROUTER: OnceLock<Router<AppState>> = OnceLock::new();
    ROUTER.get_or_init(super::client_routes).clone()
}

async fn forwarded(State(state): State<AppState>, Path(txn_id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(reply) = state.replication.cached_reply(&txn_id) {
        return replay(reply);
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(method), Some(uri)) = (header(forward::METHOD_HEADER), header(forward::URI_HEADER)) else {
        return ApiError::missing_param("A forwarded request needs its method and URI").into_response();
    };
    let (Ok(method), Ok(uri)) = (method.parse::<Method>(), uri.parse::<Uri>()) else {
        return ApiError::invalid_param("Malformed forwarded method or URI").into_response();
    };
    let mut request = http::Request::builder().method(method).uri(uri);
    if let Some(authorization) = headers.get(forward::AUTHORIZATION_HEADER) {
        request = request.header(http::header::AUTHORIZATION, authorization);
    }
    if let Some(content_type) = headers.get(http::header::CONTENT_TYPE) {
        request = request.header(http::header::CONTENT_TYPE, content_type);
    }
    if let Some(addr) = headers.get(forward::CLIENT_ADDR_HEADER) {
        request = request.header("x-forwarded-for", addr);
    }
    let Ok(mut request) = request.body(Body::from(body)) else {
        return ApiError::invalid_param("Malformed forwarded request").into_response();
    };
    request.extensions_mut().insert(Forwarded);
    request.extensions_mut().insert(super::ruma_route::ListenerContext { x_forwarded: true });
    let router = client_router().with_state(state.clone());
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(infallible) => match infallible {},
    };
    remember(&state, txn_id, with_positions(&state, response)).await
}

/// EDUs another instance received over federation, for the streams this one writes.
async fn federation_edus(State(state): State<AppState>, Path(txn_id): Path<String>, body: Bytes) -> Response {
    use weft_services::federation::edus;
    if let Some(reply) = state.replication.cached_reply(&txn_id) {
        return replay(reply);
    }
    let forwarded: edus::ForwardedEdus = match serde_json::from_slice(&body) {
        Ok(forwarded) => forwarded,
        Err(error) => return ApiError::bad_json(error.to_string()).into_response(),
    };
    let response = match edus::handle(&state, &forwarded.origin, &forwarded.edus).await {
        Ok(()) => axum::Json(serde_json::json!({})).into_response(),
        Err(edus::EduError::Storage(error)) => ApiError::from(error).into_response(),
        Err(error) => ApiError::custom(StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN", error.to_string()).into_response(),
    };
    remember(&state, txn_id, with_positions(&state, response)).await
}

/// A spam check forwarded by an instance that does not host the plugin: the
/// plugin's answer, or why it gave none (the caller applies `on_error`).
async fn plugin_call(State(state): State<AppState>, Path((name, callback, txn_id)): Path<(String, String, String)>, body: Bytes) -> Response {
    if let Some(reply) = state.replication.cached_reply(&txn_id) {
        return replay(reply);
    }
    let Some(plugin) = state.hosted_plugins.get(&name) else {
        return ApiError::not_found(format!("`{}` does not run a plugin named `{name}`", state.replication.instance())).into_response();
    };
    let outcome = match plugin.serve(&callback, &body).await {
        Ok(outcome) => outcome,
        Err(error @ ServeError::NotJson(_)) => return ApiError::not_json(error.to_string()).into_response(),
        Err(error @ ServeError::BadCall { .. }) => return ApiError::bad_json(error.to_string()).into_response(),
    };
    remember(&state, txn_id, axum::Json(outcome).into_response()).await
}

/// A federation request of an instance that may not connect out, made by
/// this one (`outbound_federation_restricted_to`).
async fn federation_outbound(State(state): State<AppState>, body: Bytes) -> Response {
    egress::serve(&state.federation.client, &body).await.map(Body::from)
}

async fn positions(State(state): State<AppState>) -> Response {
    with_positions(&state, StatusCode::OK.into_response())
}

#[derive(serde::Deserialize)]
struct PresenceSync {
    process_id: String,
    user_id: ruma::OwnedUserId,
    set_presence: String,
}

/// A `/sync` on another instance set its user's presence (`set_presence`).
async fn presence_sync(State(state): State<AppState>, body: Bytes) -> Response {
    let request: PresenceSync = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return ApiError::bad_json(error.to_string()).into_response(),
    };
    if !weft_services::presence::SETTABLE_STATES.contains(&request.set_presence.as_str()) {
        return ApiError::invalid_param("set_presence must be online, unavailable or offline").into_response();
    }
    let response = match weft_services::presence::remote_sync_state(&state, &request.process_id, &request.user_id, &request.set_presence).await {
        Ok(()) => axum::Json(serde_json::json!({})).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    };
    with_positions(&state, response)
}

async fn typing(State(state): State<AppState>) -> Response {
    axum::Json(state.typing.snapshot()).into_response()
}
