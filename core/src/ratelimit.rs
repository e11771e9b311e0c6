//! Rate limiting with Synapse's semantics: a leaky bucket per key that holds
//! `burst_count` actions and drains at `per_second`. Unlike a plain token
//! bucket it can be asked without spending (Synapse counts failed logins only
//! after the password check, but refuses before it once the bucket is full).
//!
//! In memory and per process, as in Synapse; a restart forgets every bucket.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::config::{Config, RateLimit};

/// Buckets past this count trigger a sweep of the drained ones, bounding memory.
const SWEEP_THRESHOLD: usize = 10_000;

#[derive(Debug)]
pub struct Limiter {
    limit: RateLimit,
    /// A std mutex: nothing is awaited while it is held and each use is a
    /// few arithmetic operations.
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    updated: Instant,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Self {
        Self { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Counts one action for `key` if the bucket has room; otherwise says how
    /// long until it will.
    pub fn acquire(&self, key: &str) -> Result<(), Duration> {
        self.check(key, true)
    }

    /// The most actions a bucket holds.
    pub fn burst_count(&self) -> f64 {
        self.limit.burst_count
    }

    /// Whether one more action would be allowed, without counting it.
    pub fn peek(&self, key: &str) -> Result<(), Duration> {
        self.check(key, false)
    }

    fn check(&self, key: &str, spend: bool) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > SWEEP_THRESHOLD {
            let rate = self.limit.per_second;
            buckets.retain(|_, bucket| bucket.level - now.duration_since(bucket.updated).as_secs_f64() * rate > 0.0);
        }
        let bucket = buckets.get(key).copied().unwrap_or(Bucket { level: 0.0, updated: now });
        let drained = (bucket.level - now.duration_since(bucket.updated).as_secs_f64() * self.limit.per_second).max(0.0);
        if drained + 1.0 > self.limit.burst_count {
            let wait = (drained + 1.0 - self.limit.burst_count) / self.limit.per_second;
            return Err(Duration::from_secs_f64(wait.max(0.001)));
        }
        if spend {
            buckets.insert(key.to_owned(), Bucket { level: drained + 1.0, updated: now });
        }
        Ok(())
    }
}

/// The limiters an instance enforces, from the `rc_*` options.
#[derive(Debug)]
pub struct RateLimiters {
    pub message: Limiter,
    pub registration: Limiter,
    pub login_address: Limiter,
    pub login_account: Limiter,
    pub login_failed_attempts: Limiter,
    pub media_create: Limiter,
    pub room_creation: Limiter,
    /// Keyed by room.
    pub invites_per_room: Limiter,
    /// Keyed by the invitee.
    pub invites_per_user: Limiter,
    /// Keyed by the inviter.
    pub invites_per_issuer: Limiter,
    /// Keyed by the joining user.
    pub joins_local: Limiter,
}

impl RateLimiters {
    pub fn from_config(config: &Config) -> Self {
        Self {
            message: Limiter::new(config.rc_message),
            registration: Limiter::new(config.rc_registration),
            login_address: Limiter::new(config.rc_login.address),
            login_account: Limiter::new(config.rc_login.account),
            login_failed_attempts: Limiter::new(config.rc_login.failed_attempts),
            media_create: Limiter::new(config.rc_media_create),
            room_creation: Limiter::new(config.rc_room_creation),
            invites_per_room: Limiter::new(config.rc_invites.per_room),
            invites_per_user: Limiter::new(config.rc_invites.per_user),
            invites_per_issuer: Limiter::new(config.rc_invites.per_issuer),
            joins_local: Limiter::new(config.rc_joins.local),
        }
    }
}
