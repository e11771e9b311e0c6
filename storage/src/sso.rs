//! Single sign-on's rows: login attempts (from the redirect to the
//! provider's callback), the mapping of a provider's users to Matrix users,
//! username-picking sessions, and `m.login.token` tokens. All of it in the
//! database, so any instance may take the next step of a login.
//!
//! Every "take" deletes the row it returns in the same statement, so a
//! state, a session or a token is used at most once even when two
//! instances race for it.

use ruma::{OwnedUserId, UserId};
use sqlx::{Row, any::AnyRow};

use super::{
    NewUser, Result, Storage, StorageError, User, now_ms,
    users::{USER_COLUMNS, insert_user_in, user_from_row},
};

/// A login attempt as stored at the redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoAttempt {
    pub state: String,
    pub idp_id: String,
    pub nonce: String,
    pub code_verifier: String,
    /// The absolute callback URL the provider was told.
    pub callback_url: String,
    /// What the plugin asked to keep (`Authorization::context`).
    pub context: String,
    /// The client's `redirectUrl` (empty for user-interactive auth).
    pub client_redirect_url: String,
    /// The user-interactive auth session re-authenticated by this attempt.
    pub ui_auth_session_id: Option<String>,
    pub expires_ts: i64,
}

/// A new user picking a username, between the callback and `sso_register`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernameSession {
    pub session_id: String,
    pub idp_id: String,
    pub subject: String,
    pub suggested_localpart: Option<String>,
    pub display_name: Option<String>,
    pub emails: Vec<String>,
    pub client_redirect_url: String,
    /// The username submitted on the picker page (not yet registered).
    pub chosen_localpart: Option<String>,
    /// Whether the provider's display name is to be the user's.
    pub use_display_name: bool,
    pub expires_ts: i64,
}

/// Row counts of the SSO tables, and of accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsoCounts {
    pub attempts: i64,
    pub external_ids: i64,
    pub username_sessions: i64,
    pub login_tokens: i64,
    pub users: i64,
}

const ATTEMPT_COLUMNS: &str = "state, idp_id, nonce, code_verifier, callback_url, context, client_redirect_url, ui_auth_session_id, expires_ts";
const SESSION_COLUMNS: &str =
    "session_id, idp_id, subject, suggested_localpart, display_name, emails, client_redirect_url, chosen_localpart, use_display_name, expires_ts";

