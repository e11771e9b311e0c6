//! Answers that differed from the spec and Synapse (issue 21, item 10):
//! invite reasons, the creator's power in `power_level_content_override`,
//! `/messages` bounded by `to`, the shape of push rules, `register` with
//! `inhibit_login`, and `event/{eventId}` of a room the user cannot read.

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::{create_room, send_text},
    support::{Backend, TestServer, errcode},
};

on_both_backends!(
    an_invite_keeps_its_reason,
    power_levels_leaving_out_the_creator_are_refused_up_front,
    messages_stop_at_the_to_token,
    push_rules_list_every_kind_and_keep_highlight_values,
    register_without_login_leaves_device_id_out,
    an_event_of_a_room_the_user_cannot_read_is_not_found,
);

async fn an_invite_keeps_its_reason(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({})).await;
    let token = Some(alice.access_token.as_str());
    let (status, body) =
        server.post(&format!("/_matrix/client/v3/rooms/{room}/invite"), token, json!({"user_id": bob.user_id, "reason": "Welcome aboard"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, member) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", bob.user_id), token).await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!((member["membership"].as_str(), member["reason"].as_str()), (Some("invite"), Some("Welcome aboard")), "{member}");
}

async fn power_levels_leaving_out_the_creator_are_refused_up_front(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let token = Some(alice.access_token.as_str());
    for version in ["10", "11"] {
        let request = json!({"room_version": version, "power_level_content_override": {"users": {bob.user_id.clone(): 100}}});
        let (status, body) = server.post("/_matrix/client/v3/createRoom", token, request).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_ROOM_STATE"), "v{version}: {body}");
        assert!(body["error"].as_str().unwrap_or_default().contains(&alice.user_id), "{body}");
    }
    let (_, rooms) = server.get("/_matrix/client/v3/joined_rooms", token).await;
    assert_eq!(rooms["joined_rooms"], json!([]), "nothing was created");

    let request = json!({"room_version": "11", "power_level_content_override": {"users": {alice.user_id.clone(): 100, bob.user_id.clone(): 50}}});
    let room = create_room(&server, &alice.access_token, request).await;
    let (_, levels) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"), token).await;
    assert_eq!(levels["users"][&bob.user_id], 50);
    // From v12 the creator must not be listed (unlimited power), as Synapse.
    let room = create_room(&server, &alice.access_token, json!({"power_level_content_override": {"users": {bob.user_id.clone(): 50}}})).await;
    let (_, levels) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"), token).await;
    assert_eq!(levels["users"], json!({bob.user_id.clone(): 50}));
    let request = json!({"power_level_content_override": {"users": {alice.user_id.clone(): 100}}});
    let (status, body) = server.post("/_matrix/client/v3/createRoom", token, request).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_UNKNOWN"), "{body}");
    // An override without `users` keeps the generated ones.
    create_room(&server, &alice.access_token, json!({"power_level_content_override": {"events_default": 10}})).await;
}

fn bodies(page: &Value) -> Vec<String> {
    page["chunk"].as_array().expect("chunk").iter().filter_map(|event| event["content"]["body"].as_str()).map(str::to_owned).collect()
}

async fn messages_stop_at_the_to_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = Some(alice.access_token.as_str());
    let room = create_room(&server, &alice.access_token, json!({})).await;
    for text in ["a1", "a2"] {
        send_text(&server, &alice.access_token, &room, text).await;
    }
    let (_, sync) = server.get("/_matrix/client/v3/sync", token).await;
    let first = sync["next_batch"].as_str().unwrap().to_owned();
    for text in ["b1", "b2", "b3", "b4"] {
        send_text(&server, &alice.access_token, &room, text).await;
    }
    let filter = "%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A1%7D%7D%7D";
    let (_, sync) = server.get(&format!("/_matrix/client/v3/sync?since={first}&filter={filter}"), token).await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"];
    assert_eq!(timeline["limited"], true, "{timeline}");
    let prev_batch = timeline["prev_batch"].as_str().unwrap().to_owned();
    let second = sync["next_batch"].as_str().unwrap().to_owned();
    send_text(&server, &alice.access_token, &room, "c1").await;

    let server = &server;
    let room = &room;
    let messages = |query: String| async move { server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?{query}"), token).await.1 };
    // The gap of the limited sync, backwards and forwards.
    assert_eq!(bodies(&messages(format!("dir=b&from={prev_batch}&to={first}")).await), ["b3", "b2", "b1"]);
    assert_eq!(bodies(&messages(format!("dir=f&from={first}&to={prev_batch}")).await), ["b1", "b2", "b3"]);
    // From the newest event back to a sync token, and forwards from the start to one.
    assert_eq!(bodies(&messages(format!("dir=b&to={second}")).await), ["c1"]);
    assert_eq!(bodies(&messages(format!("dir=f&to={first}")).await), ["a1", "a2"]);
    // Page by page: `to` still bounds the last page, and no page passes it.
    let mut from = prev_batch.clone();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let page = messages(format!("dir=b&from={from}&to={first}&limit=2")).await;
        seen.extend(bodies(&page));
        match page["end"].as_str() {
            Some(end) => from = end.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["b3", "b2", "b1"]);
}

async fn push_rules_list_every_kind_and_keep_highlight_values(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = Some(alice.access_token.as_str());
    let kinds = ["override", "content", "room", "sender", "underride"];
    let (status, all) = server.get("/_matrix/client/v3/pushrules/", token).await;
    assert_eq!(status, StatusCode::OK);
    let (_, global) = server.get("/_matrix/client/v3/pushrules/global/", token).await;
    for kind in kinds {
        assert!(all["global"][kind].is_array(), "{kind} in /pushrules/: {all}");
        assert!(global[kind].is_array(), "{kind} in /pushrules/global/: {global}");
    }
    assert_eq!(global["room"], json!([]), "an empty kind is listed");

    let actions = json!(["notify", {"set_tweak": "highlight", "value": true}, {"set_tweak": "sound", "value": "default"}]);
    let rule = format!("/_matrix/client/v3/pushrules/global/sender/{}", alice.user_id.replace('@', "%40").replace(':', "%3A"));
    let (status, body) = server.put(&rule, token, json!({"actions": actions})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, got) = server.get(&rule, token).await;
    assert_eq!(got["actions"], actions, "{got}");
    let (_, got) = server.get(&format!("{rule}/actions"), token).await;
    assert_eq!(got["actions"], actions, "{got}");
    let (_, global) = server.get("/_matrix/client/v3/pushrules/global/", token).await;
    assert_eq!(global["sender"][0]["actions"], actions, "{global}");

    let (status, data) = server.get(&format!("/_matrix/client/v3/user/{}/account_data/m.push_rules", alice.user_id), token).await;
    assert_eq!(status, StatusCode::OK, "{data}");
    for kind in kinds {
        assert!(data["global"][kind].is_array(), "{kind}: {data}");
    }
    assert_eq!(data["global"]["sender"][0]["actions"], actions);
    let (_, sync) = server.get("/_matrix/client/v3/sync", token).await;
    let events = sync["account_data"]["events"].as_array().unwrap();
    let in_sync = events.iter().find(|event| event["type"] == "m.push_rules").expect("m.push_rules in sync");
    assert_eq!(in_sync["content"]["global"]["room"], json!([]), "{in_sync}");
}

async fn register_without_login_leaves_device_id_out(backend: Backend) {
    let server = TestServer::start(backend).await;
    let request = json!({"username": "quiet", "password": "pw", "inhibit_login": true, "auth": {"type": "m.login.dummy"}});
    let (status, body) = server.post("/_matrix/client/v3/register", None, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"user_id": server.user_id("quiet")}), "no device_id, not even null");
    let (status, body) =
        server.post("/_matrix/client/v3/register", None, json!({"username": "loud", "password": "pw", "auth": {"type": "m.login.dummy"}})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["device_id"].is_string() && body["access_token"].is_string(), "{body}");
}

async fn an_event_of_a_room_the_user_cannot_read_is_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let eve = server.register("eve", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({})).await;
    let event = send_text(&server, &alice.access_token, &room, "private").await;
    let (status, body) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{event}"), Some(&eve.access_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{body}");
    let unknown = format!("!nowhere:{}", server.server_name);
    let (status, body) = server.get(&format!("/_matrix/client/v3/rooms/{unknown}/event/{event}"), Some(&eve.access_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{body}");
    let (status, _) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{event}"), Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK);
}
