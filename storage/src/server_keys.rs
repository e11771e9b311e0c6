//! Other servers' signing keys: the latest verified key answer of each
//! server and every key ever verified for it (`weft_federation::keys`).

use sqlx::Row;

use super::{Result, Storage};

/// One verified key of a remote server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredServerKey {
    pub key_id: String,
    /// Unpadded base64, as the key answers carry it.
    pub verify_key: String,
    pub valid_until_ts: i64,
    /// Set for an old key: when it stopped being used.
    pub expired_ts: Option<i64>,
}

impl Storage {
    /// Records a verified key answer for `server_name` and its keys, in one
    /// transaction; a key already known is updated.
    pub async fn store_server_keys(&self, server_name: &str, key_json: &str, valid_until_ts: i64, keys: &[StoredServerKey]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO server_keys_json (server_name, key_json, valid_until_ts, fetched_ts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (server_name) DO UPDATE SET key_json = excluded.key_json, valid_until_ts = excluded.valid_until_ts, fetched_ts = excluded.fetched_ts",
        )
        .bind(server_name)
        .bind(key_json)
        .bind(valid_until_ts)
        .bind(super::now_ms())
        .execute(&mut *tx)
        .await?;
        for key in keys {
            sqlx::query(
                "INSERT INTO server_signing_keys (server_name, key_id, verify_key, valid_until_ts, expired_ts) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (server_name, key_id) DO UPDATE SET verify_key = excluded.verify_key, valid_until_ts = excluded.valid_until_ts, \
                 expired_ts = excluded.expired_ts",
            )
            .bind(server_name)
            .bind(&key.key_id)
            .bind(&key.verify_key)
            .bind(key.valid_until_ts)
            .bind(key.expired_ts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The latest verified key answer of `server_name` and its `valid_until_ts`.
    pub async fn server_keys_json(&self, server_name: &str) -> Result<Option<(String, i64)>> {
        let row =
            sqlx::query("SELECT key_json, valid_until_ts FROM server_keys_json WHERE server_name = $1").bind(server_name).fetch_optional(&self.pool).await?;
        row.map(|row| Ok((row.try_get("key_json")?, row.try_get("valid_until_ts")?))).transpose()
    }

    /// Every key verified for `server_name`.
    pub async fn server_signing_keys(&self, server_name: &str) -> Result<Vec<StoredServerKey>> {
        let rows = sqlx::query("SELECT key_id, verify_key, valid_until_ts, expired_ts FROM server_signing_keys WHERE server_name = $1 ORDER BY key_id")
            .bind(server_name)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(StoredServerKey {
                    key_id: row.try_get("key_id")?,
                    verify_key: row.try_get("verify_key")?,
                    valid_until_ts: row.try_get("valid_until_ts")?,
                    expired_ts: row.try_get("expired_ts")?,
                })
            })
            .collect()
    }
}
