//! `POST /register` and `GET /register/available`.
//!
//! As Synapse: the requested user name is lower-cased and checked (grammar,
//! availability) before user-interactive auth, so a client learns that a
//! name is taken before it walks the auth flow; registration itself is one
//! transaction (account, device, token), so a failure writes nothing. The
//! password is required only once user-interactive auth is complete, and an
//! empty one counts as none.

use http::StatusCode;
use ruma::{
    OwnedUserId, UserId,
    api::{
        client::account::{
            get_username_availability,
            register::{LoginType, RegistrationKind, v3::Request},
        },
        error::ErrorKind,
    },
};

use ruma::serde::JsonObject;
use serde_json::json;

use weft_core::crypto::{password, token};
use weft_services::plugins::spam::{RegistrationVerdict, RequestInfo};
use weft_services::services::{AppState, Services};
use weft_storage::{NewSession, NewUser, StorageError};

use super::listed::{Reshaped, json_body};
use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
    session::IssuedSession,
    uia,
};

/// Answered as Synapse: with `inhibit_login`, `user_id` alone (ruma would
/// write `"device_id": null`).
pub async fn register(state: AppState, request: Ruma<Reshaped<Request>>) -> ApiResult<json_body::Response> {
    let body = &request.body.0;
    // An appservice registers its users its own way; any other token is refused.
    if matches!(body.login_type, Some(LoginType::ApplicationService)) {
        let device_id = body.device_id.clone();
        let display_name = body.initial_device_display_name.as_deref();
        let sender = request.sender.as_ref();
        let registered =
            super::appservice::register(&state, sender, body.username.as_deref(), device_id, display_name, body.inhibit_login, &request.client_addr);
        return Ok(json_body::Response::new(registered.await?));
    }
    match &request.sender {
        Some(sender) if sender.appservice.is_some() => {
            return Err(ApiError::unknown(
                StatusCode::BAD_REQUEST,
                "An access token should not be provided on requests to /register without a 'type' of m.login.application_service",
            ));
        }
        Some(_) => return Err(ApiError::unknown_token(false)),
        None => {}
    }
    state.rate_limits.registration.acquire(&request.client_addr).map_err(ApiError::limit_exceeded)?;
    match body.kind {
        RegistrationKind::User => {}
        RegistrationKind::Guest => return Err(ApiError::new(StatusCode::FORBIDDEN, ErrorKind::GuestAccessForbidden, "Guest access is disabled")),
        ref other => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::Unrecognized, format!("Do not understand registration kind `{}`", other.as_str())));
        }
    }
    if !state.config.enable_registration {
        return Err(ApiError::forbidden("Registration has been disabled"));
    }
    // What this request asks for, over what earlier requests of its UIA
    // session asked for: a request may carry only `auth` (as Synapse keeps
    // the first request's parameters, and Element's resumed registration
    // relies on it).
    let kept: RegistrationParams = match uia::kept_params(&state, body.auth.as_ref()).await? {
        Some(json) => serde_json::from_str(&json).unwrap_or_default(),
        None => RegistrationParams::default(),
    };
    if let Some(password) = &body.password {
        check_password_length(password)?;
    }
    let password_hash = match body.password.as_deref().filter(|password| !password.is_empty()) {
        Some(password) => Some(password::hash(password).await),
        None => kept.password_hash,
    };
    let params = RegistrationParams {
        username: body.username.clone().or(kept.username),
        password_hash,
        device_id: body.device_id.clone().or(kept.device_id),
        initial_device_display_name: body.initial_device_display_name.clone().or(kept.initial_device_display_name),
        inhibit_login: body.inhibit_login || kept.inhibit_login,
    };
    let user_id = match &params.username {
        Some(name) => {
            let user_id = validate_new_localpart(&state, &name.to_lowercase())?;
            super::appservice::user_not_exclusive(&state, &user_id, None)?;
            if state.storage.user_id_taken(&user_id).await? {
                return Err(ApiError::user_in_use());
            }
            user_id
        }
        None => generate_user_id(&state).await?,
    };

    // A first call without `auth` (Element's is `{}`) asks which flows there
    // are and gets the 401 that says, whatever it lacks; a call with `auth`
    // lacking a password is refused before it uses up its session.
    if body.auth.is_some() && params.password_hash.is_none() {
        return Err(ApiError::missing_param("Missing params: password"));
    }
    let kept_json = serde_json::to_string(&params).map_err(|_| ApiError::internal())?;
    uia::authenticate(&state, body.auth.as_ref(), &uia::Requirement::dummy(&request.action).keeping(kept_json)).await?;
    let password_hash = params.password_hash.ok_or_else(|| ApiError::missing_param("Missing params: password"))?;

    // As Synapse's `register_user`: after auth, before anything is written.
    let client = RequestInfo { user_agent: None, ip: request.client_addr.clone() };
    let shadow_banned = match state.spam_checker.check_registration_for_spam(None, Some(user_id.localpart()), &[client], None).await {
        RegistrationVerdict::Allow => false,
        RegistrationVerdict::ShadowBan => true,
        RegistrationVerdict::Deny => return Err(ApiError::registration_denied()),
    };

    let new_user = NewUser { user_id: &user_id, password_hash: Some(&password_hash), admin: false, shadow_banned, user_type: None };
    let mut response = JsonObject::new();
    response.insert("user_id".into(), json!(user_id));
    if params.inhibit_login {
        create(&state, new_user, None).await?;
    } else {
        let session = IssuedSession::new(params.device_id);
        create(&state, new_user, Some(session.to_store(params.initial_device_display_name.as_deref(), &request.client_addr))).await?;
        response.insert("access_token".into(), json!(session.access_token));
        response.insert("device_id".into(), json!(session.device_id));
    }
    tracing::info!(user_id = %user_id, shadow_banned, "registered a new user");
    Ok(json_body::Response::new(response))
}

