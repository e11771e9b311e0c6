//! The username picker, as Synapse's: `GET/POST
//! /_synapse/client/pick_username/account_details` (a form with the
//! suggested username, a taken one numbered, and whether to use the
//! provider's display name), `GET /_synapse/client/pick_username/check`
//! (`{"available": bool}`), and `GET /_synapse/client/sso_register`, which
//! registers the chosen name and sends the browser on to the client. The
//! session is the `username_mapping_session` cookie's row.

use axum::{
    Json,
    extract::{RawQuery, State},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::json;

use weft_services::services::{AppState, Services};
use weft_storage::UsernameSession;

use super::{REGISTER_PATH, cookies, finish, found, pages, query_pairs};
use crate::error::ApiError;

/// The session of the request's cookie, or the page saying there is none.
async fn session(services: &Services, headers: &HeaderMap) -> Result<UsernameSession, Response> {
    let Some(id) = cookies::get(headers, cookies::USERNAME_MAPPING) else {
        return Err(pages::error(services, StatusCode::BAD_REQUEST, "missing_session", "No session cookie found: start the login again from your client."));
    };
    match services.storage.username_session(&id).await {
        Ok(Some(session)) => Ok(session),
        Ok(None) => {
            Err(pages::error(services, StatusCode::BAD_REQUEST, "expired_session", "This session has expired: start the login again from your client."))
        }
        Err(error) => {
            tracing::error!(%error, "could not read a username session");
            Err(pages::error(services, StatusCode::INTERNAL_SERVER_ERROR, "server_error", "Try again later."))
        }
    }
}

async fn form(services: &Services, session: &UsernameSession, username: Option<String>, error: Option<&str>, status: StatusCode) -> Response {
    let username = match username {
        Some(name) => Some(name),
        None => match &session.suggested_localpart {
            Some(suggestion) => finish::free_user_id(services, suggestion).await.map(|user_id| user_id.localpart().to_owned()),
            None => None,
        },
    };
    let idp_name = services.sso.provider(&session.idp_id).await.map_or_else(|| session.idp_id.clone(), |p| p.info.name);
    let page = pages::render(
        services,
        "sso_auth_account_details.html",
        json!({
            "idp": {"idp_id": session.idp_id, "idp_name": idp_name},
            "user_attributes": {"localpart": username, "display_name": session.display_name, "emails": session.emails},
            "error": error,
        }),
    );
    pages::html(status, page)
}

pub async fn account_details(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session(&state, &headers).await {
        Ok(session) => form(&state, &session, None, None, StatusCode::OK).await,
        Err(response) => response,
    }
}

/// The submitted form: a valid, free name is kept with the session and the
/// browser goes on to `sso_register`; otherwise the form again, saying why.
pub async fn submit(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let session = match session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned());
    let Some(username) = field("username").filter(|name| !name.is_empty()) else {
        return form(&state, &session, None, Some("Choose a username."), StatusCode::BAD_REQUEST).await;
    };
    let use_display_name = field("use_display_name").is_some_and(|v| v == "true" || v == "on");
    let user_id = match crate::client::validate_new_localpart(&state, &username) {
        Ok(user_id) => user_id,
        Err(error) => return form(&state, &session, Some(username), Some(&error.message), StatusCode::BAD_REQUEST).await,
    };
    match state.storage.user_id_taken(&user_id).await {
        Ok(false) => {}
        Ok(true) => return form(&state, &session, Some(username), Some("This username is not available."), StatusCode::BAD_REQUEST).await,
        Err(error) => {
            tracing::error!(%error, "could not check a username");
            return pages::error(&state, StatusCode::INTERNAL_SERVER_ERROR, "server_error", "Try again later.");
        }
    }
    if let Err(error) = state.storage.set_username_choice(&session.session_id, user_id.localpart(), use_display_name).await {
        tracing::error!(%error, "could not keep a username choice");
        return pages::error(&state, StatusCode::INTERNAL_SERVER_ERROR, "server_error", "Try again later.");
    }
    found(REGISTER_PATH)
}

/// `{"available": bool}` for `?username=`, within a username session.
pub async fn check(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let Some(id) = cookies::get(&headers, cookies::USERNAME_MAPPING) else {
        return ApiError::missing_param("Missing session cookie").into_response();
    };
    match state.storage.username_session(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => return ApiError::unknown(StatusCode::BAD_REQUEST, "Unknown session").into_response(),
        Err(error) => return ApiError::from(error).into_response(),
    }
    let Some(username) = query_pairs(query.as_deref()).into_iter().find(|(k, _)| k == "username").map(|(_, v)| v) else {
        return ApiError::missing_param("Missing string query parameter username").into_response();
    };
    let available = match crate::client::validate_new_localpart(&state, &username) {
        Err(_) => false,
        Ok(user_id) => match state.storage.user_id_taken(&user_id).await {
            Ok(taken) => !taken,
            Err(error) => return ApiError::from(error).into_response(),
        },
    };
    Json(json!({"available": available})).into_response()
}

/// Registers the chosen name and logs the new user in.
pub async fn register(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let Some(user_id) = session.chosen_localpart.as_deref().and_then(|l| crate::client::validate_new_localpart(&state, l).ok()) else {
        return found(super::PICKER_PATH);
    };
    let display_name = session.display_name.as_deref().filter(|_| session.use_display_name);
    if let Err(response) = finish::register(&state, &user_id, display_name, &session.idp_id, &session.subject).await {
        return response;
    }
    if let Err(error) = state.storage.delete_username_session(&session.session_id).await {
        tracing::warn!(%error, "could not delete a used username session (it expires)");
    }
    let mut response = finish::to_client(&state, &user_id, &session.idp_id, &session.client_redirect_url, true).await;
    cookies::clear_username_mapping(response.headers_mut());
    response
}
