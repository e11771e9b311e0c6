//! Cross-signing keys (master, self-signing, user-signing) and the
//! signatures users upload for devices and keys. Each change is a row of the
//! `device_lists` stream of the user whose keys changed, so that users who
//! share a room with them re-query.

use ruma::UserId;
use sqlx::Row;

use super::{Result, Storage, e2e_keys::parse};

/// One uploaded signature of a target key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySignature {
    pub signer_user_id: String,
    pub signer_key_id: String,
    /// A device id or a cross-signing key's public part.
    pub target_key_id: String,
    pub signature: String,
}

impl Storage {
    /// Stores a user's cross-signing keys of the given types together.
    pub async fn set_cross_signing_keys(&self, user_id: &UserId, keys: &[(&str, &serde_json::Value, &str)]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let mut guards = Vec::new();
        for (key_type, key, public_key) in keys {
            sqlx::query(
                "INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_json) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json",
            )
            .bind(user_id.as_str())
            .bind(*key_type)
            .bind(key.to_string())
            .execute(&mut *tx)
            .await?;
            guards.push(self.record_device_change(&mut tx, user_id.as_str(), public_key).await?.1);
        }
        tx.commit().await?;
        drop(guards);
        Ok(())
    }

    /// A user's cross-signing key of `key_type` as uploaded.
    pub async fn cross_signing_key(&self, user_id: &UserId, key_type: &str) -> Result<Option<serde_json::Value>> {
        let json: Option<String> = sqlx::query_scalar("SELECT key_json FROM e2e_cross_signing_keys WHERE user_id = $1 AND key_type = $2")
            .bind(user_id.as_str())
            .bind(key_type)
            .fetch_optional(&self.pool)
            .await?;
        json.map(|text| parse(&text)).transpose()
    }

    /// Stores signatures of `target_user`'s keys; one device-list change for them.
    pub async fn add_key_signatures(&self, target_user: &UserId, signatures: &[KeySignature]) -> Result<()> {
        if signatures.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for signature in signatures {
            sqlx::query(
                "INSERT INTO e2e_signatures (signer_user_id, signer_key_id, target_user_id, target_key_id, signature) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (signer_user_id, signer_key_id, target_user_id, target_key_id) \
                 DO UPDATE SET signature = excluded.signature",
            )
            .bind(&signature.signer_user_id)
            .bind(&signature.signer_key_id)
            .bind(target_user.as_str())
            .bind(&signature.target_key_id)
            .bind(&signature.signature)
            .execute(&mut *tx)
            .await?;
        }
        let (_, guard) = self.record_device_change(&mut tx, target_user.as_str(), &signatures[0].target_key_id).await?;
        tx.commit().await?;
        drop(guard);
        Ok(())
    }

    /// Every stored signature of `target_user`'s keys.
    pub async fn key_signatures_of(&self, target_user: &UserId) -> Result<Vec<KeySignature>> {
        let rows = sqlx::query("SELECT signer_user_id, signer_key_id, target_key_id, signature FROM e2e_signatures WHERE target_user_id = $1")
            .bind(target_user.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(KeySignature {
                    signer_user_id: row.try_get("signer_user_id")?,
                    signer_key_id: row.try_get("signer_key_id")?,
                    target_key_id: row.try_get("target_key_id")?,
                    signature: row.try_get("signature")?,
                })
            })
            .collect()
    }
}
