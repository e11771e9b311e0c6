//! The SSO cookies, named and scoped as Synapse's: `oidc_session` and
//! `oidc_session_no_samesite` (the login attempt's state, for the callback,
//! an hour), and `username_mapping_session` (a new user's username session,
//! fifteen minutes). Always `HttpOnly` and `Secure`.

use http::{HeaderMap, HeaderValue, header};

pub const SESSION: &str = "oidc_session";
/// The same cookie without `SameSite`, for browsers that mishandle `SameSite=None`.
pub const SESSION_NO_SAMESITE: &str = "oidc_session_no_samesite";
pub const SESSION_PATH: &str = "/_synapse/client/oidc";
pub const SESSION_MAX_AGE_SECS: i64 = 3600;
pub const USERNAME_MAPPING: &str = "username_mapping_session";
pub const USERNAME_MAPPING_PATH: &str = "/_synapse/client/";
pub const USERNAME_MAPPING_MAX_AGE_SECS: i64 = 15 * 60;

/// The value of cookie `name` in the request, if any.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"').to_owned())
        .filter(|value| !value.is_empty())
}

/// The state cookie of a login attempt: both of Synapse's cookies.
pub fn set_session(headers: &mut HeaderMap, state: &str) {
    append(headers, format!("{SESSION}={state}; Path={SESSION_PATH}; Max-Age={SESSION_MAX_AGE_SECS}; HttpOnly; Secure; SameSite=None"));
    append(headers, format!("{SESSION_NO_SAMESITE}={state}; Path={SESSION_PATH}; Max-Age={SESSION_MAX_AGE_SECS}; HttpOnly; Secure"));
}

/// Clears the state cookies (at every callback, as Synapse).
pub fn clear_session(headers: &mut HeaderMap) {
    for name in [SESSION, SESSION_NO_SAMESITE] {
        append(headers, format!("{name}=; Path={SESSION_PATH}; Max-Age=0; HttpOnly; Secure"));
    }
}

/// The state cookie of the request: `oidc_session`, else the one without `SameSite`.
pub fn session(headers: &HeaderMap) -> Option<String> {
    get(headers, SESSION).or_else(|| get(headers, SESSION_NO_SAMESITE))
}

pub fn set_username_mapping(headers: &mut HeaderMap, session_id: &str) {
    append(
        headers,
        format!("{USERNAME_MAPPING}={session_id}; Path={USERNAME_MAPPING_PATH}; Max-Age={USERNAME_MAPPING_MAX_AGE_SECS}; HttpOnly; Secure; SameSite=Lax"),
    );
}

pub fn clear_username_mapping(headers: &mut HeaderMap) {
    append(headers, format!("{USERNAME_MAPPING}=; Path={USERNAME_MAPPING_PATH}; Max-Age=0; HttpOnly; Secure; SameSite=Lax"));
}

fn append(headers: &mut HeaderMap, cookie: String) {
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.append(header::SET_COOKIE, value);
    }
}
