//! The push sender of a pusher instance: runs on each instance named in
//! `pusher_instances` (main when unset) with `push.enabled`, for the
//! pushers of the users sharded to it (`Config::pusher_instance_for`: the
//! sha256 of the user id, as Synapse).
//!
//! At start every such pusher gets a worker (`sender::PusherWorker`) that
//! catches up from its stored position. Then the pool follows the
//! notifier: when the events stream moves (this instance's writes, or any
//! persister's over replication), the pushers of users whose membership
//! changed in the new range are told their badge moved, then the position
//! is published to the workers (`Shared::events_seen`: passes read no
//! further than what the pool has looked at) and the pushers of users with
//! notifications in the range are woken (and get a worker if they have
//! none: a pusher set since). Those notifications are read once for all
//! pushers and offered to each pusher's inbox, with the pusher's row,
//! before the position is published (`inbox`); a range with more than
//! `RANGE_LIMIT` is not, and every inbox starts again after it. When the
//! receipts stream moves, those of users whose read receipts moved are
//! woken for a badge update, their inboxes started again. The database is
//! the queue: what the pool offers saves the workers reading it.
//!
//! May call: `weft_storage` (which pushers have work, and the work), `sender`, the notifier.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use tokio::task::JoinSet;

use weft_core::lifecycle::{Stop, stopped};
use weft_storage::{PusherId, PusherPushes, StorageError, StoredPusher, Stream};

use super::sender::{PusherWorker, Shared};
use crate::services::{AppState, Services};

/// The pause after the database failed to say which pushers have work.
const RETRY_DELAY: Duration = Duration::from_secs(2);
/// The most notifications of one range read for the inboxes.
const RANGE_LIMIT: i64 = 10_000;

/// Whether this instance sends push notifications at all.
pub fn sends_here(services: &Services) -> bool {
    services.config.sends_pushes()
}

struct Pool {
    services: AppState,
    shared: Shared,
    workers: Mutex<HashMap<PusherId, Arc<PusherWorker>>>,
}

impl Pool {
    fn handles(&self, id: &PusherId) -> bool {
        self.services.config.pusher_instance_for(id.user_id.as_str()) == Some(self.services.config.instance_name())
    }

    /// The pusher's worker, started if it has none; a new one's inbox gets
    /// what the pool reads after `position`.
    fn worker(self: &Arc<Self>, id: PusherId, tasks: &mut JoinSet<()>, stop: &Stop, position: i64) -> Arc<PusherWorker> {
        let mut workers = self.workers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(worker) = workers.get(&id) {
            return worker.clone();
        }
        let worker = Arc::new(PusherWorker::new(id.clone(), position));
        workers.insert(id, worker.clone());
        let (pool, running, stop) = (self.clone(), worker.clone(), stop.clone());
        tasks.spawn(async move {
            running.run(&pool.services, &pool.shared, stop).await;
            let mut workers = pool.workers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if workers.get(&running.id).is_some_and(|current| Arc::ptr_eq(current, &running)) {
                workers.remove(&running.id);
            }
        });
        worker
    }
}

/// The push sender: until `stop`, then waits for deliveries under way.
pub async fn run(services: AppState, mut stop: Stop) {
    let pool = Arc::new(Pool { services: services.clone(), shared: Shared::default(), workers: Mutex::new(HashMap::new()) });
    let mut tasks = JoinSet::new();
    let mut positions = services.notifier.subscribe();
    let mut events_at = services.notifier.position(Stream::Events);
    pool.shared.events_seen.store(events_at, Ordering::SeqCst);
    let mut receipts_at = services.notifier.position(Stream::Receipts);
    loop {
        match services.storage.all_pushers().await {
            Ok(pushers) => {
                let ids = pushers.iter().map(StoredPusher::id);
                let mine: Vec<_> = ids.filter(|id| pool.handles(id)).collect();
                tracing::info!(pushers = mine.len(), "the push sender is starting");
                for id in mine {
                    pool.worker(id, &mut tasks, &stop, events_at).wake();
                }
                break;
            }
            Err(error) => {
                tracing::warn!(%error, "the push sender cannot read the pushers; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_DELAY) => continue,
                    () = stopped(&mut stop) => return,
                }
            }
        }
    }
    loop {
        let failed = match wake_new_work(&pool, &mut tasks, &stop, &mut events_at, &mut receipts_at).await {
            Ok(()) => false,
            Err(error) => {
                tracing::warn!(%error, "the push sender cannot read which pushers have work; retrying");
                true
            }
        };
        tokio::select! {
            moved = positions.changed(), if !failed => {
                if moved.is_err() {
                    break;
                }
            }
            () = tokio::time::sleep(RETRY_DELAY), if failed => {}
            () = stopped(&mut stop) => break,
            Some(_) = tasks.join_next() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Wakes the pushers with notifications or read receipts since the last call.
async fn wake_new_work(pool: &Arc<Pool>, tasks: &mut JoinSet<()>, stop: &Stop, events_at: &mut i64, receipts_at: &mut i64) -> Result<(), StorageError> {
    let notifier = &pool.services.notifier;
    let storage = &pool.services.storage;
    let events = notifier.position(Stream::Events);
    if events > *events_at {
        for id in storage.pushers_with_membership_changes(*events_at, events).await? {
            if let Some(worker) = pool.workers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&id) {
                worker.badge_moved();
            }
        }
        let mut woken = Vec::new();
        match storage.pushes_between(*events_at, events, RANGE_LIMIT).await? {
            Some(by_pusher) => {
                for PusherPushes { pusher, pushes } in by_pusher {
                    let id = pusher.id();
                    if pool.handles(&id) {
                        let worker = pool.worker(id, tasks, stop, *events_at);
                        worker.offer(events, pusher, pushes);
                        woken.push(worker);
                    }
                }
            }
            None => {
                for worker in pool.workers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).values() {
                    worker.restart_inbox(events);
                }
                for id in storage.pushers_with_notifications(*events_at, events).await? {
                    if pool.handles(&id) {
                        woken.push(pool.worker(id, tasks, stop, events));
                    }
                }
            }
        }
        pool.shared.events_seen.store(events, Ordering::SeqCst);
        for worker in woken {
            worker.wake();
        }
        *events_at = events;
    }
    let receipts = notifier.position(Stream::Receipts);
    if receipts > *receipts_at {
        for id in storage.pushers_with_receipts(*receipts_at, receipts).await? {
            if pool.handles(&id) {
                let worker = pool.worker(id, tasks, stop, *events_at);
                worker.restart_inbox(*events_at);
                worker.wake_for_badge();
            }
        }
        *receipts_at = receipts;
    }
    Ok(())
}
