//! Pushers: where a user's notifications go (`/pushers/set`) and how far each
//! pusher has got in the events stream. A pusher is identified by its user,
//! `app_id` and `pushkey`, and remembers the device that set it: deleting the
//! device (logout, device deletion, deactivation) deletes its pushers, as in
//! Synapse. Updating a pusher keeps the device that created it.
//!
//! The progress functions are for the pusher instance that sends the
//! notifications; each answers `false` when the pusher no longer exists, so
//! that instance can stop it.

use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use serde_json::{Map, Value};
use sqlx::{AnyConnection, Row, any::AnyRow};

use super::{PusherId, Result, Storage, StorageError, now_ms};

/// Which pusher: one per user, app and pushkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PusherKey<'a> {
    pub user_id: &'a UserId,
    pub app_id: &'a str,
    pub pushkey: &'a str,
}

/// A pusher as a client sets it.
#[derive(Debug, Clone, Copy)]
pub struct NewPusher<'a> {
    pub key: PusherKey<'a>,
    /// The device whose access token set it.
    pub device_id: &'a DeviceId,
    pub kind: &'a str,
    pub app_display_name: &'a str,
    pub device_display_name: &'a str,
    pub profile_tag: Option<&'a str>,
    pub lang: &'a str,
    pub data: &'a Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredPusher {
    pub user_id: OwnedUserId,
    pub app_id: String,
    pub pushkey: String,
    pub device_id: OwnedDeviceId,
    pub kind: String,
    pub app_display_name: String,
    pub device_display_name: String,
    pub profile_tag: Option<String>,
    pub lang: String,
    pub data: Map<String, Value>,
    pub created_ts: i64,
    /// The events stream position dealt with so far; the events position when
    /// the pusher was last set.
    pub last_stream_ordering: i64,
    pub last_success_ts: Option<i64>,
    pub failing_since_ts: Option<i64>,
}

const PUSHER_COLUMNS: &str = "user_id, app_id, pushkey, device_id, kind, app_display_name, device_display_name, profile_tag, lang, data, \
                              created_ts, last_stream_ordering, last_success_ts, failing_since_ts";

impl StoredPusher {
    pub fn id(&self) -> PusherId {
        PusherId { user_id: self.user_id.clone(), app_id: self.app_id.clone(), pushkey: self.pushkey.clone() }
    }
}

/// The pusher columns of the table aliased `alias`, for a join.
pub(super) fn pusher_columns_of(alias: &str) -> String {
    PUSHER_COLUMNS.split(", ").map(|column| format!("{alias}.{}", column.trim())).collect::<Vec<_>>().join(", ")
}

