//! The room call sites of the spam checkers, end to end with the reference
//! plugin: message and state events, room creation, invites, joins, aliases
//! and publication.

use http::StatusCode;
use serde_json::json;

use super::guest;
use crate::{
    on_both_backends,
    rooms::create_room,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(room_call_sites_reach_the_spam_checker, events_past_the_size_limit_are_too_large_before_any_spam_check);

async fn room_call_sites_reach_the_spam_checker(backend: Backend) {
    let plugin = format!(
        "[[plugins]]\nname = \"rules\"\npath = {:?}\n[plugins.config]\nerrcode = \"M_FORBIDDEN\"\nbody_patterns = [\"buy now\"]\n\
         blocked_users = [\"@spammer:{{server_name}}\"]\ninvites = \"nobody\"\n",
        guest("spam_rules").display().to_string()
    );
    let server = TestServer::builder(backend).config(&plugin).start().await;
    let alice = server.register("alice", "pw").await;
    let spammer = server.register("spammer", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    let token = Some(alice.access_token.as_str());

    let send = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message");
    let (status, body) = server.put(&format!("{send}/t1"), token, json!({"msgtype": "m.text", "body": "buy now cheap"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
    assert_eq!(body["pattern"], "buy now", "the plugin's extra fields reach the client");
    let (status, _) = server.put(&format!("{send}/t2"), token, json!({"msgtype": "m.text", "body": "hello"})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, page) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=20"), token).await;
    let bodies: Vec<&str> = page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(bodies, vec!["hello"], "the refused message was not written");

    let (status, _) = server.post("/_matrix/client/v3/createRoom", Some(&spammer.access_token), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "room creation");
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&spammer.access_token), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "joins");
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/invite"), token, json!({"user_id": spammer.user_id})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "invites (policy: nobody)");
    let (status, _) = server.put(&format!("/_matrix/client/v3/rooms/{room}/state/org.example.note/"), token, json!({"body": "buy now"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "state events go through check-event-for-spam too");
    let (status, _) = server.put(&format!("/_matrix/client/v3/directory/room/%23ok:{}", server.server_name), token, json!({"room_id": room})).await;
    assert_eq!(status, StatusCode::OK, "aliases for allowed users");
}

/// An event past the spec's 65536 bytes is 413 `M_TOO_LARGE`, also when it
/// is past the spam checker's input cap (which would refuse it as spam).
async fn events_past_the_size_limit_are_too_large_before_any_spam_check(backend: Backend) {
    let plugin = format!(
        "[[plugins]]\nname = \"rules\"\npath = {:?}\n[plugins.limits]\nmax_input_bytes = 100000\n[plugins.config]\nbody_patterns = [\"buy now\"]\n",
        guest("spam_rules").display().to_string()
    );
    let server = TestServer::builder(backend).config(&plugin).start().await;
    let alice = server.register("alice", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({})).await;
    let token = Some(alice.access_token.as_str());
    for size in [70_000, 200_000, 2_000_000] {
        let content = json!({"msgtype": "m.text", "body": "x".repeat(size)});
        let (status, body) = server.put(&format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/big{size}"), token, content.clone()).await;
        assert_eq!((status, errcode(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE"), "message of {size}: {body}");
        let (status, body) = server.put(&format!("/_matrix/client/v3/rooms/{room}/state/org.example.big/{size}"), token, content).await;
        assert_eq!((status, errcode(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE"), "state event of {size}: {body}");
    }
    let (status, _) =
        server.put(&format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/small"), token, json!({"msgtype": "m.text", "body": "hi"})).await;
    assert_eq!(status, StatusCode::OK, "the checker still runs on ordinary events");
}
