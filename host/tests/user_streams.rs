//! Typing, receipts and read markers, account data and tags, to-device
//! messages, presence, and the unread counts push rules give, through
//! their endpoints and `/sync`.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::{create_room, send_text},
    support::{Backend, TestServer, errcode},
};

on_both_backends!(
    typing_reaches_sync_and_expires,
    receipts_read_markers_and_unread_counts,
    account_data_and_tags,
    to_device_is_deleted_only_after_acknowledgement,
    presence_is_shared_with_room_members_only,
    a_waiting_sync_passes_over_strangers_presence_and_answers_a_room_members,
    default_push_rules_give_the_spec_counts,
    keywords_threads_and_leaving,
    presence_timers_idle_and_expire_users,
    threaded_receipts_must_name_the_events_thread,
);

async fn sync(server: &TestServer, token: &str, since: Option<&str>) -> Value {
    let path = match since {
        Some(since) => format!("/_matrix/client/v3/sync?since={since}&timeout=0"),
        None => "/_matrix/client/v3/sync".to_owned(),
    };
    let (status, body) = server.get(&path, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn ephemeral<'a>(body: &'a Value, room: &str, kind: &str) -> Vec<&'a Value> {
    body["rooms"]["join"][room]["ephemeral"]["events"].as_array().into_iter().flatten().filter(|event| event["type"] == kind).collect()
}

async fn shared_room(server: &TestServer, alice: &str, bob: &str, bob_id: &str) -> String {
    let room = create_room(server, alice, json!({"invite": [bob_id]})).await;
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(bob), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    room
}

