//! Server-side key backup: each user's backup versions and the encrypted room
//! keys stored in them. The key data is opaque here; only the three fields
//! that decide which of two copies of a session key to keep are columns.
//!
//! Every write starts by touching the user's version rows, which orders a
//! user's backup writes (row locks on PostgreSQL, the write lock on SQLite):
//! an upload cannot land in a version that another request is replacing or
//! deleting. Deleting a version keeps its row (`deleted_ts`), so version
//! numbers are never reused, and deletes its keys.

use ruma::{OwnedRoomId, RoomId, UserId};
use sqlx::{AnyConnection, Row, any::AnyRow};

use super::{Result, Storage, StorageError, now_ms};

/// A live backup version with the number of keys in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupVersion {
    pub version: i64,
    pub algorithm: String,
    /// The `auth_data` object as JSON text.
    pub auth_data: String,
    pub etag: i64,
    pub count: i64,
}

/// One session key as the client uploaded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupKey {
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    /// The algorithm-dependent `session_data` object as JSON text.
    pub session_data: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBackupKey {
    pub room_id: OwnedRoomId,
    pub session_id: String,
    pub key: BackupKey,
}

/// A version's etag and key count after a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupCounts {
    pub etag: i64,
    pub count: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupKeysWrite {
    Written(BackupCounts),
    /// The version does not exist or was deleted.
    UnknownVersion,
    /// The version exists but a newer one is current; keys go to the current one only.
    WrongVersion {
        current: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupVersionUpdate {
    Updated,
    UnknownVersion,
    /// The new `algorithm` differs from the version's.
    AlgorithmMismatch,
}

/// Attempts at numbering a new version before giving up: two first versions
/// of one user created at once can pick the same number, and the loser retries.
const CREATE_ATTEMPTS: usize = 3;

impl Storage {
    /// Creates the user's next backup version, which becomes the current one.
    pub async fn create_backup_version(&self, user_id: &UserId, algorithm: &str, auth_data: &str) -> Result<i64> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = self.begin_write().await?;
            lock_backup(&mut tx, user_id).await?;
            let inserted = sqlx::query_scalar(
                "INSERT INTO e2e_room_keys_versions (user_id, version, algorithm, auth_data, etag) \
                 SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, 0 FROM e2e_room_keys_versions WHERE user_id = $1 \
                 RETURNING version",
            )
            .bind(user_id.as_str())
            .bind(algorithm)
            .bind(auth_data)
            .fetch_one(&mut *tx)
            .await
            .map_err(StorageError::from_insert);
            match inserted {
                Ok(version) => {
                    tx.commit().await?;
                    return Ok(version);
                }
                Err(StorageError::Conflict) if attempt < CREATE_ATTEMPTS => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// A live version of the user's backup, or the latest live one for `None`.
    pub async fn backup_version(&self, user_id: &UserId, version: Option<i64>) -> Result<Option<BackupVersion>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT version, algorithm, auth_data, etag FROM e2e_room_keys_versions \
             WHERE user_id = $1 AND deleted_ts IS NULL AND ($2 IS NULL OR version = $2) ORDER BY version DESC LIMIT 1",
        )
        .bind(user_id.as_str())
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let version: i64 = row.try_get("version")?;
        let count = count_keys(&mut tx, user_id, version).await?;
        tx.commit().await?;
        Ok(Some(BackupVersion { version, algorithm: row.try_get("algorithm")?, auth_data: row.try_get("auth_data")?, etag: row.try_get("etag")?, count }))
    }

    /// Replaces a live version's `auth_data`; its algorithm cannot change.
    pub async fn update_backup_version(&self, user_id: &UserId, version: i64, algorithm: &str, auth_data: &str) -> Result<BackupVersionUpdate> {
        let mut tx = self.begin_write().await?;
        lock_backup(&mut tx, user_id).await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT algorithm FROM e2e_room_keys_versions WHERE user_id = $1 AND version = $2 AND deleted_ts IS NULL")
                .bind(user_id.as_str())
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        let outcome = match current {
            None => BackupVersionUpdate::UnknownVersion,
            Some(current) if current != algorithm => BackupVersionUpdate::AlgorithmMismatch,
            Some(_) => {
                sqlx::query("UPDATE e2e_room_keys_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2")
                    .bind(user_id.as_str())
                    .bind(version)
                    .bind(auth_data)
                    .execute(&mut *tx)
                    .await?;
                BackupVersionUpdate::Updated
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Deletes a live version and its keys; `false` when there was none.
    pub async fn delete_backup_version(&self, user_id: &UserId, version: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        lock_backup(&mut tx, user_id).await?;
        let deleted = sqlx::query("UPDATE e2e_room_keys_versions SET deleted_ts = $3 WHERE user_id = $1 AND version = $2 AND deleted_ts IS NULL")
            .bind(user_id.as_str())
            .bind(version)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if deleted {
            sqlx::query("DELETE FROM e2e_room_keys WHERE user_id = $1 AND version = $2").bind(user_id.as_str()).bind(version).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// Stores session keys in the user's current version. A key replaces the
    /// stored copy of its session only when it is better; the etag moves when
    /// anything was stored.
    pub async fn put_backup_keys(&self, user_id: &UserId, version: i64, keys: &[(&RoomId, &str, BackupKey)]) -> Result<BackupKeysWrite> {
        let mut tx = self.begin_write().await?;
        lock_backup(&mut tx, user_id).await?;
        let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM e2e_room_keys_versions WHERE user_id = $1 AND deleted_ts IS NULL")
            .bind(user_id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        match current {
            Some(current) if current == version => {}
            Some(current) if live_etag(&mut tx, user_id, version).await?.is_some() => {
                return Ok(BackupKeysWrite::WrongVersion { current });
            }
            _ => return Ok(BackupKeysWrite::UnknownVersion),
        }
        let mut changed = false;
        for (room_id, session_id, key) in keys {
            // The spec's order, best first: verified, then the lowest first
            // message index, then the lowest forwarded count. As a tuple,
            // (NOT is_verified, first_message_index, forwarded_count), the
            // better key is the smaller; an equal one changes nothing.
            let stored = sqlx::query(
                "INSERT INTO e2e_room_keys \
                 (user_id, version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET \
                 first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count, \
                 is_verified = excluded.is_verified, session_data = excluded.session_data \
                 WHERE (NOT excluded.is_verified, excluded.first_message_index, excluded.forwarded_count) \
                 < (NOT e2e_room_keys.is_verified, e2e_room_keys.first_message_index, e2e_room_keys.forwarded_count)",
            )
            .bind(user_id.as_str())
            .bind(version)
            .bind(room_id.as_str())
            .bind(*session_id)
            .bind(key.first_message_index)
            .bind(key.forwarded_count)
            .bind(key.is_verified)
            .bind(key.session_data.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            changed |= stored > 0;
        }
        if changed {
            bump_etag(&mut tx, user_id, version).await?;
        }
        let counts = counts(&mut tx, user_id, version).await?;
        tx.commit().await?;
        Ok(BackupKeysWrite::Written(counts))
    }

    /// The keys of a live version: all of them, a room's, or one session's.
    /// `None` when the version does not exist or was deleted.
    pub async fn backup_keys(
        &self,
        user_id: &UserId,
        version: i64,
        room_id: Option<&RoomId>,
        session_id: Option<&str>,
    ) -> Result<Option<Vec<StoredBackupKey>>> {
        let mut tx = self.begin_write().await?;
        if live_etag(&mut tx, user_id, version).await?.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data FROM e2e_room_keys \
             WHERE user_id = $1 AND version = $2 AND ($3 IS NULL OR room_id = $3) AND ($4 IS NULL OR session_id = $4) \
             ORDER BY room_id, session_id",
        )
        .bind(user_id.as_str())
        .bind(version)
        .bind(room_id.map(RoomId::as_str))
        .bind(session_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(key_from_row).collect::<Result<Vec<_>>>().map(Some)
    }

    /// Deletes keys of a live version: all of them, a room's, or one
    /// session's. `None` when the version does not exist or was deleted.
    pub async fn delete_backup_keys(&self, user_id: &UserId, version: i64, room_id: Option<&RoomId>, session_id: Option<&str>) -> Result<Option<BackupCounts>> {
        let mut tx = self.begin_write().await?;
        lock_backup(&mut tx, user_id).await?;
        if live_etag(&mut tx, user_id, version).await?.is_none() {
            return Ok(None);
        }
        let deleted =
            sqlx::query("DELETE FROM e2e_room_keys WHERE user_id = $1 AND version = $2 AND ($3 IS NULL OR room_id = $3) AND ($4 IS NULL OR session_id = $4)")
                .bind(user_id.as_str())
                .bind(version)
                .bind(room_id.map(RoomId::as_str))
                .bind(session_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if deleted > 0 {
            bump_etag(&mut tx, user_id, version).await?;
        }
        let counts = counts(&mut tx, user_id, version).await?;
        tx.commit().await?;
        Ok(Some(counts))
    }
}

/// Orders this transaction after every other backup write of the user.
async fn lock_backup(conn: &mut AnyConnection, user_id: &UserId) -> Result<()> {
    sqlx::query("UPDATE e2e_room_keys_versions SET etag = etag WHERE user_id = $1").bind(user_id.as_str()).execute(conn).await?;
    Ok(())
}

async fn live_etag(conn: &mut AnyConnection, user_id: &UserId, version: i64) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT etag FROM e2e_room_keys_versions WHERE user_id = $1 AND version = $2 AND deleted_ts IS NULL")
        .bind(user_id.as_str())
        .bind(version)
        .fetch_optional(conn)
        .await?)
}

async fn bump_etag(conn: &mut AnyConnection, user_id: &UserId, version: i64) -> Result<()> {
    sqlx::query("UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2")
        .bind(user_id.as_str())
        .bind(version)
        .execute(conn)
        .await?;
    Ok(())
}

async fn count_keys(conn: &mut AnyConnection, user_id: &UserId, version: i64) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = $1 AND version = $2")
        .bind(user_id.as_str())
        .bind(version)
        .fetch_one(conn)
        .await?)
}

async fn counts(conn: &mut AnyConnection, user_id: &UserId, version: i64) -> Result<BackupCounts> {
    let etag = live_etag(&mut *conn, user_id, version).await?.unwrap_or(0);
    Ok(BackupCounts { etag, count: count_keys(conn, user_id, version).await? })
}

fn key_from_row(row: &AnyRow) -> Result<StoredBackupKey> {
    Ok(StoredBackupKey {
        room_id: OwnedRoomId::try_from(row.try_get::<String, _>("room_id")?).map_err(|e| StorageError::corrupt("e2e_room_keys.room_id", e))?,
        session_id: row.try_get("session_id")?,
        key: BackupKey {
            first_message_index: row.try_get("first_message_index")?,
            forwarded_count: row.try_get("forwarded_count")?,
            is_verified: super::flag(row, "is_verified")?,
            session_data: row.try_get("session_data")?,
        },
    })
}
