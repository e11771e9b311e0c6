//! `/.well-known/matrix/client`: where clients find this server's client
//! API, served as Synapse serves it when `serve_client_wellknown` is set:
//! `m.homeserver.base_url` is `public_baseurl` (Synapse's default,
//! `https://<server_name>/`, when unset), plus
//! `extra_well_known_client_content`. Otherwise a 404.
//!
//! `/.well-known/matrix/server` (with `serve_server_wellknown`): other
//! servers are sent to port 443 of the server name's host (or the server
//! name's own port), as Synapse does.

use axum::{Json, extract::State, response::IntoResponse};
use serde_json::{Value, json};

use weft_services::services::AppState;

use super::error::ApiError;

pub async fn client(State(state): State<AppState>) -> axum::response::Response {
    let config = &state.config;
    if !config.serve_client_wellknown {
        return ApiError::not_found(".well-known not available").into_response();
    }
    let base_url = config.public_baseurl.clone().unwrap_or_else(|| format!("https://{}/", config.server_name()));
    let mut body = json!({"m.homeserver": {"base_url": base_url}});
    if let Value::Object(fields) = &mut body {
        fields.extend(config.extra_well_known_client_content.clone());
    }
    Json(body).into_response()
}

pub async fn server(State(state): State<AppState>) -> axum::response::Response {
    if !state.config.serve_server_wellknown {
        return ApiError::not_found(".well-known not available").into_response();
    }
    let name = &state.server_name;
    let delegated = format!("{}:{}", name.host(), name.port().unwrap_or(443));
    Json(json!({"m.server": delegated})).into_response()
}
