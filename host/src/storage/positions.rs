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
}

impl InFlightIds {
    pub fn starting_at(persisted: i64) -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(State { pending: BTreeSet::new(), max_finished: persisted }) })
    }

    /// Registers an allocated id; the position cannot pass it until the guard drops.
    pub fn track(self: &Arc<Self>, id: i64) -> InFlightGuard {
        self.lock().pending.insert(id);
        InFlightGuard { ids: self.clone(), id }
    }

    /// Every id up to this one is persisted (or abandoned).
    pub fn position(&self) -> i64 {
        let state = self.lock();
        match state.pending.first() {
            Some(oldest) => (oldest - 1).min(state.max_finished),
            None => state.max_finished,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
