//! Routes declared by ruma request types. `RouteTable::add::<R>(group, handler)`
//! registers `handler` under every path in `R`'s metadata with `R`'s method;
//! before the handler runs, the request body is read within the size limit,
//! checked to be JSON, authenticated as `R`'s auth scheme says, and parsed
//! into `R`, every failure becoming the spec's errcode.
//!
//! Handlers are erased to one boxed type before they reach axum, so axum's
//! routing generics are instantiated once, not once per endpoint.

use std::{collections::BTreeMap, future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Instant};

use axum::{
    Router,
    extract::{ConnectInfo, RawPathParams, Request, State, rejection::RawPathParamsRejection},
    response::{IntoResponse, Response},
    routing::{MethodFilter, MethodRouter},
};
use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode, request::Parts};
use http_body_util::{BodyExt, Limited};
use ruma::api::{
    IncomingRequest, IncomingRequestExt, OutgoingResponseExt,
    error::{DeserializationError, FromHttpRequestError},
    path_builder::PathBuilder,
};

use weft_core::endpoint_groups::EndpointGroup;
use weft_services::services::AppState;

use super::{
    auth::{self, AuthKind, AuthRequirement, Sender},
    error::{ApiError, ApiResult},
};

/// A parsed request of type `R` with who sent it.
pub struct Ruma<R> {
    pub body: R,
    /// The authenticated caller; always set when `R` requires an access token.
    pub sender: Option<Sender>,
    /// The client's address, from the connection or a trusted `X-Forwarded-For`.
    pub client_addr: String,
    /// Method and path, which user-interactive auth sessions are bound to.
    pub action: String,
    /// The server that signed the request; always set when `R` requires
    /// server signatures.
    pub origin: Option<ruma::OwnedServerName>,
}

impl<R> Ruma<R> {
    pub fn sender(&self) -> ApiResult<&Sender> {
        self.sender.as_ref().ok_or_else(ApiError::missing_token)
    }

    /// The authenticated origin of a federation request.
    pub fn origin(&self) -> ApiResult<&ruma::ServerName> {
        self.origin.as_deref().ok_or_else(|| ApiError::unauthorized("Missing X-Matrix Authorization header"))
    }
}

/// Per-listener facts the request pipeline needs, set as an extension.
#[derive(Debug, Clone, Copy)]
pub struct ListenerContext {
    pub x_forwarded: bool,
}

type BoxFuture = Pin<Box<dyn Future<Output = Response> + Send>>;
/// Path parameters in path order, percent-decoded; `None` when one is not UTF-8.
type PathArgs = Option<Vec<String>>;

/// A trailing path parameter that may be empty (the spec's "state key may be
/// omitted"): such paths are also served without it and with a bare `/`.
const OPTIONAL_TRAILING_PARAM: &str = "/{state_key}";
type ErasedHandler = Arc<dyn Fn(AppState, PathArgs, Request) -> BoxFuture + Send + Sync>;

/// All routes of one API surface, merged per path before reaching axum.
#[derive(Default)]
pub struct RouteTable {
    routes: BTreeMap<&'static str, MethodRouter<AppState>>,
    /// What was registered, in order: `weft router` classifies requests by it.
    entries: Vec<RouteEntry>,
}

/// One registered method and path template (`{param}` syntax) with its group.
pub use weft_core::routes::RouteEntry;

