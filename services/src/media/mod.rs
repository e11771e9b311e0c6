//! The media repository: uploads (direct, and asynchronous through
//! `/create`), their files, downloads that wait for content still on its
//! way, and thumbnails made on first request and kept.
//!
//! Owns: `media_store_path` (files, `files`) and the `local_media` rows
//! (through `weft_storage`). The HTTP surface is `weft_api::media`; this module knows
//! nothing of requests. Runs on the instances `Config::runs_media_repo`
//! names; several such instances must share the store's directory. The
//! clean-up (`clean_up`) runs where `Config::runs_media_background_jobs` says.
//!
//! Other servers' media is downloaded over federation on first request and
//! kept (`remote`, the `remote_media_cache` rows).
//!
//! Must not: trust a media id from a request before `valid_media_id` says it
//! can name a file (remote media ids never name one: their files get ids of
//! ours).

mod files;
mod remote;
pub mod thumbnail;

use std::time::Duration;

use rand::{Rng, distributions::Alphanumeric};

pub use files::{HEAD_BYTES, MediaStore, Received};

use weft_core::config::{Config, ThumbnailMethod, ThumbnailSize};
use weft_storage::{AttachError, LocalMedia, MediaContent, Storage, StorageError};

/// How long a download waits for content at most, whatever it asks.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// A temporary file this old belongs to no upload still in progress.
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);
/// How often a waiting download looks for content another instance stored.
const WAIT_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the upload is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the request body could not be read")]
    BodyRead,
    #[error("the upload sent nothing for too long")]
    BodyTimeout,
    #[error("no such media")]
    NotFound,
    #[error("the media has not been uploaded yet")]
    NotYetUploaded,
    #[error("too many media ids are waiting for their uploads")]
    TooManyPending,
    #[error("the media already has its content")]
    CannotOverwrite,
    #[error("the media id belongs to another user")]
    NotOwner,
    #[error("the media id can no longer take an upload")]
    Expired,
    #[error("this content cannot be thumbnailed")]
    CannotThumbnail,
    #[error("the image is too large to thumbnail")]
    ImageTooLarge,
    /// Federation with the media's server is not allowed.
    #[error("federation with {0} is not allowed")]
    RemoteDenied(String),
    /// The media's server could not be reached or gave no file.
    #[error("remote media: {0}")]
    RemoteFailed(String),
    /// The media's server offered a file larger than `max_upload_size`.
    #[error("the remote file is larger than {limit} bytes")]
    RemoteTooLarge { limit: u64 },
    #[error("media store: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Which endpoints a read comes through: the deprecated unauthenticated
/// ones do not serve media uploaded under `enable_authenticated_media`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Authenticated,
    Legacy,
}

/// What a thumbnail request asks for.
#[derive(Debug, Clone, Copy)]
pub struct ThumbnailRequest {
    pub width: u32,
    pub height: u32,
    pub method: ThumbnailMethod,
}

/// Stored content, ready to be sent.
#[derive(Debug)]
pub struct Download {
    pub content: MediaContent,
    pub file: tokio::fs::File,
}

