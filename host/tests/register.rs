//! `/register`, `/register/available` and shared-secret registration.

use http::StatusCode;
use serde_json::json;

use crate::{
    on_both_backends,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(
    registration_walks_the_dummy_flow,
    inhibit_login_registers_without_a_device,
    device_id_and_initial_display_name_are_kept,
    user_names_are_lower_cased_and_checked,
    taken_user_names_are_refused,
    bad_input_writes_nothing,
    registration_can_be_disabled,
    guests_are_refused,
    username_availability,
    a_registration_session_is_single_use,
    shared_secret_registration,
    registration_without_a_user_name_generates_one,
    a_first_call_without_auth_gets_the_flows_whatever_it_lacks,
    an_empty_password_is_no_password,
    a_session_keeps_what_the_first_request_asked_for,
);

const REGISTER: &str = "/_matrix/client/v3/register";

async fn registration_walks_the_dummy_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server.post(REGISTER, None, json!({"username": "alice", "password": "secret"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["flows"], json!([{"stages": ["m.login.dummy"]}]));
    assert_eq!(body["params"], json!({}));
    let session = body["session"].as_str().expect("session").to_owned();
    assert!(server.state.storage.user(&server.uid("alice")).await.unwrap().is_none(), "nothing written before auth");

    let (status, body) =
        server.post(REGISTER, None, json!({"username": "alice", "password": "secret", "auth": {"type": "m.login.dummy", "session": session}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], server.user_id("alice"));
    let token = body["access_token"].as_str().unwrap();
    let (status, whoami) = server.get("/_matrix/client/v3/account/whoami", Some(token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(whoami["user_id"], server.user_id("alice"));
    assert_eq!(whoami["device_id"], body["device_id"]);
    // The r0 path is the same endpoint.
    let (status, _) = server.get("/_matrix/client/r0/account/whoami", Some(token)).await;
    assert_eq!(status, StatusCode::OK);
}

async fn inhibit_login_registers_without_a_device(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) =
        server.post(REGISTER, None, json!({"username": "bob", "password": "pw", "inhibit_login": true, "auth": {"type": "m.login.dummy"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], server.user_id("bob"));
    assert!(body.get("access_token").is_none(), "{body}");
    assert!(body["device_id"].is_null(), "{body}");
    let user_id = server.uid("bob");
    assert!(server.state.storage.devices(&user_id).await.unwrap().is_empty());
    server.login("bob", "pw").await;
}

async fn device_id_and_initial_display_name_are_kept(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server
        .post(
            REGISTER,
            None,
            json!({"username": "carol", "password": "pw", "device_id": "MYPHONE", "initial_device_display_name": "Carol's phone",
                   "auth": {"type": "m.login.dummy"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["device_id"], "MYPHONE");
    let token = body["access_token"].as_str().unwrap();
    let (_, device) = server.get("/_matrix/client/v3/devices/MYPHONE", Some(token)).await;
    assert_eq!(device["display_name"], "Carol's phone");
}

async fn user_names_are_lower_cased_and_checked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let session = server.register("Dave", "pw").await;
    assert_eq!(session.user_id, server.user_id("dave"));
    for (name, needle) in [
        ("bad name", "can only contain"),
        ("émile", "can only contain"),
        ("_reserved", "may not begin with _"),
        ("12345", "Numeric"),
        (&"x".repeat(260), "longer than 255"),
    ] {
        let (status, body) = server.post(REGISTER, None, json!({"username": name, "password": "pw", "auth": {"type": "m.login.dummy"}})).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_USERNAME"), "{name}: {body}");
        assert!(body["error"].as_str().unwrap().contains(needle), "{name}: {body}");
    }
}

async fn taken_user_names_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.register("erin", "pw").await;
    for name in ["erin", "ERIN"] {
        // Refused before any auth is asked for, as in Synapse.
        let (status, body) = server.post(REGISTER, None, json!({"username": name, "password": "pw"})).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_USER_IN_USE"), "{body}");
    }
}

async fn bad_input_writes_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let cases = [
        (json!({"username": 5, "password": "pw", "auth": {"type": "m.login.dummy"}}), "M_BAD_JSON"),
        (json!({"username": "frank", "password": ["pw"], "auth": {"type": "m.login.dummy"}}), "M_BAD_JSON"),
        (json!({"username": "frank", "auth": {"type": "m.login.dummy"}}), "M_MISSING_PARAM"),
        (json!({"username": "frank", "password": "x".repeat(513), "auth": {"type": "m.login.dummy"}}), "M_INVALID_PARAM"),
        (json!({"username": "frank", "password": "pw", "device_id": 7, "auth": {"type": "m.login.dummy"}}), "M_BAD_JSON"),
    ];
    for (body, expected) in cases {
        let (status, reply) = server.post(REGISTER, None, body.clone()).await;
        assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, expected), "{body}: {reply}");
    }
    let (status, reply) = server.send(server.raw(http::Method::POST, REGISTER).body("{\"username\": \"frank\",")).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_NOT_JSON"));
    assert!(!server.state.storage.user_id_taken(&server.uid("frank")).await.unwrap());
}

async fn registration_can_be_disabled(backend: Backend) {
    let server = TestServer::builder(backend).config("enable_registration = false").start().await;
    let (status, body) = server.post(REGISTER, None, json!({"username": "gina", "password": "pw", "auth": {"type": "m.login.dummy"}})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"));
    let (status, body) = server.get("/_matrix/client/v3/register/available?username=gina", None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"));
    assert!(!server.state.storage.user_id_taken(&server.uid("gina")).await.unwrap());
}

async fn guests_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server.post(&format!("{REGISTER}?kind=guest"), None, json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN"));
    let (status, body) = server.post(&format!("{REGISTER}?kind=bogus"), None, json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_UNRECOGNIZED"), "an unknown kind: {body}");
}

async fn username_availability(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.register("henry", "pw").await;
    let (status, body) = server.get("/_matrix/client/v3/register/available?username=ivy", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"available": true})));
    let (status, body) = server.get("/_matrix/client/v3/register/available?username=henry", None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_USER_IN_USE"));
    // As Synapse: capitals are checked as typed here (`/register` lowercases them).
    let (status, body) = server.get("/_matrix/client/v3/register/available?username=Henry", None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_USERNAME"), "{body}");
    let (status, body) = server.get("/_matrix/client/v3/register/available?username=no%20spaces", None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_USERNAME"));
    let (status, body) = server.get("/_matrix/client/v3/register/available", None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"), "{body}");
}

async fn a_registration_session_is_single_use(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, body) = server.post(REGISTER, None, json!({"username": "jack", "password": "pw"})).await;
    let session = body["session"].as_str().unwrap().to_owned();
    let auth = json!({"type": "m.login.dummy", "session": session});
    let (status, _) = server.post(REGISTER, None, json!({"username": "jack", "password": "pw", "auth": auth})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.post(REGISTER, None, json!({"username": "jill", "password": "pw", "auth": auth})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_UNKNOWN"), "{body}");
    let (status, body) = server.post(REGISTER, None, json!({"username": "jill", "password": "pw", "auth": {"type": "m.login.password"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

async fn shared_secret_registration(backend: Backend) {
    let server = TestServer::builder(backend).config("enable_registration = false").start().await;
    let admin = "/_synapse/admin/v1/register";
    let nonce = || async { server.get(admin, None).await.1["nonce"].as_str().unwrap().to_owned() };
    let mac = |nonce: &str, user: &str, password: &str, is_admin: bool| {
        let mac = weft::api::admin::compute_mac("test-shared-secret", nonce, user, password, is_admin, None);
        hex::encode(hmac::Mac::finalize(mac).into_bytes())
    };

    let n = nonce().await;
    let body = json!({"nonce": n, "username": "root", "password": "pw", "admin": true, "displayname": "The Root", "mac": mac(&n, "root", "pw", true)});
    let (status, reply) = server.post(admin, None, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["user_id"], server.user_id("root"));
    assert_eq!(reply["home_server"], server.server_name);
    let user = server.state.storage.user(&server.uid("root")).await.unwrap().unwrap();
    assert!(user.admin);
    let (_, profile) = server.get(&format!("/_matrix/client/v3/profile/{}", server.user_id("root")), None).await;
    assert_eq!(profile["displayname"], "The Root", "displayname is applied");
    server.login("root", "pw").await;

    let (status, reply) = server.post(admin, None, body).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_UNKNOWN"), "a nonce is single-use: {reply}");

    let n = nonce().await;
    let forged = json!({"nonce": n, "username": "mallory", "password": "pw", "admin": true, "mac": mac(&n, "mallory", "pw", false)});
    let (status, reply) = server.post(admin, None, forged).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"));
    assert!(!server.state.storage.user_id_taken(&server.uid("mallory")).await.unwrap());

    let n = nonce().await;
    let taken = json!({"nonce": n, "username": "root", "password": "pw", "admin": false, "mac": mac(&n, "root", "pw", false)});
    let (status, reply) = server.post(admin, None, taken).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_USER_IN_USE"));

    let without = TestServer::builder(backend).without_shared_secret().start().await;
    let (status, reply) = without.get(admin, None).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_UNKNOWN"), "{reply}");
}

async fn registration_without_a_user_name_generates_one(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server.post(REGISTER, None, json!({"password": "pw", "auth": {"type": "m.login.dummy"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let user_id = body["user_id"].as_str().unwrap();
    assert!(user_id.ends_with(&format!(":{}", server.server_name)), "{user_id}");
}

/// Element's first call is `{}`: it asks which flows there are.
async fn a_first_call_without_auth_gets_the_flows_whatever_it_lacks(backend: Backend) {
    let server = TestServer::start(backend).await;
    for body in [json!({}), json!({"initial_device_display_name": "Element"}), json!({"username": "kate"})] {
        let (status, reply) = server.post(REGISTER, None, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}: {reply}");
        assert_eq!(reply["flows"], json!([{"stages": ["m.login.dummy"]}]), "{body}: {reply}");
        assert!(reply["session"].is_string(), "{reply}");
    }
    assert!(!server.state.storage.user_id_taken(&server.uid("kate")).await.unwrap());
}

async fn an_empty_password_is_no_password(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, body) = server.post(REGISTER, None, json!({"username": "liam", "password": ""})).await;
    let session = body["session"].as_str().expect("a session").to_owned();
    let auth = json!({"type": "m.login.dummy", "session": session});
    let (status, reply) = server.post(REGISTER, None, json!({"username": "liam", "password": "", "auth": auth})).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"), "{reply}");
    assert!(!server.state.storage.user_id_taken(&server.uid("liam")).await.unwrap());
    let (status, reply) = server.post(REGISTER, None, json!({"username": "liam", "password": "pw", "auth": auth})).await;
    assert_eq!(status, StatusCode::OK, "the session was not used up by the refused call: {reply}");
}

/// As Synapse: a later request of the session may carry only `auth` (or
/// part of the parameters); what the first asked for is kept with the
/// session, the password as its hash.
async fn a_session_keeps_what_the_first_request_asked_for(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = json!({"username": "keepx", "password": "secretpw1", "initial_device_display_name": "Phone"});
    let (status, body) = server.post(REGISTER, None, first).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let session = body["session"].as_str().unwrap().to_owned();
    let (status, body) = server.post(REGISTER, None, json!({"auth": {"type": "m.login.dummy", "session": session}})).await;
    assert_eq!(status, StatusCode::OK, "only auth: {body}");
    assert_eq!(body["user_id"], json!(server.user_id("keepx")));
    let (_, devices) = server.get("/_matrix/client/v3/devices", Some(body["access_token"].as_str().unwrap())).await;
    assert_eq!(devices["devices"][0]["display_name"], "Phone", "{devices}");
    server.login("keepx", "secretpw1").await;

    let (_, body) = server.post(REGISTER, None, json!({"username": "keepy", "password": "secretpw1"})).await;
    let session = body["session"].as_str().unwrap().to_owned();
    let (status, body) = server.post(REGISTER, None, json!({"password": "secretpw2", "auth": {"type": "m.login.dummy", "session": session}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], json!(server.user_id("keepy")), "the name from the first request, not a random one");
    server.login("keepy", "secretpw2").await;
}
