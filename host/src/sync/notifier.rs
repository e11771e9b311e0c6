//! Wakes `/sync` long-polls when a stream moves. Writers call `notify` after
//! commit; in a deployment with workers, replication calls it for other
//! writers' rows. Readers take positions from here, never from a writer's
//! counters, so what they see is always persisted.

use tokio::sync::watch;

#[derive(Debug)]
pub struct Notifier {
    /// The events position every reader may trust. A watch channel: waiters
    /// only need the latest value, never every intermediate one.
    events: watch::Sender<i64>,
}

impl Notifier {
    pub fn new(events_position: i64) -> Self {
        Self { events: watch::Sender::new(events_position) }
    }

    /// The stream has been persisted up to `position` (never moves back).
    pub fn notify(&self, position: i64) {
        self.events.send_if_modified(|current| {
            let advanced = position > *current;
            if advanced {
                *current = position;
            }
            advanced
        });
    }

    pub fn events_position(&self) -> i64 {
        *self.events.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.events.subscribe()
    }
}
