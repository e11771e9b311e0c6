//! Rooms and events: persisting a batch of events in one transaction (event
//! rows on the `events` stream, current state, memberships, forward
//! extremities, client transaction ids and this writer's stream position), and
//! reading them back by id, by room and stream range, and as state.

use ruma::{DeviceId, EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use sqlx::{Row, any::AnyRow};

use super::{Durability, Result, Storage, StorageError, Stream, now_ms};

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub stream_ordering: i64,
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub kind: String,
    pub state_key: Option<String>,
    pub depth: i64,
    pub origin_server_ts: i64,
    /// The signed PDU as JSON text.
    pub json: String,
}

/// A room to create along with its first events.
#[derive(Debug, Clone, Copy)]
pub struct NewRoom<'a> {
    pub room_id: &'a RoomId,
    pub room_version: &'a str,
    pub creator: &'a UserId,
    pub published: bool,
    /// A local alias created with the room (`room_alias_name`).
    pub alias: Option<&'a str>,
}

/// An authorised, signed event ready to persist.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub event_id: &'a EventId,
    pub room_id: &'a RoomId,
    pub sender: &'a UserId,
    pub kind: &'a str,
    pub state_key: Option<&'a str>,
    pub depth: i64,
    pub origin_server_ts: i64,
    pub json: &'a str,
    pub prev_events: &'a [OwnedEventId],
    /// For `m.room.member`: the new membership.
    pub membership: Option<&'a str>,
    /// The client transaction that sent it, for idempotent retries: the
    /// request (method and path, with the transaction id) per device.
    pub txn: Option<(&'a UserId, &'a DeviceId, &'a str)>,
    /// For a redaction: the event it redacts and that event's redacted PDU.
    pub redaction: Option<(&'a EventId, &'a str)>,
    /// `(parent event id, rel_type)` from the content's `m.relates_to`.
    pub relation: Option<(&'a str, &'a str)>,
    /// The text search indexes: a message's body, a room's name or topic.
    pub search_text: Option<&'a str>,
    /// What push rules decided for local users, written with the event.
    pub push_actions: &'a [super::PushAction],
}

pub(super) const EVENT_COLUMNS: &str = "stream_ordering, event_id, room_id, sender, type, state_key, depth, origin_server_ts, json";

