//! Who owns an access token, for sticky `/sync`: looked up in the shared
//! database as the server does (by the token's SHA-256), never by parsing the
//! token's format. Answers are cached briefly (`router.token_cache_ms`), the
//! unknown ones too, so a burst of syncs costs one query per token.
//!
//! A lookup that fails (database down) is not cached and yields no user: the
//! request still goes through, to any instance of the group.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use weft_core::access_token::TokenOwners;
use weft_core::crypto::token::hash_access_token;

/// Entries kept at most; past it, expired ones are dropped, then all.
const CACHE_CAPACITY: usize = 100_000;

pub struct UserLookup {
    /// `None` when the router runs without a database (tests, or none configured).
    tokens: Option<Arc<dyn TokenOwners>>,
    /// Token hash to (user id or none, when it was looked up). A std mutex:
    /// never held across the database query.
    cache: Mutex<HashMap<String, (Option<String>, Instant)>>,
    ttl: Duration,
}

impl UserLookup {
    pub fn new(tokens: Option<Arc<dyn TokenOwners>>, ttl: Duration) -> Self {
        Self { tokens, cache: Mutex::new(HashMap::new()), ttl }
    }

    /// The user id owning `token`, if it is a live token.
    pub async fn user_of(&self, token: &str) -> Option<String> {
        let hash = hash_access_token(token);
        {
            let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some((user, at)) = cache.get(&hash)
                && at.elapsed() < self.ttl
            {
                return user.clone();
            }
        }
        let tokens = self.tokens.as_ref()?;
        let user = match tokens.user_of(&hash).await {
            Ok(user) => user,
            Err(error) => {
                tracing::warn!(%error, "cannot look up an access token; the request is not sticky");
                return None;
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            let ttl = self.ttl;
            cache.retain(|_, (_, at)| at.elapsed() < ttl);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(hash, (user.clone(), Instant::now()));
        user
    }
}
