//! `/account/whoami`, `/account/password`, `/account/deactivate`,
//! `/account/3pid`, `/thirdparty/protocols`, OpenID tokens, and how access
//! tokens are presented.

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::{Backend, TestServer, errcode, login_body},
};

on_both_backends!(
    tokens_in_header_or_query,
    missing_and_unknown_tokens,
    password_change_needs_the_current_password,
    password_change_can_keep_other_devices,
    deactivation_needs_the_password_and_ends_every_session,
    a_uia_session_is_bound_to_its_request,
    an_empty_new_password_is_refused,
    third_party_identifiers_are_an_empty_list,
    openid_tokens_prove_who_a_user_is,
);

const WHOAMI: &str = "/_matrix/client/v3/account/whoami";
const PASSWORD: &str = "/_matrix/client/v3/account/password";
const DEACTIVATE: &str = "/_matrix/client/v3/account/deactivate";

fn password_auth(user: &str, password: &str, session: Option<&str>) -> Value {
    let mut auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password});
    if let Some(session) = session {
        auth["session"] = json!(session);
    }
    auth
}

async fn tokens_in_header_or_query(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let (status, body) = server.get(WHOAMI, Some(&alice.access_token)).await;
    assert_eq!((status, body["user_id"].clone()), (StatusCode::OK, json!(alice.user_id)));
    let (status, body) = server.get(&format!("{WHOAMI}?access_token={}", alice.access_token), None).await;
    assert_eq!((status, body["user_id"].clone()), (StatusCode::OK, json!(alice.user_id)));
    let (status, body) = server.get(&format!("{WHOAMI}?access_token={}", alice.access_token), Some(&alice.access_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"), "both at once is refused");
}

async fn missing_and_unknown_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server.get(WHOAMI, None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"));
    let (status, body) = server.get(WHOAMI, Some("wft_not_a_token")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN"));
    assert_eq!(body["soft_logout"], false);
    let (status, body) = server.send(server.raw(http::Method::GET, WHOAMI).header("Authorization", "Basic abc")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"));
}

async fn password_change_needs_the_current_password(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "old").await;
    let other = server.login("alice", "old").await;

    let (status, body) = server.post(PASSWORD, Some(&alice.access_token), json!({"new_password": "new"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["flows"], json!([{"stages": ["m.login.password"]}]));
    let session = body["session"].as_str().unwrap().to_owned();

    let (status, body) =
        server.post(PASSWORD, Some(&alice.access_token), json!({"new_password": "new", "auth": password_auth("alice", "wrong", Some(&session))})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_FORBIDDEN"), "{body}");
    assert_eq!(body["session"], json!(session), "the session survives a wrong password");
    server.login("alice", "old").await;
    let (status, body) = server.post(PASSWORD, Some(&alice.access_token), json!({"new_password": "new", "auth": {"session": session}})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "only the session: how far it has got");
    assert!(body.get("errcode").is_none() && body["session"] == json!(session) && body["flows"].is_array(), "{body}");

    let (status, body) =
        server.post(PASSWORD, Some(&alice.access_token), json!({"new_password": "new", "auth": password_auth(&alice.user_id, "old", Some(&session))})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = server.post("/_matrix/client/v3/login", None, login_body("alice", "old")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    server.login("alice", "new").await;
    // Other devices are logged out by default; the one that asked stays.
    assert_eq!(server.get(WHOAMI, Some(&alice.access_token)).await.0, StatusCode::OK);
    assert_eq!(server.get(WHOAMI, Some(&other.access_token)).await.0, StatusCode::UNAUTHORIZED);

    let (status, body) = server.post(PASSWORD, Some(&alice.access_token), json!({"new_password": "x", "auth": password_auth("bob", "new", None)})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "proving another user is refused: {body}");
}

async fn password_change_can_keep_other_devices(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "old").await;
    let other = server.login("alice", "old").await;
    let (status, body) = server
        .post(PASSWORD, Some(&alice.access_token), json!({"new_password": "new", "logout_devices": false, "auth": password_auth("alice", "old", None)}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.get(WHOAMI, Some(&other.access_token)).await.0, StatusCode::OK);
}

async fn deactivation_needs_the_password_and_ends_every_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let create = |body: Value| server.post("/_matrix/client/v3/createRoom", Some(&bob.access_token), body);
    let joined = create(json!({"preset": "public_chat"})).await.1["room_id"].as_str().unwrap().to_owned();
    let invited = create(json!({"invite": [alice.user_id]})).await.1["room_id"].as_str().unwrap().to_owned();
    let (status, _) = server.post(&format!("/_matrix/client/v3/join/{joined}"), Some(&alice.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.post(DEACTIVATE, Some(&alice.access_token), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = server.post(DEACTIVATE, Some(&alice.access_token), json!({"auth": password_auth("alice", "wrong", None)})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_FORBIDDEN"));
    assert_eq!(server.get(WHOAMI, Some(&alice.access_token)).await.0, StatusCode::OK, "nothing happened");

    let (status, body) = server.post(DEACTIVATE, Some(&alice.access_token), json!({"auth": password_auth("alice", "pw", None)})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id_server_unbind_result"], "success", "no identifier was bound, so none failed to unbind");
    // Alice left the room she was in and rejected her invite, as Synapse does.
    for room in [&joined, &invited] {
        let (_, member) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", alice.user_id), Some(&bob.access_token)).await;
        assert_eq!(member["membership"], "leave", "{room}: {member}");
    }
    let (status, body) = server.get(WHOAMI, Some(&alice.access_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN"));
    let (status, body) = server.post("/_matrix/client/v3/login", None, login_body("alice", "pw")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_USER_DEACTIVATED"));
    let (status, body) =
        server.post("/_matrix/client/v3/register", None, json!({"username": "alice", "password": "pw", "auth": {"type": "m.login.dummy"}})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_USER_IN_USE"), "the id is never reused");
}

async fn a_uia_session_is_bound_to_its_request(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let (_, body) = server.post("/_matrix/client/v3/delete_devices", Some(&alice.access_token), json!({"devices": []})).await;
    let session = body["session"].as_str().unwrap().to_owned();
    let (status, body) = server.post(DEACTIVATE, Some(&alice.access_token), json!({"auth": password_auth("alice", "pw", Some(&session))})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
    assert_eq!(server.get(WHOAMI, Some(&alice.access_token)).await.0, StatusCode::OK, "not deactivated");
    // Nor for another user's request.
    let bob = server.register("bob", "pw").await;
    let (status, _) = server
        .post("/_matrix/client/v3/delete_devices", Some(&bob.access_token), json!({"devices": [], "auth": password_auth("bob", "pw", Some(&session))}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn an_empty_new_password_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let (status, body) = server.post(PASSWORD, Some(&alice.access_token), json!({"new_password": ""})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the flows first: {body}");
    let (status, body) = server.post(PASSWORD, Some(&alice.access_token), json!({"new_password": "", "auth": password_auth("alice", "pw", None)})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"), "{body}");
    server.login("alice", "pw").await;
    let (status, body) = server.post("/_matrix/client/v3/login", None, login_body("alice", "")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
}

/// Weft keeps no third-party identifiers, and bridges none: both lists are
/// empty rather than missing (Element's settings and room directory ask).
/// Third-party identifiers and bridges, none of which Weft has yet; refresh
/// tokens, which it does not issue; and device names past Synapse's limit.
async fn third_party_identifiers_are_an_empty_list(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let (status, body) = server.get("/_matrix/client/v3/account/3pid", Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK);
    // ruma leaves out an empty list, which clients read as one.
    assert_eq!(body, json!({"threepids": []}), "the list is there, empty, as Synapse sends it");
    let (status, body) = server.get("/_matrix/client/v3/account/3pid", None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"));
    let (status, body) = server.get("/_matrix/client/v3/thirdparty/protocols", Some(&alice.access_token)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let t = Some(alice.access_token.as_str());
    for path in
        ["/_matrix/client/v3/thirdparty/location/irc", "/_matrix/client/v3/thirdparty/user/irc", "/_matrix/client/v3/thirdparty/location?alias=%23a:b.c"]
    {
        let (status, body) = server.get(path, t).await;
        assert_eq!((status, body), (StatusCode::OK, json!([])), "{path}");
    }
    let (status, body) = server.get("/_matrix/client/v3/thirdparty/protocol/irc", t).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    for path in ["/_matrix/client/v3/account/3pid/delete", "/_matrix/client/v3/account/3pid/unbind"] {
        let (status, body) = server.post(path, t, json!({"medium": "email", "address": "a@example.org"})).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"id_server_unbind_result": "no-support"})), "{path}");
    }
    let (status, body) = server.get("/_matrix/client/v1/register/m.login.registration_token/validity?token=abc", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"valid": false})));
    let (status, body) = server.post("/_matrix/client/v3/refresh", None, json!({"refresh_token": "nope"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN"), "no refresh tokens are issued: {body}");
    let (status, body) = server.put(&format!("/_matrix/client/v3/devices/{}", alice.device_id), t, json!({"display_name": "x".repeat(101)})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_TOO_LARGE"), "{body}");
}

/// A third party checks an OpenID token over the federation API.
async fn openid_tokens_prove_who_a_user_is(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let path = format!("/_matrix/client/v3/user/{}/openid/request_token", alice.user_id);
    let (status, body) = server.post(&path, Some(&bob.access_token), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "only for oneself: {body}");
    let (status, body) = server.post(&path, Some(&alice.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["matrix_server_name"], json!(server.server_name));
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap();

    let (status, info) = server.get(&format!("/_matrix/federation/v1/openid/userinfo?access_token={token}"), None).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info, json!({"sub": alice.user_id}));
    let (status, info) = server.get("/_matrix/federation/v1/openid/userinfo?access_token=nope", None).await;
    assert_eq!((status, errcode(&info)), (StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN"), "{info}");
    let (status, _) = server.get(&format!("/_matrix/federation/v1/openid/userinfo?access_token={}", alice.access_token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an access token is not an OpenID token");
}
