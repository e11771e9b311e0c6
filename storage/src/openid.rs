//! OpenID tokens: short-lived proofs of a user's identity for third parties.

use ruma::{OwnedUserId, UserId};

use super::{Result, Storage, StorageError};

impl Storage {
    /// Stores a token for `user_id`, valid until `valid_until_ms`; expired
    /// tokens are deleted on the way.
    pub async fn add_openid_token(&self, token: &str, user_id: &UserId, valid_until_ms: i64) -> Result<()> {
        sqlx::query("DELETE FROM openid_tokens WHERE valid_until_ms < $1").bind(super::now_ms()).execute(&self.pool).await?;
        sqlx::query("INSERT INTO openid_tokens (token, user_id, valid_until_ms) VALUES ($1, $2, $3)")
            .bind(token)
            .bind(user_id.as_str())
            .bind(valid_until_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user an unexpired token belongs to.
    pub async fn openid_token_user(&self, token: &str) -> Result<Option<OwnedUserId>> {
        let user: Option<String> = sqlx::query_scalar("SELECT user_id FROM openid_tokens WHERE token = $1 AND valid_until_ms >= $2")
            .bind(token)
            .bind(super::now_ms())
            .fetch_optional(&self.pool)
            .await?;
        user.map(|user| OwnedUserId::try_from(user).map_err(|e| StorageError::corrupt("openid_tokens.user_id", e))).transpose()
    }
}
