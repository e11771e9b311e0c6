//! `GET /login` (flows: password, `m.login.application_service`, and with
//! SSO plugins `m.login.sso` with the identity providers and
//! `m.login.token`), `POST /login` with `m.login.password`,
//! `m.login.token` (a single-use token from an SSO login, `crate::sso`) or
//! (an appservice for a user of its namespace) `m.login.application_service`,
//! and `POST /refresh` (always an unknown token: none are issued).
//!
//! Rate limits as Synapse: every attempt per client address; failed attempts
//! per account (`rc_login.failed_attempts`: checked before the password,
//! counted after a failure); successful logins per account
//! (`rc_login.account`: counted once the password is right). Failures never
//! spend the account's success budget, so someone guessing passwords cannot
//! make the right one answer 429 through it.
//! A deactivated account gets `M_USER_DEACTIVATED` whatever the password: its
//! password hash is erased at deactivation, and the account's existence is no
//! secret (its id stays taken).

use http::StatusCode;
use ruma::{
    OwnedUserId, UserId,
    api::{
        client::{
            session::{
                get_login_types::v3::{
                    self as login_types, ApplicationServiceLoginType, IdentityProvider, LoginType, PasswordLoginType, SsoLoginType, TokenLoginType,
                },
                login::v3::{LoginInfo, Request, Response},
            },
            uiaa::UserIdentifier,
        },
        error::ErrorKind,
    },
};

use weft_core::crypto::password;
use weft_services::plugins::spam::{RequestInfo, SpamVerdict};
use weft_services::services::{AppState, Services};

use crate::session::IssuedSession;
use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

pub async fn login_types(state: AppState, _: Ruma<login_types::Request>) -> ApiResult<login_types::Response> {
    let mut flows = Vec::new();
    if state.config.password_config.enabled {
        flows.push(LoginType::Password(PasswordLoginType::new()));
    }
    flows.push(LoginType::ApplicationService(ApplicationServiceLoginType::new()));
    if state.sso.enabled() {
        let mut sso = SsoLoginType::new();
        sso.identity_providers = state
            .sso
            .providers()
            .await
            .into_iter()
            .map(|provider| {
                let mut idp = IdentityProvider::new(provider.info.id, provider.info.name);
                idp.icon = provider.info.icon.map(Into::into);
                idp.brand = provider.info.brand.map(|brand| brand.as_str().into());
                idp
            })
            .collect();
        flows.push(LoginType::Sso(sso));
        flows.push(LoginType::Token(TokenLoginType::new()));
    }
    Ok(login_types::Response::new(flows))
}

fn invalid_credentials() -> ApiError {
    ApiError::forbidden("Invalid username or password")
}

pub async fn login(state: AppState, request: Ruma<Request>) -> ApiResult<Response> {
    let body = &request.body;
    if let LoginInfo::ApplicationService(info) = &body.login_info {
        return appservice_login(&state, &request, info).await;
    }
    state.rate_limits.login_address.acquire(&request.client_addr).map_err(ApiError::limit_exceeded)?;
    let credentials = match &body.login_info {
        LoginInfo::Password(credentials) => credentials,
        LoginInfo::Token(token) if state.sso.enabled() => {
            // Single use: taken (deleted) whether or not the login then succeeds.
            let Some(user_id) = state.storage.take_login_token(&weft_core::crypto::token::hash_access_token(&token.token)).await? else {
                return Err(ApiError::forbidden("Invalid login token"));
            };
            let Some(user) = state.storage.user(&user_id).await? else {
                return Err(ApiError::forbidden("Invalid login token"));
            };
            return open_session(&state, &request, user).await;
        }
        _ => return Err(ApiError::unknown(StatusCode::BAD_REQUEST, "Unknown login type")),
    };
    if !state.config.password_config.enabled {
        return Err(ApiError::unknown(StatusCode::BAD_REQUEST, "Password login has been disabled"));
    }
    #[allow(deprecated)]
    let name = match (&credentials.identifier, &credentials.user) {
        (Some(UserIdentifier::Matrix(id)), _) => id.user.clone(),
        (Some(_), _) => return Err(ApiError::forbidden("Only the m.id.user identifier is supported")),
        (None, Some(user)) => user.clone(),
        (None, None) => return Err(ApiError::missing_param("Missing identifier: expected `identifier` with type m.id.user")),
    };
    let user_id = qualify(&state, &name)?;
    let key = user_id.as_str().to_lowercase();
    state.rate_limits.login_failed_attempts.peek(&key).map_err(ApiError::limit_exceeded)?;

    let Some(user) = state.storage.user_ignoring_case(user_id.as_str()).await? else {
        state.rate_limits.login_failed_attempts.acquire(&key).ok();
        return Err(invalid_credentials());
    };
    if user.deactivated {
        return Err(ApiError::new(StatusCode::FORBIDDEN, ErrorKind::UserDeactivated, "This account has been deactivated"));
    }
    let valid = match &user.password_hash {
        Some(hash) => password::verify(&credentials.password, hash).await,
        None => false,
    };
    if !valid {
        state.rate_limits.login_failed_attempts.acquire(&key).ok();
        return Err(invalid_credentials());
    }
    open_session(&state, &request, user).await
}

