//! Which stream ids this writer has persisted. Ids are allocated inside a
//! transaction and transactions commit in any order, so the position readers
//! may trust is just below the oldest id still in flight, never simply the
//! largest id committed (Synapse's id generators work the same way).

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

use super::Stream;

/// The in-flight ids of one stream on this writer.
#[derive(Debug, Default)]
pub struct InFlightIds {
    /// A std mutex: held for a set insert or removal, never across an await.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    pending: BTreeSet<i64>,
    max_finished: i64,
    /// Ids being allocated (asked of the sequence, not yet tracked).
    reserving: usize,
    /// The position when the oldest reservation began: an id being
    /// allocated is above it, but may be below ids finished since.
    reserved_at: i64,
}

impl InFlightIds {
    pub fn starting_at(persisted: i64) -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(State { max_finished: persisted, ..State::default() }) })
    }

    /// Holds the position where it is while an id is being allocated; the
    /// reservation ends when the id is tracked or the allocation fails.
    pub fn reserve(self: &Arc<Self>) -> Reservation {
        let mut state = self.lock();
        if state.reserving == 0 {
            state.reserved_at = state.position();
        }
        state.reserving += 1;
        Reservation { ids: Some(self.clone()) }
    }

    /// Every id up to this one is persisted (or abandoned).
    pub fn position(&self) -> i64 {
        self.lock().position()
    }

    /// With nothing in flight, moves the position up to `seen` (an id some
    /// other writer of the stream allocated): every id this writer takes
    /// from the shared sequence from now on is above it. Returns the new
    /// position when it moved.
    pub fn advance_idle(&self, seen: i64) -> Option<i64> {
        let mut state = self.lock();
        if !state.pending.is_empty() || state.reserving > 0 || seen <= state.max_finished {
            return None;
        }
        state.max_finished = seen;
        Some(seen)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn position(&self) -> i64 {
        let position = match self.pending.first() {
            Some(oldest) => (oldest - 1).min(self.max_finished),
            None => self.max_finished,
        };
        if self.reserving > 0 { position.min(self.reserved_at) } else { position }
    }
}

/// An id being allocated; `track` turns it into an in-flight id.
#[derive(Debug)]
pub struct Reservation {
    ids: Option<Arc<InFlightIds>>,
}

impl Reservation {
    /// Registers the allocated id; the position cannot pass it until the guard drops.
    pub fn track(mut self, id: i64) -> InFlightGuard {
        let ids = self.ids.take().expect("a reservation is tracked once");
        {
            let mut state = ids.lock();
            state.pending.insert(id);
            state.reserving -= 1;
        }
        InFlightGuard { ids, id }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(ids) = self.ids.take() {
            ids.lock().reserving -= 1;
        }
    }
}

/// Finishes an id when dropped: after commit, after rollback, or on a panic.
#[derive(Debug)]
pub struct InFlightGuard {
    ids: Arc<InFlightIds>,
    id: i64,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut state = self.ids.lock();
        state.pending.remove(&self.id);
        state.max_finished = state.max_finished.max(self.id);
    }
}

/// The in-flight ids of every stream this writer writes.
#[derive(Debug)]
pub struct StreamIds([Arc<InFlightIds>; Stream::COUNT]);

impl StreamIds {
    pub fn starting_at(persisted: [i64; Stream::COUNT]) -> Arc<Self> {
        Arc::new(Self(persisted.map(InFlightIds::starting_at)))
    }

    pub fn of(&self, stream: Stream) -> &Arc<InFlightIds> {
        &self.0[stream.index()]
    }
}
