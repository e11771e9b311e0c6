//! `/health` and `/metrics`, for load balancers and Prometheus.

use axum::{extract::State, response::IntoResponse};
use http::header;

use weft_core::telemetry;
use weft_services::services::AppState;

pub async fn health() -> &'static str {
    "OK"
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let (size, idle) = state.storage.pool_usage();
    telemetry::record_pool(size, idle);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], telemetry::metrics_handle().render())
}
