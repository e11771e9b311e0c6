//! Stream bookkeeping: allocating stream ids, recording a writer's position
//! in its `stream_positions` row, and reading stream rows back for catch-up.

use ruma::{OwnedDeviceId, OwnedUserId};
use sqlx::{AnyConnection, Row};

use super::{Result, Storage, StorageError, positions::InFlightGuard};
pub use weft_core::streams::Stream;

/// One row of the `device_lists` stream: a user's device appeared, changed or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceListChange {
    pub stream_id: i64,
    pub instance_name: String,
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
}

impl Storage {
    /// The last position `instance` has persisted on `stream`, 0 before any write.
    pub async fn stream_position(&self, stream: Stream, instance: &str) -> Result<i64> {
        let position: Option<i64> = sqlx::query_scalar("SELECT stream_id FROM stream_positions WHERE stream_name = $1 AND instance_name = $2")
            .bind(stream.as_str())
            .bind(instance)
            .fetch_optional(&self.pool)
            .await?;
        Ok(position.unwrap_or(0))
    }

    /// The last id handed out on `stream` to any of its writers: no writer's
    /// position can be past it.
    pub async fn last_stream_id(&self, stream: Stream) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        self.dialect.current_stream_id(&mut conn, stream).await
    }

    /// Device-list changes after `after`, in stream order, at most `limit`.
    pub async fn device_list_changes_since(&self, after: i64, limit: i64) -> Result<Vec<DeviceListChange>> {
        let rows = sqlx::query(
            "SELECT stream_id, instance_name, user_id, device_id FROM device_lists_stream \
             WHERE stream_id > $1 ORDER BY stream_id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(DeviceListChange {
                    stream_id: row.try_get("stream_id")?,
                    instance_name: row.try_get("instance_name")?,
                    user_id: OwnedUserId::try_from(row.try_get::<String, _>("user_id")?)
                        .map_err(|e| StorageError::corrupt("device_lists_stream.user_id", e))?,
                    device_id: row.try_get::<String, _>("device_id")?.into(),
                })
            })
            .collect()
    }

    /// Allocates this writer's next id on `stream` inside the caller's
    /// transaction. Readers' position cannot pass the id until the guard
    /// drops (after commit or rollback); see `positions`.
    pub(crate) async fn next_stream_id(&self, conn: &mut AnyConnection, stream: Stream) -> Result<(i64, InFlightGuard)> {
        let reservation = self.in_flight.of(stream).reserve();
        let stream_id = self.dialect.next_stream_id(conn, stream).await?;
        let guard = reservation.track(stream_id);
        Ok((stream_id, guard))
    }

    /// Records this writer's persisted position on `stream` in its
    /// `stream_positions` row, in a transaction of its own. The row only ever
    /// holds a position everything below which is committed (never an id
    /// still in flight), so any process may trust it; it lags the writer by
    /// the time since the last flush.
    ///
    /// Never inside a write's transaction: every write of the stream would
    /// then wait on this one row until the previous write committed, which
    /// serialises all of a writer's rooms (measured under the send benchmark:
    /// about 6 ms of waiting per write, against 0.07 ms for the event insert).
    pub async fn flush_position(&self, stream: Stream) -> Result<()> {
        let stream_id = self.persisted_position(stream);
        sqlx::query(
            "INSERT INTO stream_positions (stream_name, instance_name, stream_id) VALUES ($1, $2, $3) \
             ON CONFLICT (stream_name, instance_name) DO UPDATE SET stream_id = excluded.stream_id \
             WHERE stream_positions.stream_id < excluded.stream_id",
        )
        .bind(stream.as_str())
        .bind(&self.instance_name)
        .bind(stream_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every writer's recorded position on every stream: `(stream, instance, position)`.
    pub async fn recorded_positions(&self) -> Result<Vec<(Stream, String, i64)>> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT stream_name, instance_name, stream_id FROM stream_positions").fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, instance, position)| Stream::ALL.into_iter().find(|s| s.as_str() == name).map(|stream| (stream, instance, position)))
            .collect())
    }

    /// With nothing in flight on `stream`, moves this writer's position up to
    /// `seen`, an id another writer of the shared sequence reached.
    pub fn advance_idle(&self, stream: Stream, seen: i64) -> Option<i64> {
        self.in_flight.of(stream).advance_idle(seen)
    }

    /// The position on `stream` up to which this writer has committed everything.
    pub fn persisted_position(&self, stream: Stream) -> i64 {
        self.in_flight.of(stream).position()
    }

    /// Appends a `device_lists` row for this writer inside the caller's transaction.
    pub(crate) async fn record_device_change(&self, conn: &mut AnyConnection, user_id: &str, device_id: &str) -> Result<(i64, InFlightGuard)> {
        let (stream_id, guard) = self.next_stream_id(conn, Stream::DeviceLists).await?;
        sqlx::query("INSERT INTO device_lists_stream (stream_id, instance_name, user_id, device_id) VALUES ($1, $2, $3, $4)")
            .bind(stream_id)
            .bind(&self.instance_name)
            .bind(user_id)
            .bind(device_id)
            .execute(&mut *conn)
            .await?;
        Ok((stream_id, guard))
    }
}