impl RouteTable {
    pub fn add<R, H, F>(&mut self, group: EndpointGroup, handler: H) -> &mut Self
    where
        R: IncomingRequest + Send + 'static,
        R::Authentication: AuthRequirement,
        H: Fn(AppState, Ruma<R>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = ApiResult<R::OutgoingResponse>> + Send + 'static,
    {
        let empty_body = super::empty_body::allowed::<R>();
        let erased: ErasedHandler = Arc::new(move |state, path_args, request| {
            let handler = handler.clone();
            Box::pin(async move {
                let outcome = match prepare::<R>(&state, path_args, request, empty_body).await {
                    Ok(ruma) => handler(state, ruma).await.and_then(|response| {
                        response.try_into_http_response::<BytesMut>().map_err(|error| {
                            tracing::error!(%error, "could not serialise a response");
                            ApiError::internal()
                        })
                    }),
                    Err(error) => Err(error),
                };
                match outcome {
                    Ok(response) => response.map(|body| axum::body::Body::from(body.freeze())).into_response(),
                    Err(error) => error.into_response(),
                }
            })
        });
        for path in R::PATH_BUILDER.all_paths() {
            self.insert(path, R::METHOD, group, erased.clone(), false);
            if let Some(prefix) = path.strip_suffix(OPTIONAL_TRAILING_PARAM) {
                let with_slash: &'static str = Box::leak(format!("{prefix}/").into_boxed_str());
                self.insert(prefix, R::METHOD, group, erased.clone(), true);
                self.insert(with_slash, R::METHOD, group, erased.clone(), true);
            }
        }
        self
    }

    /// Every method and path registered so far, with its group.
    pub fn entries(&self) -> &[RouteEntry] {
        &self.entries
    }

    fn insert(&mut self, path: &'static str, method: Method, group: EndpointGroup, handler: ErasedHandler, empty_last_param: bool) {
        self.entries.push(RouteEntry { method: method.clone(), path, group });
        let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
        let label_method = method.as_str().to_owned();
        let route = move |State(state): State<AppState>, params: Result<RawPathParams, RawPathParamsRejection>, request: Request| {
            let handler = handler.clone();
            let label_method = label_method.clone();
            let path_args = params.ok().map(|params| {
                let mut args: Vec<String> = params.iter().map(|(_, value)| value.to_owned()).collect();
                if empty_last_param {
                    args.push(String::new());
                }
                args
            });
            async move {
                let started = Instant::now();
                let forward_to = match request.extensions().get::<crate::forward::Forwarded>() {
                    Some(_) => None,
                    None => crate::forward::target(&state, group, request.method()),
                };
                let response = match forward_to {
                    Some(instance) => {
                        let addr = client_addr(request.headers(), request.extensions());
                        crate::forward::forward(&state, &instance, addr, request).await
                    }
                    None => handler(state, path_args, request).await,
                };
                weft_core::telemetry::record_request(group.as_str(), &label_method, response.status(), started.elapsed());
                response
            }
        };
        let entry = self.routes.remove(path).unwrap_or_default();
        self.routes.insert(path, entry.on(filter, route));
    }

    pub fn into_router(self) -> Router<AppState> {
        self.routes.into_iter().fold(Router::new(), |router, (path, methods)| router.route(path, methods))
    }
}

async fn prepare<R>(state: &AppState, path_args: PathArgs, request: Request, empty_body: bool) -> ApiResult<Ruma<R>>
where
    R: IncomingRequest,
    R::Authentication: AuthRequirement,
{
    let path_args = path_args.ok_or_else(|| ApiError::invalid_param("A path parameter is not valid UTF-8"))?;
    let incoming = read_request(state, request, <R::Authentication as AuthRequirement>::KIND, empty_body).await?;
    let http_request = http::Request::from_parts(incoming.parts, incoming.body.as_ref());
    let path_args: Vec<&str> = path_args.iter().map(String::as_str).collect();
    let body = match super::parse_guard::parse(|| R::try_from_http_request(http_request, &path_args)) {
        Some(result) => result.map_err(request_error)?,
        None => {
            tracing::warn!(action = %incoming.action, "the request parser panicked on malformed input");
            return Err(ApiError::bad_json("Malformed request body"));
        }
    };
    Ok(Ruma { body, sender: incoming.sender, client_addr: incoming.client_addr, action: incoming.action, origin: incoming.origin })
}

struct Incoming {
    parts: Parts,
    body: Bytes,
    sender: Option<Sender>,
    origin: Option<ruma::OwnedServerName>,
    client_addr: String,
    action: String,
}

/// The most a request may send before it is authenticated (`/login`,
/// `/register` and the like need a few hundred bytes).
const UNAUTHENTICATED_BODY_LIMIT: u64 = 64 * 1024;

/// Everything before typed parsing, kept out of the generic code. The caller
/// is authenticated before the body is read, so a request without a valid
/// token costs neither memory nor time. `empty_body`: whether the endpoint
/// takes a `POST` or `PUT` without a body.
async fn read_request(state: &AppState, request: Request, auth_kind: AuthKind, empty_body: bool) -> ApiResult<Incoming> {
    let (parts, body) = request.into_parts();
    let xmatrix = match auth_kind {
        AuthKind::Server => Some(state.federation.authorization(&parts.headers, &state.server_name).map_err(inbound_error)?),
        _ => None,
    };
    let (client_addr, sender, limit) = before_body(state, &parts, auth_kind).await?;
    let read = tokio::time::timeout(state.config.http_timeouts.body.0, Limited::new(body, limit as usize).collect());
    let body = read.await.map_err(|_| ApiError::body_timeout())?.map_err(|error| {
        if error.is::<http_body_util::LengthLimitError>() { ApiError::too_large(limit) } else { ApiError::bad_json("Could not read the request body") }
    })?;
    let mut body = body.to_bytes();
    if body.is_empty() && matches!(parts.method, Method::POST | Method::PUT) {
        if !empty_body {
            return Err(ApiError::not_json("Content not JSON."));
        }
        body = Bytes::from_static(b"{}");
    }
    if !body.is_empty() && matches!(parts.method, Method::POST | Method::PUT) {
        serde_json::from_slice::<serde::de::IgnoredAny>(&body).map_err(|_| ApiError::not_json("Content not JSON."))?;
        // Every request body of the API is an object; serde would read an
        // array's items as the fields in order.
        if body.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_json("Content must be a JSON object."));
        }
        refuse_nul_in_json(&body)?;
    }
    // The signature covers the body as sent.
    let origin = match xmatrix {
        Some(xmatrix) => {
            let signed = http::Request::builder().method(parts.method.clone()).uri(parts.uri.clone()).body(body.as_ref()).map_err(|_| ApiError::internal())?;
            Some(state.federation.verify(&xmatrix, &signed, &state.server_name).await.map_err(inbound_error)?)
        }
        None => None,
    };
    if origin.is_none() && !body.is_empty() {
        body = super::legacy_fields::upgrade_auth_user(body);
    }
    let action = format!("{} {}", parts.method, parts.uri.path());
    Ok(Incoming { parts, body, sender, origin, client_addr, action })
}

