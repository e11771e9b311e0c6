//! Checking who sent an incoming federation request: the X-Matrix
//! `Authorization` header names the origin, the destination (which must be
//! this server when present) and the key; the signature covers the method,
//! the URI, both names and the JSON body. The key comes from `keys` (memory
//! first). Every failure is a 401 `M_UNAUTHORIZED` for the caller, except an
//! origin outside `federation_domain_whitelist` (403 `M_FORBIDDEN`).

use http::HeaderMap;
use ruma::{
    OwnedServerName, ServerName,
    api::federation::authentication::{XMatrix, XMatrixVerificationError},
    signatures::PublicKeyMap,
};

use crate::Federation;

#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("Missing X-Matrix Authorization header")]
    Missing,
    #[error("Invalid X-Matrix Authorization header: {0}")]
    Malformed(String),
    #[error("The request is for {0}, not this server")]
    WrongDestination(String),
    #[error("Federation denied with {0}")]
    NotWhitelisted(String),
    #[error("Unknown key {key} of {origin}")]
    UnknownKey { origin: String, key: String },
    #[error("Invalid signature for server {0}")]
    BadSignature(String),
}

impl InboundError {
    /// 403 rather than 401.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::NotWhitelisted(_))
    }
}

impl Federation {
    /// What the headers alone decide: the X-Matrix parameters, a destination
    /// that is this server, an origin federation is allowed with.
    pub fn authorization(&self, headers: &HeaderMap, own_name: &ServerName) -> Result<XMatrix, InboundError> {
        let xmatrix = XMatrix::extract_from_http_headers(headers).map_err(|error| match headers.get(http::header::AUTHORIZATION) {
            None => InboundError::Missing,
            Some(_) => InboundError::Malformed(error.to_string()),
        })?;
        if let Some(destination) = &xmatrix.destination
            && destination != own_name
        {
            return Err(InboundError::WrongDestination(destination.to_string()));
        }
        if !self.allows(&xmatrix.origin) {
            return Err(InboundError::NotWhitelisted(xmatrix.origin.to_string()));
        }
        Ok(xmatrix)
    }

    /// Checks the signature of `request` (its body read) against the origin's key.
    pub async fn verify(&self, xmatrix: &XMatrix, request: &http::Request<&[u8]>, own_name: &ServerName) -> Result<OwnedServerName, InboundError> {
        let origin = &xmatrix.origin;
        let now = ruma::MilliSecondsSinceUnixEpoch::now().get().into();
        let key = match self.keys.key(origin, xmatrix.key.as_str(), now).await {
            Ok(Some(key)) => key,
            Ok(None) => return Err(InboundError::UnknownKey { origin: origin.to_string(), key: xmatrix.key.to_string() }),
            Err(error) => {
                tracing::info!(%origin, %error, "cannot fetch the keys of a server that sent a request");
                return Err(InboundError::UnknownKey { origin: origin.to_string(), key: xmatrix.key.to_string() });
            }
        };
        let keys: PublicKeyMap = [(origin.to_string(), [(xmatrix.key.to_string(), key)].into())].into();
        xmatrix.verify_http_request(request, own_name, &keys).map_err(|error| match error {
            XMatrixVerificationError::DestinationMismatch => {
                InboundError::WrongDestination(xmatrix.destination.as_ref().map(ToString::to_string).unwrap_or_default())
            }
            _ => InboundError::BadSignature(origin.to_string()),
        })?;
        Ok(origin.clone())
    }
}