impl Storage {
    /// Persists `events` in order, all or nothing, creating `room` first if
    /// given. Returns each event's stream ordering. A reused client
    /// transaction id is `StorageError::Conflict` and writes nothing.
    pub async fn persist_events(&self, room: Option<NewRoom<'_>>, events: &[NewEvent<'_>]) -> Result<Vec<i64>> {
        self.persist_events_with(room, events, Durability::Flushed).await
    }

    /// `persist_events`, committed with the given durability.
    pub async fn persist_events_with(&self, room: Option<NewRoom<'_>>, events: &[NewEvent<'_>], durability: Durability) -> Result<Vec<i64>> {
        if let (None, Durability::Flushed, [event]) = (room, durability, events)
            && self.writes_in_one_statement(event)
        {
            // One statement is its own transaction.
            let reservation = self.in_flight.of(Stream::Events).reserve();
            let mut conn = self.pool.acquire().await?;
            let ordering = self.write_plain_event(&mut conn, event).await?;
            drop(reservation.track(ordering));
            return Ok(vec![ordering]);
        }
        let mut tx = self.begin_write_with(durability).await?;
        if let Some(room) = room {
            sqlx::query("INSERT INTO rooms (room_id, room_version, creator, created_ts, published) VALUES ($1, $2, $3, $4, $5)")
                .bind(room.room_id.as_str())
                .bind(room.room_version)
                .bind(room.creator.as_str())
                .bind(now_ms())
                .bind(room.published)
                .execute(&mut *tx)
                .await
                .map_err(StorageError::from_insert)?;
            if let Some(alias) = room.alias {
                insert_alias(&mut tx, alias, room.room_id, room.creator).await?;
            }
        }
        let mut orderings = Vec::with_capacity(events.len());
        let mut guards = Vec::with_capacity(events.len());
        for event in events {
            let reservation = self.in_flight.of(Stream::Events).reserve();
            let ordering = self.write_event(&mut tx, event).await?;
            guards.push(reservation.track(ordering));
            orderings.push(ordering);
        }
        tx.commit().await?;
        drop(guards);
        Ok(orderings)
    }

    /// Allocates `event`'s stream ordering and writes it with its push
    /// actions; returns the ordering. The caller reserves it first.
    pub(super) async fn write_event(&self, conn: &mut sqlx::AnyConnection, event: &NewEvent<'_>) -> Result<i64> {
        if self.writes_in_one_statement(event) {
            return self.write_plain_event(conn, event).await;
        }
        let ordering = self.dialect.next_stream_id(conn, Stream::Events).await?;
        self.insert_event(conn, event, ordering).await?;
        self.insert_push_actions(conn, event.event_id.as_str(), event.room_id.as_str(), ordering, event.push_actions).await?;
        Ok(ordering)
    }

    pub(super) async fn insert_event(&self, conn: &mut sqlx::AnyConnection, event: &NewEvent<'_>, ordering: i64) -> Result<()> {
        if let Some((user_id, device_id, txn_id)) = event.txn {
            sqlx::query("INSERT INTO event_txns (user_id, device_id, txn_id, event_id) VALUES ($1, $2, $3, $4)")
                .bind(user_id.as_str())
                .bind(device_id.as_str())
                .bind(txn_id)
                .bind(event.event_id.as_str())
                .execute(&mut *conn)
                .await
                .map_err(StorageError::from_insert)?;
        }
        self.insert_event_row(conn, event, ordering).await?;
        if let Some(state_key) = event.state_key {
            sqlx::query(
                "INSERT INTO current_state (room_id, type, state_key, event_id, stream_ordering, membership) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id, \
                 stream_ordering = excluded.stream_ordering, membership = excluded.membership",
            )
            .bind(event.room_id.as_str())
            .bind(event.kind)
            .bind(state_key)
            .bind(event.event_id.as_str())
            .bind(ordering)
            .bind(event.membership)
            .execute(&mut *conn)
            .await?;
            if let Some(membership) = event.membership
                && matches!(membership, "join" | "invite" | "knock")
            {
                sqlx::query("DELETE FROM forgotten_rooms WHERE user_id = $1 AND room_id = $2")
                    .bind(state_key)
                    .bind(event.room_id.as_str())
                    .execute(&mut *conn)
                    .await?;
            }
            if let Some(membership) = event.membership {
                insert_membership_row(conn, event, state_key, membership, ordering).await?;
            }
        }
        self.insert_relation_and_search(conn, event, ordering).await?;
        if let Some((target, redacted_json)) = event.redaction {
            sqlx::query("UPDATE events SET json = $1 WHERE event_id = $2").bind(redacted_json).bind(target.as_str()).execute(&mut *conn).await?;
            // A redacted body must not be found any more, and a redacted
            // relation (its `m.relates_to` is gone) no longer relates.
            sqlx::query("DELETE FROM event_search WHERE event_id = $1").bind(target.as_str()).execute(&mut *conn).await?;
            sqlx::query("DELETE FROM event_relations WHERE event_id = $1").bind(target.as_str()).execute(&mut *conn).await?;
        }
        for prev in event.prev_events {
            sqlx::query("DELETE FROM forward_extremities WHERE room_id = $1 AND event_id = $2")
                .bind(event.room_id.as_str())
                .bind(prev.as_str())
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query("INSERT INTO forward_extremities (room_id, event_id) VALUES ($1, $2)")
            .bind(event.room_id.as_str())
            .bind(event.event_id.as_str())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// The `events` row of `event` at `ordering`.
    pub(super) async fn insert_event_row(&self, conn: &mut sqlx::AnyConnection, event: &NewEvent<'_>, ordering: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO events (stream_ordering, instance_name, event_id, room_id, sender, type, state_key, depth, origin_server_ts, json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(ordering)
        .bind(&self.instance_name)
        .bind(event.event_id.as_str())
        .bind(event.room_id.as_str())
        .bind(event.sender.as_str())
        .bind(event.kind)
        .bind(event.state_key)
        .bind(event.depth)
        .bind(event.origin_server_ts)
        .bind(event.json)
        .execute(&mut *conn)
        .await
        .map_err(StorageError::from_insert)?;
        Ok(())
    }

    /// What `event` relates to (`event_relations`) and its words (`event_search`).
    pub(super) async fn insert_relation_and_search(&self, conn: &mut sqlx::AnyConnection, event: &NewEvent<'_>, ordering: i64) -> Result<()> {
        if let Some((parent, rel_type)) = event.relation {
            sqlx::query("INSERT INTO event_relations (event_id, room_id, relates_to, rel_type, sender, stream_ordering) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(event.event_id.as_str())
                .bind(event.room_id.as_str())
                .bind(parent)
                .bind(rel_type)
                .bind(event.sender.as_str())
                .bind(ordering)
                .execute(&mut *conn)
                .await?;
        }
        if let Some(text) = event.search_text {
            self.dialect.index_for_search(conn, event.event_id.as_str(), event.room_id.as_str(), ordering, text).await?;
        }
        Ok(())
    }

    /// Up to where this writer's `events` rows are all committed.
    pub fn persisted_events_position(&self) -> i64 {
        self.persisted_position(Stream::Events)
    }

    pub async fn event(&self, event_id: &EventId) -> Result<Option<StoredEvent>> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(event_id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(event_from_row).transpose()
    }

    pub async fn room_version(&self, room_id: &RoomId) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT room_version FROM rooms WHERE room_id = $1").bind(room_id.as_str()).fetch_optional(&self.pool).await?)
    }

    /// The event a client transaction produced, if it was sent before.
    pub async fn txn_event(&self, user_id: &UserId, device_id: &DeviceId, txn_id: &str) -> Result<Option<OwnedEventId>> {
        let id: Option<String> = sqlx::query_scalar("SELECT event_id FROM event_txns WHERE user_id = $1 AND device_id = $2 AND txn_id = $3")
            .bind(user_id.as_str())
            .bind(device_id.as_str())
            .bind(txn_id)
            .fetch_optional(&self.pool)
            .await?;
        id.map(|id| OwnedEventId::try_from(id).map_err(|e| StorageError::corrupt("event_txns.event_id", e))).transpose()
    }

    /// The requests (method and path, as stored with each event) that this
    /// device sent the given events with, for those it sent.
    pub async fn txn_requests(&self, user_id: &UserId, device_id: &DeviceId, event_ids: &[&EventId]) -> Result<Vec<(OwnedEventId, String)>> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (3..event_ids.len() + 3).map(|n| format!("${n}")).collect();
        let sql = format!("SELECT event_id, txn_id FROM event_txns WHERE user_id = $1 AND device_id = $2 AND event_id IN ({})", placeholders.join(", "));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id.as_str()).bind(device_id.as_str());
        for event_id in event_ids {
            query = query.bind(event_id.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("event_id")?;
                let id = OwnedEventId::try_from(id).map_err(|e| StorageError::corrupt("event_txns.event_id", e))?;
                Ok((id, row.try_get("txn_id")?))
            })
            .collect()
    }

    /// The room's current state events.
    pub async fn current_state(&self, room_id: &RoomId) -> Result<Vec<StoredEvent>> {
        let sql =
            format!("SELECT {} FROM current_state c JOIN events e ON e.event_id = c.event_id WHERE c.room_id = $1 ORDER BY e.stream_ordering", prefixed("e"));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(event_from_row).collect()
    }

    pub async fn current_state_event(&self, room_id: &RoomId, kind: &str, state_key: &str) -> Result<Option<StoredEvent>> {
        let sql = format!(
            "SELECT {} FROM current_state c JOIN events e ON e.event_id = c.event_id \
             WHERE c.room_id = $1 AND c.type = $2 AND c.state_key = $3",
            prefixed("e")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id.as_str()).bind(kind).bind(state_key).fetch_optional(&self.pool).await?;
        row.as_ref().map(event_from_row).transpose()
    }

    /// The room's state as it was right after the event at `position`
    /// (with the resets of state resolution up to it, `room_state`).
    pub async fn state_at(&self, room_id: &RoomId, position: i64) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {} FROM events e JOIN (SELECT type, state_key, MAX(stream_ordering) AS latest FROM events \
             WHERE room_id = $1 AND state_key IS NOT NULL AND stream_ordering <= $2 GROUP BY type, state_key) s \
             ON e.stream_ordering = s.latest ORDER BY e.stream_ordering",
            prefixed("e")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id.as_str()).bind(position).fetch_all(&self.pool).await?;
        let events = rows.iter().map(event_from_row).collect::<Result<Vec<_>>>()?;
        self.with_resets(room_id, position, events).await
    }

    /// The state events of a room with orderings in `(after, upto]`, and
    /// the events state resolution made the state in that range (at their
    /// reset's position): the last of each key is its state at `upto`.
    pub async fn state_changes(&self, room_id: &RoomId, after: i64, upto: i64) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND state_key IS NOT NULL \
             AND stream_ordering > $2 AND stream_ordering <= $3 ORDER BY stream_ordering"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id.as_str()).bind(after).bind(upto).fetch_all(&self.pool).await?;
        let events = rows.iter().map(event_from_row).collect::<Result<Vec<_>>>()?;
        self.with_reset_changes(room_id, after, upto, events).await
    }

    /// The latest events and their depth: the prev_events of the next event.
    pub async fn forward_extremities(&self, room_id: &RoomId) -> Result<Vec<(OwnedEventId, i64)>> {
        let rows = sqlx::query("SELECT f.event_id, e.depth FROM forward_extremities f JOIN events e ON e.event_id = f.event_id WHERE f.room_id = $1")
            .bind(room_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("event_id")?;
                Ok((OwnedEventId::try_from(id).map_err(|e| StorageError::corrupt("forward_extremities.event_id", e))?, row.try_get("depth")?))
            })
            .collect()
    }

    /// Events of a room with orderings in `(after, upto]`: the oldest first
    /// when `newest_first` is false, else the newest first; at most `limit`.
    pub async fn room_events(&self, room_id: &RoomId, after: i64, upto: i64, limit: i64, newest_first: bool) -> Result<Vec<StoredEvent>> {
        let order = if newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND stream_ordering > $2 AND stream_ordering <= $3 \
             ORDER BY stream_ordering {order} LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id.as_str()).bind(after).bind(upto).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(event_from_row).collect()
    }

    /// A user's current membership in every room they have one in.
    pub async fn memberships_of(&self, user_id: &UserId) -> Result<Vec<(OwnedRoomId, String, i64)>> {
        let rows = sqlx::query("SELECT room_id, membership, stream_ordering FROM current_state WHERE type = 'm.room.member' AND state_key = $1")
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let room: String = row.try_get("room_id")?;
                Ok((
                    OwnedRoomId::try_from(room).map_err(|e| StorageError::corrupt("current_state.room_id", e))?,
                    row.try_get::<Option<String>, _>("membership")?.unwrap_or_default(),
                    row.try_get("stream_ordering")?,
                ))
            })
            .collect()
    }

    /// The user's membership in a room right after `position`, if any.
    pub async fn membership_at(&self, room_id: &RoomId, user_id: &UserId, position: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT membership FROM room_memberships WHERE room_id = $1 AND user_id = $2 AND stream_ordering <= $3 \
             ORDER BY stream_ordering DESC LIMIT 1",
        )
        .bind(room_id.as_str())
        .bind(user_id.as_str())
        .bind(position)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every user with a current membership in the room and what it is,
    /// in the order the memberships were reached.
    pub async fn memberships_in(&self, room_id: &RoomId) -> Result<Vec<(OwnedUserId, String)>> {
        let rows = sqlx::query("SELECT state_key, membership FROM current_state WHERE room_id = $1 AND type = 'm.room.member' ORDER BY stream_ordering")
            .bind(room_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let user: String = row.try_get("state_key")?;
                Ok((
                    OwnedUserId::try_from(user).map_err(|e| StorageError::corrupt("current_state.state_key", e))?,
                    row.try_get::<Option<String>, _>("membership")?.unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// Users whose current membership in the room is `membership`.
    pub async fn members_with(&self, room_id: &RoomId, membership: &str) -> Result<Vec<OwnedUserId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT state_key FROM current_state WHERE room_id = $1 AND type = 'm.room.member' AND membership = $2")
            .bind(room_id.as_str())
            .bind(membership)
            .fetch_all(&self.pool)
            .await?;
        ids.into_iter().map(|id| OwnedUserId::try_from(id).map_err(|e| StorageError::corrupt("current_state.state_key", e))).collect()
    }
}

fn prefixed(alias: &str) -> String {
    EVENT_COLUMNS.split(", ").map(|column| format!("{alias}.{column}")).collect::<Vec<_>>().join(", ")
}

pub(super) fn event_from_row(row: &AnyRow) -> Result<StoredEvent> {
    Ok(StoredEvent {
        stream_ordering: row.try_get("stream_ordering")?,
        event_id: OwnedEventId::try_from(row.try_get::<String, _>("event_id")?).map_err(|e| StorageError::corrupt("events.event_id", e))?,
        room_id: OwnedRoomId::try_from(row.try_get::<String, _>("room_id")?).map_err(|e| StorageError::corrupt("events.room_id", e))?,
        sender: OwnedUserId::try_from(row.try_get::<String, _>("sender")?).map_err(|e| StorageError::corrupt("events.sender", e))?,
        kind: row.try_get("type")?,
        state_key: row.try_get("state_key")?,
        depth: row.try_get("depth")?,
        origin_server_ts: row.try_get("origin_server_ts")?,
        json: row.try_get("json")?,
    })
}

impl Storage {
    /// A user's membership changes in a room, oldest first.
    pub async fn membership_history(&self, room_id: &RoomId, user_id: &UserId) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query("SELECT stream_ordering, membership FROM room_memberships WHERE room_id = $1 AND user_id = $2 ORDER BY stream_ordering")
            .bind(room_id.as_str())
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok((row.try_get("stream_ordering")?, row.try_get("membership")?))).collect()
    }

    /// Every state event of one type in a room, oldest first.
    pub async fn state_history(&self, room_id: &RoomId, kind: &str) -> Result<Vec<StoredEvent>> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND type = $2 AND state_key IS NOT NULL ORDER BY stream_ordering");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id.as_str()).bind(kind).fetch_all(&self.pool).await?;
        rows.iter().map(event_from_row).collect()
    }
}

