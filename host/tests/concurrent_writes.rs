//! Every family of writing endpoints at once, many users in parallel: no
//! request may fail because another one was writing. On SQLite a transaction
//! that reads before it writes used to fail at once with `database is locked`
//! (`SQLITE_BUSY_SNAPSHOT`) and answer 500 (the test client fails on any 500).

use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::{
    on_both_backends,
    support::{Backend, TestServer, encode},
};

on_both_backends!(every_writing_endpoint_family_succeeds_under_concurrent_writers, one_creators_simultaneous_rooms_each_get_their_own_id);

const USERS: usize = 6;
const ROUNDS: usize = 3;

/// One user's writes in one round: (method, path, body).
fn writes(server: &TestServer, localpart: &str, user: &str, room_id: &str, event_id: &str, device_id: &str, round: usize) -> Vec<(Method, String, Value)> {
    let user = encode(user);
    let room = encode(room_id);
    let event = encode(event_id);
    let v3 = "/_matrix/client/v3";
    vec![
        (Method::POST, "/_matrix/media/v1/create".to_owned(), json!({})),
        (Method::PUT, format!("{v3}/rooms/{room}/send/m.room.message/t{round}"), json!({"msgtype": "m.text", "body": format!("round {round}")})),
        (Method::PUT, format!("{v3}/rooms/{room}/state/org.example.state/{user}"), json!({"round": round})),
        (Method::POST, format!("{v3}/createRoom"), json!({"name": format!("room {round}")})),
        (Method::PUT, format!("{v3}/user/{user}/account_data/org.example.data"), json!({"round": round})),
        (Method::PUT, format!("{v3}/user/{user}/rooms/{room}/tags/u.work"), json!({"order": 0.5})),
        (Method::POST, format!("{v3}/rooms/{room}/receipt/m.read/{event}"), json!({})),
        (Method::POST, format!("{v3}/rooms/{room}/read_markers"), json!({"m.fully_read": event_id})),
        (Method::PUT, format!("{v3}/rooms/{room}/typing/{user}"), json!({"typing": true, "timeout": 1000})),
        (Method::PUT, format!("{v3}/presence/{user}/status"), json!({"presence": "online", "status_msg": format!("round {round}")})),
        (Method::PUT, format!("{v3}/profile/{user}/displayname"), json!({"displayname": format!("name {round}")})),
        (Method::PUT, format!("{v3}/sendToDevice/org.example.msg/d{round}"), json!({"messages": {server.user_id("u0"): {"*": {"round": round}}}})),
        (Method::PUT, format!("{v3}/devices/{device_id}"), json!({"display_name": format!("device {round}")})),
        (
            Method::POST,
            format!("{v3}/room_keys/version"),
            json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "key", "signatures": {}}}),
        ),
        (
            Method::POST,
            format!("{v3}/pushers/set"),
            json!({"kind": "http", "app_id": "org.example", "pushkey": format!("key{round}"), "app_display_name": "a", "device_display_name": "d", "lang": "en", "data": {"url": "https://push.example.org/_matrix/push/v1/notify"}}),
        ),
        (Method::PUT, format!("{v3}/pushrules/global/override/rule{round}"), json!({"actions": ["notify"], "conditions": []})),
        (Method::POST, format!("{v3}/user/{user}/filter"), json!({"room": {"timeline": {"limit": round + 1}}})),
        (Method::POST, format!("{v3}/rooms/{room}/report/{event}"), json!({"reason": "test"})),
        (Method::POST, format!("{v3}/login"), crate::support::login_body(localpart, "pw")),
    ]
}

async fn every_writing_endpoint_family_succeeds_under_concurrent_writers(backend: Backend) {
    // http-pusher (the reference pusher) checks the pushers set.
    let pusher = format!(
        "[[plugins]]\nname = \"http-pusher\"\nrole = \"pusher\"\npath = {:?}\n[plugins.capabilities]\nallowed_outbound_hosts = [\"*:*\"]\n",
        crate::plugins::guest("http_pusher").display().to_string()
    );
    let server = TestServer::builder(backend).config("[rc_media_create]\nper_second = 1000\nburst_count = 1000").config(&pusher).start().await;
    let mut sessions = Vec::new();
    for n in 0..USERS {
        sessions.push(server.register(&format!("u{n}"), "pw").await);
    }
    let owner = &sessions[0];
    let (status, body) = server
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&owner.access_token),
            json!({"preset": "public_chat", "power_level_content_override": {"state_default": 0}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let room_id = body["room_id"].as_str().unwrap().to_owned();
    for session in &sessions[1..] {
        let (status, body) = server.post(&format!("/_matrix/client/v3/join/{}", encode(&room_id)), Some(&session.access_token), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/first", encode(&room_id)),
            Some(&owner.access_token),
            json!({"msgtype": "m.text", "body": "first"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let event_id = body["event_id"].as_str().unwrap().to_owned();

    let server = std::sync::Arc::new(server);
    let mut requests = JoinSet::new();
    for round in 0..ROUNDS {
        for session in &sessions {
            for (method, path, body) in
                writes(&server, &session.user_id[1..session.user_id.find(':').unwrap()], &session.user_id, &room_id, &event_id, &session.device_id, round)
            {
                let server = server.clone();
                let token = session.access_token.clone();
                requests.spawn(async move {
                    let (status, reply) = server.request(method.clone(), &path, Some(&token), Some(body)).await;
                    (method, path, status, reply)
                });
            }
        }
    }
    let mut failures = Vec::new();
    let mut total = 0;
    while let Some(result) = requests.join_next().await {
        let (method, path, status, reply) = result.expect("request task");
        total += 1;
        if !status.is_success() {
            failures.push(format!("{method} {path}: {status} {reply}"));
        }
    }
    assert!(failures.is_empty(), "{} of {total} concurrent writes failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(total, USERS * ROUNDS * 19);
}

/// A v12 room id is the hash of the create event, which is the same for two
/// rooms one creator makes in the same millisecond: each must still get a
/// room of its own, none a 500.
async fn one_creators_simultaneous_rooms_each_get_their_own_id(backend: Backend) {
    const ROOMS: usize = 20;
    let server = TestServer::builder(backend).config("[rc_room_creation]\nper_second = 1000\nburst_count = 1000").start().await;
    let alice = server.register("alice", "pw").await;
    let server = std::sync::Arc::new(server);
    let mut creations = JoinSet::new();
    for _ in 0..ROOMS {
        let (server, token) = (server.clone(), alice.access_token.clone());
        creations.spawn(async move { server.post("/_matrix/client/v3/createRoom", Some(&token), json!({})).await });
    }
    let mut room_ids = std::collections::HashSet::new();
    while let Some(created) = creations.join_next().await {
        let (status, body) = created.expect("createRoom task");
        assert_eq!(status, StatusCode::OK, "{body}");
        room_ids.insert(body["room_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(room_ids.len(), ROOMS, "every room has an id of its own");
}
