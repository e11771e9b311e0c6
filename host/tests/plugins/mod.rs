//! The plugin runtime: adversarial components (each gives the configured
//! outcome, a log line and a metric, and leaves ordinary calls alone), the
//! sandbox and its capabilities, limits, switching off and back on, the
//! configuration checks, the call sites through a real server, the
//! allow-list rules, the key-value store in the database, the
//! capability-gated homeserver view, and plugins pinned to some instances
//! of a real deployment.
//!
//! The components are built by `tests/run.sh` for wasm32-wasip2 (the guest
//! `misbehave` in `guests/`, and the reference plugin `spam-rules`).

mod adversarial;
pub(crate) mod capture;
mod cli;
mod config;
mod egress;
mod endpoints;
mod homeserver;
mod https;
mod kv;
mod pinning;
mod roles;
mod rooms;
mod sandbox;
mod warm;

use std::path::PathBuf;

use weft::plugins::spam::{SpamCall, SpamEvent};

/// The built component of guest crate `crate_name` (`misbehave`, `spam_rules`).
pub fn guest(crate_name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned();
    let file = format!("wasm32-wasip2/release/{crate_name}.wasm");
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join(&file));
    }
    candidates.push(root.join("host/tests/plugins/guests").join(crate_name).join("target").join(&file));
    candidates.push(root.join("plugins").join(crate_name.replace('_', "-")).join("target").join(&file));
    candidates
        .into_iter()
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("{file} is not built: run tests/run.sh (it builds the guests with `cargo build --release --target wasm32-wasip2`)"))
}

/// A message event for `check-event-for-spam`.
pub fn message(body: &str) -> SpamCall {
    let event = SpamEvent::from_json(serde_json::json!({
        "event_id": "$abc",
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": body},
    }))
    .expect("a valid event");
    SpamCall::CheckEventForSpam { event }
}

/// The value of a Prometheus sample whose line contains every `labels` part.
pub fn metric(name: &str, labels: &[&str]) -> Option<f64> {
    let text = weft::telemetry::metrics_handle().render();
    text.lines()
        .filter(|line| line.starts_with(name) && (line[name.len()..].starts_with('{') || line[name.len()..].starts_with(' ')))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}
