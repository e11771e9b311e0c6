//! Who is calling: the access token from the `Authorization` header or, for
//! compatibility, the `access_token` query parameter, resolved to a user and
//! device. Handlers receive the result and never look at tokens themselves.
//!
//! An application service's `as_token` is its sender user, or the user its
//! `user_id` query parameter names (identity assertion: a registered user of
//! its namespace, 403 otherwise), through the device `device_id` (or
//! `org.matrix.msc3202.device_id`) names when the registration enables
//! device masquerading (`org.matrix.msc3202` or `io.element.msc4190`).

use std::sync::Arc;

use http::StatusCode;
use ruma::{
    OwnedDeviceId, OwnedUserId, UserId,
    api::auth_scheme::{AccessToken, AccessTokenOptional, AppserviceToken, AppserviceTokenOptional, NoAccessToken, NoAuthentication},
};

use weft_core::access_token::TokenPlacementError;
use weft_core::appservice::AppService;
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
    /// An appservice's token may come, and names the appservice only: its
    /// `user_id` is not asserted (`/register`, `/login`, whose user may
    /// not exist yet), as Synapse's `get_appservice_by_req`.
    AppserviceOptional,
    /// Another server, by the X-Matrix signature of the request
    /// (`weft_federation::inbound`), checked once the body is read.
    Server,
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
impl AuthRequirement for AppserviceToken {
    // Any token: the handler refuses one that is not an appservice's, as Synapse does (403).
    const KIND: AuthKind = AuthKind::Required;
}
impl AuthRequirement for ruma::api::federation::authentication::ServerSignatures {
    const KIND: AuthKind = AuthKind::Server;
}
impl AuthRequirement for AppserviceTokenOptional {
    const KIND: AuthKind = AuthKind::AppserviceOptional;
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
    /// The application service whose `as_token` was used.
    pub appservice: Option<Arc<AppService>>,
    /// Whether the `rc_*` limits apply (not to an appservice with
    /// `rate_limited: false`, nor to its sender).
    pub rate_limited: bool,
    /// Whether `device_id` is a real device: an appservice acting without
    /// device masquerading has none, and `device_id` only keys its
    /// transaction ids (`_appservice.{id}`).
    pub has_device: bool,
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

/// Resolves a token to its owner, or `M_UNKNOWN_TOKEN`; `query` is the
/// request's query string, for an appservice's identity assertion (none
/// when it is `None`).
pub async fn authenticate(services: &Services, token: &str, client_addr: &str, query: Option<&str>) -> ApiResult<Sender> {
    if let Some(service) = services.config.app_services.by_as_token(token) {
        if !service.accepts_address(client_addr.parse().ok()) {
            tracing::warn!(appservice = %service.id, client_addr, "an appservice token was used from outside its ip_range_whitelist");
            return Err(ApiError::unknown_token(false));
        }
        return appservice_sender(services, service, token, query).await;
    }
    let token_hash = hash_access_token(token);
    let owner = services.token_owners.owner(&services.storage, &services.notifier, &token_hash).await?.ok_or_else(|| ApiError::unknown_token(false))?;
    if owner.deactivated {
        return Err(ApiError::unknown_token(false));
    }
    let now = weft_storage::now_ms();
    let stale = owner.last_seen_ts.is_none_or(|seen| now - seen > LAST_SEEN_GRANULARITY_MS);
    if stale || owner.last_seen_ip.as_deref() != Some(client_addr) {
        services.token_owners.seen(&token_hash, now, client_addr);
        let storage = services.storage.clone();
        let (user_id, device_id, addr) = (owner.user_id.clone(), owner.device_id.clone(), client_addr.to_owned());
        tokio::spawn(async move {
            if let Err(error) = storage.touch_device(&user_id, &device_id, &addr).await {
                tracing::warn!(%error, "could not record when a device was last seen");
            }
        });
    }
    Ok(Sender {
        user_id: owner.user_id,
        device_id: owner.device_id,
        token_hash,
        admin: owner.admin,
        shadow_banned: owner.shadow_banned,
        appservice: None,
        rate_limited: true,
        has_device: true,
    })
}

async fn appservice_sender(services: &Services, service: &Arc<AppService>, token: &str, query: Option<&str>) -> ApiResult<Sender> {
    let params: Vec<(String, String)> = query.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let param = |name: &str| params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let user_id = match param("user_id") {
        None => service.sender.clone(),
        Some(asserted) => {
            let cannot = || ApiError::forbidden(format!("Application service cannot masquerade as this user ({asserted})."));
            let user_id = UserId::parse(asserted).map_err(|_| cannot())?;
            if !service.is_interested_in_user(&user_id) || user_id.server_name() != services.server_name {
                return Err(cannot());
            }
            user_id
        }
    };
    let account = services.storage.user(&user_id).await?;
    if user_id != service.sender && account.as_ref().is_none_or(|account| account.deactivated) {
        return Err(ApiError::forbidden(format!("Application service has not registered this user ({user_id})")));
    }
    let asserted_device = param("device_id").or_else(|| param("org.matrix.msc3202.device_id")).filter(|_| service.may_masquerade_devices());
    let (device_id, has_device) = match asserted_device {
        Some(device) => {
            let device_id = OwnedDeviceId::from(device);
            if services.storage.device(&user_id, &device_id).await?.is_none() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ruma::api::error::ErrorKind::Exclusive,
                    format!("Application service trying to use a device that doesn't exist ('{device}' for {user_id})"),
                ));
            }
            (device_id, true)
        }
        None => (OwnedDeviceId::from(format!("_appservice.{}", service.id)), false),
    };
    Ok(Sender {
        rate_limited: service.is_rate_limited(&user_id),
        admin: account.as_ref().is_some_and(|account| account.admin),
        shadow_banned: account.as_ref().is_some_and(|account| account.shadow_banned),
        user_id,
        device_id,
        token_hash: hash_access_token(token),
        appservice: Some(service.clone()),
        has_device,
    })
}
