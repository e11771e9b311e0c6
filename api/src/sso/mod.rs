//! Single sign-on, the host's side (Synapse's endpoints and pages): the
//! redirect to an identity provider (`/login/sso/redirect[/{idpId}]`), the
//! provider's callback (`/_synapse/client/oidc/callback`), the username
//! picker for new users (`/_synapse/client/pick_username/*`,
//! `/_synapse/client/sso_register`), the redirect back to the client with a
//! login token, and re-authentication for user-interactive auth
//! (`/auth/m.login.sso/fallback/web`). The identity provider's protocol is
//! the `sso-provider` plugins' (`weft_services::sso`).
//!
//! Nothing of a login is kept in this process: the attempt, the username
//! session and the login token are rows (`weft_storage`'s `sso`), so each
//! step may reach any instance serving the `sso` group.
//!
//! The map: `redirect` (redirect and callback), `finish` (mapping a
//! provider's user to a Matrix user, the login token, the redirect to the
//! client), `picker` (the username picker and registration), `reauth`
//! (user-interactive auth by SSO), `pages` (templates), `cookies`.
//!
//! May call: `weft_services` (the SSO plugins, `Services`), `weft_storage`,
//! `crate::uia` (marking a stage done), `crate::client` (localpart rules).

mod cookies;
mod finish;
mod pages;
mod picker;
mod reauth;
mod redirect;

use std::time::Instant;

use axum::{Router, extract::Request, middleware::Next, response::Response, routing::get};
use http::{HeaderMap, Method, header};

use weft_core::endpoint_groups::EndpointGroup;
use weft_core::routes::RouteEntry;
use weft_services::services::{AppState, Services};

pub use finish::LOGIN_TOKEN_LIFETIME_MS;

/// The callback path, as Synapse's OpenID Connect callback.
pub const CALLBACK_PATH: &str = "/_synapse/client/oidc/callback";
const REDIRECT_PATHS: [&str; 2] = ["/_matrix/client/v3/login/sso/redirect", "/_matrix/client/r0/login/sso/redirect"];
const REDIRECT_IDP_PATHS: [&str; 3] = [
    "/_matrix/client/v3/login/sso/redirect/{idp_id}",
    "/_matrix/client/r0/login/sso/redirect/{idp_id}",
    "/_matrix/client/unstable/org.matrix.msc2858/login/sso/redirect/{idp_id}",
];
const FALLBACK_PATHS: [&str; 2] = ["/_matrix/client/v3/auth/{auth_type}/fallback/web", "/_matrix/client/r0/auth/{auth_type}/fallback/web"];
const PICKER_PATH: &str = "/_synapse/client/pick_username/account_details";
const CHECK_PATH: &str = "/_synapse/client/pick_username/check";
const REGISTER_PATH: &str = "/_synapse/client/sso_register";

/// Every SSO route with its method, for `route_list` (the router's table).
pub fn route_entries() -> Vec<RouteEntry> {
    let mut out = Vec::new();
    let mut add = |method: Method, path: &'static str| out.push(RouteEntry { method, path, group: EndpointGroup::Sso });
    for path in REDIRECT_PATHS.into_iter().chain(REDIRECT_IDP_PATHS) {
        add(Method::GET, path);
    }
    add(Method::GET, CALLBACK_PATH);
    add(Method::POST, CALLBACK_PATH);
    add(Method::GET, PICKER_PATH);
    add(Method::POST, PICKER_PATH);
    add(Method::GET, CHECK_PATH);
    add(Method::GET, REGISTER_PATH);
    for path in FALLBACK_PATHS {
        add(Method::GET, path);
    }
    out
}

/// The SSO routes of a listener serving the client API.
pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route(CALLBACK_PATH, get(redirect::callback_get).post(redirect::callback_post))
        .route(PICKER_PATH, get(picker::account_details).post(picker::submit))
        .route(CHECK_PATH, get(picker::check))
        .route(REGISTER_PATH, get(picker::register));
    for path in REDIRECT_PATHS {
        router = router.route(path, get(redirect::redirect));
    }
    for path in REDIRECT_IDP_PATHS {
        router = router.route(path, get(redirect::redirect_to_idp));
    }
    for path in FALLBACK_PATHS {
        router = router.route(path, get(reauth::fallback));
    }
    router.route_layer(axum::middleware::from_fn(record))
}

async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    weft_core::telemetry::record_request(EndpointGroup::Sso.as_str(), &method, response.status(), started.elapsed());
    response
}

/// `public_baseurl` with a trailing slash (Synapse's default `https://<server_name>/`).
pub fn public_baseurl(services: &Services) -> String {
    let base = services.config.public_baseurl.clone().unwrap_or_else(|| format!("https://{}/", services.server_name));
    if base.ends_with('/') { base } else { format!("{base}/") }
}

/// The absolute callback URL providers send the browser back to.
pub fn callback_url(services: &Services) -> String {
    format!("{}{}", public_baseurl(services), CALLBACK_PATH.trim_start_matches('/'))
}

/// Where a request on another host than `public_baseurl`'s should go
/// first, so that the session cookie is set on the host the callback
/// reaches (as Synapse does); `None` when it is on the right host.
fn on_public_host(services: &Services, headers: &HeaderMap, path_and_query: &str) -> Option<String> {
    let base = public_baseurl(services);
    let authority = base.parse::<http::Uri>().ok()?.authority()?.as_str().to_ascii_lowercase();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_ascii_lowercase);
    let default_port = |a: &str| a.strip_suffix(":443").or_else(|| a.strip_suffix(":80")).unwrap_or(a).to_owned();
    match host {
        Some(host) if default_port(&host) == default_port(&authority) => None,
        _ => Some(format!("{}{}", base.trim_end_matches('/'), path_and_query)),
    }
}

/// The query's parameters, in order.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// A 302 to `location`.
fn found(location: &str) -> Response {
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = http::StatusCode::FOUND;
    if let Ok(value) = http::HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    response
}

/// Whether a client's `redirectUrl` may receive a login token: anything but
/// a URL that would run or show content on this server's pages (`javascript:`,
/// `data:`, `vbscript:`, `file:`), whatever its case or leading blanks.
fn safe_client_redirect(url: &str) -> bool {
    let trimmed: String = url
        .trim_start_matches(|c: char| c.is_ascii_whitespace() || c.is_ascii_control())
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .take(16)
        .collect();
    let lowered = trimmed.to_ascii_lowercase();
    !["javascript:", "data:", "vbscript:", "file:"].iter().any(|scheme| lowered.starts_with(scheme))
}

#[cfg(test)]
mod tests {
    #[test]
    fn script_and_data_urls_get_no_login_token() {
        for refused in ["javascript:alert(1)", " JavaScript:x", "java\tscript:x", "data:text/html,x", "vbscript:x", "FILE:///etc/passwd"] {
            assert!(!super::safe_client_redirect(refused), "{refused}");
        }
        for allowed in ["https://client.example/app", "element://vector/webapp/", "http://localhost:8080/"] {
            assert!(super::safe_client_redirect(allowed), "{allowed}");
        }
    }
}
