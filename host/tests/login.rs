//! `/login` (flows and password login), `/logout`, `/logout/all`, and the
//! `rc_login` rate limits.

use http::StatusCode;
use serde_json::json;

use crate::{
    on_both_backends,
    support::{Backend, TestServer, errcode, login_body},
};

on_both_backends!(
    login_flows_offer_password,
    password_login_by_identifier_legacy_user_and_full_id,
    wrong_credentials_are_forbidden_and_create_nothing,
    login_reuses_a_given_device_id,
    unknown_login_types_are_refused,
    logout_invalidates_the_token_and_deletes_the_device,
    logout_all_invalidates_every_token,
    failed_logins_are_rate_limited,
    logins_per_address_are_rate_limited,
    wrong_passwords_do_not_spend_the_accounts_login_budget,
    successful_logins_per_account_are_rate_limited,
);

const LOGIN: &str = "/_matrix/client/v3/login";

async fn login_flows_offer_password(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server.get(LOGIN, None).await;
    assert_eq!(status, StatusCode::OK);
    // As Synapse, appservices' login type is always listed, last.
    assert_eq!(body["flows"], json!([{"type": "m.login.password"}, {"type": "m.login.application_service"}]));
}

async fn password_login_by_identifier_legacy_user_and_full_id(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.register("alice", "pw").await;
    let by_identifier = server.login("alice", "pw").await;
    assert_eq!(by_identifier.user_id, server.user_id("alice"));
    let (status, legacy) = server.post(LOGIN, None, json!({"type": "m.login.password", "user": "alice", "password": "pw"})).await;
    assert_eq!(status, StatusCode::OK, "{legacy}");
    let full = server.login(&server.user_id("Alice"), "pw").await;
    assert_eq!(full.user_id, server.user_id("alice"), "look-up ignores case");
    assert_eq!(legacy["home_server"], server.server_name);
    assert_ne!(by_identifier.access_token, full.access_token);
    assert_ne!(by_identifier.device_id, full.device_id);
}

async fn wrong_credentials_are_forbidden_and_create_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let user_id = ruma::UserId::parse(&alice.user_id).unwrap();
    for body in [login_body("alice", "wrong"), login_body("nobody", "pw"), login_body("@alice:elsewhere.org", "pw"), login_body("@not a user id", "pw")] {
        let (status, reply) = server.post(LOGIN, None, body.clone()).await;
        assert_eq!((status, errcode(&reply)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}: {reply}");
    }
    assert_eq!(server.state.storage.access_token_count(&user_id).await.unwrap(), 1);
    let (status, reply) = server.post(LOGIN, None, json!({"type": "m.login.password", "password": "pw"})).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"), "{reply}");
    let (status, reply) = server.post(LOGIN, None, json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}})).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"), "{reply}");
}

async fn login_reuses_a_given_device_id(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.register("alice", "pw").await;
    let mut body = login_body("alice", "pw");
    body["device_id"] = json!("LAPTOP");
    body["initial_device_display_name"] = json!("Work laptop");
    let (status, first) = server.post(LOGIN, None, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["device_id"], "LAPTOP");
    let (_, second) = server.post(LOGIN, None, body).await;
    assert_eq!(second["device_id"], "LAPTOP");
    let token = second["access_token"].as_str().unwrap();
    let (_, devices) = server.get("/_matrix/client/v3/devices", Some(token)).await;
    let laptops: Vec<_> = devices["devices"].as_array().unwrap().iter().filter(|d| d["device_id"] == "LAPTOP").collect();
    assert_eq!(laptops.len(), 1);
    assert_eq!(laptops[0]["display_name"], "Work laptop");
}

