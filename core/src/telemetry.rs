//! Logs and metrics. Logs go through `tracing`, plain or JSON, with a request
//! id on every request span. Metrics use the `metrics` facade with a
//! Prometheus recorder.
//!
//! The recorder is process-global (the facade's design, and Prometheus scrapes
//! a process), the one exception to "no global state in the host": two
//! instances in one test process share their counters.

use std::{sync::OnceLock, time::Duration};

use http::StatusCode;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogFormat, LoggingConfig};

/// Installs the global log subscriber; later calls (tests) do nothing.
pub fn init_logging(config: &LoggingConfig) {
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&config.level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match config.format {
        LogFormat::Plain => registry.with(fmt::layer().with_target(true)).try_init(),
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true).with_current_span(true)).try_init(),
    };
}

/// Replication lag is sub-millisecond when healthy, so its buckets are fine
/// enough to read a p99 against a 5 ms target.
const REPLICATION_LAG_BUCKETS: [f64; 18] =
    [0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0];

/// The process's Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
                .expect("static histogram buckets are valid")
                .set_buckets_for_metric(Matcher::Full("weft_replication_lag_seconds".into()), &REPLICATION_LAG_BUCKETS)
                .expect("static histogram buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case ours
            // renders nothing: acceptable for embedders who bring their own.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub fn record_request(group: &'static str, method: &str, status: StatusCode, elapsed: Duration) {
    let status = status.as_u16().to_string();
    metrics::counter!("weft_http_requests_total", "group" => group, "method" => method.to_owned(), "status" => status).increment(1);
    metrics::histogram!("weft_http_request_duration_seconds", "group" => group).record(elapsed.as_secs_f64());
}

pub fn record_pool(size: u32, idle: usize) {
    metrics::gauge!("weft_db_pool_connections", "state" => "open").set(f64::from(size));
    metrics::gauge!("weft_db_pool_connections", "state" => "idle").set(idle as f64);
    metrics::gauge!("weft_db_pool_connections", "state" => "in_use").set(f64::from(size).max(idle as f64) - idle as f64);
}
