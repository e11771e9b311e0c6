//! One request, a bounded amount of work: Synapse's `rc_room_creation`,
//! `rc_invites` and `rc_joins` limits, invites to accounts that do not
//! exist, and the caps on `initial_state`, `createRoom`'s invites,
//! `/keys/query` and `/keys/claim`.

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::create_room,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(
    room_creation_is_rate_limited,
    invites_are_rate_limited_per_room,
    invites_are_rate_limited_per_invitee,
    invites_are_rate_limited_per_inviter,
    local_joins_are_rate_limited,
    invites_to_unknown_local_users_are_refused,
    create_room_caps_its_lists,
    key_queries_and_claims_are_capped,
);

/// A 429 `M_LIMIT_EXCEEDED` with `retry_after_ms`.
fn assert_limited(status: StatusCode, body: &Value) {
    assert_eq!((status, errcode(body)), (StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED"), "{body}");
    assert!(body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{body}");
}

async fn invite(server: &TestServer, token: &str, room: &str, user_id: &str) -> (StatusCode, Value) {
    server.post(&format!("/_matrix/client/v3/rooms/{room}/invite"), Some(token), json!({"user_id": user_id})).await
}

async fn join(server: &TestServer, token: &str, room: &str) -> (StatusCode, Value) {
    server.post(&format!("/_matrix/client/v3/join/{room}"), Some(token), json!({})).await
}

async fn room_creation_is_rate_limited(backend: Backend) {
    let server = TestServer::builder(backend).config("[rc_room_creation]\nper_second = 0.001\nburst_count = 2").start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({})).await;
    // An upgrade creates a room, and counts as one.
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/upgrade"), Some(&alice.access_token), json!({"new_version": "11"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), json!({})).await;
    assert_limited(status, &body);
    let response = server.raw(http::Method::POST, "/_matrix/client/v3/createRoom").bearer_auth(&alice.access_token).json(&json!({})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers()["retry-after"].to_str().unwrap().parse::<u64>().is_ok_and(|seconds| seconds >= 1));
    create_room(&server, &bob.access_token, json!({})).await;
}

async fn invites_are_rate_limited_per_room(backend: Backend) {
    let server = TestServer::builder(backend).config("[rc_invites.per_room]\nper_second = 0.001\nburst_count = 2").start().await;
    let alice = server.register("alice", "pw").await;
    for name in ["bob", "carol", "dave"] {
        server.register(name, "pw").await;
    }
    let room = create_room(&server, &alice.access_token, json!({})).await;
    let other = create_room(&server, &alice.access_token, json!({})).await;
    for name in ["bob", "carol"] {
        let (status, body) = invite(&server, &alice.access_token, &room, &server.user_id(name)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = invite(&server, &alice.access_token, &room, &server.user_id("dave")).await;
    assert_limited(status, &body);
    let (status, body) = invite(&server, &alice.access_token, &other, &server.user_id("dave")).await;
    assert_eq!(status, StatusCode::OK, "another room has its own bucket: {body}");
}

async fn invites_are_rate_limited_per_invitee(backend: Backend) {
    let server = TestServer::builder(backend).config("[rc_invites.per_user]\nper_second = 0.001\nburst_count = 2").start().await;
    let alice = server.register("alice", "pw").await;
    server.register("bob", "pw").await;
    server.register("carol", "pw").await;
    let rooms = [
        create_room(&server, &alice.access_token, json!({})).await,
        create_room(&server, &alice.access_token, json!({})).await,
        create_room(&server, &alice.access_token, json!({})).await,
    ];
    for room in &rooms[..2] {
        let (status, body) = invite(&server, &alice.access_token, room, &server.user_id("bob")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = invite(&server, &alice.access_token, &rooms[2], &server.user_id("bob")).await;
    assert_limited(status, &body);
    let (status, body) = invite(&server, &alice.access_token, &rooms[2], &server.user_id("carol")).await;
    assert_eq!(status, StatusCode::OK, "another invitee has its own bucket: {body}");
}

async fn invites_are_rate_limited_per_inviter(backend: Backend) {
    let server = TestServer::builder(backend).config("[rc_invites.per_issuer]\nper_second = 0.001\nburst_count = 2").start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    for name in ["carol", "dave"] {
        server.register(name, "pw").await;
    }
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    let other = create_room(&server, &alice.access_token, json!({})).await;
    for name in ["carol", "dave"] {
        let (status, body) = invite(&server, &alice.access_token, &room, &server.user_id(name)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = invite(&server, &alice.access_token, &other, &server.user_id("bob")).await;
    assert_limited(status, &body);
    assert_eq!(join(&server, &bob.access_token, &room).await.0, StatusCode::OK);
    let (status, body) = invite(&server, &bob.access_token, &other, &server.user_id("carol")).await;
    assert_eq!(errcode(&body), "M_FORBIDDEN", "bob has his own bucket (and is not in that room): {status} {body}");
}

async fn local_joins_are_rate_limited(backend: Backend) {
    let server = TestServer::builder(backend).config("[rc_joins.local]\nper_second = 0.001\nburst_count = 2").start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let mut rooms = Vec::new();
    for _ in 0..3 {
        rooms.push(create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await);
    }
    for room in &rooms[..2] {
        let (status, body) = join(&server, &bob.access_token, room).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = join(&server, &bob.access_token, &rooms[2]).await;
    assert_limited(status, &body);
    // As Synapse: joining a room one is in already is not counted.
    let (status, body) = join(&server, &bob.access_token, &rooms[0]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn invites_to_unknown_local_users_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({})).await;
    let (status, body) = invite(&server, &alice.access_token, &room, &server.user_id("nobody")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{body}");
    let (_, members) = server.get(&format!("/_matrix/client/v3/rooms/{room}/members"), Some(&alice.access_token)).await;
    assert_eq!(members["chunk"].as_array().unwrap().len(), 1, "{members}");
    let (status, body) = invite(&server, &alice.access_token, &room, &server.user_id("bob")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (_, before) = server.get("/_matrix/client/v3/joined_rooms", Some(&alice.access_token)).await;
    let invites = json!([server.user_id("bob"), server.user_id("nobody")]);
    let (status, body) = server.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), json!({"invite": invites})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{body}");
    let (_, after) = server.get("/_matrix/client/v3/joined_rooms", Some(&alice.access_token)).await;
    assert_eq!(before, after, "no room is created");
}

async fn create_room_caps_its_lists(backend: Backend) {
    let server = TestServer::builder(backend).config("[rc_invites.per_room]\nper_second = 0.001\nburst_count = 3").start().await;
    let alice = server.register("alice", "pw").await;
    let names = ["bob", "carol", "dave", "erin"];
    for name in names {
        server.register(name, "pw").await;
    }
    // As Synapse: more invites than `rc_invites.per_room.burst_count` at once is a 400.
    let invites: Vec<String> = names.iter().map(|name| server.user_id(name)).collect();
    let (status, body) = server.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), json!({"invite": invites})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_UNKNOWN"), "{body}");
    create_room(&server, &alice.access_token, json!({"invite": &invites[..3]})).await;

    let entry = |n: usize| json!({"type": "org.example.entry", "state_key": n.to_string(), "content": {"n": n}});
    let too_many: Vec<Value> = (0..1001).map(entry).collect();
    let (status, body) = server.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), json!({"initial_state": too_many})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{body}");

    // At the cap it works; a repeated (type, state_key) is one event with the last content.
    let mut most: Vec<Value> = (0..999).map(entry).collect();
    most.push(json!({"type": "org.example.entry", "state_key": "7", "content": {"n": "last"}}));
    let room = create_room(&server, &alice.access_token, json!({"initial_state": most})).await;
    let (status, state) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK);
    let entries: Vec<&Value> = state.as_array().unwrap().iter().filter(|event| event["type"] == "org.example.entry").collect();
    assert_eq!(entries.len(), 999);
    let seventh = entries.iter().find(|event| event["state_key"] == "7").unwrap();
    assert_eq!(seventh["content"], json!({"n": "last"}));
}

async fn key_queries_and_claims_are_capped(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let users = |n: usize| (0..n).map(|i| (server.user_id(&format!("u{i}")), json!([]))).collect::<serde_json::Map<_, _>>();
    let (status, body) = server.post("/_matrix/client/v3/keys/query", Some(&alice.access_token), json!({"device_keys": users(10_001)})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{body}");
    let mut wanted = users(9_999);
    wanted.insert(alice.user_id.clone(), json!([]));
    let (status, body) = server.post("/_matrix/client/v3/keys/query", Some(&alice.access_token), json!({"device_keys": wanted})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["device_keys"].as_object().unwrap().len(), 10_000);

    let devices = |n: usize| (0..n).map(|i| (format!("D{i}"), json!("signed_curve25519"))).collect::<serde_json::Map<_, _>>();
    let claim = json!({"one_time_keys": {server.user_id("a"): devices(5_000), server.user_id("b"): devices(5_001)}});
    let (status, body) = server.post("/_matrix/client/v3/keys/claim", Some(&alice.access_token), claim).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{body}");
    let claim = json!({"one_time_keys": {server.user_id("a"): devices(5_000), alice.user_id.clone(): devices(5_000)}});
    let (status, body) = server.post("/_matrix/client/v3/keys/claim", Some(&alice.access_token), claim).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
