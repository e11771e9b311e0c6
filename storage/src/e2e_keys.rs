//! End-to-end encryption keys of devices: device keys, one-time keys and
//! fallback keys. A device's keys appearing or changing is a row of the
//! `device_lists` stream, in the same transaction.

use std::collections::BTreeMap;

use ruma::{DeviceId, UserId};
use sqlx::{AnyConnection, Row};

use super::{Result, Storage, StorageError};

/// A one-time or fallback key to store: `(algorithm, key id, key JSON)`.
pub type NewKey = (String, String, serde_json::Value);

/// A key claimed for a device: `algorithm:key_id` and the key JSON.
pub type ClaimedKey = (String, serde_json::Value);

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
        Ok(())
    }

    /// What `/sync` reports of a device's keys, in one query: unclaimed
    /// one-time keys per algorithm (`signed_curve25519` always present) and
    /// the algorithms of unused fallback keys.
    pub async fn key_counts(&self, user_id: &UserId, device_id: &DeviceId) -> Result<(BTreeMap<String, i64>, Vec<String>)> {
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
        Ok((counts, fallback))
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
