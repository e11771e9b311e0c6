//! Reads for many users at once, for `/keys/query`, `/keys/claim` and
//! `/sendToDevice`: one statement per chunk of users rather than one per
//! user. Every claim of a request is made in one transaction, only for
//! devices that exist.

use std::collections::{HashMap, HashSet};

use ruma::{DeviceId, UserId};
use sqlx::{AnyConnection, Row, any::AnyRow};

use super::{ClaimedKey, KeySignature, Result, Storage, e2e_keys::parse};

/// Users per statement: well under SQLite's and PostgreSQL's bind limits.
const CHUNK: usize = 500;

/// A user's device keys: `(device id, key JSON, display name)`.
pub type DeviceKeys = (String, serde_json::Value, Option<String>);

/// One claim: the device and the algorithm of the key wanted.
pub type KeyClaim<'a> = (&'a UserId, &'a DeviceId, &'a str);

impl Storage {
    /// Rows of `select` (which ends in `IN (` and names users from `$1`) for
    /// every user in `users`, chunk by chunk.
    async fn rows_for_users(&self, select: &str, users: &[&UserId]) -> Result<Vec<AnyRow>> {
        let mut rows = Vec::new();
        for chunk in users.chunks(CHUNK) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!("{select}{})", placeholders.join(", "));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for user in chunk {
                query = query.bind(user.as_str());
            }
            rows.extend(query.fetch_all(&self.pool).await?);
        }
        Ok(rows)
    }

    /// The device ids of each user, by user id, in order.
    pub async fn device_ids_of_users(&self, users: &[&UserId]) -> Result<HashMap<String, Vec<String>>> {
        let select = "SELECT user_id, device_id FROM devices WHERE user_id IN (";
        let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
        for row in self.rows_for_users(select, users).await? {
            by_user.entry(row.try_get("user_id")?).or_default().push(row.try_get("device_id")?);
        }
        by_user.values_mut().for_each(|devices| devices.sort());
        Ok(by_user)
    }

    /// The device keys of the existing devices of each user, by user id.
    pub async fn device_keys_of_users(&self, users: &[&UserId]) -> Result<HashMap<String, Vec<DeviceKeys>>> {
        let select = "SELECT k.user_id, k.device_id, k.key_json, d.display_name FROM e2e_device_keys k \
                      JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id WHERE k.user_id IN (";
        let mut by_user: HashMap<String, Vec<DeviceKeys>> = HashMap::new();
        for row in self.rows_for_users(select, users).await? {
            let json: String = row.try_get("key_json")?;
            let keys = (row.try_get("device_id")?, parse(&json)?, row.try_get("display_name")?);
            by_user.entry(row.try_get("user_id")?).or_default().push(keys);
        }
        Ok(by_user)
    }

    /// Every stored signature of each user's keys, by target user id.
    pub async fn key_signatures_of_users(&self, users: &[&UserId]) -> Result<HashMap<String, Vec<KeySignature>>> {
        let select = "SELECT target_user_id, signer_user_id, signer_key_id, target_key_id, signature FROM e2e_signatures \
                      WHERE target_user_id IN (";
        let mut by_user: HashMap<String, Vec<KeySignature>> = HashMap::new();
        for row in self.rows_for_users(select, users).await? {
            let signature = KeySignature {
                signer_user_id: row.try_get("signer_user_id")?,
                signer_key_id: row.try_get("signer_key_id")?,
                target_key_id: row.try_get("target_key_id")?,
                signature: row.try_get("signature")?,
            };
            by_user.entry(row.try_get("target_user_id")?).or_default().push(signature);
        }
        Ok(by_user)
    }

    /// Every user's cross-signing keys, by `(user id, key type)`.
    pub async fn cross_signing_keys_of_users(&self, users: &[&UserId]) -> Result<HashMap<(String, String), serde_json::Value>> {
        let select = "SELECT user_id, key_type, key_json FROM e2e_cross_signing_keys WHERE user_id IN (";
        let mut keys = HashMap::new();
        for row in self.rows_for_users(select, users).await? {
            let json: String = row.try_get("key_json")?;
            keys.insert((row.try_get("user_id")?, row.try_get("key_type")?), parse(&json)?);
        }
        Ok(keys)
    }

    /// Claims one key for each entry: a one-time key of the algorithm
    /// (deleted), else the device's fallback key (marked used), else `None`.
    /// One transaction; devices that do not exist are skipped without a write.
    pub async fn claim_keys(&self, claims: &[KeyClaim<'_>]) -> Result<Vec<Option<ClaimedKey>>> {
        self.claim_keys_from(claims, KeySources::Both).await
    }

    /// As `claim_keys`, from the one-time keys only, the fallback keys only,
    /// or both (MSC3983 asks the appservice between the two). An entry
    /// repeated claims as many one-time keys.
    pub async fn claim_keys_from(&self, claims: &[KeyClaim<'_>], sources: KeySources) -> Result<Vec<Option<ClaimedKey>>> {
        let mut users: Vec<&UserId> = claims.iter().map(|(user, _, _)| *user).collect();
        users.sort();
        users.dedup();
        let devices: HashSet<(String, String)> = self
            .device_ids_of_users(&users)
            .await?
            .into_iter()
            .flat_map(|(user, devices)| devices.into_iter().map(move |device| (user.clone(), device)))
            .collect();
        let exists = |(user, device, _): &KeyClaim<'_>| devices.contains(&(user.as_str().to_owned(), device.as_str().to_owned()));
        if !claims.iter().any(exists) {
            return Ok(vec![None; claims.len()]);
        }
        let mut tx = self.begin_write().await?;
        let mut claimed = Vec::with_capacity(claims.len());
        for claim in claims {
            claimed.push(if exists(claim) { claim_in(&mut tx, claim, sources).await? } else { None });
        }
        tx.commit().await?;
        for ((user_id, device_id, _), claimed) in claims.iter().zip(&claimed) {
            if claimed.is_some() {
                self.key_counts.forget(user_id.as_str(), Some(device_id.as_str()));
            }
        }
        Ok(claimed)
    }
}

/// Where `claim_keys_from` takes keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySources {
    OneTimeOnly,
    FallbackOnly,
    /// The fallback key without marking it used (MSC3983's claims that
    /// always include it, beside a one-time key).
    FallbackKept,
    Both,
}