/// A thumbnail, ready to be sent.
#[derive(Debug)]
pub struct Thumbnail {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
pub struct MediaRepository {
    store: MediaStore,
    max_upload_size: u64,
    /// The longest an upload may go without sending a byte (`http_timeouts.body`).
    upload_idle_timeout: Duration,
    max_image_pixels: u64,
    thumbnail_sizes: Vec<ThumbnailSize>,
    dynamic_thumbnails: bool,
    max_pending_uploads: u64,
    unused_expiration: Duration,
    /// Wakes downloads waiting here when an upload completes here.
    uploaded: tokio::sync::Notify,
    /// One thumbnail made at a time per core.
    renders: tokio::sync::Semaphore,
    /// `enable_authenticated_media`: uploads are marked for the authenticated endpoints only.
    authenticated_media: bool,
    /// One download at a time per remote media: a request for media being
    /// downloaded waits for that download (keyed by origin and media id;
    /// entries go when no one holds them).
    remote_downloads: remote::Downloads,
}

impl MediaRepository {
    /// The repository of an instance that runs it, with its store's
    /// directories created; `None` on other instances.
    pub fn from_config(config: &Config) -> std::io::Result<Option<Self>> {
        if !config.runs_media_repo() {
            return Ok(None);
        }
        Ok(Some(Self {
            store: MediaStore::open(config.media_store_path())?,
            max_upload_size: config.max_upload_size(),
            upload_idle_timeout: config.http_timeouts.body.0,
            max_image_pixels: config.max_image_pixels(),
            thumbnail_sizes: config.thumbnail_sizes(),
            dynamic_thumbnails: config.dynamic_thumbnails,
            max_pending_uploads: config.max_pending_media_uploads(),
            unused_expiration: config.unused_expiration_time(),
            uploaded: tokio::sync::Notify::new(),
            authenticated_media: config.enable_authenticated_media(),
            remote_downloads: remote::Downloads::default(),
            renders: tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |cores| cores.get())),
        }))
    }

    pub fn max_upload_size(&self) -> u64 {
        self.max_upload_size
    }

    /// Receives an upload's body (its data frames) to a temporary file, within the size limit.
    pub async fn receive<E>(&self, body: impl futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin) -> Result<Received, MediaError> {
        self.store.receive(body, self.max_upload_size, self.upload_idle_timeout).await
    }

    pub async fn discard(&self, received: &Received) {
        self.store.discard(received).await
    }

    /// Stores a received upload under a new media id of `user_id`.
    pub async fn store_new(
        &self,
        storage: &Storage,
        user_id: &str,
        received: &Received,
        media_type: Option<String>,
        upload_name: Option<String>,
    ) -> Result<String, MediaError> {
        let media_id = random_id();
        self.store.keep(received, &media_id).await?;
        let content = content_of(received, media_type, upload_name, self.authenticated_media);
        if let Err(error) = storage.add_local_media(&media_id, user_id, &content).await {
            let _ = tokio::fs::remove_file(self.store.content_path(&media_id)).await;
            return Err(error.into());
        }
        Ok(media_id)
    }

    /// Hands out a media id for a later upload: the id and until when it
    /// takes one (milliseconds).
    pub async fn create(&self, storage: &Storage, user_id: &str) -> Result<(String, i64), MediaError> {
        let media_id = random_id();
        let expires_at = weft_storage::now_ms() + self.unused_expiration.as_millis() as i64;
        if !storage.reserve_media(&media_id, user_id, expires_at, self.max_pending_uploads).await? {
            return Err(MediaError::TooManyPending);
        }
        Ok((media_id, expires_at))
    }

    /// Whether `user_id` may upload the content of `media_id` now: checked
    /// before the body is read, as Synapse does.
    pub async fn check_can_upload(&self, storage: &Storage, media_id: &str, user_id: &str) -> Result<(), MediaError> {
        if !valid_media_id(media_id) {
            return Err(MediaError::NotFound);
        }
        let media = storage.local_media(media_id).await?.ok_or(MediaError::NotFound)?;
        if media.user_id != user_id {
            return Err(MediaError::NotOwner);
        }
        if media.content.is_some() {
            return Err(MediaError::CannotOverwrite);
        }
        if media.unused_expires_at.is_none_or(|at| at <= weft_storage::now_ms()) {
            return Err(MediaError::Expired);
        }
        Ok(())
    }

    /// Stores a received upload as the content of a `/create`d id. The row
    /// decides between racing uploads: the file moves in only for the winner.
    pub async fn store_into(
        &self,
        storage: &Storage,
        media_id: &str,
        user_id: &str,
        received: &Received,
        media_type: Option<String>,
        upload_name: Option<String>,
    ) -> Result<(), MediaError> {
        // Under a name of its own until the row says it won: two uploads may race.
        let staging = format!("{media_id}.{}", random_id());
        self.store.keep(received, &staging).await?;
        let content = content_of(received, media_type, upload_name, self.authenticated_media);
        let outcome = storage.attach_media_content(media_id, user_id, &content).await;
        let staged = self.store.content_path(&staging);
        match outcome {
            Ok(Ok(())) => {
                tokio::fs::rename(&staged, self.store.content_path(media_id)).await?;
                self.uploaded.notify_waiters();
                Ok(())
            }
            Ok(Err(refused)) => {
                let _ = tokio::fs::remove_file(&staged).await;
                Err(match refused {
                    AttachError::NotFound => MediaError::NotFound,
                    AttachError::NotOwner => MediaError::NotOwner,
                    AttachError::AlreadyUploaded => MediaError::CannotOverwrite,
                    AttachError::Expired => MediaError::Expired,
                })
            }
            Err(error) => {
                let _ = tokio::fs::remove_file(&staged).await;
                Err(error.into())
            }
        }
    }

    /// Deletes `media_id`: its row, then its file and thumbnails.
    pub async fn delete(&self, storage: &Storage, media_id: &str) -> Result<(), MediaError> {
        if !valid_media_id(media_id) || !storage.delete_local_media(media_id).await? {
            return Err(MediaError::NotFound);
        }
        self.store.remove(media_id).await?;
        Ok(())
    }

    /// The periodic clean-up: `/create`d ids that expired without content,
    /// and temporary files older than `STALE_TEMPORARY` (no upload takes that long).
    pub async fn clean_up(&self, storage: &Storage) -> Result<(u64, u64), MediaError> {
        let ids = storage.purge_unused_media(weft_storage::now_ms()).await?;
        let files = self.store.remove_stale_temporaries(std::time::SystemTime::now() - STALE_TEMPORARY).await?;
        Ok((ids, files))
    }

    /// The content of `media_id`, waiting up to `wait` for content that is
    /// still to be uploaded.
    pub async fn open(&self, storage: &Storage, media_id: &str, access: Access, wait: Duration) -> Result<Download, MediaError> {
        let content = self.content(storage, media_id, access, wait).await?;
        let file = match tokio::fs::File::open(self.store.content_path(media_id)).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(missing_file(media_id)),
            Err(error) => return Err(error.into()),
        };
        Ok(Download { content, file })
    }

    /// A thumbnail of `media_id` for a request of `width` x `height`, made
    /// on first request and kept beside the others.
    pub async fn thumbnail(
        &self,
        storage: &Storage,
        media_id: &str,
        request: ThumbnailRequest,
        access: Access,
        wait: Duration,
    ) -> Result<Thumbnail, MediaError> {
        let content = self.content(storage, media_id, access, wait).await?;
        self.render_thumbnail(&content, self.store.content_path(media_id), self.store.thumbnail_dir(media_id), request, media_id).await
    }

    /// A thumbnail of the file at `source_path` (whose content is `content`),
    /// kept in `thumbnail_dir`. At most one per core is made at a time,
    /// which bounds the memory decoding takes. `label` names the media in logs.
    async fn render_thumbnail(
        &self,
        content: &MediaContent,
        source_path: std::path::PathBuf,
        thumbnail_dir: std::path::PathBuf,
        request: ThumbnailRequest,
        label: &str,
    ) -> Result<Thumbnail, MediaError> {
        let ThumbnailRequest { width, height, method } = request;
        let output_type = content.media_type.as_deref().and_then(thumbnail::output_type).ok_or(MediaError::CannotThumbnail)?;
        let header_path = source_path.clone();
        let dimensions = match tokio::task::spawn_blocking(move || thumbnail::shown_dimensions(&header_path)).await {
            Ok(Err(MediaError::Io(error))) if error.kind() == std::io::ErrorKind::NotFound => return Err(missing_file(label)),
            Ok(result) => result?,
            Err(_) => return Err(MediaError::CannotThumbnail),
        };
        if u64::from(dimensions.0) * u64::from(dimensions.1) > self.max_image_pixels {
            return Err(MediaError::ImageTooLarge);
        }
        let size = thumbnail::choose(&self.thumbnail_sizes, self.dynamic_thumbnails, width, height, method, dimensions);
        let path = files::thumbnail_file(&thumbnail_dir, size.width, size.height, output_type, size.method.as_str());
        if let Some(bytes) = read_if_present(&path).await? {
            return Ok(Thumbnail { content_type: output_type, bytes });
        }
        let _permit = self.renders.acquire().await.map_err(|_| MediaError::CannotThumbnail)?;
        // Another request may have made it while this one waited.
        if let Some(bytes) = read_if_present(&path).await? {
            return Ok(Thumbnail { content_type: output_type, bytes });
        }
        let source = read_if_present(&source_path).await?.ok_or_else(|| missing_file(label))?;
        let bytes = tokio::task::spawn_blocking(move || thumbnail::render(&source, size, output_type)).await.map_err(|_| MediaError::CannotThumbnail)??;
        self.store.put_thumbnail(&path, &bytes).await?;
        Ok(Thumbnail { content_type: output_type, bytes })
    }

    /// The content of `media_id` once it is there; media uploaded under
    /// `enable_authenticated_media` is unknown to the legacy endpoints.
    async fn content(&self, storage: &Storage, media_id: &str, access: Access, wait: Duration) -> Result<MediaContent, MediaError> {
        if !valid_media_id(media_id) {
            return Err(MediaError::NotFound);
        }
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        loop {
            // Registered before the look-up, so that an upload finishing in between still wakes us.
            let uploaded = self.uploaded.notified();
            match storage.local_media(media_id).await? {
                None => return Err(MediaError::NotFound),
                Some(LocalMedia { content: Some(content), .. }) if content.authenticated && access == Access::Legacy => return Err(MediaError::NotFound),
                Some(LocalMedia { content: Some(content), .. }) => return Ok(content),
                Some(media) if media.unused_expires_at.is_none_or(|at| at <= weft_storage::now_ms()) => return Err(MediaError::NotFound),
                Some(_) => {}
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(MediaError::NotYetUploaded);
            }
            // Another instance's upload is seen by polling; ours wakes at once.
            let _ = tokio::time::timeout((deadline - now).min(WAIT_POLL), uploaded).await;
        }
    }
}

async fn read_if_present(path: &std::path::Path) -> Result<Option<Vec<u8>>, MediaError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// A row says the content arrived but the store has no file: an operator
/// removed it, or the store is not the one shared by every media instance.
fn missing_file(media_id: &str) -> MediaError {
    tracing::error!(media_id, "media row without its file in the media store");
    MediaError::NotFound
}

/// Whether `media_id` could be one of ours: what `random_id` makes, so that
/// it can never name a path outside the store.
pub fn valid_media_id(media_id: &str) -> bool {
    (5..=255).contains(&media_id.len()) && media_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A new media id: 24 random letters and digits, as Synapse makes them.
pub(crate) fn random_id() -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(24).map(char::from).collect()
}

fn content_of(received: &Received, media_type: Option<String>, upload_name: Option<String>, authenticated: bool) -> MediaContent {
    MediaContent { length: received.length as i64, media_type, upload_name, sha256: received.sha256.clone(), authenticated }
}
