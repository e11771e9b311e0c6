//! Application services' data: the rooms each published in the directory of
//! its third-party networks, and the notifier's queue: how far it matched
//! the events stream, the items each appservice is owed, and the
//! transactions built from them until the appservice acknowledges them.

use ruma::{OwnedRoomId, RoomId};
use sqlx::Row;

use super::{Durability, Result, Storage, StorageError, StoredEvent};

/// Rows written or deleted by one statement (well under both engines'
/// limits on bound parameters).
const ROWS_PER_STATEMENT: usize = 100;

/// Rows PostgreSQL takes in one statement of the notifier (three parameters
/// a row, far below its 65,535).
const MAX_ROWS_ONE_STATEMENT: usize = 1_000;

/// Appends `items` (`(appservice_id, kind, json)`) to the queue, in order,
/// a statement per `ROWS_PER_STATEMENT`; their sequence numbers, in order.
pub(super) async fn insert_queued(conn: &mut sqlx::AnyConnection, items: &[(String, &str, String)]) -> Result<Vec<i64>> {
    let mut seqs = Vec::with_capacity(items.len());
    for chunk in items.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<String> = (0..chunk.len()).map(|n| format!("(${}, ${}, ${})", 3 * n + 1, 3 * n + 2, 3 * n + 3)).collect();
        let sql = format!("INSERT INTO appservice_queue (appservice_id, kind, item_json) VALUES {} RETURNING seq", rows.join(", "));
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
        for (appservice_id, kind, json) in chunk {
            query = query.bind(appservice_id.as_str()).bind(*kind).bind(json.as_str());
        }
        seqs.extend(sorted(query.fetch_all(&mut *conn).await?));
    }
    Ok(seqs)
}

/// Sequence numbers returned by one insert, in the order of its rows (one
/// writer queues, so they grow with the rows).
fn sorted(mut seqs: Vec<i64>) -> Vec<i64> {
    seqs.sort_unstable();
    seqs
}

/// The kinds of queued items, each read up to its own limit.
pub const QUEUED_KINDS: [&str; 4] = ["event", "ephemeral", "to_device", "device_lists"];

/// One queued item: its place in the queue, its kind (`event`,
/// `ephemeral`, `to_device`, `device_lists`) and its JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedItem {
    pub seq: i64,
    pub kind: String,
    pub json: String,
}

impl Storage {
    /// Publishes `room_id` in (or removes it from) the directory of the
    /// appservice's network `network_id`.
    pub async fn set_appservice_room_listed(&self, appservice_id: &str, network_id: &str, room_id: &RoomId, listed: bool) -> Result<()> {
        let sql = if listed {
            "INSERT INTO appservice_room_list (appservice_id, network_id, room_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM appservice_room_list WHERE appservice_id = $1 AND network_id = $2 AND room_id = $3"
        };
        sqlx::query(sql).bind(appservice_id).bind(network_id).bind(room_id.as_str()).execute(&self.pool).await?;
        Ok(())
    }

    /// Rooms in appservices' network directories, with their joined member
    /// counts: of one network (`(appservice_id, network_id)`), or of all.
    pub async fn appservice_listed_rooms(&self, network: Option<(&str, &str)>) -> Result<Vec<(OwnedRoomId, i64)>> {
        let count = "(SELECT COUNT(*) FROM current_state c WHERE c.room_id = l.room_id AND c.type = 'm.room.member' AND c.membership = 'join') AS joined";
        let rows = match network {
            Some((appservice_id, network_id)) => {
                let sql = format!("SELECT DISTINCT l.room_id, {count} FROM appservice_room_list l WHERE l.appservice_id = $1 AND l.network_id = $2");
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(appservice_id).bind(network_id).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("SELECT DISTINCT l.room_id, {count} FROM appservice_room_list l");
                sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?
            }
        };
        rows.iter()
            .map(|row| {
                let room: String = row.try_get("room_id")?;
                Ok((OwnedRoomId::try_from(room).map_err(|e| StorageError::corrupt("appservice_room_list.room_id", e))?, row.try_get("joined")?))
            })
            .collect()
    }
}

