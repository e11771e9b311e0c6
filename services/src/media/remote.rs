//! Other servers' media: downloaded over federation on first request
//! (`weft_federation::media`: the authenticated endpoint, else the legacy
//! one), kept in the store under a file id of ours with a
//! `remote_media_cache` row, and served from there afterwards; thumbnails
//! are made here from the kept file, as Synapse makes them (it never asks
//! the other server for a thumbnail).
//!
//! Requests for media being downloaded wait for that download rather than
//! start another (`Downloads`, per instance), and at most eight downloads
//! run at once per instance (each holds its file in memory until it is
//! written); two media instances racing
//! each download once, the first row stands and the other file goes.
//! Files larger than `max_upload_size` are refused. As Synapse, with
//! `enable_authenticated_media` the deprecated unauthenticated endpoints
//! neither download remote media nor serve what the authenticated ones
//! downloaded.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use ruma::ServerName;

use weft_federation::{
    FederationClient, FederationError,
    media::{MediaEndpoint, RemoteFile},
};
use weft_storage::{MediaContent, RemoteMedia, Storage};

use super::{Access, Download, MAX_WAIT, MediaError, MediaRepository, Thumbnail, ThumbnailRequest, missing_file, random_id};

type Key = (String, String);

/// How stale a kept file's last access may be before a download notes it
/// again: a write per download of popular media would be wasted.
const ACCESS_NOTE_INTERVAL_MS: i64 = 10 * 60 * 1000;

/// The most downloads of remote media at once on an instance: each holds
/// its file in memory (up to `max_upload_size`) until it is written.
const MAX_CONCURRENT_DOWNLOADS: usize = 8;

/// The downloads in progress on this instance, one lock per remote media.
#[derive(Debug)]
pub(super) struct Downloads {
    locks: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    /// Bounds the memory downloads hold (`MAX_CONCURRENT_DOWNLOADS`).
    slots: tokio::sync::Semaphore,
}

impl Default for Downloads {
    fn default() -> Self {
        Self { locks: Mutex::default(), slots: tokio::sync::Semaphore::new(MAX_CONCURRENT_DOWNLOADS) }
    }
}

impl Downloads {
    fn lock_of(&self, key: &Key) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).entry(key.clone()).or_default().clone()
    }

    /// Forgets `key`'s lock once no request holds or waits for it.
    fn release(&self, key: &Key, lock: Arc<tokio::sync::Mutex<()>>) {
        drop(lock);
        let mut locks = self.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if locks.get(key).is_some_and(|lock| Arc::strong_count(lock) == 1) {
            locks.remove(key);
        }
    }
}

