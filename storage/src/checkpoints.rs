//! SQLite's write-ahead log checkpoints, moved off the request path.
//!
//! With WAL and `synchronous = NORMAL` a commit only appends to the log; the
//! checkpoint that copies the log back into the database file is what
//! flushes to disk. Left to SQLite, it runs inside whichever commit crosses
//! 1,000 pages, and that request waits for the flushes (several
//! milliseconds here). So connections do not checkpoint on commit
//! (`wal_autocheckpoint = 0`, set in `dialect`) and this task does, passively
//! (never waiting for readers or the writer), every `EVERY`. The last
//! connection to close checkpoints what is left, as SQLite always does.
//!
//! May call: the pool (one `PRAGMA wal_checkpoint` at a time).

use std::{sync::Arc, time::Duration};

use sqlx::AnyPool;
use tokio::task::AbortHandle;

/// How often the log is copied back into the database.
const EVERY: Duration = Duration::from_millis(500);

/// Stops the checkpoint task when the last `Storage` sharing it is dropped.
#[derive(Debug)]
pub(super) struct Checkpointer(AbortHandle);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts checkpointing `pool`'s database until the pool is closed or the
/// returned handle's last clone is dropped.
pub(super) fn start(pool: AnyPool) -> Arc<Checkpointer> {
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if pool.is_closed() {
                return;
            }
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                metrics::counter!("weft_sqlite_checkpoint_failures_total").increment(1);
                tracing::warn!(%error, "a SQLite checkpoint failed; trying again later");
            }
        }
    });
    Arc::new(Checkpointer(task.abort_handle()))
}