async fn unknown_login_types_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    for body in [json!({"type": "m.login.token", "token": "abc"}), json!({"type": "org.example.magic"})] {
        let (status, reply) = server.post(LOGIN, None, body.clone()).await;
        assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_UNKNOWN"), "{body}: {reply}");
    }
    for body in [json!({}), json!({"identifier": {"type": "m.id.user", "user": "a"}, "password": "pw"})] {
        let (status, reply) = server.post(LOGIN, None, body.clone()).await;
        assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_BAD_JSON"), "{body}: {reply}");
    }
    let (status, _) = server.post(LOGIN, None, json!({"type": 5})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn logout_invalidates_the_token_and_deletes_the_device(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = server.register("alice", "pw").await;
    let second = server.login("alice", "pw").await;
    let (status, _) = server.post("/_matrix/client/v3/logout", Some(&first.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.get("/_matrix/client/v3/account/whoami", Some(&first.access_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN"));
    assert_eq!(body["soft_logout"], false);
    let (_, devices) = server.get("/_matrix/client/v3/devices", Some(&second.access_token)).await;
    let ids: Vec<_> = devices["devices"].as_array().unwrap().iter().map(|d| d["device_id"].clone()).collect();
    assert_eq!(ids, vec![json!(second.device_id)]);
    let (status, _) = server.post("/_matrix/client/v3/logout", Some(&first.access_token), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a token is not reusable after logout");
}

async fn logout_all_invalidates_every_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = server.register("alice", "pw").await;
    let second = server.login("alice", "pw").await;
    let (status, _) = server.post("/_matrix/client/v3/logout/all", Some(&second.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    for token in [&first.access_token, &second.access_token] {
        let (status, body) = server.get("/_matrix/client/v3/account/whoami", Some(token)).await;
        assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN"));
    }
    let user_id = ruma::UserId::parse(&first.user_id).unwrap();
    assert!(server.state.storage.devices(&user_id).await.unwrap().is_empty());
}

async fn failed_logins_are_rate_limited(backend: Backend) {
    let server = TestServer::builder(backend).config("[rc_login.failed_attempts]\nper_second = 0.1\nburst_count = 2").start().await;
    server.register("alice", "pw").await;
    for _ in 0..2 {
        let (status, _) = server.post(LOGIN, None, login_body("alice", "wrong")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // Now even the right password waits: the account's failure budget is spent.
    let (status, body) = server.post(LOGIN, None, login_body("alice", "pw")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED"), "{body}");
    let retry = body["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(retry > 0 && retry <= 10_000, "{retry}");
    // Another account is unaffected.
    server.register("bob", "pw").await;
    server.login("bob", "pw").await;
}

async fn logins_per_address_are_rate_limited(backend: Backend) {
    let server = TestServer::builder(backend).config("[rc_login.address]\nper_second = 0.01\nburst_count = 3").start().await;
    server.register("alice", "pw").await;
    for _ in 0..3 {
        server.login("alice", "pw").await;
    }
    let (status, body) = server.post(LOGIN, None, login_body("alice", "pw")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED"));
    assert!(body["retry_after_ms"].as_u64().unwrap() > 0);
}

/// `rc_login.account` at its default counts successful logins only: a flood
/// of wrong passwords (from any number of addresses) leaves the right one
/// working while `rc_login.failed_attempts` allows it.
async fn wrong_passwords_do_not_spend_the_accounts_login_budget(backend: Backend) {
    let server = TestServer::builder(backend).config("[rc_login.account]\nper_second = 0.003\nburst_count = 5").start().await;
    server.register("alice", "pw").await;
    for _ in 0..25 {
        let attempts = (0..8).map(|_| server.post(LOGIN, None, login_body("alice", "wrong")));
        for (status, body) in futures_util::future::join_all(attempts).await {
            assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
        }
    }
    let (status, body) = server.post(LOGIN, None, login_body("alice", "pw")).await;
    assert_eq!(status, StatusCode::OK, "200 wrong attempts do not lock the account out: {body}");
}

/// As Synapse: `rc_login.account` is checked once the password is right, so
/// past it the right password waits and a wrong one is still just wrong.
async fn successful_logins_per_account_are_rate_limited(backend: Backend) {
    let server = TestServer::builder(backend).config("[rc_login.account]\nper_second = 0.01\nburst_count = 3").start().await;
    server.register("alice", "pw").await;
    for _ in 0..3 {
        server.login("Alice", "pw").await;
    }
    let (status, body) = server.post(LOGIN, None, login_body(&server.user_id("alice"), "pw")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED"), "however the user is named: {body}");
    assert!(body["retry_after_ms"].as_u64().unwrap() > 0);
    let (status, body) = server.post(LOGIN, None, login_body("alice", "wrong")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
    server.register("bob", "pw").await;
    server.login("bob", "pw").await;
}
