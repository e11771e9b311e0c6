//! One pusher's deliveries, in order, from its stored position: each pass
//! reads the pusher (a deleted pusher stops), its notifications after its
//! position up to the events stream's and the user's badge, and hands the
//! notifications one at a time to the
//! pusher plugins (`services.pushers.notify`), writing its progress every
//! few deliveries (`Progress`) and at the end of the pass, so that a
//! restart resumes where it stopped (a crash repeats at most those few). Then, when a read
//! receipt asked for it and the badge changed, a badge-only update.
//!
//! As Synapse's HTTP pusher: a failed delivery is retried after 1 s,
//! doubling up to an hour (or after the plugin's `after_ms`), and new
//! events do not wake a pusher early; a notification still failing more
//! than 24 hours after the failures began is skipped; an answer rejecting
//! the pusher's own pushkey deletes the pusher; other rejected pushkeys are
//! logged. `push.jitter_delay` holds each push back a random time after its
//! event was sent.
//!
//! May call: `weft_storage` (the pusher's row and work), `notification`,
//! `services.pushers` (the plugins, here or remote), metrics.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rand::Rng;
use tokio::sync::Notify;

use weft_core::lifecycle::{Stop, stopped};
use weft_plugin_runtime::pusher::{Delivery, MAX_RETRY_AFTER_MS};
use weft_storage::{PendingPush, PusherId, StorageError, StoredPusher, Stream, now_ms};

use super::notification::{self, ContextCache, Shape};
use crate::services::Services;

/// The first wait after a failure; it doubles with each failure in a row.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How long a notification may keep failing before it is skipped.
pub const GIVE_UP_AFTER_MS: i64 = 24 * 3600 * 1000;
/// Notifications read per query.
const BATCH: i64 = 100;
/// The pause after the database failed a pass.
const DATABASE_RETRY: Duration = Duration::from_secs(5);

/// The state a pusher keeps between passes.
#[derive(Debug)]
pub struct PusherWorker {
    pub id: PusherId,
    wake: Notify,
    badge_wanted: AtomicBool,
    /// The badge last sent (with a notification or alone).
    last_badge: Mutex<Option<u64>>,
}

/// How a pass ended.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    /// Everything there was is delivered.
    Done,
    /// The pusher no longer exists (deleted, or rejected by its gateway).
    Gone,
    /// A delivery failed: wait this long before the next pass.
    Failed(Option<Duration>),
}

impl PusherWorker {
    pub fn new(id: PusherId) -> Self {
        Self { id, wake: Notify::new(), badge_wanted: AtomicBool::new(false), last_badge: Mutex::new(None) }
    }

    /// New notifications may be waiting (a pusher backing off ignores it
    /// until its wait is over).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A read receipt moved: send the badge if it changed.
    pub fn wake_for_badge(&self) {
        self.badge_wanted.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn set_last_badge(&self, badge: u64) -> Option<u64> {
        self.last_badge.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).replace(badge)
    }

    /// Passes until the pusher is gone or `stop`; a delivery under way when
    /// the stop comes is finished.
    pub async fn run(&self, services: &Services, contexts: &ContextCache, mut stop: Stop) {
        let mut backoff: Option<Duration> = None;
        loop {
            let waited = match self.pass(services, contexts).await {
                Ok(Pass::Gone) => return,
                Ok(Pass::Done) => {
                    backoff = None;
                    None
                }
                Ok(Pass::Failed(asked)) => {
                    let next = backoff.map_or(FIRST_BACKOFF, |last| (last * 2).min(MAX_BACKOFF));
                    backoff = Some(next);
                    Some(asked.unwrap_or(next))
                }
                Err(error) => {
                    tracing::warn!(%error, user_id = %self.id.user_id, app_id = %self.id.app_id, "a pusher could not read its work; retrying");
                    Some(DATABASE_RETRY)
                }
            };
            match waited {
                None => tokio::select! {
                    () = self.wake.notified() => {}
                    () = stopped(&mut stop) => return,
                },
                Some(wait) => {
                    let in_backoff = metrics::gauge!("weft_pushers_in_backoff");
                    in_backoff.increment(1.0);
                    let interrupted = tokio::select! {
                        () = tokio::time::sleep(wait) => false,
                        () = stopped(&mut stop) => true,
                    };
                    in_backoff.decrement(1.0);
                    if interrupted {
                        return;
                    }
                }
            }
        }
    }

