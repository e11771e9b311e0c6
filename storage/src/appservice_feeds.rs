//! What the appservice notifier reads besides events and receipts: the
//! streams it follows from a position saved in `appservice_stream_position`
//! (to-device messages, device-list changes, presence), queueing what it
//! found and moving the position in one database transaction; and the
//! one-time key counts and unused fallback key types of MSC3202, read for
//! the users of a transaction when it is built.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;

use super::{Result, Storage, StorageError};

/// A stream the notifier follows, with its column in `appservice_stream_position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppserviceFeed {
    Receipts,
    ToDevice,
    DeviceLists,
    Presence,
}

impl AppserviceFeed {
    fn column(self) -> &'static str {
        match self {
            Self::Receipts => "receipts_stream_id",
            Self::ToDevice => "to_device_stream_id",
            Self::DeviceLists => "device_lists_stream_id",
            Self::Presence => "presence_stream_id",
        }
    }
}

/// One message in a device's inbox, with where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxMessage {
    pub stream_id: i64,
    pub user_id: String,
    pub device_id: String,
    /// `{"type", "sender", "content"}`.
    pub message: serde_json::Value,
}

/// `user -> device -> algorithm -> count`, every device of the users, an
/// empty map for a device without one-time keys (Synapse's
/// `count_bulk_e2e_one_time_keys_for_as`).
pub type OneTimeKeyCounts = BTreeMap<String, BTreeMap<String, BTreeMap<String, i64>>>;
/// `user -> device -> algorithms of unused fallback keys`, every device.
pub type UnusedFallbackKeys = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// Users per key-count query (bound parameters).
const USERS_PER_QUERY: usize = 500;

impl Storage {
    /// How far the notifier has followed `feed`.
    pub async fn appservice_feed_position(&self, feed: AppserviceFeed) -> Result<i64> {
        let sql = format!("SELECT {} FROM appservice_stream_position", feed.column());
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&self.pool).await?)
    }

    /// Queues `items` (`(appservice_id, kind, json)`, in order) and moves
    /// the position of `feed` to `position`, all or nothing.
    pub async fn enqueue_appservice_feed(&self, items: &[(String, &str, String)], feed: AppserviceFeed, position: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        super::appservices::insert_queued(&mut tx, items).await?;
        let sql = format!("UPDATE appservice_stream_position SET {} = $1", feed.column());
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(position).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every to-device message written in `(after, upto]` still in an inbox,
    /// oldest first, at most `limit`.
    pub async fn inbox_messages_between(&self, after: i64, upto: i64, limit: i64) -> Result<Vec<InboxMessage>> {
        let rows = sqlx::query(
            "SELECT stream_id, user_id, device_id, message_json FROM device_inbox \
             WHERE stream_id > $1 AND stream_id <= $2 ORDER BY stream_id LIMIT $3",
        )
        .bind(after)
        .bind(upto)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let text: String = row.try_get("message_json")?;
                Ok(InboxMessage {
                    stream_id: row.try_get("stream_id")?,
                    user_id: row.try_get("user_id")?,
                    device_id: row.try_get("device_id")?,
                    message: serde_json::from_str(&text).map_err(|e| StorageError::corrupt("device_inbox.message_json", e))?,
                })
            })
            .collect()
    }

    /// One-time key counts and unused fallback key types of every device of `users`.
    pub async fn key_counts_of(&self, users: &BTreeSet<String>) -> Result<(OneTimeKeyCounts, UnusedFallbackKeys)> {
        let mut counts = OneTimeKeyCounts::new();
        let mut fallback = UnusedFallbackKeys::new();
        let users: Vec<&String> = users.iter().collect();
        for chunk in users.chunks(USERS_PER_QUERY) {
            let list = (1..=chunk.len()).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "SELECT d.user_id, d.device_id, 'one_time' AS kind, k.algorithm, COUNT(k.key_id) AS n FROM devices d \
                 LEFT JOIN e2e_one_time_keys k ON k.user_id = d.user_id AND k.device_id = d.device_id \
                 WHERE d.user_id IN ({list}) GROUP BY d.user_id, d.device_id, k.algorithm \
                 UNION ALL SELECT d.user_id, d.device_id, 'fallback' AS kind, f.algorithm, 0 AS n FROM devices d \
                 LEFT JOIN e2e_fallback_keys f ON f.user_id = d.user_id AND f.device_id = d.device_id AND f.used = FALSE \
                 WHERE d.user_id IN ({list})"
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for user in chunk {
                query = query.bind(user.as_str());
            }
            for row in query.fetch_all(&self.pool).await? {
                let user: String = row.try_get("user_id")?;
                let device: String = row.try_get("device_id")?;
                let kind: String = row.try_get("kind")?;
                let algorithm: Option<String> = row.try_get("algorithm")?;
                if kind == "one_time" {
                    let device = counts.entry(user).or_default().entry(device).or_default();
                    if let Some(algorithm) = algorithm {
                        device.insert(algorithm, row.try_get("n")?);
                    }
                } else {
                    let device = fallback.entry(user).or_default().entry(device).or_default();
                    if let Some(algorithm) = algorithm {
                        device.push(algorithm);
                    }
                }
            }
        }
        for devices in fallback.values_mut() {
            for algorithms in devices.values_mut() {
                algorithms.sort();
            }
        }
        Ok((counts, fallback))
    }
}
