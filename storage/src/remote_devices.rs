//! Other servers' users' device lists as this server keeps them (Synapse's
//! remote device list cache): their devices and keys, master and
//! self-signing keys, and the remote stream id they are complete as of.
//! Each change is a row of the `device_lists` stream for that user, so that
//! local users sharing a room with them re-query. Also the federation
//! sender's positions on the streams it turns into EDUs (device lists,
//! presence).

use std::collections::{HashMap, HashSet};

use ruma::UserId;
use sqlx::{AnyConnection, Row};

use super::{Result, Storage, e2e_keys::parse};

/// A remote user's device as cached.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteDevice {
    pub device_id: String,
    pub display_name: Option<String>,
    pub keys: Option<serde_json::Value>,
}

/// A remote user's cached device list: devices and cross-signing keys `(type, key)`.
pub type RemoteDeviceList = (Vec<RemoteDevice>, Vec<(String, serde_json::Value)>);

impl Storage {
    /// A federation sender's position on a stream it sends as EDUs, kept
    /// under `key`; one without a position yet starts at `start_key`'s.
    pub async fn federation_stream_position(&self, key: &str, start_key: &str) -> Result<i64> {
        let position = |key: &str| {
            sqlx::query_scalar::<_, i64>("SELECT stream_id FROM federation_stream_positions WHERE stream_name = $1")
                .bind(key.to_owned())
                .fetch_optional(&self.pool)
        };
        match position(key).await? {
            Some(position) => Ok(position),
            None => Ok(position(start_key).await?.unwrap_or(0)),
        }
    }

    /// Queues EDUs `(destination, EDU JSON)` made from a stream and moves the
    /// sender's position on it, in one transaction.
    pub async fn enqueue_stream_edus(&self, stream_name: &str, position: i64, edus: &[(String, String)]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO federation_stream_positions (stream_name, stream_id) VALUES ($1, $2) \
             ON CONFLICT (stream_name) DO UPDATE SET stream_id = excluded.stream_id",
        )
        .bind(stream_name)
        .bind(position)
        .execute(&mut *tx)
        .await?;
        for (destination, json) in edus {
            sqlx::query("INSERT INTO federation_edu_outbox (destination, edu_json) VALUES ($1, $2)").bind(destination).bind(json).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The user's latest device-list change before `stream_id` (the
    /// `prev_id` of an update), if any.
    pub async fn device_change_before(&self, user_id: &UserId, stream_id: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT MAX(stream_id) FROM device_lists_stream WHERE user_id = $1 AND stream_id < $2")
            .bind(user_id.as_str())
            .bind(stream_id)
            .fetch_one(&self.pool)
            .await?)
    }