impl Storage {
    /// Creates or updates the user's pusher with this app id and pushkey,
    /// starting it at the newest event's position. Unless `append`, the
    /// same app id and pushkey are taken away from every other user.
    pub async fn set_pusher(&self, pusher: NewPusher<'_>, append: bool) -> Result<()> {
        let data = Value::Object(pusher.data.clone()).to_string();
        let key = pusher.key;
        let mut tx = self.begin_write().await?;
        if !append {
            sqlx::query("DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3")
                .bind(key.app_id)
                .bind(key.pushkey)
                .bind(key.user_id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        // A changed configuration starts afresh from now: earlier failures
        // and the old position belong to the old one. "Now" is the newest
        // event in the database: any instance may set a pusher, and one that
        // persists no events has no position of its own to go by.
        let now_position: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(stream_ordering), 0) FROM events").fetch_one(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO pushers (user_id, app_id, pushkey, device_id, kind, app_display_name, device_display_name, profile_tag, \
             lang, data, created_ts, last_stream_ordering) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET kind = excluded.kind, \
             app_display_name = excluded.app_display_name, device_display_name = excluded.device_display_name, \
             profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data, \
             last_stream_ordering = excluded.last_stream_ordering, failing_since_ts = NULL",
        )
        .bind(key.user_id.as_str())
        .bind(key.app_id)
        .bind(key.pushkey)
        .bind(pusher.device_id.as_str())
        .bind(pusher.kind)
        .bind(pusher.app_display_name)
        .bind(pusher.device_display_name)
        .bind(pusher.profile_tag)
        .bind(pusher.lang)
        .bind(data)
        .bind(now_ms())
        .bind(now_position.max(self.persisted_events_position()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes one pusher; `false` when there was none.
    pub async fn delete_pusher(&self, key: PusherKey<'_>) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3")
            .bind(key.user_id.as_str())
            .bind(key.app_id)
            .bind(key.pushkey)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }

    /// A user's pushers, oldest first.
    pub async fn user_pushers(&self, user_id: &UserId) -> Result<Vec<StoredPusher>> {
        let sql = format!("SELECT {PUSHER_COLUMNS} FROM pushers WHERE user_id = $1 ORDER BY created_ts, app_id, pushkey");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(pusher_from_row).collect()
    }

    /// One pusher, if it exists.
    pub async fn pusher(&self, key: PusherKey<'_>) -> Result<Option<StoredPusher>> {
        let sql = format!("SELECT {PUSHER_COLUMNS} FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(key.user_id.as_str()).bind(key.app_id).bind(key.pushkey).fetch_optional(&self.pool).await?;
        row.as_ref().map(pusher_from_row).transpose()
    }

    /// Every pusher of every user, by user.
    pub async fn all_pushers(&self) -> Result<Vec<StoredPusher>> {
        let sql = format!("SELECT {PUSHER_COLUMNS} FROM pushers ORDER BY user_id, created_ts, app_id, pushkey");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(pusher_from_row).collect()
    }

    /// A delivery succeeded: the pusher has dealt with the events stream up
    /// to `stream_ordering` and is no longer failing.
    pub async fn record_pusher_success(&self, key: PusherKey<'_>, stream_ordering: i64, ts: i64) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE pushers SET last_stream_ordering = $4, last_success_ts = $5, failing_since_ts = NULL \
             WHERE user_id = $1 AND app_id = $2 AND pushkey = $3",
        )
        .bind(key.user_id.as_str())
        .bind(key.app_id)
        .bind(key.pushkey)
        .bind(stream_ordering)
        .bind(ts)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// The pusher moved past `stream_ordering` without delivering (nothing
    /// to send, or it gave up on a notification).
    pub async fn record_pusher_progress(&self, key: PusherKey<'_>, stream_ordering: i64) -> Result<bool> {
        self.update_pusher(key, "last_stream_ordering = $4", stream_ordering).await
    }

    /// The pusher gave up on the notification at `stream_ordering` after
    /// failing too long: it moves past it and is no longer failing.
    pub async fn record_pusher_skipped(&self, key: PusherKey<'_>, stream_ordering: i64) -> Result<bool> {
        self.update_pusher(key, "last_stream_ordering = $4, failing_since_ts = NULL", stream_ordering).await
    }

    /// A delivery failed at `ts`; the start of a run of failures is kept.
    pub async fn record_pusher_failure(&self, key: PusherKey<'_>, ts: i64) -> Result<bool> {
        self.update_pusher(key, "failing_since_ts = COALESCE(failing_since_ts, $4)", ts).await
    }

    /// One pusher's row updated by `assignments`, whose one parameter is `$4`;
    /// false when the pusher is gone.
    async fn update_pusher(&self, key: PusherKey<'_>, assignments: &'static str, value: i64) -> Result<bool> {
        let sql = format!("UPDATE pushers SET {assignments} WHERE user_id = $1 AND app_id = $2 AND pushkey = $3");
        let updated =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(key.user_id.as_str()).bind(key.app_id).bind(key.pushkey).bind(value).execute(&self.pool).await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Deletes the pushers the given devices of a user set, inside the
    /// transaction that deletes the devices.
    pub(super) async fn delete_pushers_of_devices_in(&self, conn: &mut AnyConnection, user_id: &UserId, device_ids: &[String]) -> Result<()> {
        for device_id in device_ids {
            sqlx::query("DELETE FROM pushers WHERE user_id = $1 AND device_id = $2").bind(user_id.as_str()).bind(device_id).execute(&mut *conn).await?;
        }
        Ok(())
    }
}

pub(super) fn pusher_from_row(row: &AnyRow) -> Result<StoredPusher> {
    let data: String = row.try_get("data")?;
    Ok(StoredPusher {
        user_id: OwnedUserId::try_from(row.try_get::<String, _>("user_id")?).map_err(|e| StorageError::corrupt("pushers.user_id", e))?,
        app_id: row.try_get("app_id")?,
        pushkey: row.try_get("pushkey")?,
        device_id: row.try_get::<String, _>("device_id")?.into(),
        kind: row.try_get("kind")?,
        app_display_name: row.try_get("app_display_name")?,
        device_display_name: row.try_get("device_display_name")?,
        profile_tag: row.try_get("profile_tag")?,
        lang: row.try_get("lang")?,
        data: serde_json::from_str(&data).map_err(|e| StorageError::corrupt("pushers.data", e))?,
        created_ts: row.try_get("created_ts")?,
        last_stream_ordering: row.try_get("last_stream_ordering")?,
        last_success_ts: row.try_get("last_success_ts")?,
        failing_since_ts: row.try_get("failing_since_ts")?,
    })
}
