//! The call sites that exist today, through a real server: registration
//! (`check-registration-for-spam`: deny is a 429 as in Synapse, shadow-ban
//! registers a shadow-banned user) and login (`check-login-for-spam`: 403
//! with the plugin's errcode and fields), media uploads
//! (`check-media-file-for-spam`), the chain order, and failure.

use http::StatusCode;
use serde_json::json;

use crate::{
    on_both_backends,
    support::{Backend, TestServer, errcode, login_body},
};

use super::guest;

on_both_backends!(
    registration_deny_is_a_rate_limit_and_creates_nothing,
    registration_shadow_ban_registers_a_shadow_banned_user,
    login_rejection_carries_the_plugins_errcode_and_fields,
    spam_rules_blocks_usernames_end_to_end,
    spam_rules_refuses_uploads_by_type_and_size_and_keeps_nothing,
    the_first_checker_that_does_not_allow_wins,
    a_failing_checker_refuses_without_a_server_error,
);

const REGISTER: &str = "/_matrix/client/v3/register";
const LOGIN: &str = "/_matrix/client/v3/login";

fn misbehave(name: &str, settings: &str) -> String {
    format!("[[plugins]]\nname = \"{name}\"\npath = {:?}\n[plugins.config]\n{settings}\n", guest("misbehave").display().to_string())
}

fn spam_rules(settings: &str) -> String {
    format!("[[plugins]]\nname = \"rules\"\npath = {:?}\n[plugins.config]\n{settings}\n", guest("spam_rules").display().to_string())
}

async fn register(server: &TestServer, name: &str) -> (StatusCode, serde_json::Value) {
    server.post(REGISTER, None, json!({"username": name, "password": "pw", "auth": {"type": "m.login.dummy"}})).await
}

async fn registration_deny_is_a_rate_limit_and_creates_nothing(backend: Backend) {
    let server = TestServer::builder(backend).config(&misbehave("deny", "registration = \"deny\"")).start().await;
    let (status, body) = register(&server, "mallory").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(errcode(&body), "M_LIMIT_EXCEEDED");
    assert!(!server.state.storage.user_id_taken(&server.uid("mallory")).await.unwrap());
}

async fn registration_shadow_ban_registers_a_shadow_banned_user(backend: Backend) {
    let server = TestServer::builder(backend).config(&misbehave("shadow", "registration = \"shadow-ban\"")).start().await;
    let (status, body) = register(&server, "eve").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let user = server.state.storage.user(&server.uid("eve")).await.unwrap().expect("registered");
    assert!(user.shadow_banned);
}

async fn login_rejection_carries_the_plugins_errcode_and_fields(backend: Backend) {
    let server = TestServer::builder(backend).config(&misbehave("nologin", "mode = \"reject\"")).start().await;
    // Registration asks `check-registration-for-spam`, which allows here.
    let (status, _) = register(&server, "bob").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.post(LOGIN, None, login_body("bob", "pw")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(errcode(&body), "M_FORBIDDEN");
    assert_eq!(body["error"], "misbehave says no");
    assert_eq!(body["misbehave"], json!({"mode": "reject"}));
    // No device was created.
    let devices = server.state.storage.devices(&server.uid("bob")).await.unwrap();
    assert_eq!(devices.len(), 1, "only the device registration created");
}

async fn spam_rules_blocks_usernames_end_to_end(backend: Backend) {
    let server = TestServer::builder(backend).config(&spam_rules("username_patterns = [\"^admin\"]")).start().await;
    let (status, _) = register(&server, "administrator").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "a username pattern denies registration");
    let (status, _) = register(&server, "dave").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.post(LOGIN, None, login_body("dave", "pw")).await.0, StatusCode::OK);
}

async fn spam_rules_refuses_uploads_by_type_and_size_and_keeps_nothing(backend: Backend) {
    let settings = "media_allowed_types = [\"image/*\"]\nmedia_max_bytes = 100";
    let server = TestServer::builder(backend).config(&spam_rules(settings)).start().await;
    let token = server.register("ann", "pw").await.access_token;
    let upload = |content_type: &'static str, bytes: Vec<u8>| {
        server.send(server.raw(http::Method::POST, "/_matrix/media/v3/upload").bearer_auth(&token).header("content-type", content_type).body(bytes))
    };
    let (status, body) = upload("text/html", b"<p>hi</p>".to_vec()).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
    let (status, body) = upload("image/png", vec![0u8; 101]).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_TOO_LARGE"), "{body}");
    assert_eq!(body["max_bytes"], 100, "the plugin's fields reach the client");
    let store = server.db.dir().join("media_store");
    assert_eq!(std::fs::read_dir(store.join("local_content")).unwrap().count(), 0, "refused files are not kept");
    assert_eq!(std::fs::read_dir(store.join("tmp")).unwrap().count(), 0);
    let (status, body) = upload("image/png", vec![0u8; 100]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn the_first_checker_that_does_not_allow_wins(backend: Backend) {
    let config =
        format!("{}{}", spam_rules("username_patterns = [\"^zed\"]\nregistration_action = \"shadow-ban\""), misbehave("second", "registration = \"deny\""));
    let server = TestServer::builder(backend).config(&config).start().await;
    // spam-rules shadow-bans `zed...` first: the second checker is not asked.
    let (status, body) = register(&server, "zed1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(server.state.storage.user(&server.uid("zed1")).await.unwrap().unwrap().shadow_banned);
    // spam-rules allows anyone else: the second checker denies.
    let (status, _) = register(&server, "amy").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

async fn a_failing_checker_refuses_without_a_server_error(backend: Backend) {
    let server = TestServer::builder(backend).config(&misbehave("broken", "mode = \"panic\"")).start().await;
    // Registration fails closed: denied (429), never a 500.
    let (status, _) = register(&server, "frank").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

/// A plugin's own errcode and fields reach the client as they are; its fields
/// cannot overwrite `errcode` or `error`.
#[tokio::test]
async fn rejections_keep_custom_errcodes_and_fields() {
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    use weft::{api::error::ApiError, plugins::spam::Rejection};

    let mut fields = serde_json::Map::new();
    fields.insert("org.example.score".into(), json!(0.97));
    let rejection = Rejection { errcode: "ORG_EXAMPLE_SPAM".into(), message: None, fields };
    let response = ApiError::spam_rejected(rejection, "This message had been rejected as probable spam").into_response();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body, json!({"errcode": "ORG_EXAMPLE_SPAM", "error": "This message had been rejected as probable spam", "org.example.score": 0.97}));
}
