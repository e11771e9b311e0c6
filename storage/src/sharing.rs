//! Who shares rooms with whom: the audience of presence and device-list
//! changes, and membership changes that start or end such sharing.

use std::collections::HashSet;

use ruma::{RoomId, ServerName, UserId};
use sqlx::Row;

use super::{Result, Storage};

impl Storage {
    /// The user's current membership in a room, if any.
    pub async fn current_membership(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<String>> {
        let membership: Option<Option<String>> =
            sqlx::query_scalar("SELECT membership FROM current_state WHERE room_id = $1 AND type = 'm.room.member' AND state_key = $2")
                .bind(room_id.as_str())
                .bind(user_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(membership.flatten())
    }

    /// Whether a user of `server_name` is joined to the room: whether that
    /// server is in the room, as its own state says.
    pub async fn server_is_joined(&self, room_id: &RoomId, server_name: &ServerName) -> Result<bool> {
        // A user id's server part follows its only colon-free localpart.
        let joined: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM current_state WHERE room_id = $1 AND type = 'm.room.member' AND membership = 'join' AND state_key LIKE $2 LIMIT 1",
        )
        .bind(room_id.as_str())
        .bind(format!("%:{server_name}"))
        .fetch_optional(&self.pool)
        .await?;
        Ok(joined.is_some())
    }

    /// Everyone joined to a room the user is joined to, the user included.
    pub async fn users_sharing_rooms_with(&self, user_id: &UserId) -> Result<HashSet<String>> {
        let users: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT other.state_key FROM current_state mine \
             JOIN current_state other ON other.room_id = mine.room_id AND other.type = 'm.room.member' AND other.membership = 'join' \
             WHERE mine.type = 'm.room.member' AND mine.state_key = $1 AND mine.membership = 'join'",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut users: HashSet<String> = users.into_iter().collect();
        users.insert(user_id.to_string());
        Ok(users)
    }

    /// Whether two users are both joined to some room.
    pub async fn share_a_room(&self, user_id: &UserId, other: &UserId) -> Result<bool> {
        if user_id == other {
            return Ok(true);
        }
        let shared: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM current_state a JOIN current_state b ON b.room_id = a.room_id AND b.type = 'm.room.member' \
             AND b.state_key = $2 AND b.membership = 'join' \
             WHERE a.type = 'm.room.member' AND a.state_key = $1 AND a.membership = 'join' LIMIT 1",
        )
        .bind(user_id.as_str())
        .bind(other.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(shared.is_some())
    }

    /// Membership changes `(user, membership)` in a room in `(after, upto]`, oldest first.
    pub async fn membership_changes(&self, room_id: &RoomId, after: i64, upto: i64) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT user_id, membership FROM room_memberships WHERE room_id = $1 AND stream_ordering > $2 AND stream_ordering <= $3 \
             ORDER BY stream_ordering",
        )
        .bind(room_id.as_str())
        .bind(after)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok((row.try_get("user_id")?, row.try_get("membership")?))).collect()
    }

    /// Membership changes `(room, user, membership)` in `(after, upto]` in
    /// every room `user_id` has a membership in, oldest first.
    pub async fn membership_changes_around(&self, user_id: &UserId, after: i64, upto: i64) -> Result<Vec<(String, String, String)>> {
        if after >= upto {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT rm.room_id, rm.user_id, rm.membership FROM room_memberships rm              JOIN current_state mine ON mine.room_id = rm.room_id AND mine.type = 'm.room.member' AND mine.state_key = $1              WHERE rm.stream_ordering > $2 AND rm.stream_ordering <= $3 ORDER BY rm.stream_ordering",
        )
        .bind(user_id.as_str())
        .bind(after)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok((row.try_get("room_id")?, row.try_get("user_id")?, row.try_get("membership")?))).collect()
    }

    /// Users whose device list changed in `(after, upto]`.
    pub async fn device_lists_changed(&self, after: i64, upto: i64) -> Result<HashSet<String>> {
        if after >= upto {
            return Ok(HashSet::new());
        }
        let users: Vec<String> = sqlx::query_scalar("SELECT DISTINCT user_id FROM device_lists_stream WHERE stream_id > $1 AND stream_id <= $2")
            .bind(after)
            .bind(upto)
            .fetch_all(&self.pool)
            .await?;
        Ok(users.into_iter().collect())
    }
}
