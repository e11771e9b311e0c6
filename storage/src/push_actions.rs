//! What push rules decided for each local user about each event: written
//! with the event, in its transaction; read back as unread counts (those
//! after the user's read receipts, and the actions of new events that add
//! to them) and as `/notifications`.

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

/// A user's unread counts in a room as of a position, and what they were
/// counted against: unread are the push actions after the user's membership
/// event (their join: an invite's own notification does not count once they
/// joined, as Synapse counts) and after their latest read receipt that
/// covers the action's thread (unthreaded, or of that thread).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnreadBase {
    /// Per thread id (`main` for the main timeline): `(notifications, highlights)`.
    pub counts: HashMap<String, (i64, i64)>,
    /// Per receipt thread id (`""` for unthreaded): the position read up to.
    pub read: HashMap<String, i64>,
    /// The position of the user's current member event (0 without one).
    pub member: i64,
}

impl UnreadBase {
    /// Whether a push action at `stream_ordering` in `thread_id` is unread.
    pub fn counts_action(&self, stream_ordering: i64, thread_id: &str) -> bool {
        let read = self.read.get("").copied().unwrap_or(0).max(self.read.get(thread_id).copied().unwrap_or(0));
        stream_ordering > self.member && stream_ordering > read
    }

    /// Adds an action `counts_action` accepted.
    pub fn add(&mut self, thread_id: &str, highlight: bool) {
        let count = self.counts.entry(thread_id.to_owned()).or_insert((0, 0));
        count.0 += 1;
        count.1 += i64::from(highlight);
    }
}

/// One push action of an event, for unread counts.
#[derive(Debug, Clone, PartialEq)]
pub struct UnreadAction {
    pub user_id: String,
    pub stream_ordering: i64,
    pub thread_id: String,
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

    /// What a user's unread counts in a room are made of, as of the room's
    /// events up to `upto`: the push actions counted (see `UnreadBase`),
    /// the positions their read receipts cover, and their membership's.
    /// One statement.
    pub async fn unread_base(&self, room_id: &RoomId, user_id: &UserId, upto: i64) -> Result<UnreadBase> {
        let rows = sqlx::query(
            "SELECT 'count' AS part, p.thread_id AS thread_id, COUNT(*) AS a, SUM(CASE WHEN p.highlight THEN 1 ELSE 0 END) AS b \
             FROM event_push_actions p WHERE p.user_id = $1 AND p.room_id = $2 AND p.stream_ordering <= $3 AND p.stream_ordering > COALESCE( \
                 (SELECT m.stream_ordering FROM current_state m WHERE m.room_id = p.room_id AND m.type = 'm.room.member' AND m.state_key = p.user_id), 0) \
             AND p.stream_ordering > COALESCE( \
                 (SELECT MAX(r.event_stream_ordering) FROM receipts r WHERE r.room_id = p.room_id AND r.user_id = p.user_id \
                  AND r.receipt_type IN ('m.read', 'm.read.private') AND (r.thread_id = '' OR r.thread_id = p.thread_id)), 0) \
             GROUP BY p.thread_id \
             UNION ALL SELECT 'read' AS part, r.thread_id AS thread_id, MAX(r.event_stream_ordering) AS a, 0 AS b FROM receipts r \
             WHERE r.room_id = $2 AND r.user_id = $1 AND r.receipt_type IN ('m.read', 'm.read.private') GROUP BY r.thread_id \
             UNION ALL SELECT 'member' AS part, '' AS thread_id, m.stream_ordering AS a, 0 AS b FROM current_state m \
             WHERE m.room_id = $2 AND m.type = 'm.room.member' AND m.state_key = $1",
        )
        .bind(user_id.as_str())
        .bind(room_id.as_str())
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        let mut base = UnreadBase::default();
        for row in &rows {
            let part: String = row.try_get("part")?;
            let thread: String = row.try_get("thread_id")?;
            let a: Option<i64> = row.try_get("a")?;
            let b: Option<i64> = row.try_get("b")?;
            let (a, b) = (a.unwrap_or(0), b.unwrap_or(0));
            match part.as_str() {
                "count" => {
                    base.counts.insert(thread, (a, b));
                }
                "read" => {
                    base.read.insert(thread, a);
                }
                _ => base.member = a,
            }
        }
        Ok(base)
    }

    /// The push actions of `room_id`'s events in `(after, upto]`, oldest
    /// first: what every listener's unread counts add for those events.
    pub async fn push_actions_between(&self, room_id: &RoomId, after: i64, upto: i64) -> Result<Vec<UnreadAction>> {
        let rows = sqlx::query(
            "SELECT user_id, stream_ordering, thread_id, highlight FROM event_push_actions \
             WHERE room_id = $1 AND stream_ordering > $2 AND stream_ordering <= $3 ORDER BY stream_ordering",
        )
        .bind(room_id.as_str())
        .bind(after)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UnreadAction {
                    user_id: row.try_get("user_id")?,
                    stream_ordering: row.try_get("stream_ordering")?,
                    thread_id: row.try_get("thread_id")?,
                    highlight: super::flag(row, "highlight")?,
                })
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
