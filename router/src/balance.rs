//! The order in which a group's instances are tried: rendezvous (highest
//! random weight) hashing for sticky requests, round robin otherwise, with
//! instances recently found down moved to the end.
//!
//! Rendezvous hashing scores every (key, instance) pair and takes the
//! highest: when an instance goes down only the keys it had move, each to
//! its own second choice, and they come back when it does. The score is
//! SHA-256, stable across processes and releases, so several routers agree.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

/// The score of `instance` for `key`: the first 8 bytes of SHA-256 over both.
pub fn score(key: &str, instance: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(key.as_bytes());
    hasher.update([0]);
    hasher.update(instance.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// `candidates` (indexes) ordered by descending score for `key`; ties by index.
pub fn rendezvous(key: &str, candidates: &[usize], name_of: impl Fn(usize) -> String) -> Vec<usize> {
    let mut scored: Vec<(u64, usize)> = candidates.iter().map(|&index| (score(key, &name_of(index)), index)).collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, index)| index).collect()
}

/// Which instances refused a connection lately, and a round-robin counter.
pub struct Health {
    /// Per instance index: until when it is skipped. A std mutex: held for a
    /// lookup or a store, never across an await.
    down_until: Mutex<Vec<Option<Instant>>>,
    down_for: Duration,
    next: AtomicUsize,
}

impl Health {
    pub fn new(instances: usize, down_for: Duration) -> Self {
        Self { down_until: Mutex::new(vec![None; instances]), down_for, next: AtomicUsize::new(0) }
    }

    pub fn mark_down(&self, index: usize) {
        let mut down = self.down_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(slot) = down.get_mut(index) {
            *slot = Some(Instant::now() + self.down_for);
        }
    }

    pub fn mark_up(&self, index: usize) {
        let mut down = self.down_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(slot) = down.get_mut(index) {
            *slot = None;
        }
    }

    pub fn is_up(&self, index: usize) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        down.get(index).copied().flatten().is_none_or(|until| Instant::now() >= until)
    }

    /// The order to try `candidates` in: by rendezvous score for `key`, or
    /// rotated round robin without one; instances marked down go last (still
    /// tried: they may be back before their mark expires).
    pub fn order(&self, key: Option<&str>, candidates: &[usize], name_of: impl Fn(usize) -> String) -> Vec<usize> {
        let ordered = match key {
            Some(key) => rendezvous(key, candidates, name_of),
            None => {
                let start = self.next.fetch_add(1, Ordering::Relaxed) % candidates.len().max(1);
                candidates.iter().cycle().skip(start).take(candidates.len()).copied().collect()
            }
        };
        let (up, down): (Vec<usize>, Vec<usize>) = ordered.into_iter().partition(|&index| self.is_up(index));
        up.into_iter().chain(down).collect()
    }
}
