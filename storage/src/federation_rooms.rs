//! Rooms across servers: transactions received from other servers (their
//! answers, for idempotent retries), events kept outside every timeline
//! (outliers and soft-failed events), and the federation sender's queue:
//! its position in the events stream, the events each destination has not
//! acknowledged, and each destination's retry state.

use ruma::{EventId, OwnedRoomId, RoomId};
use sqlx::Row;

use super::{NewEvent, NewRoom, Result, Storage, StorageError, StoredEvent, Stream, events::EVENT_COLUMNS, now_ms};

/// One event queued for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub destination: String,
    pub stream_ordering: i64,
    pub room_id: OwnedRoomId,
    pub event_id: String,
}

/// When a destination may be tried again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DestinationRetry {
    pub retry_last_ts: i64,
    pub retry_interval: i64,
}

fn prefixed(alias: &str) -> String {
    EVENT_COLUMNS.split(", ").map(|column| format!("{alias}.{column}")).collect::<Vec<_>>().join(", ")
}

impl Storage {
    /// The answer given to a transaction `origin` sent before, if any.
    pub async fn received_txn(&self, origin: &str, txn_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT response_json FROM federation_received_txns WHERE origin = $1 AND txn_id = $2")
            .bind(origin)
            .bind(txn_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Keeps a transaction's answer (the first one, if it was answered
    /// before). Always a flushed commit that writes a row, so that it also
    /// puts on disk the events of the transaction, committed with
    /// `Durability::WithNextFlush`.
    pub async fn store_received_txn(&self, origin: &str, txn_id: &str, response_json: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO federation_received_txns (origin, txn_id, response_json, received_ts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (origin, txn_id) DO UPDATE SET received_ts = excluded.received_ts",
        )
        .bind(origin)
        .bind(txn_id)
        .bind(response_json)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Keeps an event outside every timeline: `kind` is `outlier` or `soft_failed`.
    pub async fn store_outlier(&self, event_id: &EventId, room_id: &RoomId, kind: &str, json: &str) -> Result<()> {
        sqlx::query("INSERT INTO event_outliers (event_id, room_id, kind, json, received_ts) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING")
            .bind(event_id.as_str())
            .bind(room_id.as_str())
            .bind(kind)
            .bind(json)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// An event kept outside the timelines: its room, kind and PDU.
    pub async fn outlier(&self, event_id: &EventId) -> Result<Option<(OwnedRoomId, String, String)>> {
        let row = sqlx::query("SELECT room_id, kind, json FROM event_outliers WHERE event_id = $1").bind(event_id.as_str()).fetch_optional(&self.pool).await?;
        row.map(|row| {
            let room: String = row.try_get("room_id")?;
            Ok((OwnedRoomId::try_from(room).map_err(|e| StorageError::corrupt("event_outliers.room_id", e))?, row.try_get("kind")?, row.try_get("json")?))
        })
        .transpose()
    }

    /// Where the federation sender `instance` has read the events stream
    /// up to; a sender new to the list starts where the slowest one is.
    pub async fn federation_sender_position(&self, instance: &str) -> Result<i64> {
        let own: Option<i64> =
            sqlx::query_scalar("SELECT stream_id FROM federation_sender_positions WHERE instance_name = $1").bind(instance).fetch_optional(&self.pool).await?;
        if let Some(position) = own {
            return Ok(position);
        }
        let slowest: Option<i64> = sqlx::query_scalar("SELECT MIN(stream_id) FROM federation_sender_positions").fetch_one(&self.pool).await?;
        match slowest {
            Some(position) => Ok(position),
            None => Ok(sqlx::query_scalar("SELECT stream_id FROM federation_sender_position").fetch_one(&self.pool).await?),
        }
    }

    /// Events of every room and writer with orderings in `(after, upto]`,
    /// oldest first, at most `limit`.
    pub async fn events_between(&self, after: i64, upto: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream_ordering > $1 AND stream_ordering <= $2 ORDER BY stream_ordering LIMIT $3");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after).bind(upto).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(super::events::event_from_row).collect()
    }

    /// Queues `rows` and moves the position of the sender `instance` to
    /// `position`, in one transaction.
    pub async fn enqueue_outbox(&self, rows: &[OutboxRow], instance: &str, position: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        insert_outbox_rows(&mut tx, rows).await?;
        sqlx::query(
            "INSERT INTO federation_sender_positions (instance_name, stream_id) VALUES ($1, $2) \
             ON CONFLICT (instance_name) DO UPDATE SET stream_id = excluded.stream_id",
        )
        .bind(instance)
        .bind(position)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Destinations with queued events.
    pub async fn outbox_destinations(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT DISTINCT destination FROM federation_outbox").fetch_all(&self.pool).await?)
    }

    /// Queues events of other servers for more destinations (a join this
    /// server accepted through `send_join`, for the room's other servers),
    /// without moving the sender's position.
    pub async fn forward_events(&self, rows: &[OutboxRow]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        insert_outbox_rows(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(())
    }

    /// How many events wait for `destination`.
    pub async fn outbox_len(&self, destination: &str) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM federation_outbox WHERE destination = $1").bind(destination).fetch_one(&self.pool).await?)
    }

    /// The oldest events queued for `destination`, at most `limit`.
    pub async fn outbox_events(&self, destination: &str, limit: i64) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {} FROM federation_outbox o JOIN events e ON e.stream_ordering = o.stream_ordering \
             WHERE o.destination = $1 ORDER BY o.stream_ordering LIMIT $2",
            prefixed("e")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(destination).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(super::events::event_from_row).collect()
    }

    /// The newest queued event of each room for `destination` (catch-up
    /// after an outage), oldest first, at most `limit`.
    pub async fn outbox_latest_per_room(&self, destination: &str, limit: i64) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_ordering IN \
             (SELECT MAX(stream_ordering) FROM federation_outbox WHERE destination = $1 GROUP BY room_id) \
             ORDER BY stream_ordering LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(destination).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(super::events::event_from_row).collect()
    }

    /// `destination` accepted a transaction holding `sent` (room, stream
    /// ordering): exactly those rows leave the queue, or with `up_to` (a
    /// catch-up, which sends the newest event of each room) everything of
    /// each room up to the one sent. The destination's retry state is reset.
    pub async fn outbox_acknowledge(&self, destination: &str, sent: &[(OwnedRoomId, i64)], up_to: bool) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let delete = if up_to {
            "DELETE FROM federation_outbox WHERE destination = $1 AND room_id = $2 AND stream_ordering <= $3"
        } else {
            "DELETE FROM federation_outbox WHERE destination = $1 AND room_id = $2 AND stream_ordering = $3"
        };
        for (room_id, ordering) in sent {
            sqlx::query(delete).bind(destination).bind(room_id.as_str()).bind(*ordering).execute(&mut *tx).await?;
        }
        let newest = sent.iter().map(|(_, ordering)| *ordering).max();
        sqlx::query(
            "INSERT INTO federation_destinations (destination, last_successful_stream_ordering, failure_ts, retry_last_ts, retry_interval) \
             VALUES ($1, $2, NULL, 0, 0) ON CONFLICT (destination) DO UPDATE SET \
             last_successful_stream_ordering = COALESCE(excluded.last_successful_stream_ordering, federation_destinations.last_successful_stream_ordering), \
             failure_ts = NULL, retry_last_ts = 0, retry_interval = 0",
        )
        .bind(destination)
        .bind(newest)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn destination_retry(&self, destination: &str) -> Result<DestinationRetry> {
        let row = sqlx::query("SELECT retry_last_ts, retry_interval FROM federation_destinations WHERE destination = $1")
            .bind(destination)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok(DestinationRetry { retry_last_ts: row.try_get("retry_last_ts")?, retry_interval: row.try_get("retry_interval")? }))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// Records a failed attempt to reach `destination`.
    pub async fn set_destination_retry(&self, destination: &str, retry: DestinationRetry) -> Result<()> {
        sqlx::query(
            "INSERT INTO federation_destinations (destination, failure_ts, retry_last_ts, retry_interval) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (destination) DO UPDATE SET failure_ts = COALESCE(federation_destinations.failure_ts, excluded.failure_ts), \
             retry_last_ts = excluded.retry_last_ts, retry_interval = excluded.retry_interval",
        )
        .bind(destination)
        .bind(now_ms())
        .bind(retry.retry_last_ts)
        .bind(retry.retry_interval)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A room joined through another server (or an invite into one), in one
    /// transaction: the room,
    /// the auth chain as outliers (`(event id, json)`), the room's state
    /// events and then the join on the events stream; the join is then the
    /// room's only forward extremity. Returns the join's stream ordering.
    /// `from_resident`: the room's version is the resident server's word (a
    /// join), which replaces what an earlier invite claimed; an invite never
    /// changes a known room's version.
    pub async fn persist_remote_join(
        &self,
        room: NewRoom<'_>,
        outliers: &[(&EventId, &str)],
        state: &[NewEvent<'_>],
        join: &NewEvent<'_>,
        from_resident: bool,
    ) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let on_conflict = if from_resident { "DO UPDATE SET room_version = excluded.room_version" } else { "DO NOTHING" };
        let insert_room = format!(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts, published) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id) {on_conflict}"
        );
        sqlx::query(sqlx::AssertSqlSafe(insert_room))
            .bind(room.room_id.as_str())
            .bind(room.room_version)
            .bind(room.creator.as_str())
            .bind(now_ms())
            .bind(room.published)
            .execute(&mut *tx)
            .await?;
        for (event_id, json) in outliers {
            sqlx::query(
                "INSERT INTO event_outliers (event_id, room_id, kind, json, received_ts) VALUES ($1, $2, 'outlier', $3, $4) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(event_id.as_str())
            .bind(room.room_id.as_str())
            .bind(*json)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        let mut guards = Vec::with_capacity(state.len() + 1);
        let mut last = 0;
        for event in state.iter().chain(std::iter::once(join)) {
            let reservation = self.in_flight.of(Stream::Events).reserve();
            let ordering = self.dialect.next_stream_id(&mut tx, Stream::Events).await?;
            guards.push(reservation.track(ordering));
            self.insert_event(&mut tx, event, ordering).await?;
            last = ordering;
        }
        sqlx::query("DELETE FROM forward_extremities WHERE room_id = $1 AND event_id <> $2")
            .bind(room.room_id.as_str())
            .bind(join.event_id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        drop(guards);
        Ok(last)
    }

    /// Queues EDUs (`(destination, EDU JSON)`) for their destinations.
    pub async fn enqueue_edus(&self, edus: &[(String, String)]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for (destination, json) in edus {
            sqlx::query("INSERT INTO federation_edu_outbox (destination, edu_json) VALUES ($1, $2)").bind(destination).bind(json).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Destinations with queued EDUs.
    pub async fn edu_destinations(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT DISTINCT destination FROM federation_edu_outbox").fetch_all(&self.pool).await?)
    }

    /// The oldest EDUs queued for `destination`: `(id, JSON)`, at most `limit`.
    pub async fn outbox_edus(&self, destination: &str, limit: i64) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query("SELECT id, edu_json FROM federation_edu_outbox WHERE destination = $1 ORDER BY id LIMIT $2")
            .bind(destination)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok((row.try_get("id")?, row.try_get("edu_json")?))).collect()
    }

    /// `destination` accepted the EDUs up to `upto` (an id).
    pub async fn acknowledge_edus(&self, destination: &str, upto: i64) -> Result<()> {
        sqlx::query("DELETE FROM federation_edu_outbox WHERE destination = $1 AND id <= $2").bind(destination).bind(upto).execute(&self.pool).await?;
        Ok(())
    }
}

/// Queues `rows` (a row already queued stays as it is).
async fn insert_outbox_rows(tx: &mut sqlx::Transaction<'static, sqlx::Any>, rows: &[OutboxRow]) -> Result<()> {
    for row in rows {
        sqlx::query(
            "INSERT INTO federation_outbox (destination, stream_ordering, room_id, event_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (destination, stream_ordering) DO NOTHING",
        )
        .bind(&row.destination)
        .bind(row.stream_ordering)
        .bind(row.room_id.as_str())
        .bind(&row.event_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
