//! Stream positions this instance may trust, and the wake-ups of `/sync`.
//!
//! Every writer of every stream has a position: everything it wrote up to
//! there is persisted. This instance's own writes move its positions after
//! commit (`notify`); replication moves other writers' (`advance`). A
//! stream's position for readers is the minimum over its writers; the
//! events stream also keeps each persister's, because a room's events come
//! from one persister only, so a room can be read up to its persister's
//! position even while another persister lags or is down.

use std::sync::{
    Mutex,
    atomic::{AtomicI64, Ordering},
};

use tokio::sync::watch;

use weft_storage::Stream;

use crate::replication::Writers;

/// A snapshot of every stream's position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    /// Per stream, the minimum over its writers.
    mins: [i64; Stream::COUNT],
    /// Per events persister, in `stream_writers.events` order.
    events: Vec<i64>,
}

impl Positions {
    pub fn get(&self, stream: Stream) -> i64 {
        self.mins[stream.index()]
    }

    /// The position of the events persister at `index`.
    pub fn events_writer(&self, index: usize) -> i64 {
        self.events.get(index).copied().unwrap_or_else(|| self.get(Stream::Events))
    }

    /// Whether `later` differs from these positions in `stream` alone.
    pub fn moved_only(&self, later: &Positions, stream: Stream) -> bool {
        self.events == later.events && Stream::ALL.into_iter().all(|other| other == stream || self.get(other) == later.get(other))
    }

    /// `(index, position)` of the persisters ahead of the minimum.
    pub fn events_ahead(&self) -> Vec<(usize, i64)> {
        let min = self.get(Stream::Events);
        self.events.iter().enumerate().filter(|(_, position)| **position > min).map(|(index, position)| (index, *position)).collect()
    }
}

#[derive(Debug)]
pub struct Notifier {
    writers: Writers,
    /// Per stream, per writer (configured order).
    by_writer: Mutex<[Vec<i64>; Stream::COUNT]>,
    /// A watch channel: waiters only need the latest positions, never every
    /// intermediate one.
    positions: watch::Sender<Positions>,
    /// Per stream, how many times this instance said it wrote to it
    /// (`notify`), whether or not its position moved: see `progress`.
    notified: [AtomicI64; Stream::COUNT],
}

impl Notifier {
    /// Starts each writer at `initial(stream, writer)`.
    pub fn new(writers: Writers, initial: impl Fn(Stream, &str) -> i64) -> Self {
        let by_writer = Stream::ALL.map(|stream| writers.of(stream).iter().map(|writer| initial(stream, writer)).collect::<Vec<_>>());
        let positions = snapshot(&by_writer);
        Self { writers, by_writer: Mutex::new(by_writer), positions: watch::Sender::new(positions), notified: Default::default() }
    }

    pub fn writers(&self) -> &Writers {
        &self.writers
    }

    /// This instance has persisted `stream` up to `position`.
    pub fn notify(&self, stream: Stream, position: i64) {
        self.notified[stream.index()].fetch_add(1, Ordering::SeqCst);
        let instance = self.writers.instance().to_owned();
        self.advance(stream, &instance, position);
    }

    /// `instance` has persisted `stream` up to `position` (positions never
    /// move back). Returns whether anything moved; an instance that does
    /// not write the stream is ignored.
    pub fn advance(&self, stream: Stream, instance: &str, position: i64) -> bool {
        let Some(index) = self.writers.index_of(stream, instance) else { return false };
        let mut by_writer = self.by_writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = &mut by_writer[stream.index()][index];
        if position <= *slot {
            return false;
        }
        *slot = position;
        let positions = snapshot(&by_writer);
        drop(by_writer);
        self.positions.send_if_modified(|current| {
            let changed = *current != positions;
            *current = positions;
            changed
        });
        true
    }

    /// The last position known for `instance` on `stream` (0 if it does not write it).
    pub fn writer_position(&self, stream: Stream, instance: &str) -> i64 {
        let Some(index) = self.writers.index_of(stream, instance) else { return 0 };
        self.by_writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())[stream.index()][index]
    }

    /// The highest position any writer of `stream` has reached.
    pub fn max_position(&self, stream: Stream) -> i64 {
        self.by_writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())[stream.index()].iter().copied().max().unwrap_or(0)
    }

    /// A number that grows whenever this instance writes to `stream`
    /// (`notify`, even when an earlier write still in flight holds its
    /// position back) or any writer's position on it moves. What was read
    /// of the stream's tables after this was `p` is still current while it
    /// is `p`, as far as this instance has been told: caches of such reads
    /// (access tokens, unread counts) are stamped with it.
    pub fn progress(&self, stream: Stream) -> i64 {
        let notified = self.notified[stream.index()].load(Ordering::SeqCst);
        let positions: i64 = self.by_writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())[stream.index()].iter().sum();
        positions.wrapping_add(notified)
    }

    pub fn position(&self, stream: Stream) -> i64 {
        self.positions.borrow().get(stream)
    }

    pub fn positions(&self) -> Positions {
        self.positions.borrow().clone()
    }

    /// How far the events of `room_id` may be read: its persister's position.
    pub fn room_position(&self, room_id: &str) -> i64 {
        self.positions.borrow().events_writer(self.writers.events_writer_index(room_id))
    }

    pub fn subscribe(&self) -> watch::Receiver<Positions> {
        self.positions.subscribe()
    }
}

fn snapshot(by_writer: &[Vec<i64>; Stream::COUNT]) -> Positions {
    Positions { mins: std::array::from_fn(|index| by_writer[index].iter().copied().min().unwrap_or(0)), events: by_writer[Stream::Events.index()].clone() }
}
