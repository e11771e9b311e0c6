//! Positions announced on the bus (`RDATA`, `POSITION`) are claims: anyone who
//! can publish on Redis can make one, and a position moved too far hides
//! every event below it from `/sync` until restart. So a writer's position
//! moves on an announcement only once the database confirms it: no writer can
//! have persisted past the last id handed out on the stream (its sequence,
//! shared by the stream's writers). A claim past it is refused, logged with
//! the reason and counted in `weft_replication_positions_refused_total`.
//!
//! The highest id the database confirmed is remembered per stream, so only a
//! claim past everything confirmed so far costs a query (one read of the
//! sequence). Claims for instances that do not write the stream, or that do
//! not move the writer forward, are ignored before that. `typing` is not in
//! the database; the handler never applies a jump in it but fetches the
//! state from its writer over the internal API, which needs the secret.

use std::sync::atomic::{AtomicI64, Ordering};

use weft_storage::Stream;

use crate::services::Services;

#[derive(Debug, Default)]
pub struct Confirmed([AtomicI64; Stream::COUNT]);

/// Moves `instance`'s position on `stream` to `position`, as announced on
/// the bus, if the database confirms it; false when the claim was refused.
pub(super) async fn apply(services: &Services, stream: Stream, instance: &str, position: i64) -> bool {
    let writes = services.replication.writers().index_of(stream, instance).is_some();
    if !writes || position <= services.notifier.writer_position(stream, instance) {
        return true;
    }
    if stream.is_in_database() && !confirmed(services, stream, instance, position).await {
        return false;
    }
    super::advance_position(&services.notifier, stream, instance, position);
    true
}

async fn confirmed(services: &Services, stream: Stream, instance: &str, position: i64) -> bool {
    let known = &services.replication.confirmed.0[stream.index()];
    if position <= known.load(Ordering::Relaxed) {
        return true;
    }
    let reason = match services.storage.last_stream_id(stream).await {
        Ok(last) => {
            known.fetch_max(last, Ordering::Relaxed);
            if position <= last {
                return true;
            }
            format!("no writer has persisted past {last}")
        }
        // Refused for now: the writer announces its position again every second.
        Err(error) => format!("the database could not confirm it: {error}"),
    };
    tracing::warn!(stream = stream.as_str(), writer = instance, position, %reason, "replication: refused a position announced on the bus");
    metrics::counter!("weft_replication_positions_refused_total", "stream" => stream.as_str(), "writer" => instance.to_owned()).increment(1);
    false
}
