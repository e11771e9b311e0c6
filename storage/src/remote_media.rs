//! Other servers' media kept in the media store: one row per `(origin,
//! media id)` once its file is in place. The files are the media
//! repository's (`weft_services::media::remote`).

use super::{Result, Storage, StorageError};

/// A cached file of another server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    pub media_origin: String,
    pub media_id: String,
    /// The file's name in the store (random, chosen here).
    pub filesystem_id: String,
    pub media_type: Option<String>,
    pub media_length: i64,
    pub upload_name: Option<String>,
    pub sha256: String,
    /// Downloaded under `enable_authenticated_media`.
    pub authenticated: bool,
    pub created_ts: i64,
    /// When it was last served (milliseconds), noted at most every few minutes.
    pub last_access_ts: i64,
}

impl Storage {
    /// Records a downloaded file; `false` when another download of the same
    /// media was recorded first (its row stands).
    pub async fn add_remote_media(&self, media: &RemoteMedia) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO remote_media_cache (media_origin, media_id, filesystem_id, media_type, media_length, upload_name, sha256, \
             authenticated, created_ts, last_access_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(media.media_origin.as_str())
        .bind(media.media_id.as_str())
        .bind(media.filesystem_id.as_str())
        .bind(media.media_type.as_deref())
        .bind(media.media_length)
        .bind(media.upload_name.as_deref())
        .bind(media.sha256.as_str())
        .bind(media.authenticated)
        .bind(media.created_ts)
        .bind(media.last_access_ts)
        .execute(&self.pool)
        .await
        .map_err(StorageError::from_insert);
        match inserted {
            Ok(_) => Ok(true),
            Err(StorageError::Conflict) => Ok(false),
            Err(other) => Err(other),
        }
    }

    pub async fn remote_media(&self, origin: &str, media_id: &str) -> Result<Option<RemoteMedia>> {
        use sqlx::Row;
        let row = sqlx::query(
            "SELECT media_origin, media_id, filesystem_id, media_type, media_length, upload_name, sha256, authenticated, created_ts, last_access_ts \
             FROM remote_media_cache WHERE media_origin = $1 AND media_id = $2",
        )
        .bind(origin)
        .bind(media_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(RemoteMedia {
            media_origin: row.try_get("media_origin")?,
            media_id: row.try_get("media_id")?,
            filesystem_id: row.try_get("filesystem_id")?,
            media_type: row.try_get("media_type")?,
            media_length: row.try_get("media_length")?,
            upload_name: row.try_get("upload_name")?,
            sha256: row.try_get("sha256")?,
            authenticated: super::flag(&row, "authenticated")?,
            created_ts: row.try_get("created_ts")?,
            last_access_ts: row.try_get("last_access_ts")?,
        }))
    }

    /// Notes that a cached file was served now (for a later clean-up by age).
    pub async fn touch_remote_media(&self, origin: &str, media_id: &str) -> Result<()> {
        sqlx::query("UPDATE remote_media_cache SET last_access_ts = $1 WHERE media_origin = $2 AND media_id = $3")
            .bind(super::now_ms())
            .bind(origin)
            .bind(media_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