/// One one-time key of the algorithm (deleted), else the fallback key (marked used).
async fn claim_in(conn: &mut AnyConnection, (user_id, device_id, algorithm): &KeyClaim<'_>, sources: KeySources) -> Result<Option<ClaimedKey>> {
    let one_time = if matches!(sources, KeySources::FallbackOnly | KeySources::FallbackKept) {
        None
    } else {
        sqlx::query(
            "DELETE FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = \
         (SELECT key_id FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 ORDER BY key_id LIMIT 1) \
         RETURNING key_id, key_json",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .bind(*algorithm)
        .fetch_optional(&mut *conn)
        .await?
    };
    let row = match one_time {
        Some(row) => row,
        None if sources == KeySources::OneTimeOnly => return Ok(None),
        None => {
            let sql = if sources == KeySources::FallbackKept {
                "SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3"
            } else {
                "UPDATE e2e_fallback_keys SET used = TRUE WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 RETURNING key_id, key_json"
            };
            let fallback = sqlx::query(sql).bind(user_id.as_str()).bind(device_id.as_str()).bind(*algorithm).fetch_optional(&mut *conn).await?;
            match fallback {
                Some(row) => row,
                None => return Ok(None),
            }
        }
    };
    let key_id: String = row.try_get("key_id")?;
    let json: String = row.try_get("key_json")?;
    Ok(Some((format!("{algorithm}:{key_id}"), parse(&json)?)))
}
