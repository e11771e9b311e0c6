//! The `receipts` stream: the latest receipt of each (room, type, user,
//! thread), moved to a new stream id each time it changes.

use ruma::{RoomId, UserId};
use sqlx::Row;

use super::{Result, Storage, Stream, now_ms};

/// The thread id of an unthreaded receipt.
pub const UNTHREADED: &str = "";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub stream_id: i64,
    pub room_id: String,
    pub receipt_type: String,
    pub user_id: String,
    /// `UNTHREADED`, `main` or a thread root's event id.
    pub thread_id: String,
    pub event_id: String,
    pub ts: i64,
}

pub struct NewReceipt<'a> {
    pub room_id: &'a RoomId,
    pub receipt_type: &'a str,
    pub user_id: &'a UserId,
    pub thread_id: &'a str,
    pub event_id: &'a str,
    pub event_stream_ordering: i64,
}

impl Storage {
    /// Records a receipt unless the user already has one of this type and
    /// thread for a later event (receipts never move backwards). Returns
    /// the stream id when something was written.
    pub async fn set_receipt(&self, receipt: NewReceipt<'_>) -> Result<Option<i64>> {
        let mut tx = self.begin_write().await?;
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT event_stream_ordering FROM receipts WHERE room_id = $1 AND receipt_type = $2 AND user_id = $3 AND thread_id = $4")
                .bind(receipt.room_id.as_str())
                .bind(receipt.receipt_type)
                .bind(receipt.user_id.as_str())
                .bind(receipt.thread_id)
                .fetch_optional(&mut *tx)
                .await?;
        if existing.is_some_and(|ordering| ordering >= receipt.event_stream_ordering) {
            return Ok(None);
        }
        let (stream_id, guard) = self.next_stream_id(&mut tx, Stream::Receipts).await?;
        sqlx::query(
            "INSERT INTO receipts (stream_id, instance_name, room_id, receipt_type, user_id, thread_id, event_id, event_stream_ordering, ts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET stream_id = excluded.stream_id, \
             instance_name = excluded.instance_name, event_id = excluded.event_id, \
             event_stream_ordering = excluded.event_stream_ordering, ts = excluded.ts",
        )
        .bind(stream_id)
        .bind(&self.instance_name)
        .bind(receipt.room_id.as_str())
        .bind(receipt.receipt_type)
        .bind(receipt.user_id.as_str())
        .bind(receipt.thread_id)
        .bind(receipt.event_id)
        .bind(receipt.event_stream_ordering)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        drop(guard);
        Ok(Some(stream_id))
    }

    /// Receipts in a room written in `(after, upto]`, all of them when `after` is 0.
    pub async fn receipts_between(&self, room_id: &RoomId, after: i64, upto: i64) -> Result<Vec<Receipt>> {
        let rows = sqlx::query(
            "SELECT stream_id, room_id, receipt_type, user_id, thread_id, event_id, ts FROM receipts \
             WHERE room_id = $1 AND stream_id > $2 AND stream_id <= $3 ORDER BY stream_id",
        )
        .bind(room_id.as_str())
        .bind(after)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Receipt {
                    stream_id: row.try_get("stream_id")?,
                    room_id: row.try_get("room_id")?,
                    receipt_type: row.try_get("receipt_type")?,
                    user_id: row.try_get("user_id")?,
                    thread_id: row.try_get("thread_id")?,
                    event_id: row.try_get("event_id")?,
                    ts: row.try_get("ts")?,
                })
            })
            .collect()
    }

    /// The stream position of the latest event a user has read in a room (public
    /// or private receipt) in the given thread or unthreaded; 0 when none.
    pub async fn read_up_to(&self, room_id: &RoomId, user_id: &UserId, thread_id: &str) -> Result<i64> {
        let ordering: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(event_stream_ordering) FROM receipts WHERE room_id = $1 AND user_id = $2 \
             AND receipt_type IN ('m.read', 'm.read.private') AND (thread_id = $3 OR thread_id = '')",
        )
        .bind(room_id.as_str())
        .bind(user_id.as_str())
        .bind(thread_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(ordering.unwrap_or(0))
    }
}
