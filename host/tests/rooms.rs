//! Rooms: creation, sending with transaction ids, state, membership and its
//! authorization rules, history visibility, and concurrency.

use std::collections::HashSet;

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(
    create_room_applies_every_option,
    unsupported_room_versions_are_refused,
    sends_are_idempotent_per_device_transaction,
    oversized_and_malformed_events_write_nothing,
    state_needs_the_power_level,
    private_rooms_need_an_invite_and_bans_stick,
    kicks_and_bans_follow_power_levels,
    non_members_cannot_read_or_write,
    history_visibility_is_enforced,
    messages_paginate_both_ways,
    fifty_concurrent_senders_into_one_room,
    sending_is_rate_limited,
    redactions_follow_power_and_prune_content,
    context_timestamps_and_initial_sync,
    knocking_needs_a_knock_room,
    identical_state_is_not_sent_again,
    state_events_carry_what_they_replace,
    initial_state_may_set_the_power_levels,
    a_forgotten_room_is_no_longer_readable,
    context_keeps_empty_lists_and_lazy_loads_members,
    a_history_visibility_change_is_seen_under_either_setting,
    members_at_a_token_need_the_room_visible_then,
);

pub(crate) async fn create_room(server: &TestServer, token: &str, body: Value) -> String {
    let (status, reply) = server.post("/_matrix/client/v3/createRoom", Some(token), body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["room_id"].as_str().unwrap().to_owned()
}

pub(crate) async fn send_text(server: &TestServer, token: &str, room: &str, text: &str) -> String {
    let txn = format!("t{}", rand_suffix());
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    let (status, reply) = server.put(&path, Some(token), json!({"msgtype": "m.text", "body": text})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["event_id"].as_str().unwrap().to_owned()
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn state_event(server: &TestServer, token: &str, room: &str, kind: &str) -> (StatusCode, Value) {
    server.get(&format!("/_matrix/client/v3/rooms/{room}/state/{kind}/"), Some(token)).await
}

async fn join(server: &TestServer, token: &str, room: &str) -> (StatusCode, Value) {
    server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(token), json!({})).await
}

async fn create_room_applies_every_option(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(
        &server,
        &alice.access_token,
        json!({
            "name": "Weft", "topic": "Threads", "preset": "public_chat", "room_version": "11",
            "invite": [bob.user_id], "is_direct": true,
            "initial_state": [{"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}],
            "power_level_content_override": {"events_default": 10},
            "creation_content": {"m.federate": false}
        }),
    )
    .await;
    let token = Some(alice.access_token.as_str());
    let get = |kind: &'static str| {
        let room = room.clone();
        let server = &server;
        async move { server.get(&format!("/_matrix/client/v3/rooms/{room}/state/{kind}/"), token).await.1 }
    };
    assert_eq!(get("m.room.name").await, json!({"name": "Weft"}));
    assert_eq!(get("m.room.topic").await, json!({"topic": "Threads"}));
    assert_eq!(get("m.room.join_rules").await, json!({"join_rule": "public"}));
    assert_eq!(get("m.room.history_visibility").await, json!({"history_visibility": "joined"}), "initial_state wins over the preset");
    let create = get("m.room.create").await;
    assert_eq!(create["room_version"], "11");
    assert_eq!(create["m.federate"], false);
    assert!(create.get("creator").is_none(), "v11 has no creator field");
    let levels = get("m.room.power_levels").await;
    assert_eq!(levels["events_default"], 10);
    assert_eq!(levels["users"][&alice.user_id], 100);
    let (_, member) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", bob.user_id), token).await;
    assert_eq!(member, json!({"membership": "invite", "is_direct": true, "displayname": "bob"}), "invites carry the invitee's profile");

    let (status, joined) = server.get("/_matrix/client/v3/joined_rooms", token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(joined["joined_rooms"], json!([room]));
    let (_, state) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), token).await;
    let kinds: HashSet<&str> = state.as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    for kind in ["m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.guest_access", "m.room.name", "m.room.topic"] {
        assert!(kinds.contains(kind), "{kind} in {state}");
    }
    let v12 = create_room(&server, &alice.access_token, json!({})).await;
    let (_, create) = state_event(&server, &alice.access_token, &v12, "m.room.create").await;
    assert_eq!(create["room_version"], "12", "12 is the default");
    assert!(create.get("creator").is_none(), "v12 has no creator field");
    let (_, levels) = state_event(&server, &alice.access_token, &v12, "m.room.power_levels").await;
    assert!(levels["users"].get(&alice.user_id).is_none(), "v12 creators are not listed: {levels}");
    let v10 = create_room(&server, &alice.access_token, json!({"room_version": "10"})).await;
    let (_, create) = state_event(&server, &alice.access_token, &v10, "m.room.create").await;
    assert_eq!(create["creator"], json!(alice.user_id), "v10 names its creator");
}

async fn unsupported_room_versions_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    for version in ["13", "org.matrix.msc2870", "banana"] {
        let (status, body) = server.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), json!({"room_version": version})).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION"), "{version}: {body}");
    }
    let (_, rooms) = server.get("/_matrix/client/v3/joined_rooms", Some(&alice.access_token)).await;
    assert_eq!(rooms["joined_rooms"], json!([]), "nothing half-created");
}

