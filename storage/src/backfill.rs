//! History fetched from other servers: backfilled events stored below
//! everything already in the `events` table (negative stream orderings, so
//! no sync position reaches them and `/messages` reads them in order),
//! without touching current state, forward extremities or the sync stream;
//! a room's backward extremities (where the next backfill starts); and the
//! membership history of one server's users in a room, for deciding what
//! that server may see.

use std::collections::HashSet;

use ruma::{EventId, OwnedEventId, OwnedUserId, RoomId};
use sqlx::Row;

use super::{Dialect, NewEvent, Result, Storage, StorageError};

impl Storage {
    /// The room's backward extremities.
    pub async fn backward_extremities(&self, room_id: &RoomId) -> Result<Vec<OwnedEventId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT event_id FROM event_backward_extremities WHERE room_id = $1 ORDER BY event_id")
            .bind(room_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        ids.into_iter().map(|id| OwnedEventId::try_from(id).map_err(|e| StorageError::corrupt("event_backward_extremities.event_id", e))).collect()
    }

    /// Records where history before a join starts: the join's prev events.
    pub async fn add_backward_extremities(&self, room_id: &RoomId, event_ids: &[OwnedEventId]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        insert_extremities(&mut tx, room_id, event_ids.iter().map(|id| &**id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Of `event_ids`, those in the `events` table, with their orderings.
    pub async fn stored_orderings(&self, event_ids: &[&EventId]) -> Result<Vec<(OwnedEventId, i64)>> {
        let mut found = Vec::new();
        for chunk in event_ids.chunks(200) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!("SELECT event_id, stream_ordering FROM events WHERE event_id IN ({})", placeholders.join(", "));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(&self.pool).await? {
                let id: String = row.try_get("event_id")?;
                let id = OwnedEventId::try_from(id).map_err(|e| StorageError::corrupt("events.event_id", e))?;
                found.push((id, row.try_get("stream_ordering")?));
            }
        }
        Ok(found)
    }

    /// Stores one backfilled batch in one transaction: `events` newest
    /// first, each below every event already stored (their orderings are
    /// returned); only their own rows (event, membership change, relation,
    /// search text), never current state or forward extremities. Then the
    /// backward extremities: `walked` removed, `extremities` added. An
    /// event already stored is `StorageError::Conflict` and writes nothing.
    pub async fn persist_backfilled(&self, room_id: &RoomId, events: &[NewEvent<'_>], walked: &[&EventId], extremities: &[&EventId]) -> Result<Vec<i64>> {
        let mut tx = self.begin_write().await?;
        let mut orderings = Vec::with_capacity(events.len());
        for event in events {
            let ordering = -next_backfill_id(self.dialect, &mut tx).await?;
            self.insert_backfilled(&mut tx, event, ordering).await?;
            orderings.push(ordering);
        }
        for id in walked {
            sqlx::query("DELETE FROM event_backward_extremities WHERE room_id = $1 AND event_id = $2")
                .bind(room_id.as_str())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        insert_extremities(&mut tx, room_id, extremities.iter().copied()).await?;
        tx.commit().await?;
        Ok(orderings)
    }

    async fn insert_backfilled(&self, conn: &mut sqlx::AnyConnection, event: &NewEvent<'_>, ordering: i64) -> Result<()> {
        self.insert_event_row(conn, event, ordering).await?;
        if let (Some(state_key), Some(membership)) = (event.state_key, event.membership) {
            super::events::insert_membership_row(conn, event, state_key, membership, ordering).await?;
        }
        self.insert_relation_and_search(conn, event, ordering).await
    }

    /// The membership changes in a room of the users of `server`, oldest
    /// first: `(ordering, user, membership)`.
    pub async fn server_membership_history(&self, room_id: &RoomId, server: &str) -> Result<Vec<(i64, OwnedUserId, String)>> {
        let rows = sqlx::query("SELECT stream_ordering, user_id, membership FROM room_memberships WHERE room_id = $1 ORDER BY stream_ordering")
            .bind(room_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        let mut changes = Vec::new();
        for row in rows {
            let user: String = row.try_get("user_id")?;
            let user = OwnedUserId::try_from(user).map_err(|e| StorageError::corrupt("room_memberships.user_id", e))?;
            if user.server_name() == server {
                changes.push((row.try_get("stream_ordering")?, user, row.try_get("membership")?));
            }
        }
        Ok(changes)
    }
}

async fn insert_extremities(conn: &mut sqlx::AnyConnection, room_id: &RoomId, event_ids: impl Iterator<Item = &EventId>) -> Result<()> {
    let mut seen = HashSet::new();
    for id in event_ids {
        if !seen.insert(id) {
            continue;
        }
        sqlx::query("INSERT INTO event_backward_extremities (room_id, event_id) VALUES ($1, $2) ON CONFLICT (room_id, event_id) DO NOTHING")
            .bind(room_id.as_str())
            .bind(id.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The next value of the backfill sequence (1, 2, ...; orderings are its negation).
async fn next_backfill_id(dialect: Dialect, conn: &mut sqlx::AnyConnection) -> Result<i64> {
    Ok(match dialect {
        Dialect::Postgres => sqlx::query_scalar("SELECT nextval('events_backfill_sequence')").fetch_one(conn).await?,
        Dialect::Sqlite => {
            sqlx::query_scalar("UPDATE stream_sequences SET last_id = last_id + 1 WHERE stream_name = 'events_backfill' RETURNING last_id")
                .fetch_one(conn)
                .await?
        }
    })
}