    async fn pass(&self, services: &Services, contexts: &ContextCache) -> Result<Pass, StorageError> {
        let storage = &services.storage;
        let Some(pusher) = storage.pusher(self.id.key()).await? else { return Ok(Pass::Gone) };
        let upto = services.notifier.position(Stream::Events);
        let mut position = pusher.last_stream_ordering;
        // Read once a pass: every notification of the pass is already among
        // the unread it counts (a receipt during the pass asks for a badge
        // update after it).
        let mut badge = None;
        let mut progress = Progress { failing_since: pusher.failing_since_ts, ..Progress::default() };
        loop {
            let pending = storage.pending_pushes(&pusher.user_id, position, upto, BATCH).await?;
            for push in &pending {
                let badge = match badge {
                    Some(badge) => badge,
                    None => *badge.insert(notification::badge(storage, &pusher.user_id, services.config.push.group_unread_count_by_room).await?),
                };
                match self.deliver(services, contexts, &pusher, push, badge, &mut progress).await? {
                    Step::Next => progress.failing_since = None,
                    Step::Stop(pass) => return Ok(pass),
                }
                if progress.due() && !self.record(storage, &mut progress).await? {
                    return Ok(Pass::Gone);
                }
                position = push.stream_ordering;
            }
            if (pending.len() as i64) < BATCH {
                break;
            }
        }
        if !self.record(storage, &mut progress).await? {
            return Ok(Pass::Gone);
        }
        if self.badge_wanted.swap(false, Ordering::SeqCst) {
            self.send_badge(services, &pusher).await?;
        }
        Ok(Pass::Done)
    }

    /// Delivers one notification and records what came of it.
    async fn deliver(
        &self,
        services: &Services,
        contexts: &ContextCache,
        pusher: &StoredPusher,
        push: &PendingPush,
        badge: u64,
        progress: &mut Progress,
    ) -> Result<Step, StorageError> {
        let storage = &services.storage;
        let key = self.id.key();
        let Some(context) = contexts.get(storage, &push.event_id).await? else {
            // The event is gone (purged): nothing to send, as Synapse.
            if !self.record(storage, progress).await? {
                return Ok(Step::Stop(Pass::Gone));
            }
            return Ok(if storage.record_pusher_progress(key, push.stream_ordering).await? { Step::Next } else { Step::Stop(Pass::Gone) });
        };
        let push_config = &services.config.push;
        let shape = Shape { include_content: push_config.include_content };
        let notification = notification::for_event(pusher, push, &context, badge, shape);
        if let Some(jitter) = push_config.jitter_delay.filter(|jitter| !jitter.0.is_zero()) {
            let delay_ms = rand::thread_rng().gen_range(1..=jitter.0.as_millis().max(1) as i64);
            let wait = context.event.origin_server_ts + delay_ms - now_ms();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
        }
        let delivery = services.pushers.notify(notification).await;
        let answered = now_ms();
        metrics::histogram!("weft_push_delivery_latency_seconds").record((answered - push.ts).max(0) as f64 / 1000.0);
        match delivery {
            Delivery::Rejected { .. } if delivery.rejects(&pusher.pushkey) => {
                metrics::counter!("weft_push_notifications_rejected_total").increment(1);
                tracing::info!(user_id = %pusher.user_id, app_id = %pusher.app_id, "the push gateway rejected the pushkey: deleting the pusher");
                storage.delete_pusher(key).await?;
                Ok(Step::Stop(Pass::Gone))
            }
            Delivery::Delivered | Delivery::Rejected { .. } => {
                if let Delivery::Rejected { pushkeys } = &delivery {
                    tracing::info!(user_id = %pusher.user_id, app_id = %pusher.app_id, ?pushkeys, "the push gateway rejected other pushkeys");
                }
                metrics::counter!("weft_push_notifications_sent_total").increment(1);
                self.set_last_badge(badge);
                progress.delivered(push.stream_ordering, answered);
                Ok(Step::Next)
            }
            Delivery::Retry { after_ms, reason } => {
                metrics::counter!("weft_push_notifications_failed_total").increment(1);
                if !self.record(storage, progress).await? {
                    return Ok(Step::Stop(Pass::Gone));
                }
                let since = progress.failing_since.unwrap_or(answered);
                if answered - since > GIVE_UP_AFTER_MS {
                    metrics::counter!("weft_push_notifications_skipped_total").increment(1);
                    tracing::warn!(user_id = %pusher.user_id, app_id = %pusher.app_id, event_id = %push.event_id, %reason,
                        "a push has failed for more than 24 hours: skipping it");
                    let exists = storage.record_pusher_skipped(key, push.stream_ordering).await?;
                    return Ok(if exists { Step::Next } else { Step::Stop(Pass::Gone) });
                }
                tracing::info!(user_id = %pusher.user_id, app_id = %pusher.app_id, event_id = %push.event_id, %reason, "a push failed; backing off");
                if !storage.record_pusher_failure(key, answered).await? {
                    return Ok(Step::Stop(Pass::Gone));
                }
                let asked = after_ms.map(|ms| Duration::from_millis(ms.min(MAX_RETRY_AFTER_MS)));
                Ok(Step::Stop(Pass::Failed(asked)))
            }
        }
    }

