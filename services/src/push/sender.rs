//! One pusher's deliveries, in order, from its position: each pass takes
//! the pusher's row the pool offered with its notifications, or reads it
//! (a deleted pusher stops; one set again starts afresh from its stored
//! position), and takes its notifications after its position up to
//! what the pool has looked at (`pusher_pool`) from its inbox (`inbox`: what
//! the pool read for it), or from the database when the inbox does not go
//! back that far, and hands them one at a time to
//! the pusher plugins (`services.pushers.notify`). Progress is written every
//! few deliveries (`Progress`), before a failure is, and when the instance
//! stops, so that a restart resumes where it stopped (a crash repeats at
//! most those few); between writes the worker keeps its position itself.
//! Then, when a read receipt asked for it and the badge changed, a
//! badge-only update.
//!
//! The badge (`notification::Badge`) is read once and then counts the
//! notifications sent after it; it is read again when the pool says the
//! user's read receipts or memberships moved, and at least every
//! `BADGE_READ_AGAIN`.
//!
//! As Synapse's HTTP pusher: a failed delivery is retried after 1 s,
//! doubling up to an hour (or after the plugin's `after_ms`), and new
//! events do not wake a pusher early; a notification still failing more
//! than 24 hours after the failures began is skipped; an answer rejecting
//! the pusher's own pushkey deletes the pusher; other rejected pushkeys are
//! logged. `push.jitter_delay` holds each push back a random time after its
//! event was sent.
//!
//! May call: `weft_storage` (the pusher's row and work), `inbox`, `notification`,
//! `services.pushers` (the plugins, here or remote), metrics.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use rand::Rng;
use tokio::sync::Notify;

use weft_core::lifecycle::{Stop, stopped};
use weft_plugin_runtime::pusher::{Delivery, MAX_RETRY_AFTER_MS};
use weft_storage::{PendingPush, PusherId, StorageError, StoredPusher, now_ms};

use super::{
    inbox::Inbox,
    notification::{self, Badge, ContextCache, Shape},
};
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
/// The longest a badge is counted on without being read again.
const BADGE_READ_AGAIN: Duration = Duration::from_secs(1);

/// The state a pusher shares with the pool that wakes it.
#[derive(Debug)]
pub struct PusherWorker {
    pub id: PusherId,
    wake: Notify,
    badge_wanted: AtomicBool,
    /// The badge counted on may be wrong: read it again.
    badge_stale: AtomicBool,
    /// The badge last sent (with a notification or alone).
    last_badge: Mutex<Option<u64>>,
    inbox: Mutex<Inbox>,
}

/// What the pool shares with every worker.
#[derive(Default)]
pub struct Shared {
    pub contexts: ContextCache,
    /// The events position the pool has looked at (and woken and marked the
    /// pushers for): passes go no further.
    pub events_seen: AtomicI64,
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

/// What a worker keeps from one pass to the next.
#[derive(Default)]
struct Session {
    /// The pusher's stored position as last read or written: a row that
    /// says otherwise was set again (`/pushers/set` starts it from now).
    stored: Option<i64>,
    /// How far it has got, written or not.
    position: i64,
    progress: Progress,
    badge: Option<(Badge, Instant)>,
}

impl PusherWorker {
    /// A worker whose inbox gets what the pool reads after `position`.
    pub fn new(id: PusherId, position: i64) -> Self {
        Self {
            id,
            wake: Notify::new(),
            badge_wanted: AtomicBool::new(false),
            badge_stale: AtomicBool::new(false),
            last_badge: Mutex::new(None),
            inbox: Mutex::new(Inbox::starting_at(position)),
        }
    }

    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The pool read up to `upto`: `pushes` are this pusher's new
    /// notifications, `pusher` its row as read with them (the pool wakes
    /// the worker after).
    pub fn offer(&self, upto: i64, pusher: StoredPusher, pushes: Vec<PendingPush>) {
        self.inbox().offer(upto, pusher, pushes);
    }

    /// What came before `position` is to be read from the database (a read
    /// receipt moved, or the pool read a range without offering it).
    pub fn restart_inbox(&self, position: i64) {
        self.inbox().restart_at(position);
    }

    /// New notifications may be waiting (a pusher backing off ignores it
    /// until its wait is over).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A read receipt moved: send the badge if it changed.
    pub fn wake_for_badge(&self) {
        self.badge_stale.store(true, Ordering::SeqCst);
        self.badge_wanted.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The user's membership changed: the badge is to be read again.
    pub fn badge_moved(&self) {
        self.badge_stale.store(true, Ordering::SeqCst);
    }

    fn set_last_badge(&self, badge: u64) -> Option<u64> {
        self.last_badge.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).replace(badge)
    }

