//! After the provider said who logged in: the Matrix user (a returning
//! user by provider and subject; a new one registered from the plugin's
//! localpart or sent to the username picker), then a single-use login token
//! (two minutes) and the browser back to the client's `redirectUrl`: at
//! once when it starts with an entry of `sso.client_whitelist`, else after a
//! "Continue to your account" page naming the target.

use axum::response::Response;
use http::StatusCode;
use ruma::{OwnedUserId, UserId};

use weft_core::crypto::token;
use weft_services::plugins::spam::{RegistrationVerdict, RequestInfo};
use weft_services::plugins::sso::{SsoProvider, UserAttributes};
use weft_services::services::Services;
use weft_storage::{NewUser, StorageError, User, UsernameSession};

use super::{cookies, found, pages};

/// How long a login token may wait to be exchanged, as Synapse's.
pub const LOGIN_TOKEN_LIFETIME_MS: i64 = 2 * 60 * 1000;
const USERNAME_SESSION_LIFETIME_MS: i64 = cookies::USERNAME_MAPPING_MAX_AGE_SECS * 1000;
/// How many numbered alternatives of a taken localpart are tried.
const MAX_SUFFIX: u32 = 1000;

fn server_error(services: &Services, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "an SSO login failed on the server's side");
    pages::error(services, StatusCode::INTERNAL_SERVER_ERROR, "server_error", "The login could not be completed. Try again later.")
}

/// `user` logged in at `provider`: on to the client, the picker, or a refusal page.
pub(super) async fn logged_in(services: &Services, provider: &SsoProvider, client_redirect: &str, user: UserAttributes) -> Response {
    let idp = provider.info.id.as_str();
    match services.storage.user_by_external_id(idp, &user.subject).await {
        Ok(Some(account)) => return account_to_client(services, &account, idp, client_redirect, false).await,
        Ok(None) => {}
        Err(error) => return server_error(services, &error),
    }
    // An existing, unmapped account by the suggested name (Synapse's `allow_existing_users`).
    if provider.info.allow_existing_users
        && !user.confirm_localpart
        && let Some(user_id) = user.localpart.as_deref().and_then(|l| UserId::parse_with_server_name(l, &services.server_name).ok())
    {
        match services.storage.user(&user_id).await {
            Ok(Some(_)) => {
                return match services.storage.add_external_id(idp, &user.subject, &user_id).await {
                    Ok(()) => to_client(services, &user_id, idp, client_redirect, false).await,
                    Err(error) => server_error(services, &error),
                };
            }
            Ok(None) => {}
            Err(error) => return server_error(services, &error),
        }
    }
    match (user.localpart.as_deref(), user.confirm_localpart) {
        (Some(localpart), false) => {
            let Some(user_id) = free_user_id(services, localpart).await else {
                return pages::error(services, StatusCode::BAD_REQUEST, "invalid_localpart", "No username could be made for this account.");
            };
            match register(services, &user_id, user.display_name.as_deref(), idp, &user.subject).await {
                Ok(()) => to_client(services, &user_id, idp, client_redirect, true).await,
                Err(response) => response,
            }
        }
        _ => to_picker(services, idp, client_redirect, user).await,
    }
}

/// A new user picks a username: a session in the database and its cookie.
async fn to_picker(services: &Services, idp: &str, client_redirect: &str, user: UserAttributes) -> Response {
    let session = UsernameSession {
        session_id: token::random_string(32),
        idp_id: idp.to_owned(),
        subject: user.subject,
        suggested_localpart: user.localpart,
        display_name: user.display_name,
        emails: user.emails,
        client_redirect_url: client_redirect.to_owned(),
        chosen_localpart: None,
        use_display_name: false,
        expires_ts: weft_storage::now_ms() + USERNAME_SESSION_LIFETIME_MS,
    };
    if let Err(error) = services.storage.add_username_session(&session).await {
        return server_error(services, &error);
    }
    let mut response = found(super::PICKER_PATH);
    cookies::set_username_mapping(response.headers_mut(), &session.session_id);
    response
}

/// `localpart`, or the first of `localpart1`, `localpart2`, ... that is
/// free; `None` when it is not a valid localpart or none is free.
pub(super) async fn free_user_id(services: &Services, localpart: &str) -> Option<OwnedUserId> {
    for n in 0..=MAX_SUFFIX {
        let candidate = if n == 0 { localpart.to_owned() } else { format!("{localpart}{n}") };
        let user_id = crate::client::validate_new_localpart(services, &candidate).ok()?;
        if !services.storage.user_id_taken(&user_id).await.ok()? {
            return Some(user_id);
        }
    }
    None
}

