//! Reading relations back: the children of an event, thread roots, and the
//! summary of each thread among a batch of events.

use ruma::{RoomId, UserId};

use super::{
    Result, Storage, StoredEvent,
    events::{EVENT_COLUMNS, event_from_row},
};

impl Storage {
    /// Events relating to `parent` with orderings in `(after, upto]`,
    /// optionally of one relation type and event type. With a `depth` above
    /// one, events relating to those events count too, that many levels down.
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
        depth: i64,
    ) -> Result<Vec<StoredEvent>> {
        let columns: Vec<String> = EVENT_COLUMNS.split(", ").map(|c| format!("e.{c}")).collect();
        let order = if newest_first { "DESC" } else { "ASC" };
        let (recursion, parents) = if depth > 1 {
            (
                "WITH RECURSIVE related (event_id, depth) AS (\
                 SELECT event_id, 1 FROM event_relations WHERE room_id = $1 AND relates_to = $2 \
                 UNION ALL SELECT c.event_id, related.depth + 1 FROM event_relations c \
                 JOIN related ON c.relates_to = related.event_id WHERE related.depth < $8) ",
                "r.event_id IN (SELECT event_id FROM related)",
            )
        } else {
            ("", "r.relates_to = $2")
        };
        let sql = format!(
            "{recursion}SELECT {} FROM event_relations r JOIN events e ON e.event_id = r.event_id \
             WHERE r.room_id = $1 AND {parents} AND ($3 IS NULL OR r.rel_type = $3) AND ($4 IS NULL OR e.type = $4) \
             AND r.stream_ordering > $5 AND r.stream_ordering <= $6 ORDER BY r.stream_ordering {order} LIMIT $7",
            columns.join(", ")
        );
        let mut query =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id.as_str()).bind(parent).bind(rel_type).bind(event_type).bind(after).bind(upto).bind(limit);
        if depth > 1 {
            query = query.bind(depth);
        }
        let rows = query.fetch_all(&self.pool).await?;
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

    /// For each of `parents` that has thread replies, edits or references:
    /// how many of each, the ordering of the latest, and whether `user_id`
    /// sent one of them.
    pub async fn relation_counts(&self, room_id: &RoomId, parents: &[&str], user_id: &UserId) -> Result<Vec<RelationCount>> {
        if parents.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (3..parents.len() + 3).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT relates_to, rel_type, COUNT(*) AS children, MAX(stream_ordering) AS latest, \
             SUM(CASE WHEN sender = $2 THEN 1 ELSE 0 END) AS mine FROM event_relations \
             WHERE room_id = $1 AND rel_type IN ('m.thread', 'm.replace', 'm.reference') AND relates_to IN ({}) \
             GROUP BY relates_to, rel_type",
            placeholders.join(", ")
        );
        let mut query = sqlx::query_as::<_, (String, String, i64, i64, i64)>(sqlx::AssertSqlSafe(sql)).bind(room_id.as_str()).bind(user_id.as_str());
        for parent in parents {
            query = query.bind(*parent);
        }
        let rows = query.fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|(parent, rel_type, children, latest, mine)| RelationCount { parent, rel_type, children, latest, user_sent_one: mine > 0 })
            .collect())
    }
}

/// One parent's children of one relation type, from `Storage::relation_counts`.
pub struct RelationCount {
    pub parent: String,
    pub rel_type: String,
    pub children: i64,
    /// The stream ordering of the latest child.
    pub latest: i64,
    pub user_sent_one: bool,
}
