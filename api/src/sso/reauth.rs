//! User-interactive auth by SSO (`m.login.sso`), for users who log in with an
//! identity provider: `GET /auth/m.login.sso/fallback/web?session=` starts
//! an attempt bound to the UIA session and shows a page to continue at the
//! provider; its callback (`redirect`) ends here. The provider's user must be
//! the one mapped to the session's account: then the stage is done;
//! otherwise the session is refused for good (every later request with it
//! answers 403), as Synapse.

use axum::{
    extract::{Path, RawQuery, State},
    response::{IntoResponse, Response},
};
use http::StatusCode;
use ruma::{UserId, api::client::uiaa::AuthType};
use serde_json::json;

use weft_services::plugins::sso::{SsoProvider, UserAttributes};
use weft_services::services::{AppState, Services};

use super::{cookies, pages, query_pairs, redirect};
use crate::error::ApiError;

pub async fn fallback(State(state): State<AppState>, Path(auth_type): Path<String>, RawQuery(query): RawQuery) -> Response {
    if auth_type != AuthType::Sso.as_str() {
        return ApiError::unrecognized(StatusCode::NOT_FOUND).into_response();
    }
    let Some(session_id) = query_pairs(query.as_deref()).into_iter().find(|(k, _)| k == "session").map(|(_, v)| v) else {
        return ApiError::missing_param("Missing string query parameter session").into_response();
    };
    let session = match state.storage.uia_session(&session_id).await {
        Ok(Some(session)) if session.created_ts > weft_storage::now_ms() - crate::uia::SESSION_LIFETIME_MS => session,
        Ok(_) => return pages::error(&state, StatusCode::BAD_REQUEST, "unknown_session", "This authentication session is unknown or has expired."),
        Err(error) => return ApiError::from(error).into_response(),
    };
    let Some(user_id) = session.user_id.as_deref().and_then(|u| UserId::parse(u).ok()) else {
        return pages::error(&state, StatusCode::BAD_REQUEST, "no_user", "This action cannot be confirmed with single sign-on.");
    };
    let Some(provider) = provider_of(&state, &user_id).await else {
        return pages::error(&state, StatusCode::BAD_REQUEST, "no_identity_provider", "This account has no identity provider to confirm with.");
    };
    match redirect::begin(&state, &provider, "", Some(&session_id)).await {
        Ok((url, attempt_state)) => {
            let description = describe(&session.action);
            let page = pages::render(
                &state,
                "sso_auth_confirm.html",
                json!({"redirect_url": url, "description": description, "idp": {"idp_id": provider.info.id, "idp_name": provider.info.name}}),
            );
            let mut response = pages::html(StatusCode::OK, page);
            cookies::set_session(response.headers_mut(), &attempt_state);
            response
        }
        Err(response) => response,
    }
}

/// The first identity provider (in configuration order) `user_id` is mapped to.
async fn provider_of(services: &Services, user_id: &UserId) -> Option<SsoProvider> {
    let mapped = services.storage.external_ids_of(user_id).await.ok()?;
    services.sso.providers().await.into_iter().find(|p| mapped.iter().any(|(idp, _)| *idp == p.info.id))
}

/// What the action is, for the confirmation page.
fn describe(action: &str) -> &'static str {
    let path = action.split_once(' ').map_or(action, |(_, path)| path);
    if path.contains("/delete_devices") || path.contains("/devices/") {
        "remove a device from your account"
    } else if path.contains("/keys/device_signing/upload") {
        "set up cross-signing for your account"
    } else if path.contains("/account/deactivate") {
        "deactivate your account"
    } else if path.contains("/account/password") {
        "change your password"
    } else {
        "perform an action on your account"
    }
}

/// The callback of a re-authentication for UIA session `session_id`.
pub(super) async fn completed(services: &Services, provider: &SsoProvider, session_id: &str, user: &UserAttributes) -> Response {
    let session = match services.storage.uia_session(session_id).await {
        Ok(Some(session)) => session,
        Ok(None) => return pages::error(services, StatusCode::BAD_REQUEST, "unknown_session", "This authentication session is unknown or has expired."),
        Err(error) => return ApiError::from(error).into_response(),
    };
    let mapped = match services.storage.user_by_external_id(&provider.info.id, &user.subject).await {
        Ok(mapped) => mapped,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let expected = session.user_id.clone().unwrap_or_default();
    if mapped.as_ref().map(|account| account.user_id.as_str()) != Some(expected.as_str()) {
        tracing::warn!(session = %session_id, expected = %expected, idp = %provider.info.id, "SSO re-authentication answered another user: the session is refused");
        if let Err(error) = services.storage.refuse_uia_session(session_id, "Requested authentication as another user").await {
            return ApiError::from(error).into_response();
        }
        let page = pages::render(services, "sso_auth_bad_user.html", json!({"user_id_to_verify": expected}));
        return pages::html(StatusCode::FORBIDDEN, page);
    }
    if let Err(error) = crate::uia::record_stage(services, &session, AuthType::Sso).await {
        return error.into_response();
    }
    pages::html(StatusCode::OK, pages::render(services, "sso_auth_success.html", json!({})))
}
