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
//! none: a pusher set since); when the receipts stream moves, those of
//! users whose read receipts moved are woken for a badge update. The
//! database is the queue: a wake-up only says where to look.
//!
//! May call: `weft_storage` (which pushers have work), `sender`, the notifier.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use tokio::task::JoinSet;

use weft_core::lifecycle::{Stop, stopped};
use weft_storage::{PusherId, StorageError, Stream};

use super::sender::{PusherWorker, Shared};
use crate::services::{AppState, Services};

/// The pause after the database failed to say which pushers have work.
const RETRY_DELAY: Duration = Duration::from_secs(2);

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

    /// The pusher's worker, started if it has none.
    fn worker(self: &Arc<Self>, id: PusherId, tasks: &mut JoinSet<()>, stop: &Stop) -> Arc<PusherWorker> {
        let mut workers = self.workers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(worker) = workers.get(&id) {
            return worker.clone();
        }
        let worker = Arc::new(PusherWorker::new(id.clone()));
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
                let ids = pushers.into_iter().map(|p| PusherId { user_id: p.user_id, app_id: p.app_id, pushkey: p.pushkey });
                let mine: Vec<_> = ids.filter(|id| pool.handles(id)).collect();
                tracing::info!(pushers = mine.len(), "the push sender is starting");
                for id in mine {
                    pool.worker(id, &mut tasks, &stop).wake();
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
        let woken = storage.pushers_with_notifications(*events_at, events).await?;
        pool.shared.events_seen.store(events, Ordering::SeqCst);
        for id in woken {
            if pool.handles(&id) {
                pool.worker(id, tasks, stop).wake();
            }
        }
        *events_at = events;
    }
    let receipts = notifier.position(Stream::Receipts);
    if receipts > *receipts_at {
        for id in storage.pushers_with_receipts(*receipts_at, receipts).await? {
            if pool.handles(&id) {
                pool.worker(id, tasks, stop).wake_for_badge();
            }
        }
        *receipts_at = receipts;
    }
    Ok(())
}
