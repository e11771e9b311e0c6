//! The `account_data` stream: a user's global and per-room account data
//! (tags are the per-room `m.tag` entry), the latest content of each type.

use ruma::{RoomId, UserId};
use sqlx::Row;

use super::{Result, Storage, Stream, positions::InFlightGuard};

/// One piece of account data; `room_id` is `None` for global data.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountDataEntry {
    pub stream_id: i64,
    pub room_id: Option<String>,
    pub kind: String,
    pub content: serde_json::Value,
}

impl Storage {
    /// Sets one type of a user's account data (per room when `room_id` is
    /// given); returns the stream id it was written at.
    pub async fn set_account_data(&self, user_id: &UserId, room_id: Option<&RoomId>, kind: &str, content: &serde_json::Value) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let (stream_id, guard) = self.write_account_data(&mut tx, user_id, room_id, kind, content).await?;
        tx.commit().await?;
        drop(guard);
        Ok(stream_id)
    }

    pub(super) async fn write_account_data(
        &self,
        conn: &mut sqlx::AnyConnection,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        kind: &str,
        content: &serde_json::Value,
    ) -> Result<(i64, InFlightGuard)> {
        let (stream_id, guard) = self.next_stream_id(conn, Stream::AccountData).await?;
        sqlx::query(
            "INSERT INTO account_data (stream_id, instance_name, user_id, room_id, type, content) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (user_id, room_id, type) DO UPDATE SET stream_id = excluded.stream_id, \
             instance_name = excluded.instance_name, content = excluded.content",
        )
        .bind(stream_id)
        .bind(&self.instance_name)
        .bind(user_id.as_str())
        .bind(room_id.map_or("", |room| room.as_str()))
        .bind(kind)
        .bind(content.to_string())
        .execute(&mut *conn)
        .await?;
        Ok((stream_id, guard))
    }

    /// One type of a user's account data, global or for a room.
    pub async fn account_data(&self, user_id: &UserId, room_id: Option<&RoomId>, kind: &str) -> Result<Option<serde_json::Value>> {
        let content: Option<String> = sqlx::query_scalar("SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3")
            .bind(user_id.as_str())
            .bind(room_id.map_or("", |room| room.as_str()))
            .bind(kind)
            .fetch_optional(&self.pool)
            .await?;
        content.map(|text| parse(&text)).transpose()
    }

    /// A user's account data written in `(after, upto]`, global and per room.
    pub async fn account_data_between(&self, user_id: &UserId, after: i64, upto: i64) -> Result<Vec<AccountDataEntry>> {
        let rows = sqlx::query(
            "SELECT stream_id, room_id, type, content FROM account_data \
             WHERE user_id = $1 AND stream_id > $2 AND stream_id <= $3 ORDER BY stream_id",
        )
        .bind(user_id.as_str())
        .bind(after)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let room_id: String = row.try_get("room_id")?;
                Ok(AccountDataEntry {
                    stream_id: row.try_get("stream_id")?,
                    room_id: (!room_id.is_empty()).then_some(room_id),
                    kind: row.try_get("type")?,
                    content: parse(&row.try_get::<String, _>("content")?)?,
                })
            })
            .collect()
    }

    /// The users `user_id` ignores: the keys of `ignored_users` in their
    /// `m.ignored_user_list` account data.
    pub async fn ignored_users(&self, user_id: &UserId) -> Result<std::collections::HashSet<ruma::OwnedUserId>> {
        let content = self.account_data(user_id, None, "m.ignored_user_list").await?;
        let listed = content.as_ref().and_then(|content| content.get("ignored_users")).and_then(serde_json::Value::as_object);
        Ok(listed.into_iter().flatten().filter_map(|(user, _)| ruma::OwnedUserId::try_from(user.as_str()).ok()).collect())
    }
}

fn parse(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| super::StorageError::corrupt("account_data.content", e))
}
