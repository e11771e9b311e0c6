//! Who owns each access token in use, kept between requests so that a
//! client's requests (a `/sync` long-poll after every event, above all)
//! do not each read the token's row.
//!
//! Tokens are only ever deleted together with their device, and every path
//! that deletes devices (logout, device deletion, password change,
//! deactivation) writes the `device_lists` stream and then says so
//! (`Services::stream_advanced`); other instances learn of it through the
//! stream's position. An owner read while the stream's `progress` was `p`
//! is therefore still the owner while it is `p`; once it moved, the next
//! request reads the row again. Unknown tokens are not kept: a new login
//! is seen at once. An account's flags (`admin`, `shadow_banned`) are only
//! set when it is created, so they cannot change under an entry.
//!
//! May call: `weft_storage`, `sync::Notifier`.

use std::{collections::HashMap, sync::Mutex};

use weft_storage::{Storage, StorageError, Stream, TokenOwner};

use crate::sync::Notifier;

/// Most tokens kept; all are forgotten past it.
const MAX_TOKENS: usize = 100_000;

#[derive(Debug, Default)]
pub struct TokenOwnerCache {
    /// Token hash → the `device_lists` progress before it was read, and its owner.
    held: Mutex<HashMap<String, (i64, TokenOwner)>>,
}

impl TokenOwnerCache {
    /// The owner of the token whose hash is `token_hash`, if it exists.
    pub async fn owner(&self, storage: &Storage, notifier: &Notifier, token_hash: &str) -> Result<Option<TokenOwner>, StorageError> {
        let progress = notifier.progress(Stream::DeviceLists);
        {
            let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match held.get(token_hash) {
                Some((stamp, owner)) if *stamp == progress => return Ok(Some(owner.clone())),
                Some(_) => {
                    held.remove(token_hash);
                }
                None => {}
            }
        }
        let owner = storage.token_owner(token_hash).await?;
        if let Some(owner) = &owner {
            let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if held.len() >= MAX_TOKENS {
                held.clear();
            }
            held.insert(token_hash.to_owned(), (progress, owner.clone()));
        }
        Ok(owner)
    }

    /// Records that the token's device was just seen from `ip` (written to
    /// its row by the caller), so that the next request compares with it.
    pub fn seen(&self, token_hash: &str, at: i64, ip: &str) {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, owner)) = held.get_mut(token_hash) {
            owner.last_seen_ts = Some(at);
            owner.last_seen_ip = Some(ip.to_owned());
        }
    }
}