    /// Passes until the pusher is gone or `stop`; a delivery under way when
    /// the stop comes is finished, and the progress written.
    pub async fn run(&self, services: &Services, shared: &Shared, mut stop: Stop) {
        let mut session = Session::default();
        let mut backoff: Option<Duration> = None;
        loop {
            let waited = match self.pass(services, shared, &mut session).await {
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
            let go_on = match waited {
                None => self.idle(services, &mut session, &mut stop).await,
                Some(wait) => {
                    let in_backoff = metrics::gauge!("weft_pushers_in_backoff");
                    in_backoff.increment(1.0);
                    let interrupted = tokio::select! {
                        () = tokio::time::sleep(wait) => false,
                        () = stopped(&mut stop) => true,
                    };
                    in_backoff.decrement(1.0);
                    if interrupted {
                        self.write_down(services, &mut session).await;
                    }
                    !interrupted
                }
            };
            if !go_on {
                return;
            }
        }
    }

    /// Waits for a wake-up, writing the progress when it is due; false when
    /// the worker is to end (a stop, or the pusher is gone).
    async fn idle(&self, services: &Services, session: &mut Session, stop: &mut Stop) -> bool {
        loop {
            let due = session.progress.due_at();
            tokio::select! {
                () = self.wake.notified() => return true,
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now).into()), if due.is_some() => {
                    if !self.write_down(services, session).await {
                        return false;
                    }
                }
                () = stopped(stop) => {
                    self.write_down(services, session).await;
                    return false;
                }
            }
        }
    }

    /// Writes the progress not yet written; false when the pusher is gone
    /// (a database error is logged, and the write tried again later).
    async fn write_down(&self, services: &Services, session: &mut Session) -> bool {
        match self.record(&services.storage, session).await {
            Ok(exists) => exists,
            Err(error) => {
                tracing::warn!(%error, user_id = %self.id.user_id, app_id = %self.id.app_id, "a pusher could not write its progress");
                session.progress.since = Some(Instant::now());
                true
            }
        }
    }

    async fn pass(&self, services: &Services, shared: &Shared, session: &mut Session) -> Result<Pass, StorageError> {
        let storage = &services.storage;
        let offered = self.inbox().take_pusher(session.position);
        let from_offer = offered.is_some();
        let pusher = match offered {
            Some(pusher) => pusher,
            None => match storage.pusher(self.id.key()).await? {
                Some(pusher) => pusher,
                None => return Ok(Pass::Gone),
            },
        };
        if set_again(session.stored, pusher.last_stream_ordering, from_offer) {
            session.stored = Some(pusher.last_stream_ordering);
            session.position = pusher.last_stream_ordering;
            session.progress = Progress { failing_since: pusher.failing_since_ts, ..Progress::default() };
        } else if !from_offer && session.progress.upto.is_none() {
            // Nothing unwritten: the row says since when it has been failing.
            session.progress.failing_since = pusher.failing_since_ts;
        }
        let upto = shared.events_seen.load(Ordering::SeqCst);
        if self.badge_stale.swap(false, Ordering::SeqCst) || session.badge.as_ref().is_some_and(|(_, read)| read.elapsed() >= BADGE_READ_AGAIN) {
            session.badge = None;
        }
        loop {
            let offered = self.inbox().after(session.position, upto);
            let complete = offered.is_some();
            let pending = match offered {
                Some(pushes) => pushes,
                None => storage.pending_pushes(&pusher.user_id, session.position, upto, BATCH).await?,
            };
            for push in &pending {
                let badge = match &mut session.badge {
                    Some((badge, _)) => badge,
                    None => {
                        let by_room = services.config.push.group_unread_count_by_room;
                        &mut session.badge.insert((Badge::read(storage, &pusher.user_id, by_room, upto).await?, Instant::now())).0
                    }
                };
                badge.count(push);
                let badge = badge.value();
                match self.deliver(services, &shared.contexts, &pusher, push, badge, session).await? {
                    Step::Next => session.progress.failing_since = None,
                    Step::Stop(pass) => return Ok(pass),
                }
                session.position = push.stream_ordering;
                if session.progress.due() && !self.record(storage, session).await? {
                    return Ok(Pass::Gone);
                }
            }
            if complete || (pending.len() as i64) < BATCH {
                break;
            }
        }
        if self.badge_wanted.swap(false, Ordering::SeqCst) {
            self.send_badge(services, &pusher, upto, session).await?;
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
        session: &mut Session,
    ) -> Result<Step, StorageError> {
        let storage = &services.storage;
        let key = self.id.key();
        let Some(context) = contexts.get(storage, &push.event_id).await? else {
            // The event is gone (purged): nothing to send, as Synapse.
            if !self.record(storage, session).await? {
                return Ok(Step::Stop(Pass::Gone));
            }
            let exists = storage.record_pusher_progress(key, push.stream_ordering).await?;
            session.stored = Some(push.stream_ordering);
            return Ok(if exists { Step::Next } else { Step::Stop(Pass::Gone) });
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
        let started = Instant::now();
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
                session.progress.delivered(push.stream_ordering, answered, started);
                Ok(Step::Next)
            }
            Delivery::Retry { after_ms, reason } => {
                metrics::counter!("weft_push_notifications_failed_total").increment(1);
                if !self.record(storage, session).await? {
                    return Ok(Step::Stop(Pass::Gone));
                }
                let since = session.progress.failing_since.unwrap_or(answered);
                if answered - since > GIVE_UP_AFTER_MS {
                    metrics::counter!("weft_push_notifications_skipped_total").increment(1);
                    tracing::warn!(user_id = %pusher.user_id, app_id = %pusher.app_id, event_id = %push.event_id, %reason,
                        "a push has failed for more than 24 hours: skipping it");
                    let exists = storage.record_pusher_skipped(key, push.stream_ordering).await?;
                    session.stored = Some(push.stream_ordering);
                    return Ok(if exists { Step::Next } else { Step::Stop(Pass::Gone) });
                }
                tracing::info!(user_id = %pusher.user_id, app_id = %pusher.app_id, event_id = %push.event_id, %reason, "a push failed; backing off");
                if !storage.record_pusher_failure(key, answered).await? {
                    return Ok(Step::Stop(Pass::Gone));
                }
                session.progress.failing_since = Some(since);
                let asked = after_ms.map(|ms| Duration::from_millis(ms.min(MAX_RETRY_AFTER_MS)));
                Ok(Step::Stop(Pass::Failed(asked)))
            }
        }
    }

