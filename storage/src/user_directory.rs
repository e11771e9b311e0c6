//! The user directory's tables: profiles and their search words, who is
//! visible through public rooms and through shared private rooms, what the
//! updater last saw of each room, and how far along the events stream it is.
//! Only the updater (`weft_services::user_directory`) writes here; the search
//! endpoint reads.
//!
//! Every write re-derives rows from current room state, so replaying an event
//! (after a crash between a batch and its saved position) changes nothing.

use ruma::{OwnedUserId, RoomId, UserId};
use sqlx::Row;

use super::{Result, Storage, StorageError, StoredEvent, events::EVENT_COLUMNS};

/// A directory entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub user_id: OwnedUserId,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

/// The upper bound of the word range `[prefix, prefix + U+10FFFF)`: with
/// byte-wise comparison, exactly the words starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

impl Storage {
    /// Where the updater has got to on the events stream.
    pub async fn user_directory_position(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT stream_id FROM user_directory_position").fetch_one(&self.pool).await?)
    }

    pub async fn set_user_directory_position(&self, position: i64) -> Result<()> {
        sqlx::query("UPDATE user_directory_position SET stream_id = $1").bind(position).execute(&self.pool).await?;
        Ok(())
    }

    /// The state events the directory follows (memberships, join rules,
    /// history visibility) with orderings in `(after, upto]`, oldest first, at most `limit`.
    pub async fn user_directory_events(&self, after: i64, upto: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_ordering > $1 AND stream_ordering <= $2 AND state_key IS NOT NULL \
             AND type IN ('m.room.member', 'm.room.join_rules', 'm.room.history_visibility') ORDER BY stream_ordering LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after).bind(upto).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(super::events::event_from_row).collect()
    }

    /// Whether the updater last saw the room as public; `None` for a room it has not seen.
    pub async fn user_directory_room_public(&self, room_id: &RoomId) -> Result<Option<bool>> {
        let row = sqlx::query("SELECT is_public FROM user_directory_rooms WHERE room_id = $1").bind(room_id.as_str()).fetch_optional(&self.pool).await?;
        row.map(|row| super::flag(&row, "is_public")).transpose()
    }

    /// Records the room as public or not and re-derives its visibility rows
    /// from its current joined members.
    pub async fn rebuild_user_directory_room(&self, room_id: &RoomId, public: bool) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO user_directory_rooms (room_id, is_public) VALUES ($1, $2) \
             ON CONFLICT (room_id) DO UPDATE SET is_public = excluded.is_public",
        )
        .bind(room_id.as_str())
        .bind(public)
        .execute(&mut *tx)
        .await?;
        for table in ["users_in_public_rooms", "users_who_share_private_rooms"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE room_id = $1"))).bind(room_id.as_str()).execute(&mut *tx).await?;
        }
        let fill = if public {
            "INSERT INTO users_in_public_rooms (user_id, room_id) SELECT state_key, room_id FROM current_state \
             WHERE room_id = $1 AND type = 'm.room.member' AND membership = 'join'"
        } else {
            // Every local member (a row in `users`) sees every other member.
            "INSERT INTO users_who_share_private_rooms (user_id, other_user_id, room_id) \
             SELECT a.state_key, b.state_key, a.room_id FROM current_state a JOIN users u ON u.user_id = a.state_key \
             JOIN current_state b ON b.room_id = a.room_id AND b.type = 'm.room.member' AND b.membership = 'join' AND b.state_key <> a.state_key \
             WHERE a.room_id = $1 AND a.type = 'm.room.member' AND a.membership = 'join'"
        };
        sqlx::query(fill).bind(room_id.as_str()).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A joined member: stores their profile and search words, and makes them
    /// visible through the room (to everyone when `public`, else to the room's
    /// local members, and the room's members to them when `local`).
    pub async fn add_user_directory_member(&self, room_id: &RoomId, entry: &DirectoryEntry, words: &[String], public: bool, local: bool) -> Result<()> {
        let user_id = entry.user_id.as_str();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO user_directory (user_id, display_name, avatar_url) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name, avatar_url = excluded.avatar_url",
        )
        .bind(user_id)
        .bind(entry.display_name.as_deref().map(super::index_text))
        .bind(entry.avatar_url.as_deref().map(super::index_text))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM user_directory_words WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
        for word in words {
            sqlx::query("INSERT INTO user_directory_words (word, user_id) VALUES ($1, $2) ON CONFLICT (word, user_id) DO NOTHING")
                .bind(super::index_text(word))
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        if public {
            sqlx::query("INSERT INTO users_in_public_rooms (user_id, room_id) VALUES ($1, $2) ON CONFLICT (user_id, room_id) DO NOTHING")
                .bind(user_id)
                .bind(room_id.as_str())
                .execute(&mut *tx)
                .await?;
        } else {
            let others = "FROM current_state c WHERE c.room_id = $2 AND c.type = 'm.room.member' AND c.membership = 'join' AND c.state_key <> $1";
            // The room's local members see the newcomer; a local newcomer sees the room.
            let mut statements = vec![format!(
                "INSERT INTO users_who_share_private_rooms (user_id, other_user_id, room_id) \
                 SELECT c.state_key, $1, $2 {others} AND c.state_key IN (SELECT user_id FROM users) ON CONFLICT DO NOTHING"
            )];
            if local {
                statements.push(format!(
                    "INSERT INTO users_who_share_private_rooms (user_id, other_user_id, room_id) SELECT $1, c.state_key, $2 {others} \
                     ON CONFLICT DO NOTHING"
                ));
            }
            for sql in statements {
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).bind(room_id.as_str()).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// A member who is no longer joined: removes what the room made visible,
    /// and their entry once no room makes them visible.
    pub async fn remove_user_directory_member(&self, room_id: &RoomId, user_id: &UserId) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM users_in_public_rooms WHERE user_id = $1 AND room_id = $2")
            .bind(user_id.as_str())
            .bind(room_id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM users_who_share_private_rooms WHERE room_id = $2 AND (user_id = $1 OR other_user_id = $1)")
            .bind(user_id.as_str())
            .bind(room_id.as_str())
            .execute(&mut *tx)
            .await?;
        let visible: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM users_in_public_rooms WHERE user_id = $1 \
             UNION ALL SELECT 1 FROM users_who_share_private_rooms WHERE other_user_id = $1 LIMIT 1",
        )
        .bind(user_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if visible.is_none() {
            for table in ["user_directory_words", "user_directory"] {
                sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE user_id = $1"))).bind(user_id.as_str()).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Entries visible to `searcher` (through a public room or a private room
    /// they share) with, for every one of `words`, a search word starting
    /// with it; deactivated and support accounts left out. Unordered, at most `cap`.
    pub async fn search_user_directory(&self, searcher: &UserId, words: &[String], cap: i64) -> Result<Vec<DirectoryEntry>> {
        // The longest word drives the query: it matches the fewest entries.
        let mut words: Vec<&String> = words.iter().collect();
        words.sort_by_key(|word| std::cmp::Reverse(word.len()));
        let Some((driver, rest)) = words.split_first() else {
            return Ok(Vec::new());
        };
        let mut sql = String::from(
            "SELECT d.user_id, d.display_name, d.avatar_url \
             FROM (SELECT DISTINCT w.user_id FROM user_directory_words w WHERE w.word >= $3 AND w.word < $4) m \
             JOIN user_directory d ON d.user_id = m.user_id LEFT JOIN users u ON u.user_id = d.user_id \
             WHERE (EXISTS (SELECT 1 FROM users_in_public_rooms p WHERE p.user_id = d.user_id) \
             OR EXISTS (SELECT 1 FROM users_who_share_private_rooms s WHERE s.user_id = $1 AND s.other_user_id = d.user_id)) \
             AND (u.user_id IS NULL OR (NOT u.deactivated AND (u.user_type IS NULL OR u.user_type <> 'support')))",
        );
        for index in 0..rest.len() {
            let (low, high) = (5 + 2 * index, 6 + 2 * index);
            sql.push_str(&format!(" AND EXISTS (SELECT 1 FROM user_directory_words w WHERE w.user_id = d.user_id AND w.word >= ${low} AND w.word < ${high})"));
        }
        sql.push_str(" LIMIT $2");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(searcher.as_str()).bind(cap);
        for word in std::iter::once(driver).chain(rest) {
            query = query.bind(word.as_str()).bind(prefix_end(word));
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(DirectoryEntry {
                    user_id: OwnedUserId::try_from(row.try_get::<String, _>("user_id")?).map_err(|e| StorageError::corrupt("user_directory.user_id", e))?,
                    display_name: row.try_get("display_name")?,
                    avatar_url: row.try_get("avatar_url")?,
                })
            })
            .collect()
    }
}
