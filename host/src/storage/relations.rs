//! Reading relations back: the children of an event, thread roots, and the
//! summary of each thread among a batch of events.

use ruma::{RoomId, UserId};

use super::{Result, Storage, StoredEvent, events::{EVENT_COLUMNS, event_from_row}};

impl Storage {
    /// Events relating to `parent` with orderings in `(after, upto]`,
    /// optionally of one relation type and event type.
    #[allow(clippy::too_many_arguments)]
    pub async fn relating_events(
        &self,
        room_id: &RoomId,
        parent: &str,
        rel_type: Option<&str>,
        event_type: Option<&str>,
        after: i64,
        upto: i64,
        limit: i64,
        newest_first: bool,
    ) -> Result<Vec<StoredEvent>> {
        let columns: Vec<String> = EVENT_COLUMNS.split(", ").map(|c| format!("e.{c}")).collect();
        let order = if newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {} FROM event_relations r JOIN events e ON e.event_id = r.event_id \
             WHERE r.room_id = $1 AND r.relates_to = $2 AND ($3 IS NULL OR r.rel_type = $3) AND ($4 IS NULL OR e.type = $4) \
             AND r.stream_ordering > $5 AND r.stream_ordering <= $6 ORDER BY r.stream_ordering {order} LIMIT $7",
            columns.join(", ")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id.as_str())
            .bind(parent)
            .bind(rel_type)
            .bind(event_type)
            .bind(after)
            .bind(upto)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Thread roots of a room whose latest reply is before `before`, most
    /// recently active first, with that latest reply's ordering; only threads
    /// `participant` started or replied to, when given.
    pub async fn thread_roots(&self, room_id: &RoomId, participant: Option<&UserId>, before: i64, limit: i64) -> Result<Vec<(String, i64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT r.relates_to, MAX(r.stream_ordering) AS latest FROM event_relations r \
             WHERE r.room_id = $1 AND r.rel_type = 'm.thread' GROUP BY r.relates_to \
             HAVING MAX(r.stream_ordering) < $2 AND ($3 IS NULL OR SUM(CASE WHEN r.sender = $3 THEN 1 ELSE 0 END) > 0 \
             OR r.relates_to IN (SELECT event_id FROM events WHERE sender = $3)) \
             ORDER BY latest DESC LIMIT $4",
        )
        .bind(room_id.as_str())
        .bind(before)
        .bind(participant.map(UserId::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// For those of `roots` that have thread replies: how many, the
    /// ordering of the latest, and whether `user_id` sent one of them.
    pub async fn thread_summaries(&self, room_id: &RoomId, roots: &[&str], user_id: &UserId) -> Result<Vec<ThreadCount>> {
        if roots.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (3..roots.len() + 3).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT relates_to, COUNT(*) AS replies, MAX(stream_ordering) AS latest, \
             SUM(CASE WHEN sender = $2 THEN 1 ELSE 0 END) AS mine FROM event_relations \
             WHERE room_id = $1 AND rel_type = 'm.thread' AND relates_to IN ({}) GROUP BY relates_to",
            placeholders.join(", ")
        );
        let mut query = sqlx::query_as::<_, (String, i64, i64, i64)>(sqlx::AssertSqlSafe(sql)).bind(room_id.as_str()).bind(user_id.as_str());
        for root in roots {
            query = query.bind(*root);
        }
        let rows = query.fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|(root, replies, latest, mine)| ThreadCount { root, replies, latest, user_replied: mine > 0 }).collect())
    }
}

/// One thread's counts, from `Storage::thread_summaries`.
pub struct ThreadCount {
    pub root: String,
    pub replies: i64,
    /// The stream ordering of the latest reply.
    pub latest: i64,
    pub user_replied: bool,
}
