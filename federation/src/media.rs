//! Downloading another server's media, as Synapse does:
//!
//! 1. `GET /_matrix/federation/v1/media/download/{mediaId}` (X-Matrix signed):
//!    a `multipart/mixed` answer whose second part is the file, or a
//!    `Location` header naming where to fetch it (followed, unsigned, through
//!    the same address policy and redirects checks);
//! 2. when the server does not know that endpoint (`endpoint_unknown`), or
//!    when the caller asks for the legacy way, the unauthenticated
//!    `GET /_matrix/media/v3/download/{server}/{mediaId}?allow_remote=false`.
//!
//! Each request goes out as any other (`egress`): from this instance or
//! through an instance allowed to connect out.
//!
//! The whole answer is read into memory, at most the caller's limit (plus
//! the few bytes of the multipart framing); more is `TooLarge`.

use std::time::Duration;

use http::StatusCode;
use ruma::{
    ServerName,
    api::{
        IncomingResponseExt,
        federation::authenticated_media::{FileOrLocation, get_content},
    },
    http_headers::ContentDisposition,
};

use crate::{
    FederationClient, FederationError,
    client::literal_ip,
    egress::{Answer, Outbound, Target},
};

/// Room for the multipart framing and its JSON part around the file.
const FRAMING_ALLOWANCE: usize = 64 * 1024;
/// How long fetching a `Location` may take.
pub(crate) const LOCATION_TIMEOUT: Duration = Duration::from_secs(60);

/// A file another server gave.
#[derive(Debug, Clone)]
pub struct RemoteFile {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    /// The name the `Content-Disposition` header gives.
    pub file_name: Option<String>,
}

/// Which endpoint to ask first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEndpoint {
    /// The authenticated federation endpoint, then the legacy one if unknown.
    Federation,
    /// The legacy unauthenticated endpoint only.
    Legacy,
}

impl FederationClient {
    /// Downloads `media_id` of `server`, at most `limit` bytes; `wait` is
    /// how long the server may wait for content still being uploaded.
    pub async fn download_media(
        &self,
        server: &ServerName,
        media_id: &str,
        limit: u64,
        wait: Duration,
        endpoint: MediaEndpoint,
    ) -> Result<RemoteFile, FederationError> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if endpoint == MediaEndpoint::Federation {
            match self.federation_download(server, media_id, limit, wait).await {
                Err(error) if endpoint_unknown(&error) => {
                    tracing::debug!(%server, "no federation media endpoint: asking the legacy one");
                }
                other => return other,
            }
        }
        self.legacy_download(server, media_id, limit, wait).await
    }

    async fn federation_download(&self, server: &ServerName, media_id: &str, limit: usize, wait: Duration) -> Result<RemoteFile, FederationError> {
        let mut request = get_content::v1::Request::new(media_id.to_owned());
        request.timeout_ms = wait;
        let outbound = crate::client::outbound(server, request, true, limit.saturating_add(FRAMING_ALLOWANCE))?;
        let Answer { status, headers, body } = self.send(outbound).await?;
        if status.as_u16() >= 400 {
            return Err(remote(server, status, &body));
        }
        let mut response = http::Response::builder().status(status).body(body.as_slice()).map_err(|e| FederationError::Request(e.to_string()))?;
        *response.headers_mut() = headers;
        let parsed = get_content::v1::Response::try_from_http_response(response)
            .map_err(|e| FederationError::InvalidResponse { server: server.to_string(), reason: e.to_string() })?;
        match parsed.content {
            FileOrLocation::File(content) => {
                if content.file.len() > limit {
                    return Err(FederationError::TooLarge { server: server.to_string(), limit: limit as u64 });
                }
                Ok(RemoteFile { bytes: content.file, content_type: content.content_type, file_name: content.content_disposition.and_then(|d| d.filename) })
            }
            FileOrLocation::Location(location) => self.get_file(server, Target::Location(location), limit).await,
            _ => Err(FederationError::InvalidResponse { server: server.to_string(), reason: "neither a file nor a location".into() }),
        }
    }

    async fn legacy_download(&self, server: &ServerName, media_id: &str, limit: usize, wait: Duration) -> Result<RemoteFile, FederationError> {
        let path = format!(
            "/_matrix/media/v3/download/{}/{}?allow_remote=false&allow_redirect=true&timeout_ms={}",
            url_escape(server.as_str()),
            url_escape(media_id),
            wait.as_millis()
        );
        self.get_file(server, Target::Path(path), limit).await
    }

    /// An unsigned GET of a file of `server`'s.
    async fn get_file(&self, server: &ServerName, target: Target, limit: usize) -> Result<RemoteFile, FederationError> {
        let outbound = Outbound { destination: server.to_owned(), method: "GET".into(), target, content_type: None, sign: false, limit, body: Vec::new() };
        let Answer { status, headers, body } = self.send(outbound).await?;
        if !status.is_success() {
            return Err(remote(server, status, &body));
        }
        Ok(file_from(headers, body))
    }
}

