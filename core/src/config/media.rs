//! The media repository's options, with Synapse's names, defaults and units:
//! where files live, how large an upload may be, which thumbnails are made,
//! and how asynchronous uploads (`/create`) are limited.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

use super::Config;

/// Synapse's `thumbnail_sizes` default.
const DEFAULT_THUMBNAIL_SIZES: [(u32, u32, ThumbnailMethod); 5] = [
    (32, 32, ThumbnailMethod::Crop),
    (96, 96, ThumbnailMethod::Crop),
    (320, 240, ThumbnailMethod::Scale),
    (640, 480, ThumbnailMethod::Scale),
    (800, 600, ThumbnailMethod::Scale),
];

/// A size in bytes as Synapse writes it: a number, or a string of a number
/// and a unit (`K`, `M`, `G`, `T`, powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().ok()?;
        let factor: u64 = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "K" | "KB" => 1 << 10,
            "M" | "MB" => 1 << 20,
            "G" | "GB" => 1 << 30,
            "T" | "TB" => 1 << 40,
            _ => return None,
        };
        number.checked_mul(factor).map(Self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Bytes(bytes) => Ok(Self(bytes)),
            Written::Text(text) => Self::parse(&text).ok_or_else(|| D::Error::custom(format!("`{text}` is not a size such as `50M` or `512K`"))),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThumbnailMethod {
    /// Fill the box, cutting what sticks out.
    Crop,
    /// Fit inside the box, keeping the aspect ratio.
    Scale,
}

impl ThumbnailMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crop => "crop",
            Self::Scale => "scale",
        }
    }
}

/// One entry of `thumbnail_sizes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ThumbnailSize {
    pub width: u32,
    pub height: u32,
    pub method: ThumbnailMethod,
}

impl Config {
    /// Whether this instance serves the media repository: main unless
    /// `enable_media_repo = false`; a worker when it sets
    /// `enable_media_repo = true` or is a `synapse.app.media_repository`.
    pub fn runs_media_repo(&self) -> bool {
        if self.is_main_process() {
            self.enable_media_repo.unwrap_or(true)
        } else {
            self.enable_media_repo.unwrap_or(false) || self.worker_app.as_deref() == Some("synapse.app.media_repository")
        }
    }

    /// Whether this instance runs the media repository's clean-up jobs:
    /// the one `media_instance_running_background_jobs` names, or every
    /// media instance when it names none (as in Synapse).
    pub fn runs_media_background_jobs(&self) -> bool {
        self.runs_media_repo() && self.media_instance_running_background_jobs.as_deref().is_none_or(|name| name == self.instance_name())
    }

    /// `media_store_path`, resolved against the first configuration file's
    /// directory at load time (Synapse's default: `media_store`).
    pub fn media_store_path(&self) -> PathBuf {
        self.media_store_path.clone().unwrap_or_else(|| "media_store".into())
    }

    /// The largest upload accepted (Synapse's default: 50 MiB).
    pub fn max_upload_size(&self) -> u64 {
        self.max_upload_size.map_or(50 << 20, |size| size.0)
    }

    /// Images with more pixels than this are not thumbnailed (default 32 M).
    pub fn max_image_pixels(&self) -> u64 {
        self.max_image_pixels.map_or(32 << 20, |size| size.0)
    }

    pub fn thumbnail_sizes(&self) -> Vec<ThumbnailSize> {
        match &self.thumbnail_sizes {
            Some(sizes) => sizes.clone(),
            None => DEFAULT_THUMBNAIL_SIZES.iter().map(|&(width, height, method)| ThumbnailSize { width, height, method }).collect(),
        }
    }

    /// How many `/create`d media ids a user may hold without content (default 5).
    pub fn max_pending_media_uploads(&self) -> u64 {
        self.max_pending_media_uploads.unwrap_or(5)
    }

    /// How long a `/create`d media id waits for its content (default 24 h).
    pub fn unused_expiration_time(&self) -> std::time::Duration {
        self.unused_expiration_time.map_or(std::time::Duration::from_secs(24 * 3600), |duration| duration.0)
    }

    /// Whether the unauthenticated `/_matrix/media/*/download` and
    /// `/thumbnail` endpoints refuse media (Synapse's default since 1.120:
    /// they do, for media uploaded while the option is on).
    pub fn enable_authenticated_media(&self) -> bool {
        self.enable_authenticated_media.unwrap_or(true)
    }
}

/// Checks the media options that can be wrong on their own.
pub(super) fn check(config: &Config, fail: &mut dyn FnMut(&str, String)) {
    if config.max_upload_size.is_some_and(|size| size.0 == 0) {
        fail("max_upload_size", "must be more than 0 bytes".into());
    }
    if let Some(sizes) = &config.thumbnail_sizes {
        for (index, size) in sizes.iter().enumerate() {
            if size.width == 0 || size.height == 0 {
                fail(&format!("thumbnail_sizes[{index}]"), "width and height must be at least 1".into());
            }
        }
    }
    if config.url_preview_enabled {
        fail("url_preview_enabled", "URL previews are not supported by Weft yet; leave this out or set it to false".into());
    }
}

#[cfg(test)]
mod tests {
    use super::ByteSize;

    #[test]
    fn sizes_with_and_without_units() {
        assert_eq!(ByteSize::parse("50M"), Some(ByteSize(50 << 20)));
        assert_eq!(ByteSize::parse("512K"), Some(ByteSize(512 << 10)));
        assert_eq!(ByteSize::parse("1G"), Some(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("1000"), Some(ByteSize(1000)));
        assert_eq!(ByteSize::parse("10X"), None);
        assert_eq!(ByteSize::parse("M"), None);
    }
}
