//! What every response gets whatever the endpoint: the spec's CORS headers
//! (and a 200 for any `OPTIONS`), a request id, a log span, and the
//! `M_UNRECOGNIZED` answers for unknown paths (404) and methods (405).
//!
//! CORS is written out here rather than with a general CORS layer because the
//! spec fixes the headers for every response, preflight or not.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::{
    extract::Request,
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, Method, StatusCode, header};
use tower_http::request_id::{MakeRequestId, RequestId};

use super::error::ApiError;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

pub async fn cors(request: Request, next: Next) -> Response {
    let mut response = if request.method() == Method::OPTIONS {
        (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{}").into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("X-Requested-With, Content-Type, Authorization, Date"));
    response
}

pub async fn unknown_endpoint() -> Response {
    ApiError::unrecognized(StatusCode::NOT_FOUND).into_response()
}

pub async fn unknown_method() -> Response {
    ApiError::unrecognized(StatusCode::METHOD_NOT_ALLOWED).into_response()
}

/// Request ids: a per-process random prefix and a counter, short and unique.
#[derive(Clone)]
pub struct SequentialRequestId {
    prefix: &'static str,
    counter: &'static AtomicU64,
}

impl Default for SequentialRequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl SequentialRequestId {
    pub fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let prefix = PREFIX.get_or_init(|| weft_core::crypto::token::random_string(6));
        Self { prefix, counter: &COUNTER }
    }
}

impl MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix)).ok().map(RequestId::new)
    }
}
