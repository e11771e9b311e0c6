//! Writing an event that is not state and redacts nothing (a message, a
//! reaction, an edit: nearly every event) on PostgreSQL as one statement:
//! its stream ordering, its row, the client transaction that sent it, what
//! it relates to, its search text, the room's forward extremities and its
//! push actions, in one data-modifying `WITH`. That is one round trip where
//! a statement per table took seven, and alone (`events::persist_events`)
//! it needs no `BEGIN` or `COMMIT` either: a single statement is its own
//! transaction. The prev events and push actions travel as JSON, so the
//! statement's text, hence its prepared plan, is the same for every room
//! size. Called by `events` and `room_state`; SQLite and other events take
//! `Storage::insert_event`.

use serde::Serialize;
use sqlx::AnyConnection;

use super::{Dialect, NewEvent, Result, Storage, StorageError, now_ms};

const WRITE_PLAIN_EVENT: &str = "\
WITH ev AS (
    INSERT INTO events (stream_ordering, instance_name, event_id, room_id, sender, type, state_key, depth, origin_server_ts, json)
    VALUES (nextval('events_sequence'), $1, $2, $3, $4, $5, NULL, $6, $7, $8)
    RETURNING stream_ordering
), txn AS (
    INSERT INTO event_txns (user_id, device_id, txn_id, event_id)
    SELECT $9, $10, $11, $2 WHERE $9::TEXT IS NOT NULL
), relation AS (
    INSERT INTO event_relations (event_id, room_id, relates_to, rel_type, sender, stream_ordering)
    SELECT $2, $3, $12, $13, $4, stream_ordering FROM ev WHERE $12::TEXT IS NOT NULL
), search AS (
    INSERT INTO event_search (event_id, room_id, stream_ordering, vector)
    SELECT $2, $3, stream_ordering, to_tsvector('english', $14) FROM ev WHERE $14::TEXT IS NOT NULL
), superseded AS (
    DELETE FROM forward_extremities WHERE room_id = $3 AND event_id IN (SELECT json_array_elements_text($15::JSON))
), extremity AS (
    INSERT INTO forward_extremities (room_id, event_id) VALUES ($3, $2)
), push_actions AS (
    INSERT INTO event_push_actions (user_id, event_id, room_id, stream_ordering, thread_id, actions, highlight, ts)
    SELECT action.user_id, $2, $3, ev.stream_ordering, action.thread_id, action.actions, action.highlight, $16
    FROM ev, json_to_recordset($17::JSON) AS action(user_id TEXT, thread_id TEXT, actions TEXT, highlight BOOLEAN)
)
SELECT stream_ordering FROM ev";

/// One push action as `WRITE_PLAIN_EVENT` reads it.
#[derive(Serialize)]
struct ActionRow<'a> {
    user_id: &'a str,
    thread_id: &'a str,
    /// The actions' JSON as text: the column keeps it as written.
    actions: String,
    highlight: bool,
}

impl Storage {
    /// Whether `event` is written by `write_plain_event`.
    pub(super) fn writes_in_one_statement(&self, event: &NewEvent<'_>) -> bool {
        self.dialect == Dialect::Postgres && event.state_key.is_none() && event.redaction.is_none()
    }

    /// Writes `event` (one `writes_in_one_statement` accepts) and its push
    /// actions; returns its stream ordering. The caller reserves the
    /// ordering on the events stream first. A client transaction or event id
    /// already stored is `StorageError::Conflict`.
    pub(super) async fn write_plain_event(&self, conn: &mut AnyConnection, event: &NewEvent<'_>) -> Result<i64> {
        debug_assert!(self.writes_in_one_statement(event));
        let prev_events = serde_json::to_string(&event.prev_events.iter().map(|id| id.as_str()).collect::<Vec<_>>())
            .map_err(|e| StorageError::corrupt("events.prev_events", e))?;
        let actions: Vec<ActionRow<'_>> = event
            .push_actions
            .iter()
            .map(|action| ActionRow {
                user_id: &action.user_id,
                thread_id: &action.thread_id,
                actions: action.actions.to_string(),
                highlight: action.highlight,
            })
            .collect();
        let actions = serde_json::to_string(&actions).map_err(|e| StorageError::corrupt("event_push_actions.actions", e))?;
        let (txn_user, txn_device, txn_id) = match event.txn {
            Some((user, device, txn_id)) => (Some(user.as_str()), Some(device.as_str()), Some(txn_id)),
            None => (None, None, None),
        };
        let (relates_to, rel_type) = event.relation.unzip();
        let ordering: i64 = sqlx::query_scalar(WRITE_PLAIN_EVENT)
            .bind(&self.instance_name)
            .bind(event.event_id.as_str())
            .bind(event.room_id.as_str())
            .bind(event.sender.as_str())
            .bind(event.kind)
            .bind(event.depth)
            .bind(event.origin_server_ts)
            .bind(event.json)
            .bind(txn_user)
            .bind(txn_device)
            .bind(txn_id)
            .bind(relates_to)
            .bind(rel_type)
            .bind(event.search_text.map(super::index_text))
            .bind(prev_events)
            .bind(now_ms())
            .bind(actions)
            .fetch_one(conn)
            .await
            .map_err(StorageError::from_insert)?;
        Ok(ordering)
    }
}