pub(super) async fn insert_alias(conn: &mut sqlx::AnyConnection, alias: &str, room_id: &RoomId, creator: &UserId) -> Result<()> {
    sqlx::query("INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)")
        .bind(alias)
        .bind(room_id.as_str())
        .bind(creator.as_str())
        .execute(conn)
        .await
        .map_err(StorageError::from_insert)?;
    Ok(())
}

impl Storage {
    /// Rooms published in the directory, with their joined member counts.
    pub async fn published_rooms(&self) -> Result<Vec<(OwnedRoomId, i64)>> {
        let rows = sqlx::query(
            "SELECT r.room_id, (SELECT COUNT(*) FROM current_state c WHERE c.room_id = r.room_id AND c.type = 'm.room.member' \
             AND c.membership = 'join') AS joined FROM rooms r WHERE r.published = $1",
        )
        .bind(true)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let room: String = row.try_get("room_id")?;
                Ok((OwnedRoomId::try_from(room).map_err(|e| StorageError::corrupt("rooms.room_id", e))?, row.try_get("joined")?))
            })
            .collect()
    }

    pub async fn room_published(&self, room_id: &RoomId) -> Result<Option<bool>> {
        let row = sqlx::query("SELECT published FROM rooms WHERE room_id = $1").bind(room_id.as_str()).fetch_optional(&self.pool).await?;
        row.map(|row| super::flag(&row, "published")).transpose()
    }

    pub async fn set_room_published(&self, room_id: &RoomId, published: bool) -> Result<()> {
        sqlx::query("UPDATE rooms SET published = $1 WHERE room_id = $2").bind(published).bind(room_id.as_str()).execute(&self.pool).await?;
        Ok(())
    }
}

