//! The media store on disk, laid out as Synapse lays it out so that an
//! operator's tools and habits carry over:
//!
//! - `local_content/ab/cd/efgh...`: the uploaded files, by media id;
//! - `local_thumbnails/ab/cd/efgh.../<w>-<h>-<type>-<subtype>-<method>`: thumbnails;
//! - `remote_content/<server>/ab/cd/efgh...`: other servers' media, by a
//!   file id chosen here; `remote_thumbnail/<server>/ab/cd/efgh.../...` their thumbnails;
//! - `tmp/`: uploads being received (renamed into place once complete).
//!
//! A file is complete once it is in place: uploads are written and synced
//! under `tmp/` first, so a crash leaves no half file under a media id.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::MediaError;

/// How much of an upload the spam checkers see.
pub const HEAD_BYTES: usize = 4096;

/// An upload received in full under `tmp/`, not yet under its media id.
#[derive(Debug)]
pub struct Received {
    pub temp_path: PathBuf,
    pub length: u64,
    pub sha256: String,
    pub head: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct MediaStore {
    root: PathBuf,
}

impl MediaStore {
    /// The store at `root`, with its directories created.
    pub fn open(root: PathBuf) -> std::io::Result<Self> {
        for dir in ["local_content", "local_thumbnails", "remote_content", "remote_thumbnail", "tmp"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        Ok(Self { root })
    }

    pub fn content_path(&self, media_id: &str) -> PathBuf {
        let (a, b, rest) = split(media_id);
        self.root.join("local_content").join(a).join(b).join(rest)
    }

    pub fn thumbnail_dir(&self, media_id: &str) -> PathBuf {
        let (a, b, rest) = split(media_id);
        self.root.join("local_thumbnails").join(a).join(b).join(rest)
    }

    /// Where `origin`'s media kept under `file_id` lies. `origin` is a
    /// server name (no `/`), never `.` or `..` (`remote::store_name`).
    pub fn remote_content_path(&self, origin: &str, file_id: &str) -> PathBuf {
        let (a, b, rest) = split(file_id);
        self.root.join("remote_content").join(origin).join(a).join(b).join(rest)
    }

    pub fn remote_thumbnail_dir(&self, origin: &str, file_id: &str) -> PathBuf {
        let (a, b, rest) = split(file_id);
        self.root.join("remote_thumbnail").join(origin).join(a).join(b).join(rest)
    }

    /// Writes another server's file under `file_id`, complete or not at
    /// all; returns its length and SHA-256.
    pub async fn put_remote(&self, origin: &str, file_id: &str, bytes: &[u8]) -> std::io::Result<(u64, String)> {
        let path = self.remote_content_path(origin, file_id);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let temp_path = self.root.join("tmp").join(super::random_id());
        let written = async {
            let mut file = tokio::fs::File::create(&temp_path).await?;
            file.write_all(bytes).await?;
            file.sync_all().await?;
            tokio::fs::rename(&temp_path, &path).await
        };
        if let Err(error) = written.await {
            let _ = tokio::fs::remove_file(&temp_path).await;
            return Err(error);
        }
        Ok((bytes.len() as u64, hex::encode(Sha256::digest(bytes))))
    }

    /// Removes a remote file and its thumbnails, whichever exist.
    pub async fn remove_remote(&self, origin: &str, file_id: &str) {
        let _ = tokio::fs::remove_file(self.remote_content_path(origin, file_id)).await;
        let _ = tokio::fs::remove_dir_all(self.remote_thumbnail_dir(origin, file_id)).await;
    }

    /// Reads `body` (a request body's data frames) to a file under `tmp/`,
    /// refusing it once it passes `limit` bytes or sends nothing for `idle_timeout`.
    pub async fn receive<E>(
        &self,
        body: impl Stream<Item = Result<Bytes, E>> + Unpin,
        limit: u64,
        idle_timeout: std::time::Duration,
    ) -> Result<Received, MediaError> {
        let temp_path = self.root.join("tmp").join(super::random_id());
        let result = write_limited(&temp_path, body, limit, idle_timeout).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp_path).await;
        }
        let (length, sha256, head) = result?;
        Ok(Received { temp_path, length, sha256, head })
    }

    /// Moves a received upload under `media_id`.
    pub async fn keep(&self, received: &Received, media_id: &str) -> std::io::Result<()> {
        let path = self.content_path(media_id);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(&received.temp_path, &path).await
    }

    /// Removes files under `tmp/` last written before `cutoff`: uploads a
    /// crash or a dropped connection left behind. Returns how many.
    pub async fn remove_stale_temporaries(&self, cutoff: std::time::SystemTime) -> std::io::Result<u64> {
        let mut removed = 0;
        let mut entries = tokio::fs::read_dir(self.root.join("tmp")).await?;
        while let Some(entry) = entries.next_entry().await? {
            let stale = entry.metadata().await.and_then(|metadata| metadata.modified()).is_ok_and(|modified| modified < cutoff);
            if stale && tokio::fs::remove_file(entry.path()).await.is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes `media_id`'s file and thumbnails, whichever exist.
    pub async fn remove(&self, media_id: &str) -> std::io::Result<()> {
        for result in [tokio::fs::remove_file(self.content_path(media_id)).await, tokio::fs::remove_dir_all(self.thumbnail_dir(media_id)).await] {
            match result {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        Ok(())
    }

    pub async fn discard(&self, received: &Received) {
        let _ = tokio::fs::remove_file(&received.temp_path).await;
    }

    /// Writes a thumbnail atomically (another request may be writing the same one).
    pub async fn put_thumbnail(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let temp_path = self.root.join("tmp").join(super::random_id());
        tokio::fs::write(&temp_path, bytes).await?;
        tokio::fs::rename(&temp_path, path).await
    }
}

async fn write_limited<E>(
    path: &Path,
    mut stream: impl Stream<Item = Result<Bytes, E>> + Unpin,
    limit: u64,
    idle_timeout: std::time::Duration,
) -> Result<(u64, String, Vec<u8>), MediaError> {
    let mut file = tokio::fs::File::create(path).await?;
    let mut hasher = Sha256::new();
    let mut head = Vec::with_capacity(HEAD_BYTES);
    let mut length: u64 = 0;
    while let Some(chunk) = tokio::time::timeout(idle_timeout, stream.next()).await.map_err(|_| MediaError::BodyTimeout)? {
        let chunk = chunk.map_err(|_| MediaError::BodyRead)?;
        length += chunk.len() as u64;
        if length > limit {
            return Err(MediaError::TooLarge { limit });
        }
        hasher.update(&chunk);
        if head.len() < HEAD_BYTES {
            let take = (HEAD_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        file.write_all(&chunk).await?;
    }
    file.sync_all().await?;
    Ok((length, hex::encode(hasher.finalize()), head))
}

/// A thumbnail's file in its media's thumbnail directory.
pub fn thumbnail_file(dir: &Path, width: u32, height: u32, content_type: &str, method: &str) -> PathBuf {
    let kind = content_type.replace('/', "-");
    dir.join(format!("{width}-{height}-{kind}-{method}"))
}

/// Synapse's fan-out: the first two pairs of characters make directories.
fn split(media_id: &str) -> (&str, &str, &str) {
    // Media ids are checked to be ASCII letters, digits, `-` and `_`, at least 5 long.
    (&media_id[0..2], &media_id[2..4], &media_id[4..])
}