    /// The remote stream id a remote user's cached device list is complete
    /// as of; `None` when it is not cached.
    pub async fn remote_device_list_position(&self, user_id: &UserId) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT stream_id FROM remote_device_lists WHERE user_id = $1").bind(user_id.as_str()).fetch_optional(&self.pool).await?)
    }

    /// The positions of the cached lists among `users`, by user id.
    pub async fn remote_device_list_positions(&self, users: &[&UserId]) -> Result<HashMap<String, i64>> {
        let mut positions = HashMap::new();
        for chunk in users.chunks(CHUNK) {
            let sql = format!("SELECT user_id, stream_id FROM remote_device_lists WHERE user_id IN ({})", placeholders(1, chunk.len()));
            let mut query = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql));
            for user in chunk {
                query = query.bind(user.as_str());
            }
            positions.extend(query.fetch_all(&self.pool).await?);
        }
        Ok(positions)
    }

    /// Which of `users` are joined to a room a user of `server_name` is joined to.
    pub async fn users_sharing_rooms_with_server(&self, users: &[&UserId], server_name: &str) -> Result<HashSet<String>> {
        let mut sharing = HashSet::new();
        for chunk in users.chunks(CHUNK) {
            let sql = format!(
                "SELECT DISTINCT other.state_key FROM current_state other \
                 JOIN current_state mine ON mine.room_id = other.room_id AND mine.type = 'm.room.member' \
                 AND mine.membership = 'join' AND mine.state_key LIKE $1 \
                 WHERE other.type = 'm.room.member' AND other.membership = 'join' AND other.state_key IN ({})",
                placeholders(2, chunk.len())
            );
            // Server names hold neither `%` nor `_`.
            let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind(format!("%:{server_name}"));
            for user in chunk {
                query = query.bind(user.as_str());
            }
            sharing.extend(query.fetch_all(&self.pool).await?);
        }
        Ok(sharing)
    }

    /// Applies one `m.device_list_update` to a cached list: the device
    /// changed (`Some`) or deleted (`None`), the list now as of `stream_id`.
    pub async fn update_remote_device(&self, user_id: &UserId, stream_id: i64, device_id: &str, device: Option<&RemoteDevice>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE remote_device_lists SET stream_id = $1 WHERE user_id = $2").bind(stream_id).bind(user_id.as_str()).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM remote_devices WHERE user_id = $1 AND device_id = $2").bind(user_id.as_str()).bind(device_id).execute(&mut *tx).await?;
        if let Some(device) = device {
            insert_device(&mut tx, user_id, device).await?;
        }
        let (_, guard) = self.record_device_change(&mut tx, user_id.as_str(), device_id).await?;
        tx.commit().await?;
        drop(guard);
        Ok(())
    }

    /// Replaces a remote user's cached list with a full one (`/user/devices`).
    pub async fn replace_remote_devices(
        &self,
        user_id: &UserId,
        stream_id: i64,
        devices: &[RemoteDevice],
        cross_signing: &[(&str, &serde_json::Value)],
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO remote_device_lists (user_id, stream_id) VALUES ($1, $2) ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id")
            .bind(user_id.as_str())
            .bind(stream_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM remote_devices WHERE user_id = $1").bind(user_id.as_str()).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM remote_cross_signing_keys WHERE user_id = $1").bind(user_id.as_str()).execute(&mut *tx).await?;
        for device in devices {
            insert_device(&mut tx, user_id, device).await?;
        }
        insert_cross_signing(&mut tx, user_id, cross_signing).await?;
        let (_, guard) = self.record_device_change(&mut tx, user_id.as_str(), "").await?;
        tx.commit().await?;
        drop(guard);
        Ok(())
    }

    /// Stores a remote user's new master and/or self-signing key (`m.signing_key_update`).
    pub async fn set_remote_cross_signing_keys(&self, user_id: &UserId, keys: &[(&str, &serde_json::Value)]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        insert_cross_signing(&mut tx, user_id, keys).await?;
        let (_, guard) = self.record_device_change(&mut tx, user_id.as_str(), "").await?;
        tx.commit().await?;
        drop(guard);
        Ok(())
    }

    /// A remote user's cached device list; `None` when it is not cached.
    pub async fn remote_device_list(&self, user_id: &UserId) -> Result<Option<RemoteDeviceList>> {
        if self.remote_device_list_position(user_id).await?.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query("SELECT device_id, display_name, keys_json FROM remote_devices WHERE user_id = $1 ORDER BY device_id")
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        let mut devices = Vec::with_capacity(rows.len());
        for row in rows {
            let keys: Option<String> = row.try_get("keys_json")?;
            devices.push(RemoteDevice {
                device_id: row.try_get("device_id")?,
                display_name: row.try_get("display_name")?,
                keys: keys.as_deref().map(parse).transpose()?,
            });
        }
        let rows =
            sqlx::query("SELECT key_type, key_json FROM remote_cross_signing_keys WHERE user_id = $1").bind(user_id.as_str()).fetch_all(&self.pool).await?;
        let mut cross_signing = Vec::with_capacity(rows.len());
        for row in rows {
            let json: String = row.try_get("key_json")?;
            cross_signing.push((row.try_get("key_type")?, parse(&json)?));
        }
        Ok(Some((devices, cross_signing)))
    }

    /// Stops keeping a remote user's device list (no local user shares a
    /// room with them, so their server no longer sends updates).
    pub async fn forget_remote_devices(&self, user_id: &UserId) -> Result<()> {
        if self.remote_device_list_position(user_id).await?.is_none() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for table in ["remote_device_lists", "remote_devices", "remote_cross_signing_keys"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE user_id = $1"))).bind(user_id.as_str()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Users per statement: well under SQLite's and PostgreSQL's bind limits.
const CHUNK: usize = 500;

/// `$first, …` for `count` binds.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

async fn insert_device(conn: &mut AnyConnection, user_id: &UserId, device: &RemoteDevice) -> Result<()> {
    sqlx::query("INSERT INTO remote_devices (user_id, device_id, display_name, keys_json) VALUES ($1, $2, $3, $4)")
        .bind(user_id.as_str())
        .bind(&device.device_id)
        .bind(device.display_name.as_deref())
        .bind(device.keys.as_ref().map(|keys| keys.to_string()))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn insert_cross_signing(conn: &mut AnyConnection, user_id: &UserId, keys: &[(&str, &serde_json::Value)]) -> Result<()> {
    for (key_type, key) in keys {
        sqlx::query(
            "INSERT INTO remote_cross_signing_keys (user_id, key_type, key_json) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json",
        )
        .bind(user_id.as_str())
        .bind(*key_type)
        .bind(key.to_string())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