impl Storage {
    /// How far the notifier has matched the events stream.
    pub async fn appservice_stream_position(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT stream_ordering FROM appservice_stream_position").fetch_one(&self.pool).await?)
    }

    /// Every event with an ordering in `(after, upto]`, oldest first, at most `limit`.
    pub async fn appservice_events(&self, after: i64, upto: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let columns = super::events::EVENT_COLUMNS;
        let sql = format!("SELECT {columns} FROM events WHERE stream_ordering > $1 AND stream_ordering <= $2 ORDER BY stream_ordering LIMIT $3");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after).bind(upto).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(super::events::event_from_row).collect()
    }

    /// Queues `items` (`(appservice_id, kind, json)`, in order) and, when
    /// given, moves the matched position to `position`, all or nothing,
    /// committed with `durability`; the items' sequence numbers, in order.
    /// On PostgreSQL, items and a position, one statement (which sets
    /// `synchronous_commit` for its own transaction with `set_config`).
    pub async fn enqueue_appservice_items(&self, items: &[(String, &str, String)], position: Option<i64>, durability: Durability) -> Result<Vec<i64>> {
        if let Some(position) = position.filter(|_| self.dialect == super::Dialect::Postgres && !items.is_empty() && items.len() <= MAX_ROWS_ONE_STATEMENT) {
            let rows: Vec<String> = (0..items.len()).map(|n| format!("(${}, ${}, ${})", 3 * n + 2, 3 * n + 3, 3 * n + 4)).collect();
            // `set_config(..., true)` lasts until the end of the statement's
            // own transaction, whose commit reads it.
            let unflushed = if durability == Durability::WithNextFlush { " WHERE set_config('synchronous_commit', 'off', true) = 'off'" } else { "" };
            let sql = format!(
                "WITH moved AS (UPDATE appservice_stream_position SET stream_ordering = $1{unflushed}) INSERT INTO appservice_queue (appservice_id, kind, item_json) VALUES {} RETURNING seq",
                rows.join(", ")
            );
            let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(position);
            for (appservice_id, kind, json) in items {
                query = query.bind(appservice_id.as_str()).bind(*kind).bind(json.as_str());
            }
            return Ok(sorted(query.fetch_all(&self.pool).await?));
        }
        let mut tx = self.begin_write_with(durability).await?;
        let seqs = insert_queued(&mut tx, items).await?;
        if let Some(position) = position {
            sqlx::query("UPDATE appservice_stream_position SET stream_ordering = $1").bind(position).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(seqs)
    }

    /// The oldest items queued for the appservice: up to `per_kind` of each
    /// kind, oldest first, in one statement.
    pub async fn appservice_queued(&self, appservice_id: &str, per_kind: i64) -> Result<Vec<QueuedItem>> {
        let arm = |n: usize| {
            format!(
                "SELECT * FROM (SELECT seq, kind, item_json FROM appservice_queue WHERE appservice_id = $1 AND kind = '{}' ORDER BY seq LIMIT $2) AS k{n}",
                QUEUED_KINDS[n]
            )
        };
        let sql = (0..QUEUED_KINDS.len()).map(arm).collect::<Vec<_>>().join(" UNION ALL ");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(appservice_id).bind(per_kind).fetch_all(&self.pool).await?;
        let mut items = rows
            .iter()
            .map(|row| Ok(QueuedItem { seq: row.try_get("seq")?, kind: row.try_get("kind")?, json: row.try_get("item_json")? }))
            .collect::<Result<Vec<_>>>()?;
        items.sort_by_key(|item| item.seq);
        Ok(items)
    }

    /// Stores a transaction of `items` under the next transaction id and
    /// takes them off the queue, all or nothing; the id. `acknowledged`, the
    /// last transaction the appservice answered 2xx (transactions are sent in
    /// order, so every earlier one was too), is forgotten with those before it in the
    /// same database transaction (one commit a transaction sent). On
    /// PostgreSQL this is one statement (each statement is a round trip to
    /// the server, and the sender waits for them between transactions).
    pub async fn store_appservice_txn(&self, appservice_id: &str, body_json: &str, items: &[QueuedItem], acknowledged: Option<i64>) -> Result<i64> {
        if self.dialect == super::Dialect::Postgres && items.len() <= MAX_ROWS_ONE_STATEMENT {
            let seqs = (0..items.len()).map(|n| format!("${}", n + 4)).collect::<Vec<_>>().join(", ");
            let taken = if items.is_empty() { String::new() } else { format!("taken AS (DELETE FROM appservice_queue WHERE seq IN ({seqs})), ") };
            let sql = format!(
                "WITH acked AS (DELETE FROM appservice_txns WHERE appservice_id = $1 AND txn_id <= $2), {taken}\
                 id AS (UPDATE appservice_txn_id SET last_txn_id = last_txn_id + 1 RETURNING last_txn_id) \
                 INSERT INTO appservice_txns (appservice_id, txn_id, body_json) SELECT $1, last_txn_id, $3 FROM id RETURNING txn_id"
            );
            let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(appservice_id).bind(acknowledged.unwrap_or(-1)).bind(body_json);
            for item in items {
                query = query.bind(item.seq);
            }
            return Ok(query.fetch_one(&self.pool).await?);
        }
        let mut tx = self.begin_write().await?;
        if let Some(acknowledged) = acknowledged {
            sqlx::query("DELETE FROM appservice_txns WHERE appservice_id = $1 AND txn_id <= $2")
                .bind(appservice_id)
                .bind(acknowledged)
                .execute(&mut *tx)
                .await?;
        }
        let txn_id: i64 = sqlx::query_scalar("UPDATE appservice_txn_id SET last_txn_id = last_txn_id + 1 RETURNING last_txn_id").fetch_one(&mut *tx).await?;
        sqlx::query("INSERT INTO appservice_txns (appservice_id, txn_id, body_json) VALUES ($1, $2, $3)")
            .bind(appservice_id)
            .bind(txn_id)
            .bind(body_json)
            .execute(&mut *tx)
            .await?;
        for chunk in items.chunks(ROWS_PER_STATEMENT) {
            let list = (1..=chunk.len()).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ");
            let sql = format!("DELETE FROM appservice_queue WHERE seq IN ({list})");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for item in chunk {
                query = query.bind(item.seq);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(txn_id)
    }

    /// The appservice's oldest stored transaction after `after` (all when
    /// `None`): its id and body.
    pub async fn oldest_appservice_txn(&self, appservice_id: &str, after: Option<i64>) -> Result<Option<(i64, String)>> {
        let row = sqlx::query("SELECT txn_id, body_json FROM appservice_txns WHERE appservice_id = $1 AND txn_id > $2 ORDER BY txn_id LIMIT 1")
            .bind(appservice_id)
            .bind(after.unwrap_or(i64::MIN))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok((row.try_get("txn_id")?, row.try_get("body_json")?))).transpose()
    }

    /// Forgets the transactions up to `txn_id`, which the appservice acknowledged.
    pub async fn delete_appservice_txns(&self, appservice_id: &str, txn_id: i64) -> Result<()> {
        sqlx::query("DELETE FROM appservice_txns WHERE appservice_id = $1 AND txn_id <= $2").bind(appservice_id).bind(txn_id).execute(&self.pool).await?;
        Ok(())
    }
}

impl Storage {
    /// Every public receipt (`m.read`) written in `(after, upto]`, oldest first, at most `limit`.
    pub async fn appservice_receipts(&self, after: i64, upto: i64, limit: i64) -> Result<Vec<super::Receipt>> {
        let rows = sqlx::query(
            "SELECT stream_id, room_id, receipt_type, user_id, thread_id, event_id, ts FROM receipts \
             WHERE stream_id > $1 AND stream_id <= $2 AND receipt_type = 'm.read' ORDER BY stream_id LIMIT $3",
        )
        .bind(after)
        .bind(upto)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(super::Receipt {
                    stream_id: row.try_get("stream_id")?,
                    room_id: row.try_get("room_id")?,
                    receipt_type: row.try_get("receipt_type")?,
                    user_id: row.try_get("user_id")?,
                    thread_id: row.try_get("thread_id")?,
                    event_id: row.try_get("event_id")?,
                    ts: row.try_get("ts")?,
                })
            })
            .collect()
    }
}
