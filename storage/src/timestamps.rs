//! Finding events by time, for `timestamp_to_event`.

use ruma::RoomId;

use super::{Result, Storage, StoredEvent};

impl Storage {
    /// The event of a room closest to `ts` at or after it (`forward`) or at or before it.
    pub async fn event_near_timestamp(&self, room_id: &RoomId, ts: i64, forward: bool) -> Result<Option<StoredEvent>> {
        let (comparison, order) = if forward { (">=", "ASC") } else { ("<=", "DESC") };
        let sql = format!(
            "SELECT {} FROM events WHERE room_id = $1 AND origin_server_ts {comparison} $2 \
             ORDER BY origin_server_ts {order}, stream_ordering {order} LIMIT 1",
            super::events::EVENT_COLUMNS
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id.as_str()).bind(ts).fetch_optional(&self.pool).await?;
        row.as_ref().map(super::events::event_from_row).transpose()
    }
}
