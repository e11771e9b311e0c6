//! End-to-end encryption keys of devices: device keys, one-time keys and
//! fallback keys. A device's keys appearing or changing is a row of the
//! `device_lists` stream, in the same transaction.
//!
//! A device's key counts (what `/sync` reports every time) may be kept in
//! memory (`KeyCountCache`) when this process is the only one that writes
//! keys: every upload, claim and device deletion then goes through this
//! `Storage`, which forgets the device's counts after it commits.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use ruma::{DeviceId, UserId};
use sqlx::{AnyConnection, Row};

use super::{Result, Storage, StorageError};

/// A one-time or fallback key to store: `(algorithm, key id, key JSON)`.
pub type NewKey = (String, String, serde_json::Value);

/// A key claimed for a device: `algorithm:key_id` and the key JSON.
pub type ClaimedKey = (String, serde_json::Value);

/// Unclaimed one-time keys per algorithm, and the algorithms of unused fallback keys.
pub type KeyCounts = (BTreeMap<String, i64>, Vec<String>);

/// Most devices whose counts are kept; all are forgotten past it.
const MAX_KEPT_COUNTS: usize = 100_000;

/// Devices' key counts, kept only once `Storage::keep_key_counts` said
/// that no other process writes keys.
#[derive(Debug, Default)]
pub(crate) struct KeyCountCache {
    enabled: AtomicBool,
    state: Mutex<KeptCounts>,
}

#[derive(Debug, Default)]
struct KeptCounts {
    /// Grows with every write: a read that started before one is not kept.
    generation: u64,
    held: HashMap<(String, String), KeyCounts>,
}

impl KeyCountCache {
    fn state(&self) -> std::sync::MutexGuard<'_, KeptCounts> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The kept counts of a device, or the generation to read them at.
    fn get(&self, user_id: &str, device_id: &str) -> Option<Result<KeyCounts, u64>> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let state = self.state();
        Some(state.held.get(&(user_id.to_owned(), device_id.to_owned())).cloned().ok_or(state.generation))
    }

    fn keep(&self, user_id: &str, device_id: &str, generation: u64, counts: &KeyCounts) {
        let mut state = self.state();
        if state.generation != generation {
            return;
        }
        if state.held.len() >= MAX_KEPT_COUNTS {
            state.held.clear();
        }
        state.held.insert((user_id.to_owned(), device_id.to_owned()), counts.clone());
    }

    /// After a commit that changed the keys of these devices (all of the
    /// user's with `None`).
    pub(crate) fn forget(&self, user_id: &str, device_id: Option<&str>) {
        let mut state = self.state();
        state.generation += 1;
        match device_id {
            Some(device_id) => {
                state.held.remove(&(user_id.to_owned(), device_id.to_owned()));
            }
            None => state.held.retain(|(user, _), _| user != user_id),
        }
    }
}

