//! The rule every background consumer follows (the user directory today;
//! pushers, appservices and federation senders as they come): one item that
//! cannot be processed must not stop the stream behind it.
//!
//! An item is tried a few times. If it still fails while the database
//! answers, the fault is the item's (a poison pill): it is logged with its
//! reason, counted in `weft_background_items_skipped_total{job}` and skipped.
//! If the database does not answer, the fault is the database's, and the
//! error goes back to the consumer, which retries later from its saved
//! position, losing nothing.
//!
//! A consumer writes its position with what it queued; a stretch that
//! queued nothing is written only now and then (`PositionWrites`): a restart
//! reads it again and queues nothing, and a server whose streams concern no
//! consumer pays no write per row (on SQLite every write waits for the one
//! lock).
//!
//! May call: `weft_storage` (a health probe), metrics.

use std::{
    fmt::Display,
    future::Future,
    time::{Duration, Instant},
};

use weft_storage::Storage;

/// Tries per item before it is judged a poison pill.
const ATTEMPTS: u32 = 3;
/// The pause between two tries of one item.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The most positions, or the longest time, a position that queued nothing
/// goes unwritten.
pub const UNWRITTEN_ROWS: i64 = 1000;
pub const UNWRITTEN_FOR: Duration = Duration::from_secs(10);

/// When a consumer last wrote its position on one stream.
#[derive(Debug, Default)]
pub struct PositionWrites {
    at: i64,
    when: Option<Instant>,
}

impl PositionWrites {
    /// Whether to write `reached` now: with something queued, always; else
    /// once `UNWRITTEN_ROWS` or `UNWRITTEN_FOR` have gone by unwritten.
    pub fn due(&self, reached: i64, queued: bool) -> bool {
        queued || reached - self.at >= UNWRITTEN_ROWS || self.when.is_none_or(|when| when.elapsed() >= UNWRITTEN_FOR)
    }

    /// `reached` was written.
    pub fn wrote(&mut self, reached: i64) {
        *self = Self { at: reached, when: Some(Instant::now()) };
    }
}

/// What happened to one item.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Processed,
    Skipped,
}

/// Runs `handle` for the item described by `item` under the rule above.
pub async fn process_item<F, Fut, E>(job: &'static str, item: &str, storage: &Storage, mut handle: F) -> Result<Outcome, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let mut attempt = 1;
    loop {
        let error = match handle().await {
            Ok(()) => return Ok(Outcome::Processed),
            Err(error) => error,
        };
        if storage.ping().await.is_err() {
            return Err(error);
        }
        if attempt >= ATTEMPTS {
            tracing::error!(job, item, %error, attempts = attempt, "skipping an item that cannot be processed");
            metrics::counter!("weft_background_items_skipped_total", "job" => job).increment(1);
            return Ok(Outcome::Skipped);
        }
        tracing::warn!(job, item, %error, attempt, "an item failed; trying it again");
        attempt += 1;
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    async fn storage() -> Storage {
        Storage::connect_url("sqlite::memory:", Some(1), Some(1), "main").await.expect("in-memory SQLite")
    }

    #[tokio::test]
    async fn an_item_that_keeps_failing_is_skipped_after_its_tries() {
        let storage = storage().await;
        let tries = AtomicU32::new(0);
        let outcome = process_item("test", "item 1", &storage, || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>("bad item")
        })
        .await;
        assert_eq!(outcome, Ok(Outcome::Skipped));
        assert_eq!(tries.load(Ordering::SeqCst), ATTEMPTS);
    }

    #[tokio::test]
    async fn an_item_that_fails_once_is_processed_on_a_later_try() {
        let storage = storage().await;
        let tries = AtomicU32::new(0);
        let outcome =
            process_item("test", "item 2", &storage, || async { if tries.fetch_add(1, Ordering::SeqCst) == 0 { Err("transient") } else { Ok(()) } }).await;
        assert_eq!(outcome, Ok(Outcome::Processed));
    }

    #[tokio::test]
    async fn a_failure_while_the_database_is_away_goes_back_to_the_consumer() {
        let storage = storage().await;
        storage.close().await;
        let outcome = process_item("test", "item 3", &storage, || async { Err::<(), _>("database closed") }).await;
        assert_eq!(outcome, Err("database closed"));
    }
}
