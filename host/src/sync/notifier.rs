//! Wakes `/sync` long-polls when a stream moves. Writers call `notify` after
//! commit; in a deployment with workers, replication calls it for other
//! writers' rows. Readers take positions from here, never from a writer's
//! counters, so what they see is always persisted.

use tokio::sync::watch;

use crate::storage::Stream;

/// One position per stream, indexed by `Stream::index`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Positions([i64; Stream::COUNT]);

impl Positions {
    pub fn get(&self, stream: Stream) -> i64 {
        self.0[stream.index()]
    }
}

#[derive(Debug)]
pub struct Notifier {
    /// A watch channel: waiters only need the latest positions, never every
    /// intermediate one.
    positions: watch::Sender<Positions>,
}

impl Notifier {
    /// Starts at the positions persisted before start-up.
    pub fn new(persisted: impl Fn(Stream) -> i64) -> Self {
        Self { positions: watch::Sender::new(Positions(Stream::ALL.map(persisted))) }
    }

    /// `stream` has been persisted up to `position` (never moves back).
    pub fn notify(&self, stream: Stream, position: i64) {
        self.positions.send_if_modified(|current| {
            let slot = &mut current.0[stream.index()];
            let advanced = position > *slot;
            if advanced {
                *slot = position;
            }
            advanced
        });
    }

    pub fn position(&self, stream: Stream) -> i64 {
        self.positions.borrow().get(stream)
    }

    pub fn positions(&self) -> Positions {
        *self.positions.borrow()
    }

    pub fn events_position(&self) -> i64 {
        self.position(Stream::Events)
    }

    pub fn subscribe(&self) -> watch::Receiver<Positions> {
        self.positions.subscribe()
    }
}
