//! Inputs that used to succeed or fail with the wrong code (issue 21, item
//! 8): empty bodies, aliases with whitespace, a state key that is not a
//! string. The size rule before the spam checkers is in `plugins::rooms`.

use http::{Method, StatusCode};
use serde_json::json;

use crate::{
    on_both_backends,
    rooms::create_room,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(an_empty_body_is_not_json_except_where_synapse_takes_none, aliases_with_whitespace_are_refused, a_state_key_that_is_not_a_string_is_refused,);

async fn an_empty_body_is_not_json_except_where_synapse_takes_none(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    let server = &server;
    let empty = |method: Method, path: String, token: &str| {
        let request = server.raw(method, &path).bearer_auth(token).body("");
        async move { server.send(request).await }
    };

    let send = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t1");
    let (status, body) = empty(Method::PUT, send, &alice.access_token).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_NOT_JSON"), "{body}");
    let (_, page) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"), Some(&alice.access_token)).await;
    let messages = page["chunk"].as_array().unwrap().iter().filter(|event| event["type"] == "m.room.message").count();
    assert_eq!(messages, 0, "nothing was sent");
    for (method, path) in [
        (Method::PUT, format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/")),
        (Method::POST, "/_matrix/client/v3/createRoom".to_owned()),
        (Method::PUT, format!("/_matrix/client/v3/user/{}/account_data/org.example", alice.user_id)),
        (Method::POST, format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/$abc")),
        (Method::POST, "/_matrix/client/v3/keys/query".to_owned()),
    ] {
        let (status, body) = empty(method.clone(), path.clone(), &alice.access_token).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_NOT_JSON"), "{method} {path}: {body}");
    }

    // Synapse's exceptions: membership, forget, logout.
    let (status, body) = empty(Method::POST, format!("/_matrix/client/v3/rooms/{room}/join"), &bob.access_token).await;
    assert_eq!(status, StatusCode::OK, "join: {body}");
    let (status, body) = empty(Method::POST, format!("/_matrix/client/v3/join/{room}"), &bob.access_token).await;
    assert_eq!(status, StatusCode::OK, "join by id or alias: {body}");
    let (status, body) = empty(Method::POST, format!("/_matrix/client/v3/rooms/{room}/leave"), &bob.access_token).await;
    assert_eq!(status, StatusCode::OK, "leave: {body}");
    let (status, body) = empty(Method::POST, format!("/_matrix/client/v3/rooms/{room}/forget"), &bob.access_token).await;
    assert_eq!(status, StatusCode::OK, "forget: {body}");
    let (status, body) = empty(Method::POST, format!("/_matrix/client/v3/rooms/{room}/invite"), &alice.access_token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an empty invite is read as {{}} and lacks its user: {body}");
    assert_ne!(errcode(&body), "M_NOT_JSON");
    let (status, body) = empty(Method::POST, "/_matrix/client/v3/logout".to_owned(), &bob.access_token).await;
    assert_eq!(status, StatusCode::OK, "logout: {body}");
}

async fn aliases_with_whitespace_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = Some(alice.access_token.as_str());
    for name in ["with space", "tab\there", "new\nline", "colon:part"] {
        let (status, body) = server.post("/_matrix/client/v3/createRoom", token, json!({"room_alias_name": name})).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{name:?}: {body}");
    }
    let (_, rooms) = server.get("/_matrix/client/v3/joined_rooms", token).await;
    assert_eq!(rooms["joined_rooms"], json!([]), "no room was created");

    let room = create_room(&server, &alice.access_token, json!({"room_alias_name": "fine"})).await;
    let alias = |localpart: &str| format!("/_matrix/client/v3/directory/room/{}", urlencoding(&format!("#{localpart}:{}", server.server_name)));
    for localpart in ["with space", "tab\there", "nul\u{0}byte"] {
        let (status, body) = server.put(&alias(localpart), token, json!({"room_id": room})).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{localpart:?}: {body}");
    }
    for localpart in ["with space", "tab\there"] {
        let (status, _) = server.get(&alias(localpart), token).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{localpart:?} was not created");
    }
    let (status, body) = server.put(&alias("no-space"), token, json!({"room_id": room})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn a_state_key_that_is_not_a_string_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = Some(alice.access_token.as_str());
    for state_key in [json!(5), json!(null), json!(["a"]), json!({"a": 1})] {
        let state = json!([{"type": "org.example.note", "state_key": state_key, "content": {"x": 1}}]);
        let (status, body) = server.post("/_matrix/client/v3/createRoom", token, json!({"initial_state": state})).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_BAD_JSON"), "{state_key}: {body}");
    }
    let (_, rooms) = server.get("/_matrix/client/v3/joined_rooms", token).await;
    assert_eq!(rooms["joined_rooms"], json!([]), "no room was created");
    // A missing state key is still the empty one.
    let state = json!([{"type": "org.example.note", "content": {"x": 1}}]);
    let room = create_room(&server, &alice.access_token, json!({"initial_state": state})).await;
    let (status, body) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/org.example.note/"), token).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"x": 1})));
}

/// Percent-encodes everything but unreserved characters.
fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
