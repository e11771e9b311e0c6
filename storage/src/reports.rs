//! Users' reports of events and rooms, kept for the server's administrators.

use ruma::{EventId, RoomId, UserId};

use super::{Result, Storage};

impl Storage {
    /// Records a report of `event_id` in `room_id`, or of the room itself.
    pub async fn add_report(&self, room_id: &RoomId, event_id: Option<&EventId>, user_id: &UserId, reason: Option<&str>) -> Result<()> {
        sqlx::query("INSERT INTO reports (received_ts, room_id, event_id, user_id, reason) VALUES ($1, $2, $3, $4, $5)")
            .bind(super::now_ms())
            .bind(room_id.as_str())
            .bind(event_id.map(EventId::as_str))
            .bind(user_id.as_str())
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The reports received, newest first, and how many there are in all.
    pub async fn reports(&self, limit: i64, offset: i64) -> Result<(Vec<Report>, i64)> {
        let rows: Vec<ReportRow> =
            sqlx::query_as("SELECT id, received_ts, room_id, event_id, user_id, reason FROM reports ORDER BY id DESC LIMIT $1 OFFSET $2")
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?;
        let reports = rows
            .into_iter()
            .map(|(id, received_ts, room_id, event_id, user_id, reason)| Report { id, received_ts, room_id, event_id, user_id, reason })
            .collect();
        let total = sqlx::query_scalar("SELECT COUNT(*) FROM reports").fetch_one(&self.pool).await?;
        Ok((reports, total))
    }
}

/// `(id, received_ts, room_id, event_id, user_id, reason)`.
type ReportRow = (i64, i64, String, Option<String>, String, Option<String>);

/// A stored report, as `Storage::reports` lists it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub id: i64,
    pub received_ts: i64,
    pub room_id: String,
    pub event_id: Option<String>,
    pub user_id: String,
    pub reason: Option<String>,
}