    /// Writes the deliveries not yet written; false when the pusher is gone.
    async fn record(&self, storage: &weft_storage::Storage, session: &mut Session) -> Result<bool, StorageError> {
        let Some((stream_ordering, answered)) = session.progress.upto else { return Ok(true) };
        let exists = storage.record_pusher_success(self.id.key(), stream_ordering, answered).await?;
        session.progress = Progress { failing_since: session.progress.failing_since, ..Progress::default() };
        session.stored = Some(stream_ordering);
        Ok(exists)
    }

    /// The badge-only update after a read receipt, when the badge changed
    /// (a failure is only logged: the next notification carries the badge).
    async fn send_badge(&self, services: &Services, pusher: &StoredPusher, upto: i64, session: &mut Session) -> Result<(), StorageError> {
        let by_room = services.config.push.group_unread_count_by_room;
        let badge = Badge::read(&services.storage, &pusher.user_id, by_room, upto).await?;
        let value = badge.value();
        session.badge = Some((badge, Instant::now()));
        if self.set_last_badge(value) == Some(value) {
            return Ok(());
        }
        match services.pushers.notify(notification::badge_update(pusher, value)).await {
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

/// Where a pusher stands: since when its notifications have been failing,
/// and its successful deliveries not written yet. They are written after
/// `RECORD_EVERY` deliveries or `RECORD_AFTER` after the first of them
/// began (so a gateway slower than that has each written before the next),
/// before any other write about the pusher, and when the instance stops:
/// one commit per notification would bound a pusher to the database's
/// commit rate. A crash sends those few notifications again (never loses
/// one).
#[derive(Default)]
struct Progress {
    failing_since: Option<i64>,
    /// The last delivered notification's stream ordering and answer time.
    upto: Option<(i64, i64)>,
    count: usize,
    /// When the first delivery not written began.
    since: Option<Instant>,
}

/// Deliveries written at once at most.
const RECORD_EVERY: usize = 50;
/// The longest a delivery waits to be written.
const RECORD_AFTER: Duration = Duration::from_millis(100);

impl Progress {
    /// A delivery that began at `started` succeeded.
    fn delivered(&mut self, stream_ordering: i64, answered: i64, started: Instant) {
        self.failing_since = None;
        self.upto = Some((stream_ordering, answered));
        self.count += 1;
        self.since.get_or_insert(started);
    }

    fn due(&self) -> bool {
        self.count >= RECORD_EVERY || self.since.is_some_and(|since| since.elapsed() >= RECORD_AFTER)
    }

    /// When the deliveries not yet written are to be.
    fn due_at(&self) -> Option<Instant> {
        self.upto.and(self.since).map(|since| since + RECORD_AFTER)
    }
}

/// Whether a pusher row with position `row` says the pusher was set again
/// since this worker last read or wrote `stored` (or is new to it). A row
/// read from the database shows this worker's own writes, so any other
/// position means so; a row the pool offered may have been read before the
/// worker's last write, so only a newer one does (`set_pusher` starts from
/// the newest event).
fn set_again(stored: Option<i64>, row: i64, offered: bool) -> bool {
    match stored {
        None => true,
        Some(stored) if offered => row > stored,
        Some(stored) => row != stored,
    }
}

/// After one notification: on to the next, or end the pass.
enum Step {
    Next,
    Stop(Pass),
}

#[cfg(test)]
mod tests {
    use super::set_again;

    #[test]
    fn an_offered_row_older_than_the_workers_own_write_is_not_a_new_setting() {
        assert!(set_again(None, 5, true));
        assert!(set_again(None, 5, false));
        assert!(!set_again(Some(10), 7, true), "read before the worker wrote 10");
        assert!(set_again(Some(10), 7, false), "the database says 7: set again");
        assert!(set_again(Some(10), 12, true));
        assert!(!set_again(Some(10), 10, true));
        assert!(!set_again(Some(10), 10, false));
    }
}
