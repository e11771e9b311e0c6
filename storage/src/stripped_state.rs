//! The stripped state another server gave with an invite or a knock into a
//! room this server is not in (`remote_stripped_state`): a JSON array of
//! stripped events per room and user, replaced by each new invite or knock.

use ruma::{RoomId, UserId};

use super::{Result, Storage};

impl Storage {
    /// Keeps `events_json` (a JSON array of stripped events) as what `user_id` knows of `room_id`.
    pub async fn set_remote_stripped_state(&self, room_id: &RoomId, user_id: &UserId, events_json: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO remote_stripped_state (room_id, user_id, events_json) VALUES ($1, $2, $3) \
             ON CONFLICT (room_id, user_id) DO UPDATE SET events_json = excluded.events_json",
        )
        .bind(room_id.as_str())
        .bind(user_id.as_str())
        .bind(events_json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The stripped state kept for `user_id` in `room_id`, if any.
    pub async fn remote_stripped_state(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT events_json FROM remote_stripped_state WHERE room_id = $1 AND user_id = $2")
            .bind(room_id.as_str())
            .bind(user_id.as_str())
            .fetch_optional(&self.pool)
            .await?)
    }
}
