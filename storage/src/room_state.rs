//! State resolution's part of the rooms storage (migration 0029): the state
//! before an event where the linear model does not give it (an event of
//! another server that forks), and the changes resolution made to a room's
//! current state (`state_resets`), which the state at a position and the
//! state changes between positions (`events`) take into account. Persisting
//! an event of another server with both, in one transaction.

use ruma::{EventId, OwnedRoomId, RoomId};
use sqlx::Row;

use super::{Durability, NewEvent, Result, Storage, StorageError, StoredEvent, Stream, events::event_from_row};

/// A key of the state before an event that differs from the room's linear
/// state just before the event's position: `event_id` `None` for a key absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateOverride {
    pub kind: String,
    pub state_key: String,
    pub event_id: Option<String>,
}

/// A change of the current state that resolution made, beyond the event persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStateReset<'a> {
    pub kind: &'a str,
    pub state_key: &'a str,
    pub event_id: &'a EventId,
    /// For `m.room.member`: the winning event's membership.
    pub membership: Option<&'a str>,
}

/// A state reset as `/sync`'s recent-events log sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateResetMark {
    pub stream_ordering: i64,
    pub room_id: OwnedRoomId,
    pub kind: String,
    pub state_key: String,
}

fn prefixed(alias: &str) -> String {
    super::events::EVENT_COLUMNS.split(", ").map(|column| format!("{alias}.{column}")).collect::<Vec<_>>().join(", ")
}

impl Storage {
    /// Persists one event of another server with the keys where the state
    /// before it differs from the room's linear state (`overrides`) and the
    /// changes resolution made to the current state (`resets`), all or
    /// nothing. Returns the event's stream ordering; a known event id is
    /// `StorageError::Conflict`.
    pub async fn persist_resolved_event(
        &self,
        event: &NewEvent<'_>,
        overrides: &[StateOverride],
        resets: &[NewStateReset<'_>],
        durability: Durability,
    ) -> Result<i64> {
        let mut tx = self.begin_write_with(durability).await?;
        let reservation = self.in_flight.of(Stream::Events).reserve();
        let ordering = self.write_event(&mut tx, event).await?;
        let guard = reservation.track(ordering);
        for entry in overrides {
            sqlx::query("INSERT INTO event_state_overrides (event_id, type, state_key, state_event_id) VALUES ($1, $2, $3, $4)")
                .bind(event.event_id.as_str())
                .bind(&entry.kind)
                .bind(&entry.state_key)
                .bind(entry.event_id.as_deref())
                .execute(&mut *tx)
                .await?;
        }
        for reset in resets {
            sqlx::query("INSERT INTO state_resets (stream_ordering, room_id, type, state_key, event_id) VALUES ($1, $2, $3, $4, $5)")
                .bind(ordering)
                .bind(event.room_id.as_str())
                .bind(reset.kind)
                .bind(reset.state_key)
                .bind(reset.event_id.as_str())
                .execute(&mut *tx)
                .await?;
            // At the reset's position: `/sync` sees a membership it changed as new.
            sqlx::query(
                "INSERT INTO current_state (room_id, type, state_key, event_id, stream_ordering, membership) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id, \
                 stream_ordering = excluded.stream_ordering, membership = excluded.membership",
            )
            .bind(event.room_id.as_str())
            .bind(reset.kind)
            .bind(reset.state_key)
            .bind(reset.event_id.as_str())
            .bind(ordering)
            .bind(reset.membership)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        drop(guard);
        Ok(ordering)
    }

    /// The keys where the state before `event_id` differs from its room's
    /// linear state just before it (none for most events).
    pub async fn state_overrides(&self, event_id: &EventId) -> Result<Vec<StateOverride>> {
        let rows = sqlx::query("SELECT type, state_key, state_event_id FROM event_state_overrides WHERE event_id = $1")
            .bind(event_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok(StateOverride { kind: row.try_get("type")?, state_key: row.try_get("state_key")?, event_id: row.try_get("state_event_id")? }))
            .collect()
    }

    /// The state resets of every room at orderings in `(after, upto]`.
    pub async fn state_resets_between(&self, after: i64, upto: i64) -> Result<Vec<StateResetMark>> {
        let rows = sqlx::query("SELECT stream_ordering, room_id, type, state_key FROM state_resets WHERE stream_ordering > $1 AND stream_ordering <= $2")
            .bind(after)
            .bind(upto)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let room: String = row.try_get("room_id")?;
                Ok(StateResetMark {
                    stream_ordering: row.try_get("stream_ordering")?,
                    room_id: OwnedRoomId::try_from(room).map_err(|e| StorageError::corrupt("state_resets.room_id", e))?,
                    kind: row.try_get("type")?,
                    state_key: row.try_get("state_key")?,
                })
            })
            .collect()
    }

    /// A room's state resets at orderings in `(after, upto]` (`after` `None`:
    /// from the start), oldest first: each reset's ordering and the event
    /// that became the key's state then.
    pub async fn state_resets_of(&self, room_id: &RoomId, after: Option<i64>, upto: i64) -> Result<Vec<(i64, StoredEvent)>> {
        let sql = format!(
            "SELECT r.stream_ordering AS reset_at, {} FROM state_resets r JOIN events e ON e.event_id = r.event_id \
             WHERE r.room_id = $1 AND r.stream_ordering > $2 AND r.stream_ordering <= $3 ORDER BY r.stream_ordering",
            prefixed("e")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id.as_str()).bind(after.unwrap_or(i64::MIN)).bind(upto).fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok((row.try_get("reset_at")?, event_from_row(row)?))).collect()
    }

    /// `events` (the latest state event of each key at or before `upto`,
    /// by stream order) with the room's resets up to `upto` applied: a reset
    /// replaces the key's event when it is at or after it.
    pub(super) async fn with_resets(&self, room_id: &RoomId, upto: i64, mut events: Vec<StoredEvent>) -> Result<Vec<StoredEvent>> {
        let resets = self.state_resets_of(room_id, None, upto).await?;
        if resets.is_empty() {
            return Ok(events);
        }
        let mut at: Vec<i64> = events.iter().map(|event| event.stream_ordering).collect();
        for (reset_at, winner) in resets {
            match events.iter().position(|event| event.kind == winner.kind && event.state_key == winner.state_key) {
                Some(index) if at[index] <= reset_at => {
                    events[index] = winner;
                    at[index] = reset_at;
                }
                Some(_) => {}
                None => {
                    events.push(winner);
                    at.push(reset_at);
                }
            }
        }
        events.sort_by_key(|event| event.stream_ordering);
        Ok(events)
    }

    /// `events` (state events of a room with orderings in `(after, upto]`,
    /// oldest first) with the room's resets in that range placed at their
    /// positions, so that the last of each key is the key's state at `upto`.
    pub(super) async fn with_reset_changes(&self, room_id: &RoomId, after: i64, upto: i64, events: Vec<StoredEvent>) -> Result<Vec<StoredEvent>> {
        let resets = self.state_resets_of(room_id, Some(after), upto).await?;
        if resets.is_empty() {
            return Ok(events);
        }
        let mut merged: Vec<(i64, StoredEvent)> = events.into_iter().map(|event| (event.stream_ordering, event)).collect();
        merged.extend(resets);
        // Stable: a reset comes after the event persisted at its position.
        merged.sort_by_key(|(at, _)| *at);
        Ok(merged.into_iter().map(|(_, event)| event).collect())
    }
}
