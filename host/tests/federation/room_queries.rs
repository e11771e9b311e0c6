//! What other servers learn of a room without its events: its hierarchy
//! (a Synapse client walking a Synapse space whose child is a Weft room,
//! and a Weft server asking another: what it may see, `suggested_only`),
//! `timestamp_to_event`, and the room's server ACL refusing a server.

use http::{Method, StatusCode};
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedRoomId, RoomId, UInt,
    api::{
        Direction,
        federation::{event::get_event_by_timestamp, space::get_hierarchy},
    },
};
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::{create_room, send_text},
    support::{Backend, TestServer, synapse::Synapse},
};

on_both_backends!(another_server_reads_a_rooms_hierarchy_and_finds_events_by_time_within_the_acl);

async fn put_state(server: &TestServer, token: &str, room: &str, kind: &str, state_key: &str, content: Value) {
    let (status, body) = server.put(&format!("/_matrix/client/v3/rooms/{room}/state/{kind}/{state_key}"), Some(token), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn room_id(id: &str) -> OwnedRoomId {
    RoomId::parse(id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_walks_into_a_weft_room_from_its_space() {
    let synapse = Synapse::start().await;
    let weft = TestServer::builder(Backend::Sqlite).federation().start().await;
    let owner = weft.register("owner", "password-of-owner").await;
    let weft_room = create_room(&weft, &owner.access_token, json!({"preset": "public_chat", "name": "Weft child", "topic": "over there"})).await;

    let walker = synapse.register("walker").await;
    let body = json!({"preset": "public_chat", "name": "Synapse space", "creation_content": {"type": "m.space"}});
    let (status, created) = synapse.post("/_matrix/client/v3/createRoom", Some(&walker.access_token), body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let space = created["room_id"].as_str().unwrap().to_owned();
    let child = format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/{weft_room}");
    let (status, body) = synapse.request(Method::PUT, &child, Some(&walker.access_token), Some(json!({"via": [weft.server_name]}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Synapse is not in the Weft room: it asks Weft's federation hierarchy.
    let (status, body) = synapse.request(Method::GET, &format!("/_matrix/client/v1/rooms/{space}/hierarchy"), Some(&walker.access_token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse.logs());
    let rooms = body["rooms"].as_array().unwrap();
    let found = rooms.iter().find(|room| room["room_id"] == json!(weft_room)).unwrap_or_else(|| panic!("the Weft room is listed: {body}\n{}", synapse.logs()));
    assert_eq!((found["name"].as_str(), found["topic"].as_str(), found["num_joined_members"].as_u64()), (Some("Weft child"), Some("over there"), Some(1)));
}

async fn another_server_reads_a_rooms_hierarchy_and_finds_events_by_time_within_the_acl(backend: Backend) {
    let home = TestServer::builder(backend).federation().start().await;
    // Named by its address, so that the ACL can refuse it and not `home`.
    let other = TestServer::builder(backend).named_by_address().start().await;
    let home_name = ruma::ServerName::parse(&home.server_name).unwrap();
    let owner = home.register("owner", "password-of-owner").await;
    let a = owner.access_token.as_str();
    let space = create_room(&home, a, json!({"preset": "public_chat", "name": "Space", "creation_content": {"type": "m.space"}})).await;
    let open = create_room(&home, a, json!({"preset": "public_chat", "name": "Open"})).await;
    let closed = create_room(&home, a, json!({"preset": "private_chat", "name": "Closed"})).await;
    for (child, suggested) in [(&open, true), (&closed, false)] {
        put_state(&home, a, &space, "m.space.child", child, json!({"via": [home.server_name], "suggested": suggested})).await;
    }
    let client = &other.state.federation.client;

    let answer = client.send_request(&home_name, get_hierarchy::v1::Request::new(room_id(&space))).await.expect("the hierarchy");
    assert_eq!(answer.room.summary.room_id, space);
    assert_eq!(answer.room.summary.name.as_deref(), Some("Space"));
    assert_eq!(answer.room.children_state.len(), 2);
    let children: Vec<String> = answer.children.iter().map(|room| room.room_id.to_string()).collect();
    assert_eq!(children, vec![open.clone()], "the public child is described");
    assert_eq!(answer.inaccessible_children, vec![room_id(&closed)], "the invite-only one is not");
    let mut suggested = get_hierarchy::v1::Request::new(room_id(&space));
    suggested.suggested_only = true;
    let answer = client.send_request(&home_name, suggested).await.expect("the suggested hierarchy");
    assert_eq!(answer.room.children_state.len(), 1);
    assert!(answer.inaccessible_children.is_empty());
    // A room another server may not see is unknown to it.
    let refused = client.send_request(&home_name, get_hierarchy::v1::Request::new(room_id(&closed))).await.expect_err("hidden");
    assert_eq!((refused.status(), refused.errcode()), (Some(StatusCode::NOT_FOUND), Some("M_NOT_FOUND")), "{refused}");

    // The event nearest a time, in a room whose history anyone may read.
    let first = send_text(&home, a, &open, "first").await;
    put_state(&home, a, &open, "m.room.history_visibility", "", json!({"history_visibility": "world_readable"})).await;
    let at =
        |ts: u64, dir: Direction, room: &str| get_event_by_timestamp::v1::Request::new(room_id(room), MilliSecondsSinceUnixEpoch(UInt::new(ts).unwrap()), dir);
    let now: u64 = MilliSecondsSinceUnixEpoch::now().get().into();
    let latest = client.send_request(&home_name, at(now + 60_000, Direction::Backward, &open)).await.expect("an event before now");
    let (status, events) = home.get(&format!("/_matrix/client/v3/rooms/{open}/messages?dir=b&limit=1"), Some(a)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json!(latest.event_id), events["chunk"][0]["event_id"], "the newest event");
    let earliest = client.send_request(&home_name, at(0, Direction::Forward, &open)).await.expect("the first event");
    let (status, events) = home.get(&format!("/_matrix/client/v3/rooms/{open}/messages?dir=f&limit=1"), Some(a)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json!(earliest.event_id), events["chunk"][0]["event_id"], "the room's first event");
    assert_ne!(earliest.event_id.as_str(), first);
    let none = client.send_request(&home_name, at(now + 3_600_000, Direction::Forward, &open)).await.expect_err("nothing after");
    assert_eq!((none.status(), none.errcode()), (Some(StatusCode::NOT_FOUND), Some("M_NOT_FOUND")), "{none}");
    // A room whose history is not public, where the asking server has no one.
    let hidden = client.send_request(&home_name, at(now, Direction::Backward, &closed)).await.expect_err("not in the room");
    assert_eq!((hidden.status(), hidden.errcode()), (Some(StatusCode::FORBIDDEN), Some("M_FORBIDDEN")), "{hidden}");
    let unknown = format!("!nothing:{}", home.server_name);
    let missing = client.send_request(&home_name, at(now, Direction::Backward, &unknown)).await.expect_err("no such room");
    assert_eq!(missing.status(), Some(StatusCode::NOT_FOUND), "{missing}");

    // The server ACL refuses the asking server: by its address, or by name
    // (`127.0.0.1`, the port not counting).
    put_state(&home, a, &space, "m.room.server_acl", "", json!({"allow": ["*"], "allow_ip_literals": false})).await;
    put_state(&home, a, &open, "m.room.server_acl", "", json!({"allow": ["*"], "deny": ["127.0.0.*"]})).await;
    let banned = client.send_request(&home_name, get_hierarchy::v1::Request::new(room_id(&space))).await.expect_err("banned");
    assert_eq!((banned.status(), banned.errcode()), (Some(StatusCode::FORBIDDEN), Some("M_FORBIDDEN")), "{banned}");
    let banned = client.send_request(&home_name, at(now + 60_000, Direction::Backward, &open)).await.expect_err("banned");
    assert_eq!((banned.status(), banned.errcode()), (Some(StatusCode::FORBIDDEN), Some("M_FORBIDDEN")), "{banned}");
}
