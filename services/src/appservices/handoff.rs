//! The events the matcher queued for one appservice, handed to its sender
//! in memory, so that building a transaction needs no read of the queue.
//!
//! The database queue stays the truth. The sender takes from the hand-off
//! only while it holds exactly what the queue holds (`complete`): it learns
//! so by reading the whole queue (fewer items than a transaction takes)
//! with nothing invalidating the hand-off meanwhile. Anything queued that
//! is not handed over (ephemeral events, to-device messages, device-list
//! changes) or a write in doubt invalidates it, and the sender reads the
//! queue again. Items are handed over after their commit and in queue
//! order: one task (the matcher) writes the queue, so a later commit
//! holds later sequence numbers. A backlog (an appservice down) stays in
//! the database only: past `MAX_HELD` items the hand-off lets go of them.
//!
//! May call: nothing (memory only).

use std::sync::Mutex;

use weft_storage::QueuedItem;

/// The most items held in memory (ten transactions' worth).
const MAX_HELD: usize = 1_000;

#[derive(Debug, Default)]
pub(super) struct Handoff(Mutex<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Queued events not yet taken into a transaction, oldest first.
    items: Vec<QueuedItem>,
    /// Whether `items` is the whole queue.
    complete: bool,
    /// Counts invalidations, so that a read of the queue knows whether
    /// something invalidated the hand-off while it ran.
    generation: u64,
    /// The last sequence number taken into a transaction.
    taken: i64,
}

impl Handoff {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Events committed to the queue, in queue order.
    pub(super) fn queued(&self, items: Vec<QueuedItem>) {
        let mut inner = self.inner();
        let taken = inner.taken;
        inner.items.extend(items.into_iter().filter(|item| item.seq > taken));
        if inner.items.len() > MAX_HELD {
            inner.items.clear();
            inner.complete = false;
            inner.generation += 1;
        }
    }

    /// Something was queued that is not handed over, or a write is in doubt.
    pub(super) fn invalidate(&self) {
        let mut inner = self.inner();
        inner.complete = false;
        inner.generation += 1;
    }

    /// The generation to give `caught_up` after reading the queue.
    pub(super) fn generation(&self) -> u64 {
        self.inner().generation
    }

    /// The oldest `limit` items when the hand-off is the whole queue.
    pub(super) fn oldest(&self, limit: usize) -> Option<Vec<QueuedItem>> {
        let inner = self.inner();
        inner.complete.then(|| inner.items.iter().take(limit).cloned().collect())
    }

    /// Items up to `seq` were taken into a stored transaction.
    pub(super) fn taken(&self, seq: i64) {
        let mut inner = self.inner();
        inner.taken = inner.taken.max(seq);
        inner.items.retain(|item| item.seq > seq);
    }

    /// A read of the whole queue, begun at `generation`, was taken (or was
    /// empty): what the hand-off holds beyond it is the whole queue, unless
    /// it was invalidated meanwhile.
    pub(super) fn caught_up(&self, generation: u64) {
        let mut inner = self.inner();
        if inner.generation == generation {
            inner.complete = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: i64) -> QueuedItem {
        QueuedItem { seq, kind: "event".into(), json: "{}".into() }
    }

    #[test]
    fn the_hand_off_serves_only_once_it_holds_the_whole_queue() {
        let handoff = Handoff::default();
        handoff.queued(vec![item(1), item(2)]);
        assert_eq!(handoff.oldest(10), None, "unknown until the queue is read");
        let generation = handoff.generation();
        // The read saw 1 and 2; they are taken; 3 is committed after the read.
        handoff.taken(2);
        handoff.queued(vec![item(3)]);
        handoff.caught_up(generation);
        assert_eq!(handoff.oldest(10), Some(vec![item(3)]));
        handoff.taken(3);
        assert_eq!(handoff.oldest(10), Some(vec![]));
    }

    #[test]
    fn a_backlog_is_let_go_of_and_read_from_the_queue() {
        let handoff = Handoff::default();
        let generation = handoff.generation();
        handoff.caught_up(generation);
        handoff.queued((1..=MAX_HELD as i64 + 1).map(item).collect());
        assert_eq!(handoff.oldest(10), None);
        assert_ne!(handoff.generation(), generation, "a read begun before does not make it whole again");
    }

    #[test]
    fn an_invalidation_during_a_read_keeps_the_queue_the_source() {
        let handoff = Handoff::default();
        let generation = handoff.generation();
        handoff.invalidate();
        handoff.caught_up(generation);
        assert_eq!(handoff.oldest(10), None);
        let generation = handoff.generation();
        handoff.caught_up(generation);
        assert!(handoff.oldest(10).is_some());
        handoff.invalidate();
        assert_eq!(handoff.oldest(10), None);
    }
}