/// A registration's parameters, kept with its UIA session between requests
/// (the password as its hash only).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct RegistrationParams {
    username: Option<String>,
    password_hash: Option<String>,
    device_id: Option<ruma::OwnedDeviceId>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    inhibit_login: bool,
}

async fn create(state: &Services, user: NewUser<'_>, session: Option<NewSession<'_>>) -> ApiResult<()> {
    state.storage.create_user(user, session).await.map_err(|error| match error {
        StorageError::Conflict => ApiError::user_in_use(),
        other => other.into(),
    })?;
    state.stream_advanced(weft_storage::Stream::DeviceLists);
    Ok(())
}

pub async fn available(state: AppState, request: Ruma<get_username_availability::v3::Request>) -> ApiResult<get_username_availability::v3::Response> {
    if !state.config.enable_registration {
        return Err(ApiError::forbidden("Registration has been disabled"));
    }
    // Unlike `/register`, which lowercases the name, Synapse checks it as
    // typed here, so a client can tell its user that capitals are not kept.
    let user_id = validate_new_localpart(&state, &request.body.username)?;
    super::appservice::user_not_exclusive(&state, &user_id, None)?;
    if state.storage.user_id_taken(&user_id).await? {
        return Err(ApiError::user_in_use());
    }
    Ok(get_username_availability::v3::Response::new(true))
}

/// Checks a requested local part against the spec's grammar for new users
/// and Synapse's reservations, and builds the user id.
pub(crate) fn validate_new_localpart(state: &Services, localpart: &str) -> ApiResult<OwnedUserId> {
    if localpart.is_empty() {
        return Err(ApiError::invalid_username("User ID cannot be empty"));
    }
    if !localpart.chars().all(|c| matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' | '+')) {
        return Err(ApiError::invalid_username("User ID can only contain characters a-z, 0-9, or '=_-./+'"));
    }
    if localpart.starts_with('_') {
        return Err(ApiError::invalid_username("User ID may not begin with _"));
    }
    if localpart.chars().all(|c| c.is_ascii_digit()) {
        return Err(ApiError::invalid_username("Numeric user IDs are reserved for guest users"));
    }
    let user_id = UserId::parse_with_server_name(localpart, &state.server_name).map_err(|e| ApiError::invalid_username(format!("Invalid user ID: {e}")))?;
    if user_id.as_str().len() > 255 {
        return Err(ApiError::invalid_username("User ID may not be longer than 255 characters"));
    }
    Ok(user_id)
}

/// As Synapse, an empty password is no password.
pub(crate) fn required_password(password: Option<&str>) -> ApiResult<&str> {
    password.filter(|password| !password.is_empty()).ok_or_else(|| ApiError::missing_param("Missing params: password"))
}

pub(crate) fn check_password_length(password: &str) -> ApiResult<()> {
    if password.len() > password::MAX_PASSWORD_LENGTH {
        return Err(ApiError::invalid_param("Password too long"));
    }
    Ok(())
}

/// A free random user id for registrations that do not ask for a name.
async fn generate_user_id(state: &Services) -> ApiResult<OwnedUserId> {
    loop {
        let localpart = format!("u{}", token::random_string(10).to_lowercase());
        let user_id = validate_new_localpart(state, &localpart)?;
        if !state.storage.user_id_taken(&user_id).await? && super::appservice::user_not_exclusive(state, &user_id, None).is_ok() {
            return Ok(user_id);
        }
    }
}