pub(crate) fn inbound_error(error: weft_federation::inbound::InboundError) -> ApiError {
    if error.is_forbidden() { ApiError::forbidden(error.to_string()) } else { ApiError::unauthorized(error.to_string()) }
}

/// U+0000 cannot be stored in PostgreSQL text, and no identifier or text of
/// the protocol needs it: it is refused everywhere, on both engines alike,
/// before anything is written. In a URI it can only appear as `%00`.
fn refuse_nul_in_uri(uri: &http::Uri) -> ApiResult<()> {
    let encoded_nul = |part: &str| part.as_bytes().windows(3).any(|w| w == b"%00");
    if encoded_nul(uri.path()) || uri.query().is_some_and(encoded_nul) {
        return Err(ApiError::invalid_param("U+0000 is not allowed in a path or query parameter"));
    }
    Ok(())
}

/// Checks everything a request's head decides, before its body is read:
/// the client's address, who sent it, and how large its body may be.
async fn before_body(state: &AppState, parts: &Parts, auth_kind: AuthKind) -> ApiResult<(String, Option<Sender>, u64)> {
    refuse_nul_in_uri(&parts.uri)?;
    let client_addr = client_addr(&parts.headers, &parts.extensions);
    // Another server's X-Matrix header on an endpoint without authentication
    // (`version`, the key endpoints) is not a malformed access token.
    let x_matrix = || parts.headers.get(http::header::AUTHORIZATION).and_then(|value| value.to_str().ok()).is_some_and(|value| value.starts_with("X-Matrix"));
    let token = match auth_kind {
        AuthKind::Server => None,
        AuthKind::None if x_matrix() => None,
        _ => auth::access_token(&parts.headers, parts.uri.query())?,
    };
    let sender = match (auth_kind, token) {
        (AuthKind::None | AuthKind::Server, _) => None,
        (AuthKind::Required, None) => return Err(ApiError::missing_token()),
        (AuthKind::Optional, None) => None,
        (AuthKind::Required | AuthKind::Optional, Some(token)) => Some(auth::authenticate(state, &token, &client_addr, parts.uri.query()).await?),
        (AuthKind::AppserviceOptional, None) => None,
        (AuthKind::AppserviceOptional, Some(token)) => Some(auth::authenticate(state, &token, &client_addr, None).await?),
    };
    let limit = match (&sender, auth_kind) {
        (Some(_), _) | (None, AuthKind::Server) => state.config.max_request_body_size(),
        (None, _) => state.config.max_request_body_size().min(UNAUTHENTICATED_BODY_LIMIT),
    };
    let declared = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::too_large(limit));
    }
    Ok((client_addr, sender, limit))
}

