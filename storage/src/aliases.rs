//! Room aliases of this server: `#name:server` to a room id.

use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, UserId};
use sqlx::Row;

use super::{Result, Storage, StorageError};

impl Storage {
    /// Creates an alias; `StorageError::Conflict` if it is taken.
    pub async fn create_alias(&self, alias: &RoomAliasId, room_id: &RoomId, creator: &UserId) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        super::events::insert_alias(&mut conn, alias.as_str(), room_id, creator).await
    }

    /// The room an alias points to, and who created it.
    pub async fn alias(&self, alias: &RoomAliasId) -> Result<Option<(OwnedRoomId, OwnedUserId)>> {
        let row = sqlx::query("SELECT room_id, creator FROM room_aliases WHERE alias = $1").bind(alias.as_str()).fetch_optional(&self.pool).await?;
        row.map(|row| {
            Ok((
                OwnedRoomId::try_from(row.try_get::<String, _>("room_id")?).map_err(|e| StorageError::corrupt("room_aliases.room_id", e))?,
                OwnedUserId::try_from(row.try_get::<String, _>("creator")?).map_err(|e| StorageError::corrupt("room_aliases.creator", e))?,
            ))
        })
        .transpose()
    }

    pub async fn delete_alias(&self, alias: &RoomAliasId) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM room_aliases WHERE alias = $1").bind(alias.as_str()).execute(&self.pool).await?.rows_affected() == 1)
    }

    pub async fn aliases_of(&self, room_id: &RoomId) -> Result<Vec<OwnedRoomAliasId>> {
        let aliases: Vec<String> =
            sqlx::query_scalar("SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias").bind(room_id.as_str()).fetch_all(&self.pool).await?;
        aliases.into_iter().map(|a| OwnedRoomAliasId::try_from(a).map_err(|e| StorageError::corrupt("room_aliases.alias", e))).collect()
    }

    /// Points every alias of `from` at `to` (a room upgrade moves them).
    pub async fn move_aliases(&self, from: &RoomId, to: &RoomId) -> Result<()> {
        sqlx::query("UPDATE room_aliases SET room_id = $1 WHERE room_id = $2").bind(to.as_str()).bind(from.as_str()).execute(&self.pool).await?;
        Ok(())
    }
}
