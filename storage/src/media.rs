//! Local media ids and what is known of their content. The files are the
//! media repository's (`weft_services::media`); a row says who owns an id, whether
//! its content has arrived, and its type, length and name.

use super::{Result, Storage, StorageError};

/// A media id handed out by this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    pub media_id: String,
    pub user_id: String,
    pub created_ts: i64,
    /// Set while a `/create`d id waits for its content.
    pub unused_expires_at: Option<i64>,
    /// `None` until the content is uploaded.
    pub content: Option<MediaContent>,
}

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaContent {
    pub length: i64,
    pub media_type: Option<String>,
    pub upload_name: Option<String>,
    pub sha256: String,
    /// Served by the authenticated endpoints only.
    pub authenticated: bool,
}

/// Why content could not be attached to a `/create`d id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachError {
    NotFound,
    NotOwner,
    AlreadyUploaded,
    Expired,
}

impl Storage {
    /// Records a direct upload whose content is already stored.
    pub async fn add_local_media(&self, media_id: &str, user_id: &str, content: &MediaContent) -> Result<()> {
        sqlx::query(
            "INSERT INTO local_media (media_id, user_id, created_ts, media_length, media_type, upload_name, sha256, authenticated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(media_id)
        .bind(user_id)
        .bind(super::now_ms())
        .bind(content.length)
        .bind(content.media_type.as_deref())
        .bind(content.upload_name.as_deref())
        .bind(content.sha256.as_str())
        .bind(content.authenticated)
        .execute(&self.pool)
        .await
        .map_err(StorageError::from_insert)?;
        Ok(())
    }

    /// Hands out `media_id` to `user_id` for a later upload, unless the user
    /// already holds `max_pending` ids without content (then `false`).
    pub async fn reserve_media(&self, media_id: &str, user_id: &str, expires_at: i64, max_pending: u64) -> Result<bool> {
        let now = super::now_ms();
        let mut tx = self.begin_write().await?;
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM local_media WHERE user_id = $1 AND media_length IS NULL AND unused_expires_at > $2")
            .bind(user_id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        if pending as u64 >= max_pending {
            return Ok(false);
        }
        sqlx::query("INSERT INTO local_media (media_id, user_id, created_ts, unused_expires_at) VALUES ($1, $2, $3, $4)")
            .bind(media_id)
            .bind(user_id)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            .map_err(StorageError::from_insert)?;
        tx.commit().await?;
        Ok(true)
    }

    /// Attaches stored content to a `/create`d id of `user_id`. The update is
    /// conditional, so of two uploads racing for one id only one wins.
    pub async fn attach_media_content(&self, media_id: &str, user_id: &str, content: &MediaContent) -> Result<Result<(), AttachError>> {
        let now = super::now_ms();
        let updated = sqlx::query(
            "UPDATE local_media SET media_length = $1, media_type = $2, upload_name = $3, sha256 = $4, authenticated = $5, unused_expires_at = NULL \
             WHERE media_id = $6 AND user_id = $7 AND media_length IS NULL AND unused_expires_at > $8",
        )
        .bind(content.length)
        .bind(content.media_type.as_deref())
        .bind(content.upload_name.as_deref())
        .bind(content.sha256.as_str())
        .bind(content.authenticated)
        .bind(media_id)
        .bind(user_id)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 1 {
            return Ok(Ok(()));
        }
        Ok(Err(match self.local_media(media_id).await? {
            None => AttachError::NotFound,
            Some(media) if media.user_id != user_id => AttachError::NotOwner,
            Some(media) if media.content.is_some() => AttachError::AlreadyUploaded,
            Some(_) => AttachError::Expired,
        }))
    }

    /// `user_id`'s media ids, newest first, and how many there are in all.
    pub async fn media_of_user(&self, user_id: &str, limit: i64, offset: i64) -> Result<(Vec<LocalMedia>, i64)> {
        use sqlx::Row;
        let ids: Vec<String> = sqlx::query("SELECT media_id FROM local_media WHERE user_id = $1 ORDER BY created_ts DESC, media_id LIMIT $2 OFFSET $3")
            .bind(user_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| row.try_get("media_id"))
            .collect::<std::result::Result<_, _>>()?;
        let mut media = Vec::with_capacity(ids.len());
        for media_id in ids {
            if let Some(row) = self.local_media(&media_id).await? {
                media.push(row);
            }
        }
        let total = sqlx::query_scalar("SELECT COUNT(*) FROM local_media WHERE user_id = $1").bind(user_id).fetch_one(&self.pool).await?;
        Ok((media, total))
    }

    /// Forgets `media_id`; whether it was there.
    pub async fn delete_local_media(&self, media_id: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM local_media WHERE media_id = $1").bind(media_id).execute(&self.pool).await?.rows_affected();
        Ok(deleted == 1)
    }

    /// Forgets `/create`d ids whose time to take an upload ended before `now`;
    /// returns how many.
    pub async fn purge_unused_media(&self, now: i64) -> Result<u64> {
        let deleted =
            sqlx::query("DELETE FROM local_media WHERE media_length IS NULL AND unused_expires_at <= $1").bind(now).execute(&self.pool).await?.rows_affected();
        Ok(deleted)
    }

    pub async fn local_media(&self, media_id: &str) -> Result<Option<LocalMedia>> {
        use sqlx::Row;
        let row = sqlx::query(
            "SELECT media_id, user_id, created_ts, unused_expires_at, media_length, media_type, upload_name, sha256, authenticated \
             FROM local_media WHERE media_id = $1",
        )
        .bind(media_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let content = match row.try_get::<Option<i64>, _>("media_length")? {
            None => None,
            Some(length) => Some(MediaContent {
                length,
                media_type: row.try_get("media_type")?,
                upload_name: row.try_get("upload_name")?,
                sha256: row.try_get::<Option<String>, _>("sha256")?.unwrap_or_default(),
                authenticated: super::flag(&row, "authenticated")?,
            }),
        };
        Ok(Some(LocalMedia {
            media_id: row.try_get("media_id")?,
            user_id: row.try_get("user_id")?,
            created_ts: row.try_get("created_ts")?,
            unused_expires_at: row.try_get("unused_expires_at")?,
            content,
        }))
    }
}
