//! User-interactive authentication sessions, stored so that every process
//! sees the same session whichever one the client's next request reaches.

use sqlx::Row;

use super::{Result, Storage, StorageError, now_ms};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiaSession {
    pub session_id: String,
    pub created_ts: i64,
    /// The request the session authorises (method and path); a session is
    /// never accepted for another request.
    pub action: String,
    /// The account the session authenticates, for operations on an account.
    pub user_id: Option<String>,
    /// Stage types already completed.
    pub completed: Vec<String>,
    /// The request's own parameters as last given (JSON), for requests that
    /// later carry only `auth`.
    pub client_params: Option<String>,
    /// Why the session was refused (an SSO re-authentication as another
    /// user): every later request with it is refused.
    pub refused: Option<String>,
}

impl Storage {
    pub async fn create_uia_session(&self, session_id: &str, action: &str, user_id: Option<&str>, client_params: Option<&str>) -> Result<()> {
        sqlx::query("INSERT INTO ui_auth_sessions (session_id, created_ts, action, user_id, completed, client_params) VALUES ($1, $2, $3, $4, '[]', $5)")
            .bind(session_id)
            .bind(now_ms())
            .bind(action)
            .bind(user_id)
            .bind(client_params)
            .execute(&self.pool)
            .await
            .map_err(StorageError::from_insert)?;
        Ok(())
    }

    pub async fn uia_session(&self, session_id: &str) -> Result<Option<UiaSession>> {
        let row = sqlx::query("SELECT session_id, created_ts, action, user_id, completed, client_params, refused FROM ui_auth_sessions WHERE session_id = $1")
            .bind(session_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let completed: String = row.try_get("completed")?;
            Ok(UiaSession {
                session_id: row.try_get("session_id")?,
                created_ts: row.try_get("created_ts")?,
                action: row.try_get("action")?,
                user_id: row.try_get("user_id")?,
                completed: serde_json::from_str(&completed).map_err(|e| StorageError::corrupt("ui_auth_sessions.completed", e))?,
                client_params: row.try_get("client_params")?,
                refused: row.try_get("refused")?,
            })
        })
        .transpose()
    }

    pub async fn set_uia_completed(&self, session_id: &str, completed: &[String]) -> Result<()> {
        let completed = serde_json::to_string(completed).map_err(|e| StorageError::corrupt("ui_auth_sessions.completed", e))?;
        sqlx::query("UPDATE ui_auth_sessions SET completed = $1 WHERE session_id = $2").bind(completed).bind(session_id).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn set_uia_client_params(&self, session_id: &str, client_params: &str) -> Result<()> {
        sqlx::query("UPDATE ui_auth_sessions SET client_params = $1 WHERE session_id = $2").bind(client_params).bind(session_id).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn delete_uia_session(&self, session_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM ui_auth_sessions WHERE session_id = $1").bind(session_id).execute(&self.pool).await?;
        Ok(())
    }

    /// Deletes sessions created before `before_ms`; returns how many.
    pub async fn purge_uia_sessions(&self, before_ms: i64) -> Result<u64> {
        let result = sqlx::query("DELETE FROM ui_auth_sessions WHERE created_ts < $1").bind(before_ms).execute(&self.pool).await?;
        Ok(result.rows_affected())
    }
}
