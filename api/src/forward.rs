//! Client requests that write a stream this instance does not write are
//! answered by that stream's writer: the whole request (method, path,
//! access token, body) goes over the internal API, runs there through the
//! same handlers, and its reply comes back once this instance has seen the
//! positions the writer reports. An extra hop, never an error.

use axum::{
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::{BodyExt, Limited};

use weft_core::endpoint_groups::EndpointGroup;
use weft_services::replication::client::{decode_positions, wait_for_positions};
use weft_services::services::Services;

use crate::error::ApiError;

/// Marks a request that was forwarded here: it runs here, whatever the configuration says.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded;

pub const METHOD_HEADER: &str = "x-weft-method";
pub const URI_HEADER: &str = "x-weft-uri";
pub const AUTHORIZATION_HEADER: &str = "x-weft-authorization";
pub const CLIENT_ADDR_HEADER: &str = "x-weft-client-addr";

/// The instance that must answer a request of `group`, when it is not this
/// one: writes (anything but GET) go to the writer of the group's stream.
pub fn target(services: &Services, group: EndpointGroup, method: &Method) -> Option<String> {
    if *method == Method::GET {
        return None;
    }
    let stream = group.written_stream()?;
    let writers = services.replication.writers();
    let writer = writers.writer_of(stream);
    (writer != writers.instance()).then(|| writer.to_owned())
}

/// Sends `request` to `instance` and relays its reply.
pub async fn forward(services: &Services, instance: &str, client_addr: String, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let limit = services.config.max_request_body_size();
    let body: Bytes = match Limited::new(body, limit as usize).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return ApiError::too_large(limit).into_response(),
    };
    let mut headers = HeaderMap::new();
    let uri = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let (Ok(method), Ok(uri), Ok(addr)) = (HeaderValue::from_str(parts.method.as_str()), HeaderValue::from_str(&uri), HeaderValue::from_str(&client_addr))
    else {
        return ApiError::invalid_param("Request cannot be forwarded").into_response();
    };
    headers.insert(METHOD_HEADER, method);
    headers.insert(URI_HEADER, uri);
    headers.insert(CLIENT_ADDR_HEADER, addr);
    if let Some(authorization) = parts.headers.get(http::header::AUTHORIZATION) {
        headers.insert(AUTHORIZATION_HEADER, authorization.clone());
    }
    if let Some(content_type) = parts.headers.get(http::header::CONTENT_TYPE) {
        headers.insert(http::header::CONTENT_TYPE, content_type.clone());
    }
    let txn_id = weft_services::replication::room_writes::new_txn_id();
    let path = format!("/_weft/replication/v1/forward/{txn_id}");
    match services.replication.client.call(instance, Method::POST, &path, headers, body).await {
        Ok(reply) => {
            wait_for_positions(&services.notifier, &decode_positions(&reply.positions)).await;
            let mut response = Response::new(Body::from(reply.body));
            *response.status_mut() = reply.status;
            if let Some(content_type) = reply.content_type {
                response.headers_mut().insert(http::header::CONTENT_TYPE, content_type);
            }
            response
        }
        Err(error) => {
            tracing::error!(%error, %instance, "could not forward a request to its writer");
            ApiError::custom(http::StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN", format!("The instance that writes this data is unreachable: {error}"))
                .into_response()
        }
    }
}
