//! `GET /login/sso/redirect[/{idpId}]`: a new login attempt, stored, and the
//! browser sent to the identity provider with the state cookies; and the
//! provider's callback, which takes the attempt by its state (once: a
//! replayed state finds nothing), checks it against the cookie, and hands
//! the callback to the plugin. Everything refused here creates nothing.

use axum::{
    extract::{Path, RawQuery, State},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri};
use ruma::api::error::ErrorKind;

use weft_services::plugins::sso::{LoginAttempt, Refusal, RefusalKind, SsoProvider};
use weft_services::services::{AppState, Services};
use weft_storage::SsoAttempt;

use super::{callback_url, cookies, finish, found, on_public_host, pages, query_pairs, reauth};
use crate::error::ApiError;

/// How long a login attempt may take, as the state cookie lives.
const ATTEMPT_LIFETIME_MS: i64 = cookies::SESSION_MAX_AGE_SECS * 1000;

/// Without an identity provider: the only one, or a page to choose.
pub async fn redirect(State(state): State<AppState>, uri: Uri, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    if !state.sso.enabled() {
        return no_sso();
    }
    let client_redirect = match checked_request(&state, &uri, &headers, query.as_deref()) {
        None => return missing_redirect_url(),
        Some(Err(response)) => return response,
        Some(Ok(url)) => url,
    };
    let providers = state.sso.providers().await;
    match providers.as_slice() {
        [] => refused_page(&state, RefusalKind::PluginFailed, &Refusal::plugin_failed().message),
        [only] => start(&state, only, &client_redirect).await,
        several => {
            let listed: Vec<_> = several
                .iter()
                .map(|p| {
                    let url = format!(
                        "/_matrix/client/v3/login/sso/redirect/{}?{}",
                        percent_encoding::utf8_percent_encode(&p.info.id, percent_encoding::NON_ALPHANUMERIC),
                        form_urlencoded::Serializer::new(String::new()).append_pair("redirectUrl", &client_redirect).finish()
                    );
                    serde_json::json!({"idp_id": p.info.id, "idp_name": p.info.name, "idp_icon": p.info.icon, "idp_brand": p.info.brand, "url": url})
                })
                .collect();
            let page = pages::render(&state, "sso_login_idp_picker.html", serde_json::json!({"redirect_url": client_redirect, "providers": listed}));
            pages::html(StatusCode::OK, page)
        }
    }
}

/// With an identity provider: 404 when there is none by that id.
pub async fn redirect_to_idp(State(state): State<AppState>, Path(idp_id): Path<String>, uri: Uri, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    if !state.sso.enabled() {
        return no_sso();
    }
    let client_redirect = match checked_request(&state, &uri, &headers, query.as_deref()) {
        None => return missing_redirect_url(),
        Some(Err(response)) => return response,
        Some(Ok(url)) => url,
    };
    match state.sso.provider(&idp_id).await {
        Some(provider) => start(&state, &provider, &client_redirect).await,
        None => ApiError::new(StatusCode::NOT_FOUND, ErrorKind::NotFound, "Unknown identity provider ID").into_response(),
    }
}

/// The request's `redirectUrl`, or (`Err`) the redirect to the public host
/// first; `None` without one.
fn checked_request(services: &Services, uri: &Uri, headers: &HeaderMap, query: Option<&str>) -> Option<Result<String, Response>> {
    let client_redirect = query_pairs(query).into_iter().find(|(k, _)| k == "redirectUrl").map(|(_, v)| v).filter(|v| !v.is_empty())?;
    if !super::safe_client_redirect(&client_redirect) {
        return Some(Err(ApiError::invalid_param("redirectUrl may not be a script, data or file URL").into_response()));
    }
    if let Some(elsewhere) = on_public_host(services, headers, uri.path_and_query().map_or("/", |pq| pq.as_str())) {
        return Some(Err(found(&elsewhere)));
    }
    Some(Ok(client_redirect))
}

fn missing_redirect_url() -> Response {
    ApiError::missing_param("Missing string query parameter redirectUrl").into_response()
}

/// Without SSO plugins the endpoints are unknown, as in Synapse without SSO.
fn no_sso() -> Response {
    ApiError::unrecognized(StatusCode::NOT_FOUND).into_response()
}

/// A new attempt for `provider`: stored, then the browser goes to the provider.
async fn start(services: &Services, provider: &SsoProvider, client_redirect: &str) -> Response {
    match begin(services, provider, client_redirect, None).await {
        Ok((url, state)) => {
            let mut response = found(&url);
            cookies::set_session(response.headers_mut(), &state);
            response
        }
        Err(response) => response,
    }
}

