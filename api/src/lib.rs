//! Weft's HTTP API (`weft-api`): Matrix client and federation endpoints,
//! Synapse's admin registration, health and metrics, assembled per listener
//! from the resources it serves, and the listeners that serve them
//! (`server`).
//!
//! Owns: the request pipeline (body limits, JSON checks, authentication,
//! parsing into ruma types) and the mapping of every failure to a Matrix
//! error, and forwarding a whole request to the writer of a stream this
//! instance does not write (`forward`). Handlers call `weft_services` and
//! `weft_storage`; nothing below this layer builds an HTTP response.
//!
//! The map: `ruma_route` (the typed request pipeline), `auth`, `uia`,
//! `error`; the endpoints in `client`, `admin`, `federation`, `media`, `sso`,
//! `well_known`, `ops`; the internal endpoints other instances call
//! (`replication`, `forward`); `route_list` (every route with its endpoint
//! group, checked against `weft_core::routes`); `server` (binding,
//! serving through `weft_http`, background jobs, shutdown).
//!
//! May call: `weft_core`, `weft_storage`, `weft_services`, `weft_http`.

pub mod admin;
pub mod auth;
pub mod client;
mod empty_body;
pub mod error;
pub mod federation;
pub mod forward;
#[cfg(test)]
mod input_properties;
pub(crate) mod legacy_fields;
pub mod media;
pub mod middleware;
pub mod ops;
mod parse_guard;
pub mod replication;
pub mod route_list;
pub mod ruma_route;
pub mod server;
pub mod session;
pub mod sso;
pub mod uia;
pub mod well_known;

use axum::{Extension, Router, routing::get};
use tower_http::{
    request_id::{PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};

use ruma_route::{ListenerContext, RouteTable};

use weft_core::config::{ListenerConfig, Resource};
use weft_services::services::AppState;

/// The client API's routes alone, for running forwarded requests.
pub(crate) fn client_routes() -> Router<AppState> {
    let mut table = RouteTable::default();
    client::routes(&mut table);
    admin::routes(&mut table);
    table.into_router()
}

/// The router of one listener: the endpoints of the resources it names.
pub fn router(state: AppState, listener: &ListenerConfig) -> Router {
    let mut table = RouteTable::default();
    if listener.serves(Resource::Client) {
        client::routes(&mut table);
        admin::routes(&mut table);
    }
    let serves_client = listener.serves(Resource::Client);
    if listener.serves(Resource::Federation) || listener.serves(Resource::Keys) {
        federation::key_routes(&mut table);
    }
    if listener.serves(Resource::Federation) {
        federation::federation_routes(&mut table);
    }
    let mut router = table.into_router();
    let serves_media = [Resource::Client, Resource::Federation, Resource::Media].into_iter().any(|resource| listener.serves(resource));
    let serves_federation_media = listener.serves(Resource::Federation) || listener.serves(Resource::Media);
    if serves_media && let Some(media) = media::routes(&state, serves_federation_media) {
        router = router.merge(media);
    }
    if listener.serves(Resource::Replication) {
        let internal = replication::routes().layer(axum::middleware::from_fn_with_state(state.clone(), replication::authenticate));
        router = router.merge(internal);
    }
    if serves_client {
        router = router.route("/.well-known/matrix/client", get(well_known::client)).merge(sso::routes());
    }
    if serves_client || listener.serves(Resource::Federation) {
        router = router.route("/.well-known/matrix/server", get(well_known::server));
    }
    if listener.serves(Resource::Health) {
        router = router.route("/health", get(ops::health));
    }
    if listener.serves(Resource::Metrics) {
        router = router.route("/metrics", get(ops::metrics));
    }

    let request_id = http::HeaderName::from_static(middleware::REQUEST_ID_HEADER);
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &http::Request<_>| {
            let id = request.headers().get(middleware::REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("-");
            // The path only: a query may carry an access token.
            tracing::info_span!("request", id = %id, method = %request.method(), path = %request.uri().path())
        })
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO));
    router
        .fallback(middleware::unknown_endpoint)
        .method_not_allowed_fallback(middleware::unknown_method)
        .with_state(state)
        .layer(axum::middleware::from_fn(middleware::cors))
        .layer(Extension(ListenerContext { x_forwarded: listener.x_forwarded }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(trace)
        .layer(SetRequestIdLayer::new(request_id, middleware::SequentialRequestId::new()))
}