/// Registers `user_id` for the provider's `subject`: the account, its
/// display name and the mapping at once. A spam checker may refuse.
pub(super) async fn register(services: &Services, user_id: &UserId, display_name: Option<&str>, idp: &str, subject: &str) -> Result<(), Response> {
    let shadow_banned = match services.spam_checker.check_registration_for_spam(None, Some(user_id.localpart()), &[] as &[RequestInfo], Some(idp)).await {
        RegistrationVerdict::Allow => false,
        RegistrationVerdict::ShadowBan => true,
        RegistrationVerdict::Deny => {
            return Err(pages::error(services, StatusCode::FORBIDDEN, "registration_denied", "Registration of this account was refused."));
        }
    };
    let user = NewUser { user_id, password_hash: None, admin: false, shadow_banned, user_type: None };
    match services.storage.register_sso_user(user, display_name.filter(|name| !name.trim().is_empty()), idp, subject).await {
        Ok(()) => {
            tracing::info!(user_id = %user_id, idp, "registered a new user by SSO");
            Ok(())
        }
        Err(StorageError::Conflict) => {
            Err(pages::error(services, StatusCode::CONFLICT, "user_in_use", "This username was taken meanwhile, or this account is already registered."))
        }
        Err(error) => Err(server_error(services, &error)),
    }
}

/// A login token for `user_id` (only its SHA-256 stored, as access tokens),
/// and the browser on to the client.
pub(super) async fn to_client(services: &Services, user_id: &UserId, idp: &str, client_redirect: &str, new_user: bool) -> Response {
    match services.storage.user(user_id).await {
        Ok(Some(account)) => account_to_client(services, &account, idp, client_redirect, new_user).await,
        Ok(None) => pages::error(services, StatusCode::FORBIDDEN, "unknown_user", "This account no longer exists."),
        Err(error) => server_error(services, &error),
    }
}

/// `to_client` with the account already read.
async fn account_to_client(services: &Services, account: &User, idp: &str, client_redirect: &str, new_user: bool) -> Response {
    if !super::safe_client_redirect(client_redirect) {
        return pages::error(services, StatusCode::BAD_REQUEST, "invalid_redirect", "This client's address cannot be returned to.");
    }
    if account.deactivated {
        return pages::html(StatusCode::FORBIDDEN, pages::render(services, "sso_account_deactivated.html", serde_json::json!({})));
    }
    let user_id = &account.user_id;
    let login_token = token::random_string(32);
    let expires = weft_storage::now_ms() + LOGIN_TOKEN_LIFETIME_MS;
    if let Err(error) = services.storage.add_login_token(&token::hash_access_token(&login_token), user_id, Some(idp), expires).await {
        return server_error(services, &error);
    }
    let target = with_login_token(client_redirect, &login_token);
    if services.config.sso.client_whitelist.iter().any(|allowed| client_redirect.starts_with(allowed.as_str())) {
        return found(&target);
    }
    let display_name = services.storage.profile(user_id).await.ok().and_then(|p| p.get("displayname").and_then(|v| v.as_str()).map(str::to_owned));
    let page = pages::render(
        services,
        "sso_redirect_confirm.html",
        serde_json::json!({
            "redirect_url": target,
            "display_url": display_url(client_redirect),
            "user_id": user_id,
            "new_user": new_user,
            "user_profile": {"display_name": display_name},
        }),
    );
    pages::html(StatusCode::OK, page)
}

/// `url` with `loginToken` added to its query.
fn with_login_token(url: &str, login_token: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.query_pairs_mut().append_pair("loginToken", login_token);
            parsed.to_string()
        }
        Err(_) => {
            let separator = if url.contains('?') { '&' } else { '?' };
            format!("{url}{separator}loginToken={login_token}")
        }
    }
}

/// The target as shown to the user: without query and fragment.
fn display_url(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_login_token_joins_the_query() {
        assert_eq!(super::with_login_token("https://client.example/app?x=1#f", "t"), "https://client.example/app?x=1&loginToken=t#f");
        assert_eq!(super::with_login_token("element://vector/webapp/", "t"), "element://vector/webapp/?loginToken=t");
        assert_eq!(super::display_url("https://client.example/app?x=1#f"), "https://client.example/app");
    }
}
