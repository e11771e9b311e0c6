//! Switching off a plugin's callback that keeps failing, and trying it
//! again later.
//!
//! Tracked per callback (WIT name): a plugin whose `check-login-for-spam`
//! works while its `check-event-for-spam` keeps trapping has only the
//! latter switched off, and only a call of that callback is its trial (a
//! success of another callback says nothing about it). After `threshold`
//! consecutive failures the callback is off for `base` (doubling with each
//! trip, at most an hour): its calls get the `on_error` outcome without
//! running. When the pause ends its next call runs as a trial: success
//! switches it back on and resets the backoff, one more failure switches it
//! off again for twice as long. In memory per process.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

const MAX_BACKOFF: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct Health {
    threshold: u32,
    base: Duration,
    /// Per callback. A std mutex: held for a few instructions, never across
    /// an await. The keys are the role's WIT names: a bounded set.
    calls: Mutex<HashMap<&'static str, State>>,
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
        Self { threshold: threshold.max(1), base, calls: Mutex::new(HashMap::new()) }
    }

    /// `Err(remaining)` while `call` is switched off.
    pub fn admit(&self, call: &'static str) -> Result<(), Duration> {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let Some(state) = calls.get_mut(call) else { return Ok(()) };
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

    /// Returns whether `call` had been switched off before this success.
    pub fn record_success(&self, call: &'static str) -> bool {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.remove(call).is_some_and(|state| state.trips > 0)
    }

    pub fn record_failure(&self, call: &'static str) -> Tripped {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let state = calls.entry(call).or_default();
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Health, Tripped};

    #[test]
    fn callbacks_are_switched_off_and_back_on_alone() {
        let health = Health::new(2, Duration::from_millis(20));
        assert_eq!(health.record_failure("check-event-for-spam"), Tripped::No);
        assert!(!health.record_success("check-login-for-spam"), "another callback's success changes nothing");
        assert_eq!(health.record_failure("check-event-for-spam"), Tripped::SwitchedOff(Duration::from_millis(20)));
        assert!(health.admit("check-event-for-spam").is_err());
        assert!(health.admit("check-login-for-spam").is_ok(), "the other callbacks keep running");

        std::thread::sleep(Duration::from_millis(25));
        assert!(!health.record_success("check-login-for-spam"), "not the failing callback's trial");
        assert!(health.admit("check-event-for-spam").is_ok(), "its own trial call");
        assert_eq!(health.record_failure("check-event-for-spam"), Tripped::SwitchedOff(Duration::from_millis(40)), "off again, for longer");
        std::thread::sleep(Duration::from_millis(45));
        assert!(health.admit("check-event-for-spam").is_ok());
        assert!(health.record_success("check-event-for-spam"), "its own trial switches it back on");
        assert!(health.admit("check-event-for-spam").is_ok());
    }
}
