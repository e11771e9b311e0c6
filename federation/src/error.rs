//! What can go wrong talking to another server.

use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("{0} is not in federation_domain_whitelist")]
    NotWhitelisted(String),
    #[error("{0}")]
    Blocked(String),
    #[error("cannot find {server}: {reason}")]
    Discovery { server: String, reason: String },
    /// The connection or the exchange failed (`reason` holds the whole
    /// chain of causes, such as a refused address).
    #[error("request to {server} failed: {reason}")]
    Transport { server: String, reason: String },
    /// The remote server answered with an error (`body` is its JSON, if any).
    #[error("{server} answered {status}: {body}")]
    Remote { server: String, status: StatusCode, body: serde_json::Value },
    /// The answer was larger than the caller accepts.
    #[error("the answer of {server} is larger than {limit} bytes")]
    TooLarge { server: String, limit: u64 },
    #[error("the answer of {server} is not valid: {reason}")]
    InvalidResponse { server: String, reason: String },
    #[error("cannot build the request: {0}")]
    Request(String),
    #[error("federation configuration: {0}")]
    Config(String),
    #[error("no valid signing key of {server}: {reason}")]
    Keys { server: String, reason: String },
    #[error(transparent)]
    Storage(#[from] weft_storage::StorageError),
}

impl FederationError {
    /// The remote server's `errcode`, when it answered with a Matrix error.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            Self::Remote { body, .. } => body.get("errcode").and_then(|code| code.as_str()),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Remote { status, .. } => Some(*status),
            _ => None,
        }
    }
}
