//! The content checks made before the authorization rules, as Synapse's
//! event validator makes them: malformed content of a known event type is
//! 400 `M_BAD_JSON`, and nothing is written.

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::create_room,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(malformed_content_of_known_types_is_refused, a_server_acl_may_not_deny_this_server);

async fn put_state(server: &TestServer, token: &str, room: &str, kind: &str, content: Value) -> (StatusCode, Value) {
    server.put(&format!("/_matrix/client/v3/rooms/{room}/state/{kind}/"), Some(token), content).await
}

async fn malformed_content_of_known_types_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let a = alice.access_token.as_str();
    let room = create_room(&server, a, json!({"name": "Kept"})).await;
    let refused = [
        ("m.room.name", json!({"name": 42})),
        ("m.room.name", json!({})),
        ("m.room.topic", json!({"topic": {"text": "no"}})),
        ("m.room.power_levels", json!({"users": {alice.user_id.clone(): 100}, "ban": "50"})),
        ("m.room.power_levels", json!({"users": {alice.user_id.clone(): 100, "not-a-user": 10}})),
        ("m.room.power_levels", json!({"users": {alice.user_id.clone(): 100}, "events": ["m.room.name"]})),
        ("m.room.tombstone", json!({"replacement_room": room})),
        ("m.room.tombstone", json!({"body": "gone"})),
    ];
    for (kind, content) in refused {
        let (status, reply) = put_state(&server, a, &room, kind, content.clone()).await;
        assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_BAD_JSON"), "{kind} {content}: {reply}");
    }
    let (status, reply) =
        server.put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", alice.user_id), Some(a), json!({"membership": "dance"})).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_BAD_JSON"), "{reply}");

    let send = |txn: &str, kind: &str| format!("/_matrix/client/v3/rooms/{room}/send/{kind}/{txn}");
    let (status, reply) = server.put(&send("1", "m.room.message"), Some(a), json!({"body": "no msgtype"})).await;
    assert_eq!(status, StatusCode::OK, "messages are not checked, unlike Synapse: {reply}");
    let (status, reply) = server.put(&send("3", "m.room.name"), Some(a), json!({"name": "not state"})).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_BAD_JSON"), "a name must be a state event: {reply}");
    let (status, reply) = server.put(&send("4", "org.example.anything"), Some(a), json!({"free": ["form"]})).await;
    assert_eq!(status, StatusCode::OK, "other types are not checked: {reply}");

    let (_, name) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"), Some(a)).await;
    assert_eq!(name, json!({"name": "Kept"}), "nothing refused was written");
    let (_, levels) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"), Some(a)).await;
    assert_eq!(levels["ban"], 50, "{levels}");
    let (status, _) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.tombstone/"), Some(a)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, reply) = put_state(&server, a, &room, "m.room.name", json!({"name": "Renamed"})).await;
    assert_eq!(status, StatusCode::OK, "well-formed content still goes through: {reply}");
}

async fn a_server_acl_may_not_deny_this_server(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let a = alice.access_token.as_str();
    let room = create_room(&server, a, json!({})).await;
    let (status, reply) = put_state(&server, a, &room, "m.room.server_acl", json!({"allow": ["*"], "deny": [server.server_name]})).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_BAD_JSON"), "{reply}");
    let (status, reply) = put_state(&server, a, &room, "m.room.server_acl", json!({"allow": ["*"], "deny": ["evil.example"]})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}
