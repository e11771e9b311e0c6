//! Who is calling: the access token from the `Authorization` header or, for
//! compatibility, the `access_token` query parameter, resolved to a user and
//! device. Handlers receive the result and never look at tokens themselves.

use ruma::{
    OwnedDeviceId, OwnedUserId,
    api::auth_scheme::{AccessToken, AccessTokenOptional, AppserviceTokenOptional, NoAccessToken, NoAuthentication},
};

use weft_core::access_token::TokenPlacementError;
use weft_core::crypto::token::hash_access_token;
use weft_services::services::Services;

use super::error::{ApiError, ApiResult};

/// How often a device's "last seen" is written at most.
const LAST_SEEN_GRANULARITY_MS: i64 = 60_000;

/// What an endpoint asks of the caller, derived from ruma's auth scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    None,
    Optional,
    Required,
}

pub trait AuthRequirement {
    const KIND: AuthKind;
}

impl AuthRequirement for NoAuthentication {
    const KIND: AuthKind = AuthKind::None;
}
impl AuthRequirement for NoAccessToken {
    const KIND: AuthKind = AuthKind::None;
}
impl AuthRequirement for AccessToken {
    const KIND: AuthKind = AuthKind::Required;
}
impl AuthRequirement for AccessTokenOptional {
    const KIND: AuthKind = AuthKind::Optional;
}
impl AuthRequirement for AppserviceTokenOptional {
    // Appservice tokens arrive with the appservice issue; until then only users.
    const KIND: AuthKind = AuthKind::Optional;
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Sender {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    /// SHA-256 of the token used, to log out exactly this session.
    pub token_hash: String,
    pub admin: bool,
    pub shadow_banned: bool,
}

/// The token a request carries, if any (`weft_core::access_token`), or
/// `M_MISSING_TOKEN` saying why it cannot be read.
pub fn access_token(headers: &http::HeaderMap, query: Option<&str>) -> ApiResult<Option<String>> {
    weft_core::access_token::from_request(headers, query).map_err(|placement| {
        let mut error = ApiError::missing_token();
        if placement != TokenPlacementError::NotText {
            error.message = placement.to_string();
        }
        error
    })
}

/// Resolves a token to its owner, or `M_UNKNOWN_TOKEN`.
pub async fn authenticate(services: &Services, token: &str, client_addr: &str) -> ApiResult<Sender> {
    let token_hash = hash_access_token(token);
    let owner = services.storage.token_owner(&token_hash).await?.ok_or_else(|| ApiError::unknown_token(false))?;
    if owner.deactivated {
        return Err(ApiError::unknown_token(false));
    }
    let stale = owner.last_seen_ts.is_none_or(|seen| weft_storage::now_ms() - seen > LAST_SEEN_GRANULARITY_MS);
    if stale || owner.last_seen_ip.as_deref() != Some(client_addr) {
        let storage = services.storage.clone();
        let (user_id, device_id, addr) = (owner.user_id.clone(), owner.device_id.clone(), client_addr.to_owned());
        tokio::spawn(async move {
            if let Err(error) = storage.touch_device(&user_id, &device_id, &addr).await {
                tracing::warn!(%error, "could not record when a device was last seen");
            }
        });
    }
    Ok(Sender { user_id: owner.user_id, device_id: owner.device_id, token_hash, admin: owner.admin, shadow_banned: owner.shadow_banned })
}
