//! Accounts: creation (with the first device and token in the same
//! transaction), look-up, password changes and deactivation.

use ruma::{DeviceId, OwnedUserId, UserId};
use sqlx::{Row, any::AnyRow};

use super::{Result, Storage, StorageError, devices::NewSession, now_ms};

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user_id: OwnedUserId,
    pub password_hash: Option<String>,
    pub created_ts: i64,
    pub admin: bool,
    pub deactivated: bool,
    pub shadow_banned: bool,
    pub user_type: Option<String>,
}

/// What registration writes for a new account.
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    pub user_id: &'a UserId,
    pub password_hash: Option<&'a str>,
    pub admin: bool,
    pub shadow_banned: bool,
    pub user_type: Option<&'a str>,
}

pub(super) const USER_COLUMNS: &str = "user_id, password_hash, created_ts, admin, deactivated, shadow_banned, user_type";

impl Storage {
    /// Creates an account and, unless `session` is `None` (`inhibit_login`), its
    /// first device and access token, all or nothing. A user id that differs
    /// from an existing one only by case is taken: `StorageError::Conflict`.
    pub async fn create_user(&self, user: NewUser<'_>, session: Option<NewSession<'_>>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let mut guards = Vec::new();
        insert_user_in(&mut tx, user, user.user_id.localpart()).await?;
        if let Some(session) = session {
            self.open_session_in(&mut tx, user.user_id, session, &mut guards).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The account with exactly this id.
    pub async fn user(&self, user_id: &UserId) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id.as_str()).fetch_optional(&self.pool).await?;
        row.map(|row| user_from_row(&row)).transpose()
    }

    /// The account whose id matches ignoring case, as Synapse looks up logins.
    pub async fn user_ignoring_case(&self, user_id: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE lower(user_id) = lower($1)");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_optional(&self.pool).await?;
        row.map(|row| user_from_row(&row)).transpose()
    }

    /// Whether an account with this id (ignoring case) exists, deactivated or not.
    pub async fn user_id_taken(&self, user_id: &UserId) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM users WHERE lower(user_id) = lower($1)").bind(user_id.as_str()).fetch_optional(&self.pool).await?;
        Ok(found.is_some())
    }

    /// Replaces the password hash; with `keep_only` set, every other device of
    /// the user is deleted along with its tokens, in the same transaction.
    pub async fn set_password_hash(&self, user_id: &UserId, hash: &str, keep_only: Option<&DeviceId>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let mut guards = Vec::new();
        sqlx::query("UPDATE users SET password_hash = $1 WHERE user_id = $2").bind(hash).bind(user_id.as_str()).execute(&mut *tx).await?;
        if let Some(keep) = keep_only {
            self.delete_devices_in(&mut tx, user_id, DeviceSelection::AllExcept(keep), &mut guards).await?;
        }
        tx.commit().await?;
        if keep_only.is_some() {
            self.key_counts.forget(user_id.as_str(), None);
        }
        Ok(())
    }

    /// Deactivates an account: no password, no devices, no tokens. The row
    /// stays so that the user id is never handed out again.
    pub async fn deactivate_user(&self, user_id: &UserId) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let mut guards = Vec::new();
        sqlx::query("UPDATE users SET deactivated = TRUE, password_hash = NULL WHERE user_id = $1").bind(user_id.as_str()).execute(&mut *tx).await?;
        self.delete_devices_in(&mut tx, user_id, DeviceSelection::All, &mut guards).await?;
        tx.commit().await?;
        self.key_counts.forget(user_id.as_str(), None);
        Ok(())
    }
}

pub(super) enum DeviceSelection<'a> {
    All,
    AllExcept(&'a DeviceId),
    Only(&'a [&'a DeviceId]),
}

pub(super) fn user_from_row(row: &AnyRow) -> Result<User> {
    let user_id: String = row.try_get("user_id")?;
    Ok(User {
        user_id: OwnedUserId::try_from(user_id).map_err(|e| StorageError::corrupt("users.user_id", e))?,
        password_hash: row.try_get("password_hash")?,
        created_ts: row.try_get("created_ts")?,
        admin: super::flag(row, "admin")?,
        deactivated: super::flag(row, "deactivated")?,
        shadow_banned: super::flag(row, "shadow_banned")?,
        user_type: row.try_get("user_type")?,
    })
}

/// Inserts an account and its display name (Synapse's default: the local
/// part) in `tx`; a taken id is `StorageError::Conflict`.
pub(super) async fn insert_user_in(tx: &mut sqlx::Transaction<'static, sqlx::Any>, user: NewUser<'_>, display_name: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (user_id, password_hash, created_ts, admin, deactivated, shadow_banned, user_type) \
             VALUES ($1, $2, $3, $4, FALSE, $5, $6)",
    )
    .bind(user.user_id.as_str())
    .bind(user.password_hash)
    .bind(now_ms())
    .bind(user.admin)
    .bind(user.shadow_banned)
    .bind(user.user_type)
    .execute(&mut **tx)
    .await
    .map_err(StorageError::from_insert)?;
    sqlx::query("INSERT INTO profile_fields (user_id, field, value_json) VALUES ($1, 'displayname', $2)")
        .bind(user.user_id.as_str())
        .bind(serde_json::Value::String(display_name.to_owned()).to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
