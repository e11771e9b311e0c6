//! The `to_device` stream: messages waiting in a device's inbox until the
//! device syncs past them, and the transaction ids that make sending them
//! idempotent.

use ruma::{DeviceId, UserId};
use sqlx::Row;

use super::{Result, Storage, Stream, now_ms};

/// One message for one device.
#[derive(Debug, Clone, PartialEq)]
pub struct ToDeviceMessage {
    pub stream_id: i64,
    /// `{"type", "sender", "content"}`, as `/sync` delivers it.
    pub message: serde_json::Value,
}

/// Where one message goes.
pub struct Delivery<'a> {
    pub user_id: &'a UserId,
    pub device_id: &'a DeviceId,
    pub message: serde_json::Value,
}

impl Storage {
    /// Queues messages for devices under one transaction id of the sending
    /// device. Returns `false` (writing nothing) when that transaction id was
    /// used before: the earlier request already delivered.
    pub async fn send_to_devices(&self, sender: &UserId, sender_device: &DeviceId, txn_id: &str, deliveries: Vec<Delivery<'_>>) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let recorded = sqlx::query(
            "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, device_id, txn_id) DO NOTHING",
        )
        .bind(sender.as_str())
        .bind(sender_device.as_str())
        .bind(txn_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if recorded == 0 {
            return Ok(false);
        }
        let mut guards = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let (stream_id, guard) = self.next_stream_id(&mut tx, Stream::ToDevice).await?;
            guards.push(guard);
            sqlx::query("INSERT INTO device_inbox (stream_id, instance_name, user_id, device_id, message_json) VALUES ($1, $2, $3, $4, $5)")
                .bind(stream_id)
                .bind(&self.instance_name)
                .bind(delivery.user_id.as_str())
                .bind(delivery.device_id.as_str())
                .bind(delivery.message.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        drop(guards);
        Ok(true)
    }

    /// Messages for a device in `(after, upto]`, oldest first, at most `limit`.
    pub async fn to_device_messages(&self, user_id: &UserId, device_id: &DeviceId, after: i64, upto: i64, limit: i64) -> Result<Vec<ToDeviceMessage>> {
        let rows = sqlx::query(
            "SELECT stream_id, message_json FROM device_inbox WHERE user_id = $1 AND device_id = $2 \
             AND stream_id > $3 AND stream_id <= $4 ORDER BY stream_id LIMIT $5",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .bind(after)
        .bind(upto)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let text: String = row.try_get("message_json")?;
                Ok(ToDeviceMessage {
                    stream_id: row.try_get("stream_id")?,
                    message: serde_json::from_str(&text).map_err(|e| super::StorageError::corrupt("device_inbox.message_json", e))?,
                })
            })
            .collect()
    }

    /// Deletes the messages a device has acknowledged by syncing past `upto`.
    pub async fn delete_to_device_messages(&self, user_id: &UserId, device_id: &DeviceId, upto: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM device_inbox WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3")
            .bind(user_id.as_str())
            .bind(device_id.as_str())
            .bind(upto)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
