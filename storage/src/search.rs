//! Full-text search over the events of rooms a user has joined.

use ruma::{RoomId, UserId};
use sqlx::Row;

use super::{Result, Storage, StorageError, StoredEvent};

impl Storage {
    /// Events matching `term` in rooms `user_id` has joined (one room if
    /// given), with their rank: best first, or newest first when `recent`.
    pub async fn search_events(
        &self,
        user_id: &UserId,
        term: &str,
        room: Option<&RoomId>,
        recent: bool,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<(StoredEvent, f64)>> {
        let term = self.dialect.search_term(term);
        if term.trim().is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(self.dialect.search_sql(recent)))
            .bind(term)
            .bind(user_id.as_str())
            .bind(room.map(RoomId::as_str))
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            let event_id: String = row.try_get("event_id")?;
            let rank: f64 = row.try_get("rank")?;
            let event_id = ruma::OwnedEventId::try_from(event_id).map_err(|e| StorageError::corrupt("event_search.event_id", e))?;
            if let Some(event) = self.event(&event_id).await? {
                found.push((event, rank));
            }
        }
        Ok(found)
    }

    /// How many events `search_events` could find for `term`, before any
    /// filter or history visibility.
    pub async fn count_search_matches(&self, user_id: &UserId, term: &str, room: Option<&RoomId>) -> Result<i64> {
        let term = self.dialect.search_term(term);
        if term.trim().is_empty() {
            return Ok(0);
        }
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(self.dialect.search_count_sql()))
            .bind(term)
            .bind(user_id.as_str())
            .bind(room.map(RoomId::as_str))
            .fetch_one(&self.pool)
            .await?)
    }
}