    /// Writes the deliveries not yet recorded; false when the pusher is gone.
    async fn record(&self, storage: &weft_storage::Storage, progress: &mut Progress) -> Result<bool, StorageError> {
        let Some((stream_ordering, answered)) = progress.upto.take() else { return Ok(true) };
        progress.count = 0;
        progress.since = None;
        storage.record_pusher_success(self.id.key(), stream_ordering, answered).await
    }

    /// The badge-only update after a read receipt, when the badge changed
    /// (a failure is only logged: the next notification carries the badge).
    async fn send_badge(&self, services: &Services, pusher: &StoredPusher) -> Result<(), StorageError> {
        let badge = notification::badge(&services.storage, &pusher.user_id, services.config.push.group_unread_count_by_room).await?;
        if self.set_last_badge(badge) == Some(badge) {
            return Ok(());
        }
        match services.pushers.notify(notification::badge_update(pusher, badge)).await {
            Delivery::Retry { reason, .. } => tracing::info!(user_id = %pusher.user_id, app_id = %pusher.app_id, %reason, "a badge update failed"),
            delivery if delivery.rejects(&pusher.pushkey) => {
                metrics::counter!("weft_push_notifications_rejected_total").increment(1);
                services.storage.delete_pusher(self.id.key()).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Where a pass stands: since when its notifications have been failing,
/// and its successful deliveries not written yet. A pass writes them after
/// `RECORD_EVERY` deliveries or `RECORD_AFTER`, at its end, and before any
/// other write about the pusher: one commit per notification would bound a
/// pusher to the database's commit rate. A crash sends those few
/// notifications again (never loses one).
#[derive(Default)]
struct Progress {
    failing_since: Option<i64>,
    /// The last delivered notification's stream ordering and answer time.
    upto: Option<(i64, i64)>,
    count: usize,
    since: Option<std::time::Instant>,
}

/// Deliveries written at once at most.
const RECORD_EVERY: usize = 50;
/// The longest a delivery waits to be written while a pass goes on.
const RECORD_AFTER: Duration = Duration::from_millis(250);

impl Progress {
    fn delivered(&mut self, stream_ordering: i64, answered: i64) {
        self.failing_since = None;
        self.upto = Some((stream_ordering, answered));
        self.count += 1;
        self.since.get_or_insert_with(std::time::Instant::now);
    }

    fn due(&self) -> bool {
        self.count >= RECORD_EVERY || self.since.is_some_and(|since| since.elapsed() >= RECORD_AFTER)
    }
}

/// After one notification: on to the next, or end the pass.
enum Step {
    Next,
    Stop(Pass),
}
