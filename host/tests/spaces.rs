//! `/rooms/{roomId}/hierarchy` (spaces) and reports of events and rooms.

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::{create_room, send_text},
    support::{Backend, TestServer, errcode},
};

on_both_backends!(a_space_lists_its_rooms_breadth_first, reports_reach_the_administrators);

async fn add_child(server: &TestServer, token: &str, space: &str, child: &str, extra: Value) {
    let mut content = json!({"via": [server.server_name]});
    content.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (status, body) = server.put(&format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/{child}"), Some(token), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn room_ids(body: &Value) -> Vec<String> {
    body["rooms"].as_array().unwrap().iter().map(|room| room["room_id"].as_str().unwrap().to_owned()).collect()
}

async fn a_space_lists_its_rooms_breadth_first(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let a = alice.access_token.as_str();
    let space_content = json!({"preset": "public_chat", "name": "Space", "creation_content": {"type": "m.space"}});
    let space = create_room(&server, a, space_content.clone()).await;
    let subspace = create_room(&server, a, space_content).await;
    let public_room = create_room(&server, a, json!({"preset": "public_chat", "name": "Public", "topic": "Open to all"})).await;
    let private_room = create_room(&server, a, json!({"preset": "private_chat"})).await;
    let deep_room = create_room(&server, a, json!({"preset": "public_chat"})).await;
    add_child(&server, a, &space, &subspace, json!({"order": "b"})).await;
    add_child(&server, a, &space, &public_room, json!({"order": "a", "suggested": true})).await;
    add_child(&server, a, &space, &private_room, json!({})).await;
    add_child(&server, a, &subspace, &deep_room, json!({})).await;
    add_child(&server, a, &subspace, &space, json!({})).await; // a cycle
    // A child without `via` is no child.
    let (status, _) = server.put(&format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/!gone:{}", server.server_name), Some(a), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    send_text(&server, a, &public_room, "hello").await;

    let path = format!("/_matrix/client/v1/rooms/{space}/hierarchy");
    let (status, body) = server.get(&path, Some(a)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(room_ids(&body), vec![space.clone(), public_room.clone(), subspace.clone(), private_room.clone(), deep_room.clone()], "breadth first, by order");
    let root = &body["rooms"][0];
    assert_eq!(root["room_type"], "m.space", "{root}");
    assert_eq!(root["name"], "Space");
    assert_eq!(root["num_joined_members"], 1);
    // ruma leaves `join_rule` out when public; the spec says absent means public.
    assert!(root.get("join_rule").is_none_or(|rule| rule == "public"), "{root}");
    let children: Vec<&str> = root["children_state"].as_array().unwrap().iter().map(|child| child["state_key"].as_str().unwrap()).collect();
    assert_eq!(children, vec![public_room.as_str(), subspace.as_str(), private_room.as_str()]);
    assert!(root["children_state"][0]["origin_server_ts"].is_i64(), "{root}");
    assert_eq!(body["rooms"][1]["topic"], "Open to all");

    // Bob may see the public rooms only; the private room is left out.
    let (status, body) = server.get(&path, Some(&bob.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(room_ids(&body), vec![space.clone(), public_room.clone(), subspace.clone(), deep_room.clone()]);

    let (_, body) = server.get(&format!("{path}?max_depth=1"), Some(a)).await;
    assert_eq!(room_ids(&body), vec![space.clone(), public_room.clone(), subspace.clone(), private_room.clone()]);
    let (_, body) = server.get(&format!("{path}?suggested_only=true"), Some(a)).await;
    assert_eq!(room_ids(&body), vec![space.clone(), public_room.clone()]);

    let (_, first) = server.get(&format!("{path}?limit=2"), Some(a)).await;
    assert_eq!(room_ids(&first), vec![space.clone(), public_room.clone()]);
    let next = first["next_batch"].as_str().expect("more to come");
    let (_, second) = server.get(&format!("{path}?limit=2&from={next}"), Some(a)).await;
    assert_eq!(room_ids(&second), vec![subspace.clone(), private_room.clone()]);
    let (status, body) = server.get(&format!("{path}?from=bogus"), Some(a)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"));

    let (status, body) = server.get(&format!("/_matrix/client/v1/rooms/{private_room}/hierarchy"), Some(&bob.access_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
}

async fn reports_reach_the_administrators(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let eve = server.register("eve", "pw").await;
    let a = alice.access_token.as_str();
    let room = create_room(&server, a, json!({})).await;
    let event = send_text(&server, a, &room, "offensive").await;

    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/report/{event}"), Some(a), json!({"reason": "rude"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({}));
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/report"), Some(a), json!({"reason": "the whole room"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Eve cannot see the event: the same 404 as for an event that does not exist.
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/report/{event}"), Some(&eve.access_token), json!({"reason": "x"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{body}");
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/report/$missing"), Some(a), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{body}");
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/!nowhere:{}/report", server.server_name), Some(a), json!({"reason": "x"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{body}");

    let (status, body) = server.get("/_synapse/admin/v1/event_reports", Some(a)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "not an admin: {body}");
    let admin = register_admin(&server, "root").await;
    let (status, body) = server.get("/_synapse/admin/v1/event_reports?limit=1", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 2, "{body}");
    assert_eq!(body["event_reports"][0]["reason"], "the whole room", "newest first: {body}");
    assert!(body["event_reports"][0]["event_id"].is_null());
    let (_, body) = server.get(&format!("/_synapse/admin/v1/event_reports?from={}", body["next_token"]), Some(&admin)).await;
    assert_eq!(body["event_reports"][0]["event_id"], json!(event), "{body}");
    assert_eq!(body["event_reports"][0]["user_id"], json!(alice.user_id));
}

/// A server admin made with the shared secret; their access token.
pub(crate) async fn register_admin(server: &TestServer, localpart: &str) -> String {
    let path = "/_synapse/admin/v1/register";
    let nonce = server.get(path, None).await.1["nonce"].as_str().unwrap().to_owned();
    let mac = weft::api::admin::compute_mac("test-shared-secret", &nonce, localpart, "pw", true, None);
    let mac = hex::encode(hmac::Mac::finalize(mac).into_bytes());
    let body = json!({"nonce": nonce, "username": localpart, "password": "pw", "admin": true, "mac": mac});
    let (status, reply) = server.post(path, None, body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["access_token"].as_str().unwrap().to_owned()
}
