//! Profile fields: `displayname`, `avatar_url` and custom fields, as JSON.

use std::collections::BTreeMap;

use ruma::UserId;
use serde_json::Value;
use sqlx::Row;

use super::{Result, Storage, StorageError};

impl Storage {
    /// Every profile field of a user.
    pub async fn profile(&self, user_id: &UserId) -> Result<BTreeMap<String, Value>> {
        let rows = sqlx::query("SELECT field, value_json FROM profile_fields WHERE user_id = $1").bind(user_id.as_str()).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let value: String = row.try_get("value_json")?;
                Ok((row.try_get("field")?, serde_json::from_str(&value).map_err(|e| StorageError::corrupt("profile_fields.value_json", e))?))
            })
            .collect()
    }

    pub async fn set_profile_field(&self, user_id: &UserId, field: &str, value: &Value) -> Result<()> {
        sqlx::query(
            "INSERT INTO profile_fields (user_id, field, value_json) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, field) DO UPDATE SET value_json = excluded.value_json",
        )
        .bind(user_id.as_str())
        .bind(field)
        .bind(value.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_profile_field(&self, user_id: &UserId, field: &str) -> Result<()> {
        sqlx::query("DELETE FROM profile_fields WHERE user_id = $1 AND field = $2").bind(user_id.as_str()).bind(field).execute(&self.pool).await?;
        Ok(())
    }
}