/// Stores a new attempt (for a login, or a re-authentication of
/// `ui_auth_session`) and answers the provider's authorization URL and the
/// attempt's state.
pub(super) async fn begin(
    services: &Services,
    provider: &SsoProvider,
    client_redirect: &str,
    ui_auth_session: Option<&str>,
) -> Result<(String, String), Response> {
    let attempt = LoginAttempt::new(callback_url(services));
    let authorization = match provider.authorize(&attempt).await {
        Ok(authorization) => authorization,
        Err(refusal) => {
            tracing::warn!(idp = %provider.info.id, kind = refusal.kind.as_str(), message = %refusal.message, "the SSO plugin refused to start a login");
            return Err(refused_page(services, refusal.kind, &refusal.message));
        }
    };
    let stored = SsoAttempt {
        state: attempt.state.clone(),
        idp_id: provider.info.id.clone(),
        nonce: attempt.nonce.clone(),
        code_verifier: attempt.code_verifier.clone(),
        callback_url: attempt.redirect_uri.clone(),
        context: authorization.context,
        client_redirect_url: client_redirect.to_owned(),
        ui_auth_session_id: ui_auth_session.map(str::to_owned),
        expires_ts: weft_storage::now_ms() + ATTEMPT_LIFETIME_MS,
    };
    if let Err(error) = services.storage.add_sso_attempt(&stored).await {
        tracing::error!(%error, "could not store an SSO login attempt");
        return Err(pages::error(services, StatusCode::INTERNAL_SERVER_ERROR, "server_error", "The login could not be started. Try again later."));
    }
    Ok((authorization.url, attempt.state))
}

pub async fn callback_get(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    callback(&state, &headers, query_pairs(query.as_deref())).await
}

/// `response_mode=form_post`: the parameters are the form's.
pub async fn callback_post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    callback(&state, &headers, form_urlencoded::parse(&body).into_owned().collect()).await
}

async fn callback(services: &Services, headers: &HeaderMap, params: Vec<(String, String)>) -> Response {
    let mut response = callback_outcome(services, headers, params).await;
    cookies::clear_session(response.headers_mut());
    response
}

async fn callback_outcome(services: &Services, headers: &HeaderMap, params: Vec<(String, String)>) -> Response {
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let Some(cookie) = cookies::session(headers) else {
        return pages::error(services, StatusCode::BAD_REQUEST, "missing_session", "No session cookie found: start the login again from your client.");
    };
    let Some(state) = param("state") else {
        return pages::error(services, StatusCode::BAD_REQUEST, "invalid_request", "The identity provider's answer has no state.");
    };
    if state != cookie {
        return pages::error(
            services,
            StatusCode::BAD_REQUEST,
            "mismatching_session",
            "The state does not match this browser's session: start the login again.",
        );
    }
    let started = std::time::Instant::now();
    let step = |name: &'static str, since: std::time::Instant| {
        metrics::histogram!("weft_sso_callback_step_seconds", "step" => name).record(since.elapsed().as_secs_f64())
    };
    let attempt = match services.storage.take_sso_attempt(&state).await {
        Ok(Some(attempt)) => attempt,
        Ok(None) => {
            return pages::error(services, StatusCode::BAD_REQUEST, "expired_session", "This login has expired or was already used: start it again.");
        }
        Err(error) => {
            tracing::error!(%error, "could not read an SSO login attempt");
            return pages::error(services, StatusCode::INTERNAL_SERVER_ERROR, "server_error", "The login could not be completed. Try again later.");
        }
    };
    step("take_attempt", started);
    let Some(provider) = services.sso.provider(&attempt.idp_id).await else {
        return refused_page(services, RefusalKind::PluginFailed, "This identity provider is not available any more.");
    };
    let login = LoginAttempt {
        state: attempt.state.clone(),
        nonce: attempt.nonce.clone(),
        code_verifier: attempt.code_verifier.clone(),
        redirect_uri: attempt.callback_url.clone(),
    };
    let plugin_started = std::time::Instant::now();
    let completed = provider.complete(&login, &attempt.context, &params).await;
    step("plugin", plugin_started);
    let user = match completed {
        Ok(user) => user,
        Err(refusal) => {
            tracing::info!(idp = %attempt.idp_id, kind = refusal.kind.as_str(), message = %refusal.message, "an SSO login was refused");
            metrics::counter!("weft_sso_refusals_total", "kind" => refusal.kind.as_str()).increment(1);
            return refused_page(services, refusal.kind, &refusal.message);
        }
    };
    let finish_started = std::time::Instant::now();
    let response = match &attempt.ui_auth_session_id {
        Some(session) => reauth::completed(services, &provider, session, &user).await,
        None => finish::logged_in(services, &provider, &attempt.client_redirect_url, user).await,
    };
    step("finish", finish_started);
    response
}

/// The page of a refused login: the plugin's message; a plugin failure
/// says the login is unavailable (fail-closed).
pub(super) fn refused_page(services: &Services, kind: RefusalKind, message: &str) -> Response {
    let status = match kind {
        RefusalKind::PluginFailed | RefusalKind::ProviderUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        RefusalKind::NotAllowed => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    };
    pages::error(services, status, kind.as_str(), message)
}