/// In valid JSON a NUL can only be written as the escape `\u0000`; a body
/// without that text is accepted without a second parse.
pub(crate) fn refuse_nul_in_json(body: &[u8]) -> ApiResult<()> {
    if !body.windows(6).any(|w| w == b"\\u0000") {
        return Ok(());
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| ApiError::not_json("Content not JSON."))?;
    if weft_core::json::contains_nul(&value) {
        return Err(ApiError::bad_json("U+0000 is not allowed in strings"));
    }
    Ok(())
}

/// The one place that decides a client's address: the connection's peer, or,
/// on a listener with `x_forwarded`, the rightmost `X-Forwarded-For` entry.
/// That entry is the one the trusted proxy in front added; entries to its
/// left came from the client (a proxy that appends keeps them) and are
/// never believed.
pub(crate) fn client_addr(headers: &http::HeaderMap, extensions: &http::Extensions) -> String {
    let trust_forwarded = extensions.get::<ListenerContext>().is_some_and(|context| context.x_forwarded);
    if trust_forwarded && let Some(last) = rightmost_forwarded(headers) {
        return last;
    }
    match extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(address)) => address.ip().to_string(),
        None => "unix".to_owned(),
    }
}

/// The last entry of the last `X-Forwarded-For` header (a proxy may add its
/// own header line rather than extend the client's).
fn rightmost_forwarded(headers: &http::HeaderMap) -> Option<String> {
    let last_header = headers.get_all("x-forwarded-for").iter().next_back()?.to_str().ok()?;
    last_header.rsplit(',').next().map(str::trim).filter(|entry| !entry.is_empty()).map(str::to_owned)
}

fn request_error(error: FromHttpRequestError) -> ApiError {
    match error {
        FromHttpRequestError::MethodMismatch { .. } => ApiError::unrecognized(StatusCode::METHOD_NOT_ALLOWED),
        FromHttpRequestError::Deserialization(error) => match error {
            DeserializationError::Json(error) => {
                let message = error.to_string();
                if message.starts_with("missing field") { ApiError::missing_param(message) } else { ApiError::bad_json(message) }
            }
            DeserializationError::Query(error) => {
                let message = error.to_string();
                if message.starts_with("missing field") { ApiError::missing_param(message) } else { ApiError::invalid_param(message) }
            }
            DeserializationError::Ident(error) => ApiError::invalid_param(error.to_string()),
            other => ApiError::bad_json(other.to_string()),
        },
        _ => ApiError::bad_json("Malformed request"),
    }
}