/// The login of `user` with its credentials checked: the account's rate
/// limit, the spam checker, then a new device and access token.
async fn open_session(state: &Services, request: &Ruma<Request>, user: weft_storage::User) -> ApiResult<Response> {
    let body = &request.body;
    if user.deactivated {
        return Err(ApiError::new(StatusCode::FORBIDDEN, ErrorKind::UserDeactivated, "This account has been deactivated"));
    }
    state.rate_limits.login_account.acquire(&user.user_id.as_str().to_lowercase()).map_err(ApiError::limit_exceeded)?;

    // As Synapse: after the credentials, before the device exists.
    let client = RequestInfo { user_agent: None, ip: request.client_addr.clone() };
    let device_id = body.device_id.as_ref().map(|id| id.as_str());
    if let SpamVerdict::Reject(rejection) =
        state.spam_checker.check_login_for_spam(&user.user_id, device_id, body.initial_device_display_name.as_deref(), &[client], None).await
    {
        return Err(ApiError::spam_rejected(rejection, "Login was blocked by the server"));
    }

    let session = IssuedSession::new(body.device_id.clone());
    state.storage.open_session(&user.user_id, session.to_store(body.initial_device_display_name.as_deref(), &request.client_addr)).await?;
    state.stream_advanced(weft_storage::Stream::DeviceLists);
    let mut response = Response::new(user.user_id, session.access_token, session.device_id);
    #[allow(deprecated)]
    {
        response.home_server = Some(state.server_name.clone());
    }
    Ok(response)
}

/// `m.login.application_service`: a new device for a user of the calling
/// appservice's namespace, which must exist (Synapse: 403 otherwise). An
/// appservice that manages its devices itself (`io.element.msc4190`) may
/// not use it, as Synapse.
async fn appservice_login(state: &Services, request: &Ruma<Request>, info: &ruma::api::client::session::login::v3::ApplicationService) -> ApiResult<Response> {
    let body = &request.body;
    let Some(service) = request.sender.as_ref().and_then(|sender| sender.appservice.clone()) else {
        return Err(ApiError::unknown_token(false));
    };
    if service.msc4190 {
        return Err(ApiError::unknown_token(false));
    }
    #[allow(deprecated)]
    let name = match (&info.identifier, &info.user) {
        (Some(UserIdentifier::Matrix(id)), _) => id.user.clone(),
        (Some(_), _) => return Err(ApiError::forbidden("Only the m.id.user identifier is supported")),
        (None, Some(user)) => user.clone(),
        (None, None) => return Err(ApiError::missing_param("Missing identifier: expected `identifier` with type m.id.user")),
    };
    let user_id = qualify(state, &name).map_err(|_| ApiError::forbidden("Invalid access_token"))?;
    if !service.is_interested_in_user(&user_id) {
        return Err(ApiError::forbidden("Invalid access_token"));
    }
    let user = state.storage.user(&user_id).await?.ok_or_else(|| ApiError::forbidden("Invalid access_token"))?;
    if user.deactivated {
        return Err(ApiError::new(StatusCode::FORBIDDEN, ErrorKind::UserDeactivated, "This account has been deactivated"));
    }
    if service.is_rate_limited(&user_id) {
        state.rate_limits.login_account.acquire(&user_id.as_str().to_lowercase()).map_err(ApiError::limit_exceeded)?;
    }
    let session = IssuedSession::new(body.device_id.clone());
    state.storage.open_session(&user_id, session.to_store(body.initial_device_display_name.as_deref(), &request.client_addr)).await?;
    state.stream_advanced(weft_storage::Stream::DeviceLists);
    let mut response = Response::new(user_id, session.access_token, session.device_id);
    #[allow(deprecated)]
    {
        response.home_server = Some(state.server_name.clone());
    }
    Ok(response)
}

/// A full user id from what the client typed: `@local:server` or `local`.
fn qualify(state: &Services, name: &str) -> ApiResult<OwnedUserId> {
    let user_id = if name.starts_with('@') {
        UserId::parse(name).map_err(|_| invalid_credentials())?
    } else {
        UserId::parse_with_server_name(name.to_lowercase(), &state.server_name).map_err(|_| invalid_credentials())?
    };
    if user_id.server_name() != state.server_name {
        return Err(invalid_credentials());
    }
    Ok(user_id)
}

/// Weft issues no refresh tokens (a login's `refresh_token: true` is
/// ignored, as the spec allows), so none can be refreshed.
pub async fn refresh(
    _: AppState,
    _: Ruma<ruma::api::client::session::refresh_token::v3::Request>,
) -> ApiResult<ruma::api::client::session::refresh_token::v3::Response> {
    Err(ApiError::unknown_token(false))
}
