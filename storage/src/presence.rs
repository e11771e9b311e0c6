//! The `presence` stream: each user's latest presence, moved to a new stream
//! id whenever what others see changes (state, status message, activity).

use ruma::UserId;
use sqlx::{Row, any::AnyRow};

use super::{Result, Storage, Stream, flag};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRow {
    pub stream_id: i64,
    pub user_id: String,
    /// `online`, `unavailable` or `offline`.
    pub state: String,
    pub status_msg: Option<String>,
    pub last_active_ts: i64,
    pub last_sync_ts: i64,
    pub currently_active: bool,
}

/// What a write sets; the stream id comes from the writer.
#[derive(Debug, Clone)]
pub struct NewPresence<'a> {
    pub state: &'a str,
    pub status_msg: Option<&'a str>,
    pub last_active_ts: i64,
    pub last_sync_ts: i64,
    pub currently_active: bool,
}

const COLUMNS: &str = "stream_id, user_id, state, status_msg, last_active_ts, last_sync_ts, currently_active";

impl Storage {
    /// Writes a user's presence as a new row of the stream.
    pub async fn set_presence(&self, user_id: &UserId, presence: NewPresence<'_>) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let (stream_id, guard) = self.next_stream_id(&mut tx, Stream::Presence).await?;
        sqlx::query(
            "INSERT INTO presence (user_id, stream_id, instance_name, state, status_msg, last_active_ts, last_sync_ts, currently_active) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id, \
             instance_name = excluded.instance_name, state = excluded.state, status_msg = excluded.status_msg, \
             last_active_ts = excluded.last_active_ts, last_sync_ts = excluded.last_sync_ts, currently_active = excluded.currently_active",
        )
        .bind(user_id.as_str())
        .bind(stream_id)
        .bind(&self.instance_name)
        .bind(presence.state)
        .bind(presence.status_msg)
        .bind(presence.last_active_ts)
        .bind(presence.last_sync_ts)
        .bind(presence.currently_active)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        drop(guard);
        Ok(stream_id)
    }

    /// Records that a user synced, without a stream row (nobody else sees it).
    pub async fn touch_presence_sync(&self, user_id: &UserId, now: i64) -> Result<()> {
        sqlx::query("UPDATE presence SET last_sync_ts = $1 WHERE user_id = $2").bind(now).bind(user_id.as_str()).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn presence(&self, user_id: &UserId) -> Result<Option<PresenceRow>> {
        let sql = format!("SELECT {COLUMNS} FROM presence WHERE user_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(presence_from_row).transpose()
    }

    /// Presence rows written in `(after, upto]`, every user's.
    pub async fn presence_between(&self, after: i64, upto: i64) -> Result<Vec<PresenceRow>> {
        let sql = format!("SELECT {COLUMNS} FROM presence WHERE stream_id > $1 AND stream_id <= $2 ORDER BY stream_id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after).bind(upto).fetch_all(&self.pool).await?;
        rows.iter().map(presence_from_row).collect()
    }

    /// Users shown as online or idle: the candidates for the idle and offline timers.
    pub async fn present_users(&self) -> Result<Vec<PresenceRow>> {
        let sql = format!("SELECT {COLUMNS} FROM presence WHERE state <> 'offline'");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(presence_from_row).collect()
    }
}

fn presence_from_row(row: &AnyRow) -> Result<PresenceRow> {
    Ok(PresenceRow {
        stream_id: row.try_get("stream_id")?,
        user_id: row.try_get("user_id")?,
        state: row.try_get("state")?,
        status_msg: row.try_get("status_msg")?,
        last_active_ts: row.try_get("last_active_ts")?,
        last_sync_ts: row.try_get("last_sync_ts")?,
        currently_active: flag(row, "currently_active")?,
    })
}
