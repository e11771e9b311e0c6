//! Forwarding one request: classify it, order the group's instances, and
//! send it to the first that answers, streaming both bodies.
//!
//! Retries: a request whose body is buffered (no body, or at most
//! `RETRY_BUFFER` bytes) moves to the next instance when the connection
//! could not be made (it never reached the instance, so this is always
//! safe), and, for idempotent methods, on any failure before a response.
//! Larger bodies are streamed and get a single attempt. Responses have no
//! time limit (`/sync` long-polls); only connecting does. An instance that
//! refuses a connection is marked down for `router.down_for_ms`. When no
//! instance answers: 502 with `M_UNKNOWN`.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use http_body_util::{BodyExt, Limited};

use super::{
    RouterState,
    classify::{Classified, Sticky},
    connect,
};

/// Request bodies up to this size are read before forwarding, so that they
/// can be sent again to another instance.
const RETRY_BUFFER: usize = 1 << 20;

/// Headers that belong to one connection, not to the request (RFC 9110 7.6.1).
const HOP_BY_HOP: [header::HeaderName; 7] =
    [header::CONNECTION, header::PROXY_AUTHENTICATE, header::PROXY_AUTHORIZATION, header::TE, header::TRAILER, header::TRANSFER_ENCODING, header::UPGRADE];

enum Outgoing {
    Buffered(Bytes),
    /// Taken by the first attempt.
    Streaming(Option<Body>),
}

pub async fn forward(State(state): State<Arc<RouterState>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let classified = state.classifier.classify(&parts.method, parts.uri.path(), parts.uri.query());
    let group_name = classified.group.map_or("main", |group| group.as_str());
    let candidates = match classified.group {
        Some(group) => state.table.serving(group),
        None => &[0],
    };
    let key = sticky_key(&state, &classified, &parts.headers, parts.uri.query(), peer).await;
    let instances = state.table.instances();
    let mut order = state.health.order(key.as_deref(), candidates, |index| instances[index].name.clone());
    if let (Sticky::RoomWriter(room), Some(group)) = (&classified.sticky, classified.group)
        && let Some(writer) = state.table.room_writer(room, group)
        && state.health.is_up(writer)
    {
        order.retain(|&index| index != writer);
        order.insert(0, writer);
    }

    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
    let mut outgoing = if declared.is_some_and(|length| length <= RETRY_BUFFER) || (declared.is_none() && !chunked) {
        match Limited::new(body, RETRY_BUFFER).collect().await {
            Ok(collected) => Outgoing::Buffered(collected.to_bytes()),
            Err(_) => return unknown_error(StatusCode::BAD_REQUEST, "Could not read the request body"),
        }
    } else {
        Outgoing::Streaming(Some(body))
    };
    let retry_any_failure = matches!(parts.method, Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS);
    let headers = forwarded_headers(&parts.headers, peer);
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());

    for index in order {
        let (body, buffered) = match &mut outgoing {
            Outgoing::Buffered(bytes) => (Body::from(bytes.clone()), true),
            Outgoing::Streaming(slot) => match slot.take() {
                Some(body) => (body, false),
                None => break,
            },
        };
        let uri = format!("http://{}{path_and_query}", connect::authority(index));
        let Ok(mut request) = http::Request::builder().method(parts.method.clone()).uri(uri).version(Version::HTTP_11).body(body) else {
            return unknown_error(StatusCode::BAD_REQUEST, "Cannot forward this request");
        };
        *request.headers_mut() = headers.clone();
        let instance = &instances[index].name;
        match state.client.request(request).await {
            Ok(response) => {
                state.health.mark_up(index);
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                return Response::from_parts(parts, Body::new(body));
            }
            Err(error) if error.is_connect() => {
                tracing::warn!(%instance, group = group_name, error = %error_chain(&error), "instance unreachable; marked down");
                state.health.mark_down(index);
            }
            Err(error) => {
                tracing::warn!(%instance, group = group_name, error = %error_chain(&error), "request to instance failed");
                if !(retry_any_failure && buffered) {
                    break;
                }
            }
        }
    }
    unknown_error(StatusCode::BAD_GATEWAY, format!("No instance serving `{group_name}` could take the request"))
}

/// The key a sticky request hashes by, or `None` for round robin.
async fn sticky_key(state: &RouterState, classified: &Classified, headers: &HeaderMap, query: Option<&str>, peer: SocketAddr) -> Option<String> {
    match &classified.sticky {
        Sticky::None | Sticky::RoomWriter(_) => None,
        Sticky::User => {
            // A malformed or missing token is the instance's to reject.
            let token = weft_core::access_token::from_request(headers, query).ok().flatten()?;
            state.users.user_of(&token).await
        }
        Sticky::Room(room) => Some(room.clone()),
        Sticky::Origin => Some(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|value| ruma::api::federation::authentication::XMatrix::try_from(value).ok())
                .map_or_else(|| peer.ip().to_string(), |x_matrix| x_matrix.origin.to_string()),
        ),
    }
}

/// The incoming headers for the instance, with `X-Forwarded-For` set to the
/// peer this router saw: what the client sent in it is dropped, since an
/// instance that trusts the header would otherwise take a client's word for
/// its own address.
fn forwarded_headers(incoming: &HeaderMap, peer: SocketAddr) -> HeaderMap {
    let mut headers = incoming.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove("x-forwarded-for");
    if let Ok(value) = HeaderValue::from_str(&peer.ip().to_string()) {
        headers.insert("x-forwarded-for", value);
    }
    headers
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the Connection header names are hop-by-hop too.
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(',').map(|name| name.trim().to_ascii_lowercase()))
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The router's own answer when it cannot forward: a Matrix error with
/// `M_UNKNOWN`, as the API's `ApiError::unknown` writes it.
fn unknown_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "errcode": "M_UNKNOWN", "error": message.into() });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}
