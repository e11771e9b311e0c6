//! What push rules decided for each local user about each event: written
//! with the event, in its transaction; read back as unread counts (those
//! after the user's read receipts) and as `/notifications`.

use std::collections::HashMap;

use ruma::{RoomId, UserId};
use sqlx::{AnyConnection, Row};

use super::{Result, Storage, StorageError, now_ms};

/// A notification for one user about the event being persisted.
#[derive(Debug, Clone, PartialEq)]
pub struct PushAction {
    pub user_id: String,
    /// The thread root, or `main`.
    pub thread_id: String,
    pub actions: serde_json::Value,
    pub highlight: bool,
}

/// One entry of `/notifications`.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub stream_ordering: i64,
    pub event_id: String,
    pub room_id: String,
    pub actions: serde_json::Value,
    pub ts: i64,
    pub read: bool,
}

impl Storage {
    /// Writes an event's push actions as one multi-row insert: a busy room
    /// notifies every member of every message.
    pub(super) async fn insert_push_actions(
        &self,
        conn: &mut AnyConnection,
        event_id: &str,
        room_id: &str,
        stream_ordering: i64,
        actions: &[PushAction],
    ) -> Result<()> {
        // Eight parameters a row; SQLite allows 32,766 in one statement.
        for chunk in actions.chunks(1000) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|row| {
                    let first = row * 8 + 1;
                    format!("(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})", first, first + 1, first + 2, first + 3, first + 4, first + 5, first + 6, first + 7)
                })
                .collect();
            let sql = format!(
                "INSERT INTO event_push_actions (user_id, event_id, room_id, stream_ordering, thread_id, actions, highlight, ts) VALUES {}",
                rows.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            let now = now_ms();
            for action in chunk {
                query = query
                    .bind(&action.user_id)
                    .bind(event_id)
                    .bind(room_id)
                    .bind(stream_ordering)
                    .bind(&action.thread_id)
                    .bind(action.actions.to_string())
                    .bind(action.highlight)
                    .bind(now);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// The positions up to which a user has read a room: per thread id,
    /// with `""` for the unthreaded receipt that covers every thread.
    async fn read_positions(&self, room_id: &RoomId, user_id: &UserId) -> Result<HashMap<String, i64>> {
        let rows = sqlx::query(
            "SELECT thread_id, MAX(event_stream_ordering) AS upto FROM receipts WHERE room_id = $1 AND user_id = $2 \
             AND receipt_type IN ('m.read', 'm.read.private') GROUP BY thread_id",
        )
        .bind(room_id.as_str())
        .bind(user_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok((row.try_get("thread_id")?, row.try_get("upto")?))).collect()
    }

    /// Unread `(notifications, highlights)` per thread id (`main` for the
    /// main timeline): push actions after the user's membership event (their
    /// join: an invite's own notification does not count once they joined,
    /// as Synapse counts) and after their latest read receipt that covers
    /// their thread (unthreaded, or of that thread).
    pub async fn unread_counts(&self, room_id: &RoomId, user_id: &UserId) -> Result<HashMap<String, (i64, i64)>> {
        let rows = sqlx::query(
            "SELECT p.thread_id, COUNT(*) AS notifications, SUM(CASE WHEN p.highlight THEN 1 ELSE 0 END) AS highlights              FROM event_push_actions p WHERE p.user_id = $1 AND p.room_id = $2 AND p.stream_ordering > COALESCE(                  (SELECT m.stream_ordering FROM current_state m WHERE m.room_id = p.room_id AND m.type = 'm.room.member' AND m.state_key = p.user_id), 0)              AND p.stream_ordering > COALESCE(                  (SELECT MAX(r.event_stream_ordering) FROM receipts r WHERE r.room_id = p.room_id AND r.user_id = p.user_id                   AND r.receipt_type IN ('m.read', 'm.read.private') AND (r.thread_id = '' OR r.thread_id = p.thread_id)), 0)              GROUP BY p.thread_id",
        )
        .bind(user_id.as_str())
        .bind(room_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let highlights: Option<i64> = row.try_get("highlights")?;
                Ok((row.try_get("thread_id")?, (row.try_get("notifications")?, highlights.unwrap_or(0))))
            })
            .collect()
    }

    /// A user's notifications before `before` (all when `None`), newest first.
    pub async fn notifications(&self, user_id: &UserId, before: Option<i64>, limit: i64, only_highlight: bool) -> Result<Vec<Notification>> {
        let rows = sqlx::query(
            "SELECT p.stream_ordering, p.event_id, p.room_id, p.actions, p.ts, p.thread_id FROM event_push_actions p \
             WHERE p.user_id = $1 AND p.stream_ordering < $2 AND ($3 = 0 OR p.highlight = TRUE) \
             ORDER BY p.stream_ordering DESC LIMIT $4",
        )
        .bind(user_id.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(only_highlight))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut read_cache: HashMap<String, HashMap<String, i64>> = HashMap::new();
        let mut notifications = Vec::with_capacity(rows.len());
        for row in &rows {
            let room_id: String = row.try_get("room_id")?;
            let thread: String = row.try_get("thread_id")?;
            let ordering: i64 = row.try_get("stream_ordering")?;
            if !read_cache.contains_key(&room_id) {
                let room = <&RoomId>::try_from(room_id.as_str()).map_err(|e| StorageError::corrupt("event_push_actions.room_id", e))?;
                read_cache.insert(room_id.clone(), self.read_positions(room, user_id).await?);
            }
            let read = &read_cache[&room_id];
            let read_upto = read.get("").copied().unwrap_or(0).max(read.get(&thread).copied().unwrap_or(0));
            let actions: String = row.try_get("actions")?;
            notifications.push(Notification {
                stream_ordering: ordering,
                event_id: row.try_get("event_id")?,
                room_id,
                actions: serde_json::from_str(&actions).map_err(|e| StorageError::corrupt("event_push_actions.actions", e))?,
                ts: row.try_get("ts")?,
                read: ordering <= read_upto,
            });
        }
        Ok(notifications)
    }
}