/// The URL of a `Location` `server` named for its media, if it may be
/// fetched: http or https, and an IP literal only where the address policy
/// allows.
pub(crate) fn checked_location(client: &FederationClient, server: &ServerName, location: &str) -> Result<reqwest::Url, FederationError> {
    let invalid = |reason: String| FederationError::InvalidResponse { server: server.to_string(), reason };
    let url = reqwest::Url::parse(location).map_err(|e| invalid(format!("bad media location: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(invalid(format!("media location of scheme {}", url.scheme())));
    }
    if let Some(ip) = literal_ip(&url) {
        client.policy.check(ip).map_err(FederationError::Blocked)?;
    }
    Ok(url)
}

/// Whether an error says the federation media endpoint is unknown there,
/// as Synapse judges it: 404 or 405 with `M_UNRECOGNIZED` or a body that
/// is not a JSON object (older servers), or 400 `M_UNRECOGNIZED`.
fn endpoint_unknown(error: &FederationError) -> bool {
    let FederationError::Remote { status, body, .. } = error else { return false };
    let unrecognized = error.errcode() == Some("M_UNRECOGNIZED");
    match *status {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => unrecognized || !body.is_object(),
        StatusCode::BAD_REQUEST => unrecognized,
        _ => false,
    }
}

fn remote(server: &ServerName, status: StatusCode, body: &[u8]) -> FederationError {
    let body = serde_json::from_slice(body).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()));
    FederationError::Remote { server: server.to_string(), status, body }
}

fn file_from(headers: http::HeaderMap, bytes: Vec<u8>) -> RemoteFile {
    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let file_name =
        headers.get(http::header::CONTENT_DISPOSITION).and_then(|value| ContentDisposition::try_from(value.as_bytes()).ok()).and_then(|d| d.filename);
    RemoteFile { bytes, content_type, file_name }
}

/// Percent-encodes a path segment (everything but RFC 3986's unreserved characters).
fn url_escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_endpoint_is_told_from_missing_media() {
        let error = |status: u16, errcode: &str| FederationError::Remote {
            server: "example.org".into(),
            status: StatusCode::from_u16(status).unwrap(),
            body: serde_json::json!({"errcode": errcode}),
        };
        assert!(endpoint_unknown(&error(404, "M_UNRECOGNIZED")));
        assert!(endpoint_unknown(&error(405, "M_UNRECOGNIZED")));
        assert!(endpoint_unknown(&error(400, "M_UNRECOGNIZED")));
        assert!(!endpoint_unknown(&error(404, "M_NOT_FOUND")));
        assert!(!endpoint_unknown(&error(400, "M_INVALID_PARAM")));
        assert!(!endpoint_unknown(&error(502, "M_UNKNOWN")));
        let html = FederationError::Remote { server: "example.org".into(), status: StatusCode::NOT_FOUND, body: serde_json::json!("<html>") };
        assert!(endpoint_unknown(&html), "an old server's page");
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(url_escape("localhost:8448"), "localhost%3A8448");
        assert_eq!(url_escape("abc-DEF_1.2~"), "abc-DEF_1.2~");
        assert_eq!(url_escape("a/b?c"), "a%2Fb%3Fc");
    }
}
