//! The work of the pusher instances, read from the database, which is the
//! queue: which pushers have new notifications, membership changes or new
//! read receipts in a range of their streams, a pusher's notifications after its position
//! (those its user has not read meanwhile), and the unread counts behind
//! a badge.
//!
//! A pusher's progress is written by `pushers` (`record_pusher_*`).

use std::collections::HashMap;

use ruma::{OwnedUserId, UserId};
use sqlx::{Row, any::AnyRow};

use super::{Result, Storage, StorageError, StoredPusher};

/// A pusher, by user, app id and pushkey.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PusherId {
    pub user_id: OwnedUserId,
    pub app_id: String,
    pub pushkey: String,
}

impl PusherId {
    pub fn key(&self) -> super::PusherKey<'_> {
        super::PusherKey { user_id: &self.user_id, app_id: &self.app_id, pushkey: &self.pushkey }
    }
}

/// One notification a pusher is to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingPush {
    pub stream_ordering: i64,
    pub event_id: String,
    pub room_id: String,
    /// The push rule's actions as JSON.
    pub actions: serde_json::Value,
    /// When the push action was written with its event, in milliseconds.
    pub ts: i64,
}

/// One pusher's notifications in a range of the events stream, with its
/// row as the same read saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct PusherPushes {
    pub pusher: StoredPusher,
    pub pushes: Vec<PendingPush>,
}

/// Read receipts only: the ones that move unread counts.
macro_rules! read_receipt_types {
    () => {
        "('m.read', 'm.read.private')"
    };
}
const READ: &str = read_receipt_types!();

/// A notification's columns, of `event_push_actions p`.
const PENDING_COLUMNS: &str = "p.stream_ordering, p.event_id, p.room_id, p.actions, p.ts";

/// The notification `p` is after its user's read receipt (unthreaded or
/// of its thread).
const UNREAD: &str = concat!(
    "p.stream_ordering > COALESCE((SELECT MAX(r.event_stream_ordering) FROM receipts r WHERE r.room_id = p.room_id ",
    "AND r.user_id = p.user_id AND r.receipt_type IN ",
    read_receipt_types!(),
    " AND (r.thread_id = '' OR r.thread_id = p.thread_id)), 0)"
);

impl Storage {
    /// The pushers of users with notifications at positions in `(after, upto]`.
    pub async fn pushers_with_notifications(&self, after: i64, upto: i64) -> Result<Vec<PusherId>> {
        self.pushers_of("SELECT DISTINCT user_id FROM event_push_actions WHERE stream_ordering > $1 AND stream_ordering <= $2", after, upto).await
    }

    /// The pushers of users whose own membership changed (a membership
    /// event about them) at positions in `(after, upto]`: their badges'
    /// invites and joined rooms moved.
    pub async fn pushers_with_membership_changes(&self, after: i64, upto: i64) -> Result<Vec<PusherId>> {
        self.pushers_of("SELECT DISTINCT user_id FROM room_memberships WHERE stream_ordering > $1 AND stream_ordering <= $2", after, upto).await
    }

    /// The pushers of users whose read receipts moved at receipts stream
    /// positions in `(after, upto]`.
    pub async fn pushers_with_receipts(&self, after: i64, upto: i64) -> Result<Vec<PusherId>> {
        let users = format!("SELECT DISTINCT user_id FROM receipts WHERE stream_id > $1 AND stream_id <= $2 AND receipt_type IN {READ}");
        self.pushers_of(&users, after, upto).await
    }