impl Storage {
    /// Marks a left room as forgotten by the user.
    pub async fn forget_room(&self, user_id: &UserId, room_id: &RoomId) -> Result<()> {
        sqlx::query("INSERT INTO forgotten_rooms (user_id, room_id) VALUES ($1, $2) ON CONFLICT (user_id, room_id) DO NOTHING")
            .bind(user_id.as_str())
            .bind(room_id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn room_forgotten(&self, user_id: &UserId, room_id: &RoomId) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM forgotten_rooms WHERE user_id = $1 AND room_id = $2")
            .bind(user_id.as_str())
            .bind(room_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }
}

impl Storage {
    /// The events `instance` persisted with orderings in `(after, upto]`,
    /// oldest first, at most `limit`: the recent-events log of `/sync` reads
    /// each persister's new events with this once per position it reaches.
    pub async fn events_written_between(&self, instance: &str, after: i64, upto: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_ordering > $1 AND stream_ordering <= $2 AND instance_name = $3 \
             ORDER BY stream_ordering LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after).bind(upto).bind(instance).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The member events of `users` in a room as of `position` (each one's
    /// latest at or before it), oldest first.
    pub async fn member_events_at(&self, room_id: &RoomId, users: &[&str], position: i64) -> Result<Vec<StoredEvent>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (3..users.len() + 3).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_ordering IN (SELECT MAX(stream_ordering) FROM room_memberships \
             WHERE room_id = $1 AND stream_ordering <= $2 AND user_id IN ({}) GROUP BY user_id) ORDER BY stream_ordering",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id.as_str()).bind(position);
        for user in users {
            query = query.bind(*user);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(event_from_row).collect()
    }
}

/// A membership change of `user_id` (`room_memberships`).
pub(super) async fn insert_membership_row(conn: &mut sqlx::AnyConnection, event: &NewEvent<'_>, user_id: &str, membership: &str, ordering: i64) -> Result<()> {
    sqlx::query("INSERT INTO room_memberships (stream_ordering, room_id, user_id, membership) VALUES ($1, $2, $3, $4)")
        .bind(ordering)
        .bind(event.room_id.as_str())
        .bind(user_id)
        .bind(membership)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
