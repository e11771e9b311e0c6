//! Switching off a plugin that keeps failing, and trying it again later.
//!
//! After `threshold` consecutive failures the plugin is off for `base`
//! (doubling with each trip, at most an hour): calls get the `on_error`
//! outcome without running it. When the pause ends the next call runs as a
//! trial: success switches it back on and resets the backoff, one more
//! failure switches it off again for twice as long. In memory per process.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

const MAX_BACKOFF: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct Health {
    threshold: u32,
    base: Duration,
    /// A std mutex: held for a few instructions, never across an await.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    /// Times switched off since the last success: the backoff's exponent.
    trips: u32,
    off_until: Option<Instant>,
}

/// What `record_failure` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tripped {
    No,
    SwitchedOff(Duration),
}

impl Health {
    pub fn new(threshold: u32, base: Duration) -> Self {
        Self { threshold: threshold.max(1), base, state: Mutex::new(State::default()) }
    }

    /// `Err(remaining)` while switched off.
    pub fn admit(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.off_until {
            Some(until) => {
                let now = Instant::now();
                if now < until {
                    return Err(until - now);
                }
                // The trial call: one more failure trips again.
                state.off_until = None;
                state.consecutive_failures = self.threshold - 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Returns whether the plugin had been switched off before this success.
    pub fn record_success(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let recovered = state.trips > 0;
        *state = State::default();
        recovered
    }

    pub fn record_failure(&self) -> Tripped {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.consecutive_failures += 1;
        if state.consecutive_failures < self.threshold || state.off_until.is_some() {
            return Tripped::No;
        }
        let backoff = self.base.saturating_mul(1 << state.trips.min(16)).min(MAX_BACKOFF);
        state.trips += 1;
        state.consecutive_failures = 0;
        state.off_until = Some(Instant::now() + backoff);
        Tripped::SwitchedOff(backoff)
    }
}