async fn sends_are_idempotent_per_device_transaction(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let other_device = server.login("alice", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({})).await;
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/txn1");
    let body = json!({"msgtype": "m.text", "body": "once"});
    let (_, first) = server.put(&path, Some(&alice.access_token), body.clone()).await;
    let (_, again) = server.put(&path, Some(&alice.access_token), body.clone()).await;
    assert_eq!(first["event_id"], again["event_id"]);
    let (_, other) = server.put(&path, Some(&other_device.access_token), body).await;
    assert_ne!(first["event_id"], other["event_id"], "transaction ids are per device");
    let (_, messages) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=10"), Some(&alice.access_token)).await;
    let bodies: Vec<&str> = messages["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(bodies, vec!["once", "once"]);
}

async fn oversized_and_malformed_events_write_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({})).await;
    let big = json!({"msgtype": "m.text", "body": "x".repeat(70_000)});
    let (status, body) = server.put(&format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/big"), Some(&alice.access_token), big).await;
    assert_eq!((status, errcode(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE"), "{body}");
    let (status, body) = server.put(&format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/float"), Some(&alice.access_token), json!({"n": 1.5})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_BAD_JSON"), "floats are not canonical JSON: {body}");
    let (status, body) =
        server.put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/not-a-user"), Some(&alice.access_token), json!({"membership": "join"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_BAD_JSON"), "{body}");
    let (status, body) = server.put("/_matrix/client/v3/rooms/not-a-room/send/m.room.message/x", Some(&alice.access_token), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{body}");
    let long = "t".repeat(256);
    let (status, body) = server.put(&format!("/_matrix/client/v3/rooms/{room}/send/{long}/long"), Some(&alice.access_token), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE"), "a type over 255 bytes: {body}");
    let (status, body) = server.put(&format!("/_matrix/client/v3/rooms/{room}/state/org.example/{long}"), Some(&alice.access_token), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE"), "a state key over 255 bytes: {body}");
    let (_, messages) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"), Some(&alice.access_token)).await;
    assert!(messages["chunk"].as_array().unwrap().iter().all(|e| e["type"] != "m.room.message"), "{messages}");
}

async fn state_needs_the_power_level(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    assert_eq!(join(&server, &bob.access_token, &room).await.0, StatusCode::OK);
    let name_path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/");
    let (status, body) = server.put(&name_path, Some(&bob.access_token), json!({"name": "bob's"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
    let (status, _) = state_event(&server, &alice.access_token, &room, "m.room.name").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing written");
    // Messages need only events_default (0).
    send_text(&server, &bob.access_token, &room, "hi").await;
    // Raise bob, then he may.
    let (_, mut levels) = state_event(&server, &alice.access_token, &room, "m.room.power_levels").await;
    levels["users"][&bob.user_id] = json!(50);
    let (status, body) = server.put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"), Some(&alice.access_token), levels.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = server.put(&name_path, Some(&bob.access_token), json!({"name": "bob's"})).await;
    assert_eq!(status, StatusCode::OK);
    // A state key that is another user's id is refused by the authorization rules.
    let (status, _) =
        server.put(&format!("/_matrix/client/v3/rooms/{room}/state/org.example.status/{}", alice.user_id), Some(&bob.access_token), json!({"s": 1})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) =
        server.put(&format!("/_matrix/client/v3/rooms/{room}/state/org.example.status/{}", bob.user_id), Some(&bob.access_token), json!({"s": 1})).await;
    assert_eq!(status, StatusCode::OK, "his own is fine (his level covers state_default now)");
    // Bob cannot give himself more than he has.
    levels["users"][&bob.user_id] = json!(100);
    let (status, _) = server.put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"), Some(&bob.access_token), levels).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn private_rooms_need_an_invite_and_bans_stick(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "private_chat"})).await;
    let (status, body) = join(&server, &bob.access_token, &room).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/invite"), Some(&alice.access_token), json!({"user_id": bob.user_id})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = join(&server, &bob.access_token, &room).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], json!(room));
    assert_eq!(join(&server, &bob.access_token, &room).await.0, StatusCode::OK, "joining twice is harmless");
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, before) = server.get("/_matrix/client/v3/sync?filter=%7B%22room%22%3A%7B%22include_leave%22%3Atrue%7D%7D", Some(&bob.access_token)).await;
    assert!(before["rooms"]["leave"].get(&room).is_some(), "a left room is listed with include_leave");
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/forget"), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, after) = server.get("/_matrix/client/v3/sync?filter=%7B%22room%22%3A%7B%22include_leave%22%3Atrue%7D%7D", Some(&bob.access_token)).await;
    assert!(after["rooms"]["leave"].get(&room).is_none(), "a forgotten room is not: {after}");
    assert_eq!(join(&server, &bob.access_token, &room).await.0, StatusCode::FORBIDDEN, "the invite was used up");

    let (status, _) =
        server.post(&format!("/_matrix/client/v3/rooms/{room}/ban"), Some(&alice.access_token), json!({"user_id": bob.user_id, "reason": "spam"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/invite"), Some(&alice.access_token), json!({"user_id": bob.user_id})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a banned user cannot be invited");
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/unban"), Some(&alice.access_token), json!({"user_id": bob.user_id})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/unban"), Some(&alice.access_token), json!({"user_id": bob.user_id})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not banned any more");
    // A room this server does not know is joined over federation: through
    // a server that cannot be reached, that fails as Synapse's does (502).
    let (status, body) = join(&server, &bob.access_token, "!unknown:elsewhere.example").await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_GATEWAY, "M_UNKNOWN"), "{body}");
}

async fn kicks_and_bans_follow_power_levels(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    for user in [&bob, &carol] {
        join(&server, &user.access_token, &room).await;
    }
    let kick = |by: &str, who: &str| {
        let path = format!("/_matrix/client/v3/rooms/{room}/kick");
        let body = json!({"user_id": who});
        let by = by.to_owned();
        let server = &server;
        async move { server.post(&path, Some(&by), body).await.0 }
    };
    assert_eq!(kick(&bob.access_token, &carol.user_id).await, StatusCode::FORBIDDEN, "kick needs 50");
    assert_eq!(kick(&bob.access_token, &alice.user_id).await, StatusCode::FORBIDDEN, "nobody kicks someone above them");
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/ban"), Some(&bob.access_token), json!({"user_id": carol.user_id})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(kick(&alice.access_token, &carol.user_id).await, StatusCode::OK);
    let (_, member) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", carol.user_id), Some(&alice.access_token)).await;
    assert_eq!(member["membership"], "leave");
    assert_eq!(join(&server, &carol.access_token, &room).await.0, StatusCode::OK, "kicked, not banned: may rejoin a public room");
}

async fn non_members_cannot_read_or_write(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let eve = server.register("eve", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({})).await;
    let event = send_text(&server, &alice.access_token, &room, "secret").await;
    let token = Some(eve.access_token.as_str());
    for path in [
        format!("/_matrix/client/v3/rooms/{room}/messages?dir=b"),
        format!("/_matrix/client/v3/rooms/{room}/state"),
        format!("/_matrix/client/v3/rooms/{room}/members"),
        format!("/_matrix/client/v3/rooms/{room}/joined_members"),
        format!("/_matrix/client/v3/rooms/{room}/state/m.room.create/"),
    ] {
        let (status, body) = server.get(&path, token).await;
        assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{path}: {body}");
    }
    // One event is "not found or not yours to read", as the spec and Synapse answer.
    let (status, body) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{event}"), token).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{body}");
    let (status, _) = server.put(&format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/x"), token, json!({"body": "hi"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server.put("/_matrix/client/v3/rooms/!nope:nowhere.example/send/m.room.message/x", token, json!({"body": "hi"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "unknown rooms look the same as closed ones");
    let (status, body) = server.get(&format!("/_matrix/client/v3/rooms/{room}/members?membership=bogus"), Some(&alice.access_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{body}");
}

async fn history_visibility_is_enforced(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    for (setting, bob_sees_history) in [("joined", false), ("shared", true), ("invited", false)] {
        let room = create_room(
            &server,
            &alice.access_token,
            json!({"preset": "public_chat", "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": setting}}]}),
        )
        .await;
        let before = send_text(&server, &alice.access_token, &room, "before").await;
        join(&server, &bob.access_token, &room).await;
        send_text(&server, &alice.access_token, &room, "after").await;
        let (_, messages) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"), Some(&bob.access_token)).await;
        let bodies: Vec<&str> = messages["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
        assert!(bodies.contains(&"after"), "{setting}: {bodies:?}");
        assert_eq!(bodies.contains(&"before"), bob_sees_history, "{setting}: {bodies:?}");
        let (status, _) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{before}"), Some(&bob.access_token)).await;
        assert_eq!(status == StatusCode::OK, bob_sees_history, "{setting}");
    }
    let room = create_room(
        &server,
        &alice.access_token,
        json!({"initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}]}),
    )
    .await;
    send_text(&server, &alice.access_token, &room, "public").await;
    let (status, messages) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b"), Some(&bob.access_token)).await;
    assert_eq!(status, StatusCode::OK, "world_readable needs no membership: {messages}");
    assert!(messages["chunk"].as_array().unwrap().iter().any(|e| e["content"]["body"] == "public"));
}

async fn messages_paginate_both_ways(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({})).await;
    for n in 0..25 {
        send_text(&server, &alice.access_token, &room, &format!("m{n}")).await;
    }
    let token = Some(alice.access_token.as_str());
    let mut seen = Vec::new();
    let mut from = String::new();
    loop {
        let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=10&filter=%7B%22types%22%3A%5B%22m.room.message%22%5D%7D{from}");
        let (status, page) = server.get(&path, token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(page["chunk"].as_array().unwrap().iter().map(|e| e["content"]["body"].as_str().unwrap().to_owned()));
        match page["end"].as_str() {
            Some(end) => from = format!("&from={end}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|n| format!("m{n}")).collect();
    assert_eq!(seen, expected, "newest first, each once");
    let (_, forward) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=5"), token).await;
    let kinds: Vec<&str> = forward["chunk"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "m.room.create", "forward from the start");
    let (status, none) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=0"), token).await;
    assert_eq!((status, none["chunk"].clone()), (StatusCode::OK, json!([])), "limit=0 asks for nothing: {none}");
    let (status, body) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&from=garbage"), token).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"));
}

async fn fifty_concurrent_senders_into_one_room(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    let mut senders = Vec::new();
    for n in 0..50 {
        let user = server.register(&format!("sender{n}"), "pw").await;
        join(&server, &user.access_token, &room).await;
        senders.push(user);
    }
    let (_, initial) = server.get("/_matrix/client/v3/sync", Some(&alice.access_token)).await;
    let since = initial["next_batch"].as_str().unwrap().to_owned();

    let sends = senders.iter().enumerate().map(|(n, user)| {
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/c{n}");
        let server = &server;
        async move { server.put(&path, Some(&user.access_token), json!({"msgtype": "m.text", "body": format!("c{n}")})).await }
    });
    let results = futures_join_all(sends).await;
    let mut ids = HashSet::new();
    for (status, body) in &results {
        assert_eq!(*status, StatusCode::OK, "{body}");
        ids.insert(body["event_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 50, "every send made its own event");

    // One total order: each event's prev_events is exactly the one before it.
    let room_id = ruma::RoomId::parse(&room).unwrap();
    let events = server.state.storage.room_events(&room_id, 0, i64::MAX, 1000, false).await.unwrap();
    for pair in events.windows(2) {
        let later: Value = serde_json::from_str(&pair[1].json).unwrap();
        assert_eq!(later["prev_events"], json!([pair[0].event_id]), "a linear chain");
        assert!(pair[0].stream_ordering < pair[1].stream_ordering);
    }

    let (_, delta) = server
        .get(
            &format!("/_matrix/client/v3/sync?since={since}&filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A100%7D%7D%7D"),
            Some(&alice.access_token),
        )
        .await;
    let timeline = delta["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
    let received: Vec<&str> = timeline.iter().filter_map(|e| e["event_id"].as_str()).collect();
    assert_eq!(received.len(), 50, "each exactly once");
    assert_eq!(received.iter().collect::<HashSet<_>>().len(), 50);
    assert!(received.iter().all(|id| ids.contains(*id)));
}

async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().collect();
    let mut outputs = Vec::with_capacity(handles.len());
    // Poll all concurrently on this task.
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = handles.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, future) in pinned.iter_mut().enumerate() {
            if done[i].is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(output) => done[i] = Some(output),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    outputs.extend(done.into_iter().map(|o| o.unwrap()));
    outputs
}

async fn sending_is_rate_limited(backend: Backend) {
    let server = TestServer::builder(backend).config("[rc_message]\nper_second = 0.1\nburst_count = 3").start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    join(&server, &bob.access_token, &room).await;
    // As Synapse: creating the room counted as one action.
    for n in 0..2 {
        send_text(&server, &alice.access_token, &room, &format!("m{n}")).await;
    }
    let (status, body) =
        server.put(&format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/over"), Some(&alice.access_token), json!({"body": "x"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED"), "{body}");
    assert!(body["retry_after_ms"].as_u64().unwrap() > 0);
    let response = server
        .raw(http::Method::PUT, &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/over2"))
        .bearer_auth(&alice.access_token)
        .json(&json!({"body": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let seconds: u64 = response.headers()["retry-after"].to_str().unwrap().parse().expect("Retry-After in whole seconds");
    assert!((1..=10).contains(&seconds), "{seconds}");
    send_text(&server, &bob.access_token, &room, "others are unaffected").await;
}

async fn redactions_follow_power_and_prune_content(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    for version in ["10", "11"] {
        let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat", "room_version": version})).await;
        join(&server, &bob.access_token, &room).await;
        let alices = send_text(&server, &alice.access_token, &room, "from alice").await;
        let bobs = send_text(&server, &bob.access_token, &room, "from bob").await;
        let redact = |token: &str, event: &str, txn: &str| {
            let path = format!("/_matrix/client/v3/rooms/{room}/redact/{event}/{txn}");
            let token = token.to_owned();
            let server = &server;
            async move { server.put(&path, Some(&token), json!({"reason": "oops"})).await }
        };
        let (status, body) = redact(&bob.access_token, &alices, "r1").await;
        assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{version}: needs the redact level");
        let (status, first) = redact(&bob.access_token, &bobs, "r2").await;
        assert_eq!(status, StatusCode::OK, "{version}: own events are fine: {first}");
        let (_, again) = redact(&bob.access_token, &bobs, "r2").await;
        assert_eq!(first["event_id"], again["event_id"], "idempotent by transaction");
        let (status, _) = redact(&alice.access_token, &alices, "r3").await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = redact(&alice.access_token, "$unknown", "r4").await;
        assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{body}");

        let (_, event) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{bobs}"), Some(&alice.access_token)).await;
        assert_eq!(event["content"], json!({}), "{version}: content pruned: {event}");
        let because = &event["unsigned"]["redacted_because"];
        assert_eq!(because["sender"], json!(bob.user_id));
        assert_eq!((&because["type"], &because["event_id"], &because["redacts"]), (&json!("m.room.redaction"), &first["event_id"], &json!(bobs)), "{because}");
        for pdu_only in ["auth_events", "prev_events", "depth", "hashes", "signatures"] {
            assert!(because.get(pdu_only).is_none(), "{version}: redacted_because is a client event, not a PDU: {because}");
        }
        let (_, redaction) =
            server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{}", first["event_id"].as_str().unwrap()), Some(&alice.access_token)).await;
        assert_eq!(redaction["redacts"], json!(bobs), "{version}: clients find `redacts` at the top level");
        if version == "11" {
            assert_eq!(redaction["content"]["redacts"], json!(bobs), "v11 keeps it in the content");
        }
        assert_eq!(redaction["content"]["reason"], "oops");
    }
}

async fn context_timestamps_and_initial_sync(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let eve = server.register("eve", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"name": "Ctx"})).await;
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(send_text(&server, &alice.access_token, &room, &format!("m{n}")).await);
    }
    let token = Some(alice.access_token.as_str());
    let (status, ctx) = server.get(&format!("/_matrix/client/v3/rooms/{room}/context/{}?limit=4", ids[5]), token).await;
    assert_eq!(status, StatusCode::OK, "{ctx}");
    assert_eq!(ctx["event"]["content"]["body"], "m5");
    let before: Vec<&str> = ctx["events_before"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    let after: Vec<&str> = ctx["events_after"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(before, vec!["m4", "m3"], "newest first before");
    assert_eq!(after, vec!["m6", "m7"]);
    assert!(ctx["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.name"));
    let (_, page) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1&from={}", ctx["start"].as_str().unwrap()), token).await;
    assert_eq!(page["chunk"][0]["content"]["body"], "m2", "start continues backwards");
    let (status, _) = server.get(&format!("/_matrix/client/v3/rooms/{room}/context/{}", ids[5]), Some(&eve.access_token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server.get(&format!("/_matrix/client/v3/rooms/{room}/context/$nope"), token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, event) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{}", ids[3]), token).await;
    let ts = event["origin_server_ts"].as_u64().unwrap();
    let (status, found) = server.get(&format!("/_matrix/client/v1/rooms/{room}/timestamp_to_event?ts={ts}&dir=f"), token).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["origin_server_ts"].as_u64().unwrap(), ts);
    let (status, _) = server.get(&format!("/_matrix/client/v1/rooms/{room}/timestamp_to_event?ts=1&dir=b"), token).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing before the room existed");

    let (status, initial) = server.get(&format!("/_matrix/client/v3/rooms/{room}/initialSync"), token).await;
    assert_eq!(status, StatusCode::OK, "{initial}");
    assert_eq!(initial["membership"], "join");
    let chunk = initial["messages"]["chunk"].as_array().unwrap();
    assert_eq!(chunk.last().unwrap()["content"]["body"], "m9", "oldest first, ending with the newest");
    assert!(initial["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"));
}

async fn knocking_needs_a_knock_room(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let closed = create_room(&server, &alice.access_token, json!({})).await;
    let (status, _) = server.post(&format!("/_matrix/client/v3/knock/{closed}"), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "invite-only rooms refuse knocks");
    let room = create_room(&server, &alice.access_token, json!({"initial_state": [{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]})).await;
    let (status, body) = server.post(&format!("/_matrix/client/v3/knock/{room}"), Some(&bob.access_token), json!({"reason": "let me in"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], json!(room));
    let (_, member) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", bob.user_id), Some(&alice.access_token)).await;
    assert_eq!(member["membership"], "knock");
    let (_, synced) = server.get("/_matrix/client/v3/sync", Some(&bob.access_token)).await;
    let knock_state = synced["rooms"]["knock"][&room]["knock_state"]["events"].as_array().expect("a knock section").clone();
    assert!(knock_state.iter().any(|e| e["type"] == "m.room.join_rules"), "{synced}");
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/invite"), Some(&alice.access_token), json!({"user_id": bob.user_id})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(join(&server, &bob.access_token, &room).await.0, StatusCode::OK);
}

async fn identical_state_is_not_sent_again(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    assert_eq!(join(&server, &bob.access_token, &room).await.0, StatusCode::OK);
    let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/");
    let (status, first) = server.put(&path, Some(&alice.access_token), json!({"topic": "Weaving"})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let position = server.state.storage.persisted_events_position();

    let (status, again) = server.put(&path, Some(&alice.access_token), json!({"topic": "Weaving"})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["event_id"], first["event_id"], "the current event's id");
    assert_eq!(server.state.storage.persisted_events_position(), position, "nothing persisted");

    let (_, changed) = server.put(&path, Some(&alice.access_token), json!({"topic": "Spinning"})).await;
    assert_ne!(changed["event_id"], first["event_id"], "other content is a new event");
    let (_, back) = server.put(&path, Some(&alice.access_token), json!({"topic": "Weaving"})).await;
    assert_ne!(back["event_id"], first["event_id"], "only the current state counts");
    let moved = server.state.storage.persisted_events_position();
    assert!(moved > position);

    let levels = format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/");
    let (_, mut content) = server.get(&levels, Some(&alice.access_token)).await;
    content["state_default"] = json!(0);
    assert_eq!(server.put(&levels, Some(&alice.access_token), content).await.0, StatusCode::OK);
    let (status, by_bob) = server.put(&path, Some(&bob.access_token), json!({"topic": "Weaving"})).await;
    assert_eq!(status, StatusCode::OK, "{by_bob}");
    assert_ne!(by_bob["event_id"], back["event_id"], "another sender is a new event");
}

/// `unsigned.prev_content` (with Synapse's `replaces_state` and
/// `prev_sender`): how a client tells a display name change from a join.
async fn state_events_carry_what_they_replace(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    let (_, joined) = join(&server, &bob.access_token, &room).await;
    let (_, join_event) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}?format=event", bob.user_id), Some(&alice.access_token)).await;
    assert!(join_event["unsigned"].get("prev_content").is_none(), "a first membership replaces nothing: {join_event} {joined}");

    let profile = format!("/_matrix/client/v3/profile/{}/displayname", bob.user_id);
    assert_eq!(server.put(&profile, Some(&bob.access_token), json!({"displayname": "Bobby"})).await.0, StatusCode::OK);
    let (_, page) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1"), Some(&alice.access_token)).await;
    let renamed = &page["chunk"][0];
    assert_eq!(renamed["content"], json!({"membership": "join", "displayname": "Bobby"}), "{renamed}");
    assert_eq!(renamed["unsigned"]["prev_content"], join_event["content"], "{renamed}");
    assert_eq!(renamed["unsigned"]["replaces_state"], join_event["event_id"]);
    assert_eq!(renamed["unsigned"]["prev_sender"], json!(bob.user_id));
    assert!(renamed["unsigned"]["age"].is_u64());

    let topic = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/");
    assert_eq!(server.put(&topic, Some(&alice.access_token), json!({"topic": "Weaving"})).await.0, StatusCode::OK);
    assert_eq!(server.put(&topic, Some(&alice.access_token), json!({"topic": "Spinning"})).await.0, StatusCode::OK);
    let (_, current) = server.get(&format!("{topic}?format=event"), Some(&bob.access_token)).await;
    assert_eq!(current["unsigned"]["prev_content"], json!({"topic": "Weaving"}), "{current}");
    let (_, sync) = server.get("/_matrix/client/v3/sync", Some(&bob.access_token)).await;
    let timeline = sync["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
    let in_sync = timeline.iter().find(|event| event["event_id"] == current["event_id"]).expect("the topic change in bob's timeline");
    assert_eq!(in_sync["unsigned"]["prev_content"], json!({"topic": "Weaving"}), "{in_sync}");
}

/// Power levels in `initial_state` replace the generated ones, as in Synapse.
async fn initial_state_may_set_the_power_levels(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    // Room version 12 (the default): the creator is not listed, her power is unlimited.
    let levels = json!({"users": {}, "users_default": 10, "events_default": 20, "state_default": 60, "ban": 70, "kick": 70, "redact": 70, "invite": 0});
    let body = json!({"initial_state": [{"type": "m.room.power_levels", "state_key": "", "content": levels}], "name": "Levels"});
    let room = create_room(&server, &alice.access_token, body).await;
    let (_, stored) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"), Some(&alice.access_token)).await;
    assert_eq!(stored, levels);
    let (_, name) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"), Some(&alice.access_token)).await;
    assert_eq!(name["name"], "Levels", "the rest of the room was made on them");
}

async fn a_forgotten_room_is_no_longer_readable(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    join(&server, &bob.access_token, &room).await;
    let event = send_text(&server, &alice.access_token, &room, "hello").await;
    let b = Some(bob.access_token.as_str());
    server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), b, json!({})).await;
    let paths = [
        format!("/_matrix/client/v3/rooms/{room}/messages?dir=b"),
        format!("/_matrix/client/v3/rooms/{room}/event/{event}"),
        format!("/_matrix/client/v3/rooms/{room}/members"),
    ];
    for path in &paths {
        assert_eq!(server.get(path, b).await.0, StatusCode::OK, "left, not forgotten: {path}");
    }
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/forget"), b, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    for path in &paths {
        let (status, body) = server.get(path, b).await;
        let refusal = if path.contains("/event/") { (StatusCode::NOT_FOUND, "M_NOT_FOUND") } else { (StatusCode::FORBIDDEN, "M_FORBIDDEN") };
        assert_eq!((status, errcode(&body)), refusal, "{path}: {body}");
    }
}

/// `/context` always has both lists (clients require them), and with
/// `lazy_load_members` only the members who sent something shown.
async fn context_keeps_empty_lists_and_lazy_loads_members(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    join(&server, &bob.access_token, &room).await;
    let first = send_text(&server, &alice.access_token, &room, "one").await;
    let last = send_text(&server, &alice.access_token, &room, "two").await;
    let (status, body) = server.get(&format!("/_matrix/client/v3/rooms/{room}/context/{last}?limit=2"), Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events_after"], json!([]), "{body}");
    assert_eq!(body["events_before"][0]["event_id"], json!(first));
    let members = |body: &Value| -> Vec<String> {
        body["state"].as_array().unwrap().iter().filter(|e| e["type"] == "m.room.member").map(|e| e["state_key"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(members(&body).len(), 2, "every member without lazy loading");
    let filter: String = form_urlencoded::byte_serialize(json!({"lazy_load_members": true}).to_string().as_bytes()).collect();
    let (_, body) = server.get(&format!("/_matrix/client/v3/rooms/{room}/context/{last}?limit=2&filter={filter}"), Some(&alice.access_token)).await;
    assert_eq!(members(&body), vec![alice.user_id.clone()], "{body}");
}

/// The spec's rule for the event that changes history visibility: visible
/// if the setting before or after it shows it.
async fn a_history_visibility_change_is_seen_under_either_setting(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let joined_only = json!({"preset": "public_chat", "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}]});
    let room = create_room(&server, &alice.access_token, joined_only).await;
    let change = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.history_visibility/"),
            Some(&alice.access_token),
            json!({"history_visibility": "world_readable"}),
        )
        .await
        .1["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    join(&server, &bob.access_token, &room).await;
    let (status, body) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{change}"), Some(&bob.access_token)).await;
    assert_eq!(status, StatusCode::OK, "world_readable after the change shows it: {body}");
}

/// `/members?at=` shows the state at a token only to who could see the
/// room then: a user who left does not learn who joined after them.
async fn members_at_a_token_need_the_room_visible_then(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let joined_only = json!({"preset": "public_chat", "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}]});
    let room = create_room(&server, &alice.access_token, joined_only).await;
    join(&server, &bob.access_token, &room).await;
    let (_, sync) = server.get("/_matrix/client/v3/sync", Some(&bob.access_token)).await;
    let while_joined = sync["next_batch"].as_str().unwrap().to_owned();
    server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), Some(&bob.access_token), json!({})).await;
    join(&server, &carol.access_token, &room).await;
    let (_, sync) = server.get("/_matrix/client/v3/sync", Some(&alice.access_token)).await;
    let after_carol = sync["next_batch"].as_str().unwrap().to_owned();

    let members = |token: String| {
        let path = format!("/_matrix/client/v3/rooms/{room}/members?at={token}");
        let server = &server;
        let bob = bob.access_token.clone();
        async move { server.get(&path, Some(&bob)).await }
    };
    let (status, body) = members(while_joined).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["chunk"].as_array().unwrap().len(), 2, "alice and bob then: {body}");
    let (status, body) = members(after_carol).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
}