async fn typing_reaches_sync_and_expires(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = shared_room(&server, &alice.access_token, &bob.access_token, &server.user_id("bob")).await;
    let start = sync(&server, &alice.access_token, None).await;
    let since = start["next_batch"].as_str().unwrap();

    let path = format!("/_matrix/client/v3/rooms/{room}/typing/{}", server.user_id("bob"));
    let (status, body) = server.put(&path, Some(&bob.access_token), json!({"typing": true, "timeout": 300})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body = sync(&server, &alice.access_token, Some(since)).await;
    let typing = ephemeral(&body, &room, "m.typing");
    assert_eq!(typing.len(), 1, "{body}");
    assert_eq!(typing[0]["content"]["user_ids"], json!([server.user_id("bob")]));
    let since = body["next_batch"].as_str().unwrap().to_owned();
    let quiet = sync(&server, &alice.access_token, Some(&since)).await;
    assert!(ephemeral(&quiet, &room, "m.typing").is_empty(), "delivered once: {quiet}");

    tokio::time::sleep(Duration::from_millis(600)).await;
    let body = sync(&server, &alice.access_token, Some(&since)).await;
    assert_eq!(ephemeral(&body, &room, "m.typing")[0]["content"]["user_ids"], json!([]), "the timeout expired: {body}");

    let (status, body) = server.put(&path, Some(&alice.access_token), json!({"typing": true, "timeout": 300})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "another user's typing");
    let carol_path = format!("/_matrix/client/v3/rooms/{room}/typing/{}", server.user_id("carol"));
    let (status, body) = server.put(&carol_path, Some(&carol.access_token), json!({"typing": true, "timeout": 1000})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "not joined");

    // `timeout` is optional (30 s); `typing` is not.
    let alice_path = format!("/_matrix/client/v3/rooms/{room}/typing/{}", server.user_id("alice"));
    let (status, body) = server.put(&alice_path, Some(&alice.access_token), json!({"typing": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body = sync(&server, &alice.access_token, None).await;
    assert_eq!(ephemeral(&body, &room, "m.typing")[0]["content"]["user_ids"], json!([server.user_id("alice")]), "{body}");
    let (status, body) = server.put(&alice_path, Some(&alice.access_token), json!({"timeout": 1000})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

async fn receipts_read_markers_and_unread_counts(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = shared_room(&server, &alice.access_token, &bob.access_token, &server.user_id("bob")).await;
    let first = send_text(&server, &alice.access_token, &room, "one").await;
    let second = send_text(&server, &alice.access_token, &room, "two").await;
    let body = sync(&server, &bob.access_token, None).await;
    assert_eq!(body["rooms"]["join"][&room]["unread_notifications"]["notification_count"], 2, "{body}");
    let bob_since = body["next_batch"].as_str().unwrap().to_owned();
    let alice_since = sync(&server, &alice.access_token, None).await["next_batch"].as_str().unwrap().to_owned();

    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{first}"), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body = sync(&server, &bob.access_token, Some(&bob_since)).await;
    assert_eq!(body["rooms"]["join"][&room]["unread_notifications"]["notification_count"], 1, "{body}");
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/receipt/m.read.private/{second}"), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);

    let body = sync(&server, &alice.access_token, Some(&alice_since)).await;
    let receipts = ephemeral(&body, &room, "m.receipt");
    assert_eq!(receipts.len(), 1, "{body}");
    assert!(receipts[0]["content"][&first]["m.read"][server.user_id("bob")]["ts"].is_u64(), "{body}");
    assert!(receipts[0]["content"].get(&second).is_none(), "private receipts stay private: {body}");
    let again = sync(&server, &alice.access_token, Some(body["next_batch"].as_str().unwrap())).await;
    assert!(ephemeral(&again, &room, "m.receipt").is_empty(), "delivered once: {again}");

    let body = sync(&server, &bob.access_token, Some(&bob_since)).await;
    assert!(ephemeral(&body, &room, "m.receipt")[0]["content"][&second]["m.read.private"][server.user_id("bob")].is_object(), "{body}");
    assert_eq!(body["rooms"]["join"][&room]["unread_notifications"]["notification_count"], 0, "{body}");

    let (status, body) =
        server.post(&format!("/_matrix/client/v3/rooms/{room}/read_markers"), Some(&bob.access_token), json!({"m.fully_read": second, "m.read": second})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let path = format!("/_matrix/client/v3/user/{}/rooms/{room}/account_data/m.fully_read", server.user_id("bob"));
    let (status, body) = server.get(&path, Some(&bob.access_token)).await;
    assert_eq!((status, body["event_id"].as_str()), (StatusCode::OK, Some(second.as_str())));

    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/$nosuchevent"), Some(&bob.access_token), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{first}"), Some(&carol.access_token), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"));
    let (status, body) =
        server.post(&format!("/_matrix/client/v3/rooms/{room}/receipt/m.fully_read/{first}"), Some(&bob.access_token), json!({"thread_id": "main"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"));
}

async fn account_data_and_tags(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({})).await;
    let since = sync(&server, &alice.access_token, None).await["next_batch"].as_str().unwrap().to_owned();
    let me = server.user_id("alice");

    let global = format!("/_matrix/client/v3/user/{me}/account_data/org.example.settings");
    let (status, _) = server.put(&global, Some(&alice.access_token), json!({"theme": "dark"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.get(&global, Some(&alice.access_token)).await.1, json!({"theme": "dark"}));
    let per_room = format!("/_matrix/client/v3/user/{me}/rooms/{room}/account_data/org.example.draft");
    let (status, _) = server.put(&per_room, Some(&alice.access_token), json!({"text": "hi"})).await;
    assert_eq!(status, StatusCode::OK);
    let tag = format!("/_matrix/client/v3/user/{me}/rooms/{room}/tags/m.favourite");
    let (status, _) = server.put(&tag, Some(&alice.access_token), json!({"order": 0.5})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.get(&format!("/_matrix/client/v3/user/{me}/rooms/{room}/tags"), Some(&alice.access_token)).await;
    assert_eq!((status, body["tags"]["m.favourite"]["order"].as_f64()), (StatusCode::OK, Some(0.5)));

    let body = sync(&server, &alice.access_token, Some(&since)).await;
    let globals: Vec<&Value> = body["account_data"]["events"].as_array().unwrap().iter().filter(|e| e["type"] == "org.example.settings").collect();
    assert_eq!(globals.len(), 1, "{body}");
    let room_data = body["rooms"]["join"][&room]["account_data"]["events"].as_array().unwrap();
    assert!(room_data.iter().any(|e| e["type"] == "org.example.draft"), "{body}");
    assert!(room_data.iter().any(|e| e["type"] == "m.tag" && e["content"]["tags"]["m.favourite"].is_object()), "{body}");
    let again = sync(&server, &alice.access_token, Some(body["next_batch"].as_str().unwrap())).await;
    assert!(again["account_data"]["events"].as_array().is_none_or(|events| events.is_empty()), "delivered once: {again}");

    let (status, _) = server.delete(&tag, Some(&alice.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = server.get(&format!("/_matrix/client/v3/user/{me}/rooms/{room}/tags"), Some(&alice.access_token)).await;
    assert_eq!(body["tags"], json!({}));

    let (status, body) = server.get(&global, Some(&bob.access_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "another user's data");
    let (status, body) = server.put(&global, Some(&bob.access_token), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"));
    let (status, body) = server.get(&format!("/_matrix/client/v3/user/{me}/account_data/org.example.none"), Some(&alice.access_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    let (status, body) = server.put(&format!("/_matrix/client/v3/user/{me}/account_data/m.push_rules"), Some(&alice.access_token), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::METHOD_NOT_ALLOWED, "M_BAD_JSON"));
    let (status, body) = server.put(&global, Some(&alice.access_token), json!([1, 2])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(server.get(&global, Some(&alice.access_token)).await.1, json!({"theme": "dark"}), "nothing written");
}

async fn to_device_is_deleted_only_after_acknowledgement(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let bob_phone = server.login("bob", "pw").await;
    let since = sync(&server, &bob.access_token, None).await["next_batch"].as_str().unwrap().to_owned();
    let bob_id = server.user_id("bob");

    let body = json!({"messages": {bob_id.clone(): {bob.device_id.clone(): {"n": 1}}}});
    for _ in 0..2 {
        let (status, reply) = server.put("/_matrix/client/v3/sendToDevice/org.example.ping/txn1", Some(&alice.access_token), body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    let (status, _) = server
        .put("/_matrix/client/v3/sendToDevice/org.example.ping/txn2", Some(&alice.access_token), json!({"messages": {bob_id.clone(): {"*": {"n": 2}}}}))
        .await;
    assert_eq!(status, StatusCode::OK);

    let first = sync(&server, &bob.access_token, Some(&since)).await;
    let messages = first["to_device"]["events"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "the repeated transaction sent once, `*` reached this device: {first}");
    assert_eq!(messages[0]["sender"], json!(server.user_id("alice")));
    assert_eq!(messages[0]["type"], "org.example.ping");
    let retry = sync(&server, &bob.access_token, Some(&since)).await;
    assert_eq!(retry["to_device"]["events"].as_array().unwrap().len(), 2, "not acknowledged yet: still there");
    let stored = || async {
        let device = <&ruma::DeviceId>::from(bob.device_id.as_str());
        server.state.storage.to_device_messages(&server.uid("bob"), device, 0, i64::MAX, 100).await.unwrap().len()
    };
    assert_eq!(stored().await, 2, "kept in the database until acknowledged");
    let next = first["next_batch"].as_str().unwrap();
    let after = sync(&server, &bob.access_token, Some(next)).await;
    assert!(after["to_device"]["events"].as_array().is_none_or(|events| events.is_empty()), "{after}");
    assert_eq!(stored().await, 0, "deleted from the database once acknowledged");
    let phone = sync(&server, &bob_phone.access_token, Some(&since)).await;
    assert_eq!(phone["to_device"]["events"].as_array().unwrap().len(), 1, "only the `*` message: {phone}");
}

async fn presence_is_shared_with_room_members_only(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = shared_room(&server, &alice.access_token, &bob.access_token, &server.user_id("bob")).await;
    let bob_since = sync(&server, &bob.access_token, None).await["next_batch"].as_str().unwrap().to_owned();
    let carol_since = sync(&server, &carol.access_token, None).await["next_batch"].as_str().unwrap().to_owned();

    let path = format!("/_matrix/client/v3/presence/{}/status", server.user_id("alice"));
    let (status, body) = server.put(&path, Some(&alice.access_token), json!({"presence": "unavailable", "status_msg": "lunch"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.get(&path, Some(&bob.access_token)).await;
    assert_eq!((status, body["presence"].as_str(), body["status_msg"].as_str()), (StatusCode::OK, Some("unavailable"), Some("lunch")), "{body}");
    let (status, body) = server.get(&path, Some(&carol.access_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"));
    let (status, body) = server.put(&path, Some(&bob.access_token), json!({"presence": "online"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"));

    let body = sync(&server, &bob.access_token, Some(&bob_since)).await;
    let events = body["presence"]["events"].as_array().unwrap();
    let alices: Vec<&Value> = events.iter().filter(|event| event["sender"] == json!(server.user_id("alice"))).collect();
    assert_eq!(alices.last().unwrap()["content"]["status_msg"], "lunch", "{body}");
    let body = sync(&server, &carol.access_token, Some(&carol_since)).await;
    let seen = body["presence"]["events"].as_array().into_iter().flatten().any(|event| event["sender"] == json!(server.user_id("alice")));
    assert!(!seen, "carol shares no room with alice: {body}");

    // Who shares a room follows the memberships: carol joins and sees alice's
    // next change, bob leaves and does not.
    let (status, _) =
        server.post(&format!("/_matrix/client/v3/rooms/{room}/invite"), Some(&alice.access_token), json!({"user_id": server.user_id("carol")})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&carol.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let bob_since = sync(&server, &bob.access_token, Some(&bob_since)).await["next_batch"].as_str().unwrap().to_owned();
    let carol_since = sync(&server, &carol.access_token, Some(&carol_since)).await["next_batch"].as_str().unwrap().to_owned();
    let (status, body) = server.put(&path, Some(&alice.access_token), json!({"presence": "online", "status_msg": "back"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body = sync(&server, &carol.access_token, Some(&carol_since)).await;
    let alices: Vec<&Value> =
        body["presence"]["events"].as_array().into_iter().flatten().filter(|event| event["sender"] == json!(server.user_id("alice"))).collect();
    assert_eq!(alices.last().map(|event| &event["content"]["status_msg"]), Some(&json!("back")), "carol joined alice's room: {body}");
    let body = sync(&server, &bob.access_token, Some(&bob_since)).await;
    let seen = body["presence"]["events"].as_array().into_iter().flatten().any(|event| event["sender"] == json!(server.user_id("alice")));
    assert!(!seen, "bob left alice's only room: {body}");

    let disabled = TestServer::builder(Backend::Sqlite).config("[presence]\nenabled = false").start().await;
    let dave = disabled.register("dave", "pw").await;
    let path = format!("/_matrix/client/v3/presence/{}/status", disabled.user_id("dave"));
    let (status, _) = disabled.put(&path, Some(&dave.access_token), json!({"presence": "online"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(disabled.get(&path, Some(&dave.access_token)).await.1["presence"], "offline", "presence disabled");
}

async fn default_push_rules_give_the_spec_counts(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let bob_id = server.user_id("bob");
    let direct = shared_room(&server, &alice.access_token, &bob.access_token, &bob_id).await;
    let group = shared_room(&server, &alice.access_token, &bob.access_token, &bob_id).await;
    let (status, _) =
        server.post(&format!("/_matrix/client/v3/rooms/{group}/invite"), Some(&alice.access_token), json!({"user_id": server.user_id("carol")})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{group}/join"), Some(&carol.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);

    let send = |room: String, content: Value, kind: &'static str| {
        let server = &server;
        let token = alice.access_token.clone();
        async move {
            let path = format!("/_matrix/client/v3/rooms/{room}/send/{kind}/t{}", rand::random::<u32>());
            let (status, body) = server.put(&path, Some(&token), content).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    // A one-to-one room: every message notifies (.m.rule.room_one_to_one), encrypted too.
    send(direct.clone(), json!({"msgtype": "m.text", "body": "hello"}), "m.room.message").await;
    send(direct.clone(), json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"}), "m.room.encrypted").await;
    // Notices do not notify (.m.rule.suppress_notices).
    send(direct.clone(), json!({"msgtype": "m.notice", "body": "bot says"}), "m.room.message").await;
    // A group room: plain messages notify (.m.rule.message), mentions highlight.
    send(group.clone(), json!({"msgtype": "m.text", "body": "morning all"}), "m.room.message").await;
    send(group.clone(), json!({"msgtype": "m.text", "body": "hey bob", "m.mentions": {"user_ids": [bob_id]}}), "m.room.message").await;
    // Encrypted in a group room notifies (.m.rule.encrypted) without highlight.
    send(group.clone(), json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "y"}), "m.room.encrypted").await;

    let body = sync(&server, &bob.access_token, None).await;
    let counts = |room: &str| {
        let unread = &body["rooms"]["join"][room]["unread_notifications"];
        (unread["notification_count"].as_u64().unwrap(), unread["highlight_count"].as_u64().unwrap())
    };
    assert_eq!(counts(&direct), (2, 0), "{body}");
    assert_eq!(counts(&group), (3, 1), "{body}");
    let alice_sync = sync(&server, &alice.access_token, None).await;
    assert_eq!(alice_sync["rooms"]["join"][&group]["unread_notifications"]["notification_count"], 0, "own events never count");

    let (status, body) = server.get("/_matrix/client/v3/notifications", Some(&bob.access_token)).await;
    assert_eq!(status, StatusCode::OK);
    // The five messages, and the two invites that brought Bob in (listed, as
    // Synapse lists them, though they no longer count once he joined).
    let listed = body["notifications"].as_array().unwrap();
    assert_eq!(listed.len(), 7, "{body}");
    assert_eq!(listed.iter().filter(|n| n["event"]["content"]["membership"] == "invite").count(), 2, "{body}");
    let (_, body) = server.get("/_matrix/client/v3/notifications?only=highlight", Some(&bob.access_token)).await;
    let highlights = body["notifications"].as_array().unwrap();
    assert_eq!(highlights.len(), 1, "{body}");
    assert_eq!(highlights[0]["event"]["content"]["body"], "hey bob");
    assert_eq!(highlights[0]["read"], false);
    let (_, page) = server.get("/_matrix/client/v3/notifications?limit=2", Some(&bob.access_token)).await;
    let next = page["next_token"].as_str().unwrap();
    let (_, rest) = server.get(&format!("/_matrix/client/v3/notifications?from={next}"), Some(&bob.access_token)).await;
    assert_eq!(rest["notifications"].as_array().unwrap().len(), 5, "{rest}");
    let (status, body) = server.get("/_matrix/client/v3/notifications?from=nonsense", Some(&bob.access_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"));
}

async fn keywords_threads_and_leaving(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = shared_room(&server, &alice.access_token, &bob.access_token, &server.user_id("bob")).await;
    server.post(&format!("/_matrix/client/v3/rooms/{room}/invite"), Some(&alice.access_token), json!({"user_id": server.user_id("carol")})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&carol.access_token), json!({})).await;
    let (status, body) = server
        .put(
            "/_matrix/client/v3/pushrules/global/content/pizza",
            Some(&bob.access_token),
            json!({"pattern": "pizza", "actions": ["notify", {"set_tweak": "highlight"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let alice_since = sync(&server, &alice.access_token, None).await["next_batch"].as_str().unwrap().to_owned();

    let root = send_text(&server, &alice.access_token, &room, "pizza tonight?").await;
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/thread1");
    let reply = json!({"msgtype": "m.text", "body": "in thread", "m.relates_to": {"rel_type": "m.thread", "event_id": root}});
    let (status, _) = server.put(&path, Some(&alice.access_token), reply).await;
    assert_eq!(status, StatusCode::OK);

    let filter = r#"{"room":{"timeline":{"unread_thread_notifications":true}}}"#;
    let path = format!("/_matrix/client/v3/sync?filter={}", form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>());
    let (_, body) = server.get(&path, Some(&bob.access_token)).await;
    let joined = &body["rooms"]["join"][&room];
    assert_eq!(joined["unread_notifications"], json!({"notification_count": 1, "highlight_count": 1}), "the keyword highlights: {body}");
    assert_eq!(joined["unread_thread_notifications"][&root]["notification_count"], 1, "{body}");
    let body = sync(&server, &bob.access_token, None).await;
    assert_eq!(body["rooms"]["join"][&room]["unread_notifications"]["notification_count"], 2, "totals without thread counts: {body}");

    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), Some(&carol.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let body = sync(&server, &alice.access_token, Some(&alice_since)).await;
    assert_eq!(body["device_lists"]["left"], json!([server.user_id("carol")]), "carol shares no room with alice any more: {body}");
}

/// A long-polling `/sync` woken by the presence of a user who shares no
/// room with it keeps waiting; the presence of a room member then answers it.
async fn a_waiting_sync_passes_over_strangers_presence_and_answers_a_room_members(backend: Backend) {
    let server = std::sync::Arc::new(TestServer::start(backend).await);
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    shared_room(&server, &alice.access_token, &bob.access_token, &server.user_id("bob")).await;
    let since = sync(&server, &bob.access_token, None).await["next_batch"].as_str().unwrap().to_owned();
    let waiting = {
        let (server, token) = (server.clone(), bob.access_token.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let (status, body) = server.get(&format!("/_matrix/client/v3/sync?since={since}&timeout=10000"), Some(&token)).await;
            (status, body, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let set = |session: &crate::support::Session, user: &str, message: &'static str| {
        let (server, token, path) = (server.clone(), session.access_token.clone(), format!("/_matrix/client/v3/presence/{}/status", server.user_id(user)));
        async move {
            let (status, body) = server.put(&path, Some(&token), json!({"presence": "online", "status_msg": message})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    set(&carol, "carol", "a stranger").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a stranger's presence answered the waiting sync");
    set(&alice, "alice", "a room member").await;
    let (status, body, waited) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(waited < Duration::from_secs(5), "answered by alice's presence, not the timeout: {waited:?}");
    let senders: Vec<&Value> = body["presence"]["events"].as_array().into_iter().flatten().map(|event| &event["sender"]).collect();
    assert!(senders.contains(&&json!(server.user_id("alice"))), "{body}");
    assert!(!senders.contains(&&json!(server.user_id("carol"))), "{body}");
}

async fn presence_timers_idle_and_expire_users(backend: Backend) {
    use weft::storage::NewPresence;
    let now_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let server = TestServer::start(backend).await;
    server.register("alice", "pw").await;
    let alice = server.uid("alice");
    let storage = &server.state.storage;
    let now = now_ms();
    let idle = NewPresence { state: "online", status_msg: Some("here"), last_active_ts: now - 6 * 60_000, last_sync_ts: now, currently_active: true };
    storage.set_presence(&alice, idle).await.unwrap();
    weft::presence::expire(&server.state).await.unwrap();
    let row = storage.presence(&alice).await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.currently_active, row.status_msg.as_deref()), ("unavailable", false, Some("here")), "idle: {row:?}");

    let gone = NewPresence { state: "online", status_msg: None, last_active_ts: now, last_sync_ts: now - 60_000, currently_active: true };
    storage.set_presence(&alice, gone.clone()).await.unwrap();
    {
        let _open_long_poll = server.state.presence.syncing(&alice);
        weft::presence::expire(&server.state).await.unwrap();
        assert_eq!(storage.presence(&alice).await.unwrap().unwrap().state, "online", "a user with a sync open is not gone");
    }
    weft::presence::expire(&server.state).await.unwrap();
    assert_eq!(storage.presence(&alice).await.unwrap().unwrap().state, "offline", "stopped syncing");
}

/// A receipt's `thread_id` must be the event's thread: `main` outside any
/// thread (a root is in main), the root for the root, its replies and what
/// relates to the root.
async fn threaded_receipts_must_name_the_events_thread(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let a = alice.access_token.as_str();
    let room = create_room(&server, a, json!({})).await;
    let root = send_text(&server, a, &room, "root").await;
    let (_, reply) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t1"),
            Some(a),
            json!({"body": "reply", "m.relates_to": {"rel_type": "m.thread", "event_id": root}}),
        )
        .await;
    let reply = reply["event_id"].as_str().unwrap().to_owned();
    let receipt = |event: &str, thread: &str| {
        let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}");
        let body = json!({"thread_id": thread});
        let server = &server;
        async move { server.post(&path, Some(a), body).await }
    };
    for (event, thread) in [(&root, "main"), (&root, root.as_str()), (&reply, root.as_str())] {
        let (status, body) = receipt(event, thread).await;
        assert_eq!(status, StatusCode::OK, "{event} in {thread}: {body}");
    }
    for (event, thread) in [(&reply, "main"), (&root, "$not-a-root"), (&reply, "$not-a-root")] {
        let (status, body) = receipt(event, thread).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{event} in {thread}: {body}");
    }
}