impl Storage {
    /// Stores a device's keys; `true` when they differ from what was stored
    /// (then other users hear of it through the device list).
    pub async fn set_device_keys(&self, user_id: &UserId, device_id: &DeviceId, keys: &serde_json::Value) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let current: Option<String> = sqlx::query_scalar("SELECT key_json FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2")
            .bind(user_id.as_str())
            .bind(device_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if current.as_deref().and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok()).as_ref() == Some(keys) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .bind(keys.to_string())
        .execute(&mut *tx)
        .await?;
        let (_, guard) = self.record_device_change(&mut tx, user_id.as_str(), device_id.as_str()).await?;
        tx.commit().await?;
        drop(guard);
        Ok(true)
    }

    /// The device keys of a user's devices that still exist, by device id.
    pub async fn device_keys_of(&self, user_id: &UserId) -> Result<Vec<(String, serde_json::Value, Option<String>)>> {
        let rows = sqlx::query(
            "SELECT k.device_id, k.key_json, d.display_name FROM e2e_device_keys k \
             JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id WHERE k.user_id = $1",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let json: String = row.try_get("key_json")?;
                Ok((row.try_get("device_id")?, parse(&json)?, row.try_get("display_name")?))
            })
            .collect()
    }

    /// Keeps devices' key counts in memory from now on: only for a process
    /// that is the only one writing keys (a deployment without workers).
    pub fn keep_key_counts(&self) {
        self.key_counts.enabled.store(true, Ordering::Relaxed);
    }

    /// Adds one-time keys. A key id already stored with different content is
    /// refused (`Conflict`), the same content is accepted again; all or nothing.
    pub async fn add_one_time_keys(&self, user_id: &UserId, device_id: &DeviceId, keys: &[NewKey]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for (algorithm, key_id, key) in keys {
            let existing: Option<String> =
                sqlx::query_scalar("SELECT key_json FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4")
                    .bind(user_id.as_str())
                    .bind(device_id.as_str())
                    .bind(algorithm)
                    .bind(key_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            match existing {
                Some(text) if parse(&text)? == *key => continue,
                Some(_) => return Err(StorageError::Conflict),
                None => {}
            }
            sqlx::query("INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json) VALUES ($1, $2, $3, $4, $5)")
                .bind(user_id.as_str())
                .bind(device_id.as_str())
                .bind(algorithm)
                .bind(key_id)
                .bind(key.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.key_counts.forget(user_id.as_str(), Some(device_id.as_str()));
        Ok(())
    }

    /// Replaces a device's fallback key of an algorithm; the same key again keeps its used flag.
    pub async fn set_fallback_key(&self, user_id: &UserId, device_id: &DeviceId, key: &NewKey) -> Result<()> {
        let (algorithm, key_id, json) = key;
        sqlx::query(
            "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) VALUES ($1, $2, $3, $4, $5, FALSE) \
             ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json, used = FALSE \
             WHERE e2e_fallback_keys.key_id <> excluded.key_id OR e2e_fallback_keys.key_json <> excluded.key_json",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .bind(algorithm)
        .bind(key_id)
        .bind(json.to_string())
        .execute(&self.pool)
        .await?;
        self.key_counts.forget(user_id.as_str(), Some(device_id.as_str()));
        Ok(())
    }

    /// What `/sync` reports of a device's keys, in one query: unclaimed
    /// one-time keys per algorithm (`signed_curve25519` always present) and
    /// the algorithms of unused fallback keys. From memory when kept.
    pub async fn key_counts(&self, user_id: &UserId, device_id: &DeviceId) -> Result<KeyCounts> {
        let generation = match self.key_counts.get(user_id.as_str(), device_id.as_str()) {
            Some(Ok(counts)) => return Ok(counts),
            Some(Err(generation)) => Some(generation),
            None => None,
        };
        let rows = sqlx::query(
            "SELECT 'one_time' AS kind, algorithm, COUNT(*) AS n FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm \
             UNION ALL SELECT 'fallback' AS kind, algorithm, 0 AS n FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 AND used = FALSE",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut counts = BTreeMap::from([("signed_curve25519".to_owned(), 0)]);
        let mut fallback = Vec::new();
        for row in rows {
            let kind: String = row.try_get("kind")?;
            let algorithm: String = row.try_get("algorithm")?;
            if kind == "one_time" {
                counts.insert(algorithm, row.try_get("n")?);
            } else {
                fallback.push(algorithm);
            }
        }
        fallback.sort();
        let counts = (counts, fallback);
        if let Some(generation) = generation {
            self.key_counts.keep(user_id.as_str(), device_id.as_str(), generation, &counts);
        }
        Ok(counts)
    }

    /// Deletes what belongs to a device being deleted: its keys and its inbox.
    pub(super) async fn delete_device_data(&self, conn: &mut AnyConnection, user_id: &str, device_id: &str) -> Result<()> {
        for table in ["e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys", "device_inbox"] {
            let sql = format!("DELETE FROM {table} WHERE user_id = $1 AND device_id = $2");
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).bind(device_id).execute(&mut *conn).await?;
        }
        Ok(())
    }
}

pub(super) fn parse(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StorageError::corrupt("e2e key_json", e))
}
