//! Filters clients upload once and name by id in `/sync`.

use ruma::UserId;

use super::{Result, Storage, StorageError};

impl Storage {
    /// Stores a filter and returns its new id (ids count up per user).
    pub async fn create_filter(&self, user_id: &UserId, filter_json: &str) -> Result<String> {
        for _ in 0..5 {
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM user_filters WHERE user_id = $1").bind(user_id.as_str()).fetch_one(&self.pool).await?;
            let filter_id = count.to_string();
            let inserted = sqlx::query("INSERT INTO user_filters (user_id, filter_id, filter_json) VALUES ($1, $2, $3)")
                .bind(user_id.as_str())
                .bind(&filter_id)
                .bind(filter_json)
                .execute(&self.pool)
                .await
                .map_err(StorageError::from_insert);
            match inserted {
                Ok(_) => return Ok(filter_id),
                // Another request took the id first: count again.
                Err(StorageError::Conflict) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(StorageError::Conflict)
    }

    pub async fn filter(&self, user_id: &UserId, filter_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT filter_json FROM user_filters WHERE user_id = $1 AND filter_id = $2")
            .bind(user_id.as_str())
            .bind(filter_id)
            .fetch_optional(&self.pool)
            .await?)
    }
}
