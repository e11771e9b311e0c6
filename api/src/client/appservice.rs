//! The client side of application services, as Synapse answers it:
//! registering a user of an appservice's namespace
//! (`m.login.application_service`), the exclusive namespaces that other
//! users may not register or take aliases in (`M_EXCLUSIVE`), and the rules
//! for an appservice's own aliases. Authentication by `as_token` is
//! `auth.rs`'s; the ping and the appservice room lists are in `appservice_api.rs`.

use http::StatusCode;
use ruma::{RoomAliasId, UserId, api::error::ErrorKind};
use serde_json::json;

use weft_core::appservice::AppService;
use weft_services::services::Services;
use weft_storage::{NewUser, StorageError};

use crate::{
    auth::Sender,
    error::{ApiError, ApiResult},
    session::IssuedSession,
};

pub(crate) fn exclusive(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::Exclusive, message)
}

/// Refuses a user id that an appservice other than `allowed` claims
/// exclusively (Synapse's `check_user_id_not_appservice_exclusive`).
pub(crate) fn user_not_exclusive(state: &Services, user_id: &UserId, allowed: Option<&AppService>) -> ApiResult<()> {
    let claimed = state.config.app_services.all().iter().any(|service| {
        allowed.is_none_or(|allowed| allowed.id != service.id) && service.is_interested_in_user(user_id) && service.is_exclusive_user(user_id.as_str())
    });
    if claimed {
        return Err(exclusive("This user ID is reserved by an application service."));
    }
    Ok(())
}

/// Whether `sender` may create or delete `alias`: an appservice only in its
/// aliases namespace; anyone else unless an appservice claims it
/// exclusively (an admin always, as Synapse's `can_modify_alias`).
pub(crate) fn may_modify_alias(state: &Services, sender: &Sender, alias: &RoomAliasId) -> ApiResult<()> {
    if let Some(service) = &sender.appservice {
        if !service.is_interested_in_alias(alias.as_str()) {
            return Err(exclusive("This application service has not reserved this kind of alias."));
        }
        return Ok(());
    }
    if sender.admin {
        return Ok(());
    }
    for service in state.config.app_services.all() {
        if !service.is_interested_in_alias(alias.as_str()) {
            continue;
        }
        if sender.user_id == service.sender {
            return Ok(());
        }
        if service.is_exclusive_alias(alias.as_str()) {
            return Err(exclusive("This alias is reserved by an application service."));
        }
    }
    Ok(())
}

/// `POST /register` with `type: m.login.application_service`: a user of the
/// caller's namespace, without password, user-interactive auth, spam check or
/// registration rate limit. The user name is not held to the grammar of new
/// users (bridges register historical ids), only to a valid user id.
pub(crate) async fn register(
    state: &Services,
    sender: Option<&Sender>,
    username: Option<&str>,
    device_id: Option<ruma::OwnedDeviceId>,
    display_name: Option<&str>,
    inhibit_login: bool,
    client_addr: &str,
) -> ApiResult<ruma::serde::JsonObject> {
    let service = match sender {
        Some(Sender { appservice: Some(service), .. }) => service.clone(),
        Some(_) => return Err(ApiError::unknown_token(false)),
        None => {
            return Err(ApiError::unknown(StatusCode::BAD_REQUEST, "Appservice token must be provided when using a type of m.login.application_service"));
        }
    };
    let localpart = username.ok_or_else(|| ApiError::unknown(StatusCode::BAD_REQUEST, "Desired Username is missing or not a string"))?;
    let user_id = UserId::parse_with_server_name(localpart, &state.server_name)
        .ok()
        .filter(|user_id| user_id.validate_historical().is_ok())
        .ok_or_else(|| ApiError::invalid_username(format!("`{localpart}` does not make a valid user ID")))?;
    if !service.is_interested_in_user(&user_id) {
        return Err(exclusive("Invalid user localpart for this application service."));
    }
    user_not_exclusive(state, &user_id, Some(&*service))?;
    let new_user = NewUser { user_id: &user_id, password_hash: None, admin: false, shadow_banned: false, user_type: None };
    let mut response = ruma::serde::JsonObject::new();
    response.insert("user_id".into(), json!(user_id));
    let session = (!inhibit_login).then(|| IssuedSession::new(device_id));
    let stored = session.as_ref().map(|session| session.to_store(display_name, client_addr));
    state.storage.create_user(new_user, stored).await.map_err(|error| match error {
        StorageError::Conflict => ApiError::user_in_use(),
        other => other.into(),
    })?;
    state.stream_advanced(weft_storage::Stream::DeviceLists);
    if let Some(session) = session {
        response.insert("access_token".into(), json!(session.access_token));
        response.insert("device_id".into(), json!(session.device_id));
    }
    tracing::info!(%user_id, appservice = %service.id, "an appservice registered a user");
    Ok(response)
}
