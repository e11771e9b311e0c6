//! Event filters in `/sync` (stored and inline), `/messages` and `/context`: types with
//! wildcards, senders, rooms, `contains_url`, limits, the state, ephemeral
//! and account data sections, presence, lazy-loaded members, and the shape
//! of events (`event_fields`, `event_format`); a filtered
//! timeline stays `limited` with a working `prev_batch`.

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::{create_room, send_text},
    support::{Backend, TestServer},
};

on_both_backends!(
    malformed_filters_are_refused,
    timeline_filters_keep_limited_and_prev_batch,
    room_lists_and_filtered_state,
    ephemeral_account_data_and_presence_filters,
    messages_filters_and_lazy_members,
    event_fields_and_format_shape_sync_events,
);

async fn sync_with(server: &TestServer, token: &str, filter: &str, since: Option<&str>) -> Value {
    let filter: String = form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    let since = since.map_or(String::new(), |since| format!("&since={since}"));
    let (status, body) = server.get(&format!("/_matrix/client/v3/sync?filter={filter}{since}"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn store_filter(server: &TestServer, token: &str, user_id: &str, filter: Value) -> String {
    let (status, body) = server.post(&format!("/_matrix/client/v3/user/{user_id}/filter"), Some(token), filter).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["filter_id"].as_str().unwrap().to_owned()
}

fn types(events: &Value) -> Vec<String> {
    events.as_array().map_or(Vec::new(), |events| events.iter().map(|e| e["type"].as_str().unwrap_or_default().to_owned()).collect())
}

fn bodies(events: &Value) -> Vec<String> {
    events.as_array().map_or(Vec::new(), |events| events.iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect())
}

async fn send(server: &TestServer, token: &str, room: &str, kind: &str, content: Value) {
    let txn = format!("{kind}-{}", content);
    let txn: String = form_urlencoded::byte_serialize(txn.as_bytes()).collect();
    let (status, body) = server.put(&format!("/_matrix/client/v3/rooms/{room}/send/{kind}/{txn}"), Some(token), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn join(server: &TestServer, token: &str, room: &str) {
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn malformed_filters_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({})).await;
    let token = Some(alice.access_token.as_str());
    let encode = |filter: &str| -> String { form_urlencoded::byte_serialize(filter.as_bytes()).collect() };
    for filter in ["{nope", r#"{"room": {"timeline": {"limit": -1}}}"#, r#"{"room": {"timeline": {"types": "m.room.message"}}}"#, "[]"] {
        let (status, body) = server.get(&format!("/_matrix/client/v3/sync?filter={}", encode(filter)), token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "sync with {filter}: {body}");
    }
    for filter in ["{nope", r#"{"limit": -1}"#, r#"{"types": "m.room.message"}"#, r#"{"senders": ["not a user id"]}"#, "[]"] {
        let (status, body) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&filter={}", encode(filter)), token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "messages with {filter}: {body}");
    }
    let (status, body) = server.post(&format!("/_matrix/client/v3/user/{}/filter", alice.user_id), token, json!({"room": {"rooms": "nope"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = server.post(&format!("/_matrix/client/v3/user/{}/filter", alice.user_id), token, json!({"event_format": "xml"})).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")), "{body}");
}

async fn timeline_filters_keep_limited_and_prev_batch(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    join(&server, &bob.access_token, &room).await;
    send_text(&server, &alice.access_token, &room, "a1").await;
    send_text(&server, &bob.access_token, &room, "b1").await;
    send_text(&server, &alice.access_token, &room, "a2").await;
    send(&server, &alice.access_token, &room, "org.example.thing", json!({"body": "thing"})).await;
    send(&server, &alice.access_token, &room, "m.room.message", json!({"msgtype": "m.image", "body": "pic", "url": "mxc://x/y"})).await;
    send_text(&server, &bob.access_token, &room, "b2").await;
    let token = &alice.access_token;
    let timeline = |body: &Value| body["rooms"]["join"][&room]["timeline"].clone();

    // A stored filter: alice's messages only, one at a time.
    let only_alice = json!({"room": {"timeline": {"types": ["m.room.mess*"], "senders": [alice.user_id], "limit": 1}}});
    let id = store_filter(&server, token, &alice.user_id, only_alice.clone()).await;
    let synced = sync_with(&server, token, &id, None).await;
    let first = timeline(&synced);
    assert_eq!(bodies(&first["events"]), vec!["pic"], "{first}");
    assert_eq!(first["limited"], true);
    // Paging back with the same event filter finds the rest, nothing the filter drops.
    let event_filter = json!({"types": ["m.room.mess*"], "senders": [alice.user_id]}).to_string();
    let event_filter: String = form_urlencoded::byte_serialize(event_filter.as_bytes()).collect();
    let prev = first["prev_batch"].as_str().unwrap();
    let (_, older) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&from={prev}&limit=10&filter={event_filter}"), Some(token)).await;
    assert_eq!(bodies(&older["chunk"]), vec!["a2", "a1"], "{older}");

    let all_of_them = r#"{"room": {"timeline": {"types": ["m.room.message"], "senders": ["ALICE"], "limit": 10}}}"#.replace("ALICE", &alice.user_id);
    let synced = sync_with(&server, token, &all_of_them, None).await;
    assert_eq!(bodies(&timeline(&synced)["events"]), vec!["a1", "a2", "pic"]);
    assert_ne!(timeline(&synced)["limited"], true, "every matching event is there");

    let not_room_types = sync_with(&server, token, r#"{"room": {"timeline": {"not_types": ["m.room.*"]}}}"#, None).await;
    assert_eq!(types(&timeline(&not_room_types)["events"]), vec!["org.example.thing"]);
    let not_bob = r#"{"room": {"timeline": {"types": ["m.room.message"], "not_senders": ["BOB"]}}}"#.replace("BOB", &bob.user_id);
    assert_eq!(bodies(&timeline(&sync_with(&server, token, &not_bob, None).await)["events"]), vec!["a1", "a2", "pic"]);
    let with_url = sync_with(&server, token, r#"{"room": {"timeline": {"contains_url": true}}}"#, None).await;
    assert_eq!(bodies(&timeline(&with_url)["events"]), vec!["pic"]);
    let without_url = sync_with(&server, token, r#"{"room": {"timeline": {"types": ["m.room.message"], "contains_url": false}}}"#, None).await;
    assert_eq!(bodies(&timeline(&without_url)["events"]), vec!["a1", "b1", "a2", "b2"]);
    let nothing = sync_with(&server, token, r#"{"room": {"timeline": {"types": []}}}"#, None).await;
    assert_eq!(timeline(&nothing)["events"], json!([]), "an empty types list matches nothing");

    // Incremental: state the filter keeps out of the timeline arrives in `state`.
    let since = synced["next_batch"].as_str().unwrap().to_owned();
    let topic = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/");
    assert_eq!(server.put(&topic, Some(token), json!({"topic": "news"})).await.0, StatusCode::OK);
    send_text(&server, token, &room, "a3").await;
    let delta = sync_with(&server, token, &all_of_them, Some(&since)).await;
    let joined = &delta["rooms"]["join"][&room];
    assert_eq!(bodies(&joined["timeline"]["events"]), vec!["a3"]);
    assert_ne!(joined["timeline"]["limited"], true);
    assert_eq!(types(&joined["state"]["events"]), vec!["m.room.topic"], "{joined}");
}

async fn room_lists_and_filtered_state(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let first = create_room(&server, &alice.access_token, json!({"name": "First"})).await;
    let second = create_room(&server, &alice.access_token, json!({"name": "Second"})).await;
    let token = &alice.access_token;
    let joined = |body: &Value| {
        let mut rooms: Vec<String> = body["rooms"]["join"].as_object().map_or(Vec::new(), |rooms| rooms.keys().cloned().collect());
        rooms.sort();
        rooms
    };
    let only_first = format!(r#"{{"room": {{"rooms": ["{first}"]}}}}"#);
    assert_eq!(joined(&sync_with(&server, token, &only_first, None).await), vec![first.clone()]);
    let not_first = format!(r#"{{"room": {{"not_rooms": ["{first}"]}}}}"#);
    assert_eq!(joined(&sync_with(&server, token, &not_first, None).await), vec![second.clone()]);

    // With one timeline event, the rest of the room's state is in `state`, filtered.
    let state_of = |body: &Value| {
        let mut kinds = types(&body["rooms"]["join"][&first]["state"]["events"]);
        kinds.sort();
        kinds
    };
    // The name is the room's last event, so the timeline's one.
    let names = sync_with(&server, token, r#"{"room": {"timeline": {"limit": 1}, "state": {"types": ["m.room.j*", "m.room.n*"]}}}"#, None).await;
    assert_eq!(state_of(&names), vec!["m.room.join_rules"]);
    assert_eq!(types(&names["rooms"]["join"][&first]["timeline"]["events"]), vec!["m.room.name"]);
    let no_members = sync_with(&server, token, r#"{"room": {"timeline": {"limit": 1}, "state": {"not_types": ["m.room.member"]}}}"#, None).await;
    let kinds = state_of(&no_members);
    assert!(kinds.contains(&"m.room.create".to_owned()) && !kinds.contains(&"m.room.member".to_owned()), "{kinds:?}");
    let none = sync_with(&server, token, r#"{"room": {"timeline": {"limit": 1}, "state": {"senders": []}}}"#, None).await;
    assert_eq!(state_of(&none), Vec::<String>::new());
}

async fn ephemeral_account_data_and_presence_filters(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    join(&server, &bob.access_token, &room).await;
    let event_id = send_text(&server, &bob.access_token, &room, "hi").await;
    let token = &alice.access_token;
    let typing = format!("/_matrix/client/v3/rooms/{room}/typing/{}", bob.user_id);
    assert_eq!(server.put(&typing, Some(&bob.access_token), json!({"typing": true, "timeout": 30000})).await.0, StatusCode::OK);
    let receipt = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}");
    assert_eq!(server.post(&receipt, Some(&bob.access_token), json!({})).await.0, StatusCode::OK);
    for kind in ["org.example.a", "org.example.b"] {
        let global = format!("/_matrix/client/v3/user/{}/account_data/{kind}", alice.user_id);
        assert_eq!(server.put(&global, Some(token), json!({"k": kind})).await.0, StatusCode::OK);
        let per_room = format!("/_matrix/client/v3/user/{}/rooms/{room}/account_data/{kind}", alice.user_id);
        assert_eq!(server.put(&per_room, Some(token), json!({"k": kind})).await.0, StatusCode::OK);
    }
    let presence = format!("/_matrix/client/v3/presence/{}/status", bob.user_id);
    assert_eq!(server.put(&presence, Some(&bob.access_token), json!({"presence": "online"})).await.0, StatusCode::OK);

    let sorted = |events: &Value| {
        let mut kinds = types(events);
        kinds.sort();
        kinds
    };
    let unfiltered = sync_with(&server, token, "{}", None).await;
    assert_eq!(sorted(&unfiltered["rooms"]["join"][&room]["ephemeral"]["events"]), vec!["m.receipt", "m.typing"]);
    assert_eq!(sorted(&unfiltered["account_data"]["events"]), vec!["m.push_rules", "org.example.a", "org.example.b"]);
    assert!(types(&unfiltered["presence"]["events"]).contains(&"m.presence".to_owned()), "{unfiltered}");

    let filter = json!({
        "account_data": {"types": ["org.example.*"], "not_types": ["*.b"]},
        "presence": {"not_senders": [bob.user_id]},
        "room": {"ephemeral": {"types": ["m.receipt"]}, "account_data": {"not_types": ["org.example.a"]}}
    });
    let id = store_filter(&server, token, &alice.user_id, filter).await;
    let filtered = sync_with(&server, token, &id, None).await;
    let joined = &filtered["rooms"]["join"][&room];
    assert_eq!(types(&joined["ephemeral"]["events"]), vec!["m.receipt"]);
    assert_eq!(types(&joined["account_data"]["events"]), vec!["org.example.b"]);
    assert_eq!(types(&filtered["account_data"]["events"]), vec!["org.example.a"], "m.push_rules is account data too");
    let bobs = filtered["presence"]["events"].as_array().into_iter().flatten().filter(|e| e["sender"] == json!(bob.user_id)).count();
    assert_eq!(bobs, 0, "{filtered}");

    let limited = sync_with(&server, token, r#"{"account_data": {"limit": 1}, "room": {"ephemeral": {"limit": 1}, "account_data": {"limit": 1}}}"#, None).await;
    assert_eq!(types(&limited["account_data"]["events"]).len(), 1);
    assert_eq!(types(&limited["rooms"]["join"][&room]["ephemeral"]["events"]).len(), 1);
    assert_eq!(types(&limited["rooms"]["join"][&room]["account_data"]["events"]).len(), 1);
    let no_presence = sync_with(&server, token, r#"{"presence": {"types": ["m.nothing"]}}"#, None).await;
    assert_eq!(types(&no_presence["presence"]["events"]), Vec::<String>::new());
}

async fn messages_filters_and_lazy_members(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    join(&server, &bob.access_token, &room).await;
    send_text(&server, &alice.access_token, &room, "a1").await;
    send_text(&server, &bob.access_token, &room, "b1").await;
    send(&server, &bob.access_token, &room, "m.room.message", json!({"msgtype": "m.file", "body": "file", "url": "mxc://x/f"})).await;
    let last = send_text(&server, &alice.access_token, &room, "a2").await;
    let messages = |filter: Value| {
        let filter: String = form_urlencoded::byte_serialize(filter.to_string().as_bytes()).collect();
        let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=10&filter={filter}");
        let server = &server;
        let token = alice.access_token.clone();
        async move {
            let (status, body) = server.get(&path, Some(&token)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    assert_eq!(bodies(&messages(json!({"senders": [bob.user_id]})).await["chunk"]), vec!["file", "b1"]);
    assert_eq!(bodies(&messages(json!({"types": ["m.room.*"], "not_senders": [bob.user_id]})).await["chunk"]), vec!["a2", "a1"]);
    assert_eq!(bodies(&messages(json!({"contains_url": true})).await["chunk"]), vec!["file"]);
    assert_eq!(bodies(&messages(json!({"types": ["m.room.message"], "limit": 2})).await["chunk"]), vec!["a2", "file"]);
    let other_room = format!("!elsewhere:{}", server.server_name);
    assert_eq!(messages(json!({"rooms": [other_room]})).await["chunk"], json!([]));

    let lazy = messages(json!({"types": ["m.room.message"], "senders": [bob.user_id], "lazy_load_members": true})).await;
    let members: Vec<&str> = lazy["state"].as_array().expect("state").iter().filter_map(|e| e["state_key"].as_str()).collect();
    assert_eq!(members, vec![bob.user_id.as_str()], "{lazy}");
    assert!(messages(json!({})).await.get("state").is_none_or(|state| state == &json!([])), "no members unless asked");

    let filter: String = form_urlencoded::byte_serialize(json!({"senders": [bob.user_id]}).to_string().as_bytes()).collect();
    let (status, context) = server.get(&format!("/_matrix/client/v3/rooms/{room}/context/{last}?limit=10&filter={filter}"), Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{context}");
    assert_eq!(bodies(&context["events_before"]), vec!["file", "b1"], "/context filters the events around");
    assert_eq!(context["event"]["content"]["body"], "a2", "but not the event itself");
}

async fn event_fields_and_format_shape_sync_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"name": "Shapes"})).await;
    let txn = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/shape1");
    let (_, sent) = server.put(&txn, Some(&alice.access_token), json!({"msgtype": "m.text", "body": "hello", "org.example.key": 7})).await;
    let event_id = sent["event_id"].as_str().unwrap().to_owned();

    let fields =
        json!({"event_fields": ["type", "content.body", "event_id", "content.org\\.example\\.key"], "room": {"timeline": {"types": ["m.room.message"]}}});
    let body = sync_with(&server, &alice.access_token, &fields.to_string(), None).await;
    let timeline = &body["rooms"]["join"][&room]["timeline"]["events"];
    let expected = json!({"type": "m.room.message", "content": {"body": "hello", "org.example.key": 7}, "event_id": event_id});
    assert_eq!(timeline[0], expected, "a `\\.` is a dot inside a key: {timeline}");
    let name = body["rooms"]["join"][&room]["state"]["events"].as_array().unwrap().iter().find(|e| e["type"] == "m.room.name").cloned().unwrap();
    assert!(name.get("sender").is_none() && name["content"].get("name").is_none(), "state is shaped too: {name}");

    let federation = json!({"event_format": "federation", "room": {"timeline": {"types": ["m.room.message"]}}});
    let body = sync_with(&server, &alice.access_token, &federation.to_string(), None).await;
    let pdu = &body["rooms"]["join"][&room]["timeline"]["events"][0];
    assert!(pdu["prev_events"].is_array() && pdu["hashes"].is_object() && pdu["signatures"].is_object(), "the PDU: {pdu}");
    assert_eq!(pdu["room_id"], json!(room));
}
