//! `GET/POST /_synapse/admin/v1/register`: registration with the shared
//! secret, as Synapse's `register_new_matrix_user` uses it. Works whether or
//! not public registration is open. The MAC is HMAC-SHA1 over
//! `nonce \0 username \0 password \0 admin|notadmin [\0 user_type]`.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use http::StatusCode;
use sha1::Sha1;

use weft_core::crypto::{password, token};
use weft_services::services::AppState;
use weft_storage::{NewUser, StorageError};

use crate::{
    client::validate_new_localpart,
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
    session::IssuedSession,
};

/// How long a nonce stays valid, as in Synapse.
const NONCE_LIFETIME: Duration = Duration::from_secs(60);

pub mod get_nonce {
    //! `GET /_synapse/admin/v1/register`
    use ruma::api::{auth_scheme::NoAuthentication, metadata, request, response};

    metadata! {
        method: GET,
        rate_limited: false,
        authentication: NoAuthentication,
        path: "/_synapse/admin/v1/register",
    }

    #[request]
    pub struct Request {}

    #[response]
    pub struct Response {
        pub nonce: String,
    }
}

pub mod shared_secret {
    //! `POST /_synapse/admin/v1/register`
    use ruma::{
        OwnedDeviceId, OwnedServerName, OwnedUserId,
        api::{auth_scheme::NoAuthentication, metadata, request, response},
    };

    metadata! {
        method: POST,
        rate_limited: false,
        authentication: NoAuthentication,
        path: "/_synapse/admin/v1/register",
    }

    #[request]
    pub struct Request {
        pub nonce: String,
        pub username: String,
        pub password: String,
        #[serde(default)]
        pub admin: bool,
        /// The new user's display name (else the local part).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub displayname: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub user_type: Option<String>,
        /// Hex HMAC-SHA1 of the fields with the shared secret.
        pub mac: String,
    }

    #[response]
    pub struct Response {
        pub user_id: OwnedUserId,
        pub access_token: String,
        pub device_id: OwnedDeviceId,
        pub home_server: OwnedServerName,
    }
}

pub async fn nonce(state: AppState, _: Ruma<get_nonce::Request>) -> ApiResult<get_nonce::Response> {
    if state.registration_shared_secret.is_none() {
        return Err(disabled());
    }
    let nonce = token::random_string(32);
    let mut nonces = state.admin_nonces.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    nonces.retain(|_, issued| issued.elapsed() < NONCE_LIFETIME);
    nonces.insert(nonce.clone(), Instant::now());
    Ok(get_nonce::Response { nonce })
}

pub async fn register(state: AppState, request: Ruma<shared_secret::Request>) -> ApiResult<shared_secret::Response> {
    let Some(secret) = state.registration_shared_secret.as_deref() else {
        return Err(disabled());
    };
    let body = &request.body;
    let issued = state.admin_nonces.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&body.nonce);
    if issued.is_none_or(|issued| issued.elapsed() >= NONCE_LIFETIME) {
        return Err(ApiError::unknown(StatusCode::BAD_REQUEST, "unrecognised nonce"));
    }
    if body.username.len() > 512 || body.username.contains('\0') {
        return Err(ApiError::invalid_username("Invalid username"));
    }
    if body.password.len() > password::MAX_PASSWORD_LENGTH || body.password.contains('\0') {
        return Err(ApiError::invalid_param("Invalid password"));
    }
    if !mac_matches(secret, body) {
        return Err(ApiError::forbidden("HMAC incorrect"));
    }

    let user_id = validate_new_localpart(&state, &body.username.to_lowercase())?;
    let password_hash = password::hash(&body.password).await;
    let session = IssuedSession::new(None);
    let user =
        NewUser { user_id: &user_id, password_hash: Some(&password_hash), admin: body.admin, shadow_banned: false, user_type: body.user_type.as_deref() };
    state.storage.create_user(user, Some(session.to_store(None, &request.client_addr))).await.map_err(|error| match error {
        StorageError::Conflict => ApiError::user_in_use(),
        other => other.into(),
    })?;
    state.stream_advanced(weft_storage::Stream::DeviceLists);
    if let Some(name) = body.displayname.as_deref().filter(|name| !name.is_empty()) {
        state.storage.set_profile_field(&user_id, "displayname", &serde_json::Value::String(name.to_owned())).await?;
    }
    tracing::info!(user_id = %user_id, admin = body.admin, "registered a user with the shared secret");
    Ok(shared_secret::Response { user_id, access_token: session.access_token, device_id: session.device_id, home_server: state.server_name.clone() })
}

fn disabled() -> ApiError {
    ApiError::unknown(StatusCode::BAD_REQUEST, "Shared secret registration is not enabled")
}

/// The MAC `register_new_matrix_user` sends, for the CLI and the check here.
pub fn compute_mac(secret: &str, nonce: &str, username: &str, password: &str, admin: bool, user_type: Option<&str>) -> Hmac<Sha1> {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(nonce.as_bytes());
    mac.update(b"\0");
    mac.update(username.as_bytes());
    mac.update(b"\0");
    mac.update(password.as_bytes());
    mac.update(b"\0");
    mac.update(if admin { b"admin" as &[u8] } else { b"notadmin" });
    if let Some(user_type) = user_type {
        mac.update(b"\0");
        mac.update(user_type.as_bytes());
    }
    mac
}

fn mac_matches(secret: &str, body: &shared_secret::Request) -> bool {
    let Ok(given) = hex::decode(&body.mac) else { return false };
    compute_mac(secret, &body.nonce, &body.username, &body.password, body.admin, body.user_type.as_deref()).verify_slice(&given).is_ok()
}