impl Storage {
    /// Stores an attempt; expired attempts are deleted on the way.
    pub async fn add_sso_attempt(&self, attempt: &SsoAttempt) -> Result<()> {
        let now = now_ms();
        sqlx::query("DELETE FROM sso_login_attempts WHERE expires_ts < $1").bind(now).execute(&self.pool).await?;
        sqlx::query(
            "INSERT INTO sso_login_attempts (state, idp_id, nonce, code_verifier, callback_url, context, client_redirect_url, ui_auth_session_id, created_ts, expires_ts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&attempt.state)
        .bind(&attempt.idp_id)
        .bind(&attempt.nonce)
        .bind(&attempt.code_verifier)
        .bind(&attempt.callback_url)
        .bind(&attempt.context)
        .bind(&attempt.client_redirect_url)
        .bind(attempt.ui_auth_session_id.as_deref())
        .bind(now)
        .bind(attempt.expires_ts)
        .execute(&self.pool)
        .await
        .map_err(StorageError::from_insert)?;
        Ok(())
    }

    /// Takes (deletes and returns) the unexpired attempt with `state`: a
    /// second callback with the same state finds nothing.
    pub async fn take_sso_attempt(&self, state: &str) -> Result<Option<SsoAttempt>> {
        let sql = format!("DELETE FROM sso_login_attempts WHERE state = $1 RETURNING {ATTEMPT_COLUMNS}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(state).fetch_optional(&self.pool).await?;
        let attempt = row.map(|row| attempt_from_row(&row)).transpose()?;
        Ok(attempt.filter(|attempt| attempt.expires_ts >= now_ms()))
    }

    /// Whether an attempt with `state` is stored (for tests and diagnostics).
    pub async fn sso_attempt_exists(&self, state: &str) -> Result<bool> {
        let found: Option<String> = sqlx::query_scalar("SELECT state FROM sso_login_attempts WHERE state = $1").bind(state).fetch_optional(&self.pool).await?;
        Ok(found.is_some())
    }

    /// The account a provider's `subject` is mapped to (accounts are never
    /// deleted, only deactivated: a mapping always has its account).
    pub async fn user_by_external_id(&self, auth_provider: &str, external_id: &str) -> Result<Option<User>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = (SELECT user_id FROM user_external_ids WHERE auth_provider = $1 AND external_id = $2)");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(auth_provider).bind(external_id).fetch_optional(&self.pool).await?;
        row.map(|row| user_from_row(&row)).transpose()
    }

    /// The `(provider, subject)` pairs mapped to `user_id`.
    pub async fn external_ids_of(&self, user_id: &UserId) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT auth_provider, external_id FROM user_external_ids WHERE user_id = $1 ORDER BY auth_provider, external_id")
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok((row.try_get("auth_provider")?, row.try_get("external_id")?))).collect()
    }

    /// How many rows each SSO table holds (operators' diagnostics, tests).
    pub async fn sso_counts(&self) -> Result<SsoCounts> {
        let count = |table: &'static str| async move {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).fetch_one(&self.pool).await
        };
        Ok(SsoCounts {
            attempts: count("sso_login_attempts").await?,
            external_ids: count("user_external_ids").await?,
            username_sessions: count("sso_username_sessions").await?,
            login_tokens: count("login_tokens").await?,
            users: count("users").await?,
        })
    }

    /// Maps a provider's user to an existing Matrix user (`allow_existing_users`).
    /// A subject already mapped is `StorageError::Conflict`.
    pub async fn add_external_id(&self, auth_provider: &str, external_id: &str, user_id: &UserId) -> Result<()> {
        sqlx::query("INSERT INTO user_external_ids (auth_provider, external_id, user_id) VALUES ($1, $2, $3)")
            .bind(auth_provider)
            .bind(external_id)
            .bind(user_id.as_str())
            .execute(&self.pool)
            .await
            .map_err(StorageError::from_insert)?;
        Ok(())
    }

    /// Registers a user for a provider's user: the account, its display
    /// name and the mapping, all or nothing (`Conflict` when the id or the
    /// subject is taken meanwhile).
    pub async fn register_sso_user(&self, user: NewUser<'_>, display_name: Option<&str>, auth_provider: &str, external_id: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        insert_user_in(&mut tx, user, display_name.unwrap_or(user.user_id.localpart())).await?;
        sqlx::query("INSERT INTO user_external_ids (auth_provider, external_id, user_id) VALUES ($1, $2, $3)")
            .bind(auth_provider)
            .bind(external_id)
            .bind(user.user_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(StorageError::from_insert)?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a username-picking session; expired ones are deleted on the way.
    pub async fn add_username_session(&self, session: &UsernameSession) -> Result<()> {
        let now = now_ms();
        sqlx::query("DELETE FROM sso_username_sessions WHERE expires_ts < $1").bind(now).execute(&self.pool).await?;
        let emails = serde_json::to_string(&session.emails).map_err(|e| StorageError::corrupt("sso_username_sessions.emails", e))?;
        sqlx::query(
            "INSERT INTO sso_username_sessions (session_id, idp_id, subject, suggested_localpart, display_name, emails, client_redirect_url, created_ts, expires_ts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&session.session_id)
        .bind(&session.idp_id)
        .bind(&session.subject)
        .bind(session.suggested_localpart.as_deref())
        .bind(session.display_name.as_deref())
        .bind(emails)
        .bind(&session.client_redirect_url)
        .bind(now)
        .bind(session.expires_ts)
        .execute(&self.pool)
        .await
        .map_err(StorageError::from_insert)?;
        Ok(())
    }

    /// The unexpired username session `session_id`.
    pub async fn username_session(&self, session_id: &str) -> Result<Option<UsernameSession>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sso_username_sessions WHERE session_id = $1 AND expires_ts >= $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(session_id).bind(now_ms()).fetch_optional(&self.pool).await?;
        row.map(|row| session_from_row(&row)).transpose()
    }

    /// Takes (deletes and returns) the unexpired username session `session_id`.
    pub async fn take_username_session(&self, session_id: &str) -> Result<Option<UsernameSession>> {
        let sql = format!("DELETE FROM sso_username_sessions WHERE session_id = $1 RETURNING {SESSION_COLUMNS}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(session_id).fetch_optional(&self.pool).await?;
        let session = row.map(|row| session_from_row(&row)).transpose()?;
        Ok(session.filter(|session| session.expires_ts >= now_ms()))
    }

    /// Records what the user submitted on the picker page.
    pub async fn set_username_choice(&self, session_id: &str, localpart: &str, use_display_name: bool) -> Result<()> {
        sqlx::query("UPDATE sso_username_sessions SET chosen_localpart = $1, use_display_name = $2 WHERE session_id = $3")
            .bind(localpart)
            .bind(i64::from(use_display_name))
            .bind(session_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a username session (its user is registered).
    pub async fn delete_username_session(&self, session_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM sso_username_sessions WHERE session_id = $1").bind(session_id).execute(&self.pool).await?;
        Ok(())
    }

    /// Stores a login token for `user_id` (one statement: this is on every
    /// SSO login's way back to the client; `take_login_token` deletes the
    /// expired ones).
    pub async fn add_login_token(&self, token: &str, user_id: &UserId, auth_provider: Option<&str>, expires_ts: i64) -> Result<()> {
        sqlx::query("INSERT INTO login_tokens (token, user_id, auth_provider, expires_ts) VALUES ($1, $2, $3, $4)")
            .bind(token)
            .bind(user_id.as_str())
            .bind(auth_provider)
            .bind(expires_ts)
            .execute(&self.pool)
            .await
            .map_err(StorageError::from_insert)?;
        Ok(())
    }

    /// Takes (deletes) a login token and returns its user if it had not
    /// expired: a token logs in once. Every expired token is deleted in the
    /// same statement.
    pub async fn take_login_token(&self, token: &str) -> Result<Option<OwnedUserId>> {
        let rows = sqlx::query("DELETE FROM login_tokens WHERE token = $1 OR expires_ts < $2 RETURNING token, user_id, expires_ts")
            .bind(token)
            .bind(now_ms())
            .fetch_all(&self.pool)
            .await?;
        let mut taken = None;
        for row in &rows {
            if row.try_get::<String, _>("token")? == token {
                taken = Some(row);
            }
        }
        let Some(row) = taken else { return Ok(None) };
        let expires_ts: i64 = row.try_get("expires_ts")?;
        if expires_ts < now_ms() {
            return Ok(None);
        }
        let user: String = row.try_get("user_id")?;
        OwnedUserId::try_from(user).map(Some).map_err(|e| StorageError::corrupt("login_tokens.user_id", e))
    }

    /// Marks a user-interactive auth session refused (`reason`): every later
    /// request with it is refused.
    pub async fn refuse_uia_session(&self, session_id: &str, reason: &str) -> Result<()> {
        sqlx::query("UPDATE ui_auth_sessions SET refused = $1 WHERE session_id = $2").bind(reason).bind(session_id).execute(&self.pool).await?;
        Ok(())
    }
}

fn attempt_from_row(row: &AnyRow) -> Result<SsoAttempt> {
    Ok(SsoAttempt {
        state: row.try_get("state")?,
        idp_id: row.try_get("idp_id")?,
        nonce: row.try_get("nonce")?,
        code_verifier: row.try_get("code_verifier")?,
        callback_url: row.try_get("callback_url")?,
        context: row.try_get("context")?,
        client_redirect_url: row.try_get("client_redirect_url")?,
        ui_auth_session_id: row.try_get("ui_auth_session_id")?,
        expires_ts: row.try_get("expires_ts")?,
    })
}

fn session_from_row(row: &AnyRow) -> Result<UsernameSession> {
    let emails: String = row.try_get("emails")?;
    Ok(UsernameSession {
        session_id: row.try_get("session_id")?,
        idp_id: row.try_get("idp_id")?,
        subject: row.try_get("subject")?,
        suggested_localpart: row.try_get("suggested_localpart")?,
        display_name: row.try_get("display_name")?,
        emails: serde_json::from_str(&emails).map_err(|e| StorageError::corrupt("sso_username_sessions.emails", e))?,
        client_redirect_url: row.try_get("client_redirect_url")?,
        chosen_localpart: row.try_get("chosen_localpart")?,
        use_display_name: row.try_get::<i64, _>("use_display_name")? != 0,
        expires_ts: row.try_get("expires_ts")?,
    })
}
