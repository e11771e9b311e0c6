//! Access tokens as requests carry them: where a request puts its token (the
//! `Authorization` header or, for compatibility, the `access_token` query
//! parameter), and who owns a token, looked up by its SHA-256
//! (`crypto::token::hash_access_token`) behind `TokenOwners`, which the
//! storage crate implements. The API resolves tokens through both; `weft
//! router` through both too, without depending on the API or on storage.
//!
//! May call: nothing of Weft.

use std::{future::Future, pin::Pin};

/// Why a request's token cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenPlacementError {
    #[error("the Authorization header is not text")]
    NotText,
    #[error("Invalid Authorization header: expected `Bearer <token>`")]
    NotBearer,
    #[error("Mixing the Authorization header and the access_token query parameter")]
    Mixed,
}

/// The token a request carries, if any.
pub fn from_request(headers: &http::HeaderMap, query: Option<&str>) -> Result<Option<String>, TokenPlacementError> {
    let from_header = match headers.get(http::header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value.to_str().map_err(|_| TokenPlacementError::NotText)?;
            let token = value.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty());
            Some(token.ok_or(TokenPlacementError::NotBearer)?)
        }
    };
    let from_query =
        query.and_then(|query| form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "access_token").map(|(_, value)| value.into_owned()));
    match (from_header, from_query) {
        (Some(_), Some(_)) => Err(TokenPlacementError::Mixed),
        (Some(token), None) => Ok(Some(token.to_owned())),
        (None, token) => Ok(token),
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub type LookupError = Box<dyn std::error::Error + Send + Sync>;

/// Who owns an access token, by the token's SHA-256 (hex).
pub trait TokenOwners: Send + Sync {
    /// The user id owning the token whose hash is `token_hash`; `None` for
    /// an unknown token; an error when the answer cannot be had.
    fn user_of<'a>(&'a self, token_hash: &'a str) -> BoxFuture<'a, Result<Option<String>, LookupError>>;
}