impl MediaRepository {
    /// `origin`'s `media_id`, downloaded now unless already kept.
    pub async fn open_remote(
        &self,
        storage: &Storage,
        federation: &FederationClient,
        origin: &ServerName,
        media_id: &str,
        access: Access,
        wait: Duration,
    ) -> Result<Download, MediaError> {
        let cached = self.remote_cached(storage, federation, origin, media_id, access, wait).await?;
        let path = self.store.remote_content_path(origin.as_str(), &cached.filesystem_id);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(missing_file(media_id)),
            Err(error) => return Err(error.into()),
        };
        Ok(Download { content: content_of(&cached), file })
    }

    /// A thumbnail of `origin`'s `media_id`, made here from the kept file.
    #[allow(clippy::too_many_arguments)]
    pub async fn remote_thumbnail(
        &self,
        storage: &Storage,
        federation: &FederationClient,
        origin: &ServerName,
        media_id: &str,
        request: ThumbnailRequest,
        access: Access,
        wait: Duration,
    ) -> Result<Thumbnail, MediaError> {
        let cached = self.remote_cached(storage, federation, origin, media_id, access, wait).await?;
        let source = self.store.remote_content_path(origin.as_str(), &cached.filesystem_id);
        let thumbnails = self.store.remote_thumbnail_dir(origin.as_str(), &cached.filesystem_id);
        self.render_thumbnail(&content_of(&cached), source, thumbnails, request, media_id).await
    }

    /// The kept row of `origin`'s `media_id`, downloading the file first
    /// when there is none.
    async fn remote_cached(
        &self,
        storage: &Storage,
        federation: &FederationClient,
        origin: &ServerName,
        media_id: &str,
        access: Access,
        wait: Duration,
    ) -> Result<RemoteMedia, MediaError> {
        if !valid_remote_media_id(media_id) || matches!(origin.as_str(), "." | "..") {
            return Err(MediaError::NotFound);
        }
        let frozen = access == Access::Legacy && self.authenticated_media;
        if let Some(cached) = storage.remote_media(origin.as_str(), media_id).await? {
            if frozen && cached.authenticated {
                return Err(MediaError::NotFound);
            }
            if weft_storage::now_ms() - cached.last_access_ts > ACCESS_NOTE_INTERVAL_MS
                && let Err(error) = storage.touch_remote_media(origin.as_str(), media_id).await
            {
                tracing::warn!(%error, "could not note a remote media's last access");
            }
            return Ok(cached);
        }
        if frozen {
            return Err(MediaError::NotFound);
        }
        let key: Key = (origin.as_str().to_owned(), media_id.to_owned());
        let lock = self.remote_downloads.lock_of(&key);
        let held = lock.lock().await;
        let result = async {
            // A download this request waited for may have kept it.
            if let Some(cached) = storage.remote_media(origin.as_str(), media_id).await? {
                return Ok(cached);
            }
            self.download(storage, federation, origin, media_id, access, wait).await
        }
        .await;
        drop(held);
        self.remote_downloads.release(&key, lock);
        result
    }

    async fn download(
        &self,
        storage: &Storage,
        federation: &FederationClient,
        origin: &ServerName,
        media_id: &str,
        access: Access,
        wait: Duration,
    ) -> Result<RemoteMedia, MediaError> {
        let endpoint = match access {
            Access::Authenticated => MediaEndpoint::Federation,
            Access::Legacy => MediaEndpoint::Legacy,
        };
        let limit = self.max_upload_size;
        let slot = self.remote_downloads.slots.acquire().await.map_err(|_| MediaError::RemoteFailed("shutting down".into()))?;
        let RemoteFile { bytes, content_type, file_name } =
            federation.download_media(origin, media_id, limit, wait.min(MAX_WAIT), endpoint).await.map_err(|error| remote_error(error, limit))?;
        let file_id = random_id();
        let (length, sha256) = self.store.put_remote(origin.as_str(), &file_id, &bytes).await?;
        drop((slot, bytes));
        let row = RemoteMedia {
            media_origin: origin.as_str().to_owned(),
            media_id: media_id.to_owned(),
            filesystem_id: file_id.clone(),
            media_type: content_type.filter(|kind| !kind.trim().is_empty()),
            media_length: length as i64,
            upload_name: file_name.filter(|name| !name.is_empty()),
            sha256,
            authenticated: self.authenticated_media,
            created_ts: weft_storage::now_ms(),
            last_access_ts: weft_storage::now_ms(),
        };
        match storage.add_remote_media(&row).await {
            Ok(true) => Ok(row),
            Ok(false) => {
                // Another media instance kept it first: its file stands.
                self.store.remove_remote(origin.as_str(), &file_id).await;
                storage.remote_media(origin.as_str(), media_id).await?.ok_or(MediaError::NotFound)
            }
            Err(error) => {
                self.store.remove_remote(origin.as_str(), &file_id).await;
                Err(error.into())
            }
        }
    }
}

/// What a request may name as another server's media id: it is only ever a
/// database key and a URL segment, never a path.
fn valid_remote_media_id(media_id: &str) -> bool {
    (1..=255).contains(&media_id.len()) && !media_id.chars().any(|c| c.is_control() || c == '/')
}

fn content_of(media: &RemoteMedia) -> MediaContent {
    MediaContent {
        length: media.media_length,
        media_type: media.media_type.clone(),
        upload_name: media.upload_name.clone(),
        sha256: media.sha256.clone(),
        authenticated: media.authenticated,
    }
}

/// A failed download as the client sees it: the remote's 404 is ours,
/// content still being uploaded there too; anything else is a gateway
/// failure (Synapse's 502).
fn remote_error(error: FederationError, limit: u64) -> MediaError {
    match &error {
        FederationError::NotWhitelisted(server) => MediaError::RemoteDenied(server.clone()),
        FederationError::TooLarge { .. } => MediaError::RemoteTooLarge { limit },
        FederationError::Remote { status, .. } if status.as_u16() == 404 => MediaError::NotFound,
        FederationError::Remote { .. } if error.errcode() == Some("M_NOT_YET_UPLOADED") => MediaError::NotYetUploaded,
        _ => {
            tracing::info!(%error, "could not download remote media");
            MediaError::RemoteFailed(error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_remote_media_id;

    #[test]
    fn remote_media_ids_are_keys_not_paths() {
        assert!(valid_remote_media_id("abc"));
        assert!(valid_remote_media_id("AbC-d_e=f.g"));
        assert!(!valid_remote_media_id(""));
        assert!(!valid_remote_media_id("a/b"));
        assert!(!valid_remote_media_id("a\nb"));
        assert!(!valid_remote_media_id(&"x".repeat(256)));
    }
}
