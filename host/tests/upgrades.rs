//! `POST /rooms/{roomId}/upgrade`: the replacement room, the tombstone, the
//! old room's restricted power levels, and the aliases that move.

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::{create_room, send_text},
    support::{Backend, TestServer, errcode},
};

on_both_backends!(an_upgrade_replaces_the_room, upgrades_are_refused_without_power_or_version);

async fn state(server: &TestServer, token: &str, room: &str, kind: &str) -> (StatusCode, Value) {
    server.get(&format!("/_matrix/client/v3/rooms/{room}/state/{kind}/"), Some(token)).await
}

async fn an_upgrade_replaces_the_room(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let mallory = server.register("mallory", "pw").await;
    let a = alice.access_token.as_str();
    let body =
        json!({"preset": "public_chat", "visibility": "public", "name": "Old name", "topic": "The topic", "room_alias_name": "lobby", "room_version": "10"});
    let old = create_room(&server, a, body).await;
    for token in [&bob.access_token, &mallory.access_token] {
        server.post(&format!("/_matrix/client/v3/rooms/{old}/join"), Some(token), json!({})).await;
    }
    let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{old}/ban"), Some(a), json!({"user_id": mallory.user_id, "reason": "spam"})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    send_text(&server, a, &old, "before the upgrade").await;
    let tag_path = |room: &str| format!("/_matrix/client/v3/user/{}/rooms/{room}/tags", alice.user_id);
    server.put(&format!("{}/m.favourite", tag_path(&old)), Some(a), json!({"order": 0.5})).await;
    let direct_path = format!("/_matrix/client/v3/user/{}/account_data/m.direct", alice.user_id);
    server.put(&direct_path, Some(a), json!({bob.user_id.clone(): [old.clone()]})).await;
    // Muted as Element mutes a room, and a room rule besides.
    let mute = json!({"conditions": [{"kind": "event_match", "key": "room_id", "pattern": old}], "actions": []});
    let (status, reply) = server.put(&format!("/_matrix/client/v3/pushrules/global/override/{old}"), Some(a), mute).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, reply) = server.put(&format!("/_matrix/client/v3/pushrules/global/room/{old}"), Some(a), json!({"actions": ["notify"]})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");

    let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{old}/upgrade"), Some(a), json!({"new_version": "11"})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let new = reply["replacement_room"].as_str().expect("replacement_room").to_owned();
    assert_ne!(new, old);

    let (_, create) = state(&server, a, &new, "m.room.create").await;
    assert_eq!(create["room_version"], "11", "{create}");
    assert_eq!(create["predecessor"]["room_id"], json!(old), "{create}");
    assert!(create["predecessor"]["event_id"].is_string(), "{create}");
    assert_eq!(state(&server, a, &new, "m.room.name").await.1["name"], "Old name");
    assert_eq!(state(&server, a, &new, "m.room.topic").await.1["topic"], "The topic");
    assert_eq!(state(&server, a, &new, "m.room.join_rules").await.1["join_rule"], "public");
    let (_, ban) = server.get(&format!("/_matrix/client/v3/rooms/{new}/state/m.room.member/{}", mallory.user_id), Some(a)).await;
    assert_eq!(ban["membership"], "ban", "bans carry over: {ban}");

    let (_, tombstone) = state(&server, a, &old, "m.room.tombstone").await;
    assert_eq!(tombstone["replacement_room"], json!(new), "{tombstone}");
    let (_, old_levels) = state(&server, a, &old, "m.room.power_levels").await;
    assert_eq!(old_levels["events_default"], 50, "{old_levels}");
    assert_eq!(old_levels["invite"], 50, "{old_levels}");
    let (status, reply) = server
        .put(&format!("/_matrix/client/v3/rooms/{old}/send/m.room.message/late"), Some(&bob.access_token), json!({"msgtype": "m.text", "body": "hello?"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "bob can no longer talk in the old room: {reply}");

    let (_, alias) = server.get(&format!("/_matrix/client/v3/directory/room/%23lobby:{}", server.server_name), None).await;
    assert_eq!(alias["room_id"], json!(new), "the alias moved: {alias}");
    assert_eq!(state(&server, a, &new, "m.room.canonical_alias").await.1["alias"], json!(format!("#lobby:{}", server.server_name)));
    let (_, old_alias) = state(&server, a, &old, "m.room.canonical_alias").await;
    assert!(old_alias.get("alias").is_none(), "{old_alias}");
    let (_, listed) = server.get(&format!("/_matrix/client/v3/directory/list/room/{new}"), None).await;
    assert_eq!(listed["visibility"], "public");
    let (_, listed) = server.get(&format!("/_matrix/client/v3/directory/list/room/{old}"), None).await;
    assert_eq!(listed["visibility"], "private");

    // Alice's favourite and direct chat follow the room.
    let (_, tags) = server.get(&tag_path(&new), Some(a)).await;
    assert_eq!(tags["tags"]["m.favourite"]["order"], 0.5, "{tags}");
    let (_, direct) = server.get(&direct_path, Some(a)).await;
    assert_eq!(direct[&bob.user_id], json!([old.clone(), new.clone()]), "{direct}");

    // Alice's push rules for the room follow it.
    let (status, muted) = server.get(&format!("/_matrix/client/v3/pushrules/global/override/{new}"), Some(a)).await;
    assert_eq!(status, StatusCode::OK, "{muted}");
    assert_eq!(muted["conditions"], json!([{"kind": "event_match", "key": "room_id", "pattern": new}]), "{muted}");
    assert_eq!(muted["actions"], json!([]), "{muted}");
    let (status, room_rule) = server.get(&format!("/_matrix/client/v3/pushrules/global/room/{new}"), Some(a)).await;
    assert_eq!(status, StatusCode::OK, "{room_rule}");
    assert_eq!(room_rule["actions"], json!(["notify"]), "{room_rule}");
    let (status, _) = server.get(&format!("/_matrix/client/v3/pushrules/global/override/{old}"), Some(a)).await;
    assert_eq!(status, StatusCode::OK, "the old room's rule stays");

    // Bob follows the tombstone into the new room.
    let (status, reply) = server.post(&format!("/_matrix/client/v3/join/{new}"), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

async fn upgrades_are_refused_without_power_or_version(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&bob.access_token), json!({})).await;
    let path = format!("/_matrix/client/v3/rooms/{room}/upgrade");

    let (status, reply) = server.post(&path, Some(&bob.access_token), json!({"new_version": "11"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    assert_eq!(errcode(&reply), "M_FORBIDDEN");
    let (status, reply) = server.post(&path, Some(&alice.access_token), json!({"new_version": "999"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(errcode(&reply), "M_UNSUPPORTED_ROOM_VERSION");
    let (status, reply) = server.post(&path, Some(&alice.access_token), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let (_, tombstone) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.tombstone/"), Some(&alice.access_token)).await;
    assert_eq!(errcode(&tombstone), "M_NOT_FOUND", "nothing happened: {tombstone}");
}