    /// The pushers of the users `users` (a query of `user_id`s between its
    /// `$1` and `$2`) names.
    async fn pushers_of(&self, users: &str, after: i64, upto: i64) -> Result<Vec<PusherId>> {
        let sql = format!("SELECT DISTINCT p.user_id, p.app_id, p.pushkey FROM pushers p JOIN ({users}) u ON u.user_id = p.user_id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after).bind(upto).fetch_all(&self.pool).await?;
        rows.iter().map(pusher_id).collect()
    }

    /// Up to `limit` of `user_id`'s notifications at positions in `(after,
    /// upto]`, oldest first, leaving out those already read (a read receipt
    /// at or after them, unthreaded or of their thread).
    pub async fn pending_pushes(&self, user_id: &UserId, after: i64, upto: i64, limit: i64) -> Result<Vec<PendingPush>> {
        let sql = format!(
            "SELECT {PENDING_COLUMNS} FROM event_push_actions p \
             WHERE p.user_id = $1 AND p.stream_ordering > $2 AND p.stream_ordering <= $3 AND {UNREAD} \
             ORDER BY p.stream_ordering LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id.as_str()).bind(after).bind(upto).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(pending_push).collect()
    }

    /// Every pusher's notifications at positions in `(after, upto]`, as
    /// `pending_pushes` reads one pusher's, by pusher (each pusher's row as
    /// this read saw it, its notifications oldest first); `None` when there
    /// are more than `limit`.
    pub async fn pushes_between(&self, after: i64, upto: i64, limit: i64) -> Result<Option<Vec<PusherPushes>>> {
        let sql = format!(
            "SELECT {}, {PENDING_COLUMNS} FROM event_push_actions p JOIN pushers u ON u.user_id = p.user_id \
             WHERE p.stream_ordering > $1 AND p.stream_ordering <= $2 AND {UNREAD} \
             ORDER BY p.stream_ordering LIMIT $3",
            super::pushers::pusher_columns_of("u"),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after).bind(upto).bind(limit + 1).fetch_all(&self.pool).await?;
        if rows.len() as i64 > limit {
            return Ok(None);
        }
        let mut found: Vec<PusherPushes> = Vec::new();
        let mut index: HashMap<PusherId, usize> = HashMap::new();
        for row in &rows {
            let id = pusher_id(row)?;
            let at = match index.get(&id) {
                Some(&at) => at,
                None => {
                    found.push(PusherPushes { pusher: super::pushers::pusher_from_row(row)?, pushes: Vec::new() });
                    index.insert(id, found.len() - 1);
                    found.len() - 1
                }
            };
            found[at].pushes.push(pending_push(row)?);
        }
        Ok(Some(found))
    }

    /// `user_id`'s unread notifications at positions up to `upto` per
    /// joined room (every thread together), for rooms with any: those after the user's membership
    /// event (their join, as Synapse counts) and after the read receipt that
    /// covers each. With `only_whether`, each room's count is 1: it says
    /// which rooms have any, and stops at the first unread one in each.
    ///
    /// Both read from each room's unthreaded read receipt on (the index on
    /// user, room and position), so the cost follows what is unread, not
    /// the user's whole history.
    pub async fn unread_notifications_by_room(&self, user_id: &UserId, upto: i64, only_whether: bool) -> Result<Vec<(String, i64)>> {
        let unread = format!(
            "FROM event_push_actions p WHERE p.user_id = $1 AND p.room_id = m.room_id AND p.stream_ordering > m.stream_ordering \
             AND p.stream_ordering <= $2 \
             AND p.stream_ordering > COALESCE((SELECT MAX(u.event_stream_ordering) FROM receipts u WHERE u.room_id = m.room_id \
             AND u.user_id = $1 AND u.receipt_type IN {READ} AND u.thread_id = ''), 0) \
             AND {UNREAD}"
        );
        let joined = "FROM current_state m WHERE m.state_key = $1 AND m.type = 'm.room.member' AND m.membership = 'join'";
        let sql = if only_whether {
            format!("SELECT m.room_id, CAST(1 AS BIGINT) AS notifications {joined} AND EXISTS (SELECT 1 {unread})")
        } else {
            format!("SELECT room_id, notifications FROM (SELECT m.room_id, (SELECT COUNT(*) {unread}) AS notifications {joined}) c WHERE notifications > 0")
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id.as_str()).bind(upto).fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok((row.try_get("room_id")?, row.try_get::<i64, _>("notifications")?))).collect()
    }
}

fn pending_push(row: &AnyRow) -> Result<PendingPush> {
    let actions: String = row.try_get("actions")?;
    Ok(PendingPush {
        stream_ordering: row.try_get("stream_ordering")?,
        event_id: row.try_get("event_id")?,
        room_id: row.try_get("room_id")?,
        actions: serde_json::from_str(&actions).map_err(|e| StorageError::corrupt("event_push_actions.actions", e))?,
        ts: row.try_get("ts")?,
    })
}

fn pusher_id(row: &AnyRow) -> Result<PusherId> {
    Ok(PusherId {
        user_id: OwnedUserId::try_from(row.try_get::<String, _>("user_id")?).map_err(|e| StorageError::corrupt("pushers.user_id", e))?,
        app_id: row.try_get("app_id")?,
        pushkey: row.try_get("pushkey")?,
    })
}
