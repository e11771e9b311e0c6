//! Push notifications leave the server: a user sets an HTTP pusher through
//! the client API, others write into a shared room, and the test push
//! gateway (`weft_plugin_testkit::push_gateway`, written from the Push
//! Gateway API) receives what the reference plugin `http-pusher` sends,
//! field by field as Synapse sends it. Failures: a gateway answering 500
//! (backoff, then everything in order), a rejected pushkey (the pusher is
//! deleted), a running pusher set again with another gateway or deleted
//! (followed from the next message), a notification failing for more than
//! a day (skipped), a
//! restart (delivery resumes from the stored position), and
//! `pusher_instances = []` (nobody sends).

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};
use weft::storage::PusherKey;
use weft_plugin_testkit::push_gateway::{PushGateway, Received, Reply};

use crate::{
    on_both_backends,
    plugins::guest,
    rooms::create_room,
    support::{Backend, Session, TestServer},
};

on_both_backends!(
    a_message_reaches_the_gateway_with_every_field,
    mentions_are_high_priority_and_receipts_update_the_badge,
    the_badge_counts_messages_when_not_grouped_by_room,
    event_id_only_and_encrypted_events,
    an_invite_is_pushed_with_its_membership,
    an_invite_made_by_create_room_is_pushed,
    a_failing_gateway_is_retried_with_backoff_then_everything_goes_in_order,
    notifications_read_during_a_backoff_are_not_pushed,
    a_rejected_pushkey_deletes_the_pusher,
    a_running_pusher_set_again_or_deleted_is_followed_at_once,
    a_notification_failing_for_more_than_a_day_is_skipped,
    a_restart_resumes_delivery_where_it_stopped,
    nobody_sends_pushes_with_no_pusher_instances,
);

const APP_ID: &str = "org.example.app";
const PUSHKEY: &str = "bobs-phone";

/// The reference pusher `http-pusher`, allowed to reach gateways on this
/// machine, and `extra` options.
pub(crate) fn config(extra: &str) -> String {
    format!(
        "ip_range_whitelist = [\"127.0.0.0/8\"]\n{extra}\n[[plugins]]\nname = \"http-pusher\"\nrole = \"pusher\"\npath = {:?}\n\
         [plugins.capabilities]\nallowed_outbound_hosts = [\"*:*\"]\n",
        guest("http_pusher").display().to_string()
    )
}

async fn start(backend: Backend, extra: &str) -> TestServer {
    TestServer::builder(backend).config(&config(extra)).start().await
}

pub(crate) fn pusher_body(url: &str, format: Option<&str>) -> Value {
    let mut data = json!({"url": url, "custom": {"tag": 7}});
    if let Some(format) = format {
        data["format"] = format.into();
    }
    json!({
        "kind": "http", "app_id": APP_ID, "pushkey": PUSHKEY, "app_display_name": "Weft Mobile",
        "device_display_name": "Bob's phone", "lang": "en", "data": data,
    })
}

pub(crate) async fn set_pusher(server: &TestServer, session: &Session, body: Value) {
    let (status, reply) = server.post("/_matrix/client/v3/pushers/set", Some(&session.access_token), body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

/// Alice creates a room named `name` (none: unnamed) and the others join.
async fn shared_room(server: &TestServer, alice: &Session, others: &[&Session], name: Option<&str>) -> String {
    let mut body = json!({"preset": "public_chat"});
    if let Some(name) = name {
        body["name"] = name.into();
    }
    let room = create_room(server, &alice.access_token, body).await;
    for other in others {
        let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&other.access_token), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    room
}

async fn send(server: &TestServer, session: &Session, room: &str, kind: &str, content: Value) -> String {
    let txn = weft::storage::now_ms().to_string() + &rand_suffix();
    let (status, reply) = server.put(&format!("/_matrix/client/v3/rooms/{room}/send/{kind}/{txn}"), Some(&session.access_token), content).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["event_id"].as_str().unwrap().to_owned()
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("-{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn read(server: &TestServer, session: &Session, room: &str, event_id: &str) {
    let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}"), Some(&session.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

/// Waits for `count` requests, and that no more come for a moment.
pub(crate) async fn exactly(gateway: &PushGateway, count: usize) -> Vec<Received> {
    let received = gateway.wait_for(count, Duration::from_secs(20)).await;
    assert!(received.len() >= count, "{} of {count} requests arrived: {received:#?}", received.len());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let received = gateway.received();
    assert_eq!(received.len(), count, "more requests than expected: {received:#?}");
    received
}

fn now_secs() -> i64 {
    weft::storage::now_ms() / 1000
}

/// Bob, with a pusher to `gateway` set after joining, and Alice and Carol
/// in a room named `Lounge` (three members: messages are low priority).
async fn lounge(server: &TestServer, gateway: &PushGateway, format: Option<&str>) -> (Session, Session, String) {
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = shared_room(server, &alice, &[&bob, &carol], Some("Lounge")).await;
    set_pusher(server, &bob, pusher_body(&gateway.url(), format)).await;
    (alice, bob, room)
}

async fn a_message_reaches_the_gateway_with_every_field(backend: Backend) {
    let gateway = PushGateway::start().await.unwrap();
    let server = start(backend, "").await;
    let (alice, _bob, room) = lounge(&server, &gateway, None).await;
    let set_at = now_secs();
    let event_id = send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "hello"})).await;

    let received = exactly(&gateway, 1).await;
    let request = &received[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/_matrix/push/v1/notify"));
    let mut notification = request.notification().clone();
    let pushkey_ts = notification["devices"][0]["pushkey_ts"].take();
    assert!(pushkey_ts.as_i64().is_some_and(|ts| (ts - set_at).abs() <= 5), "pushkey_ts is in seconds: {pushkey_ts}");
    assert_eq!(
        notification,
        json!({
            "id": event_id, "event_id": event_id, "room_id": room, "type": "m.room.message",
            "sender": server.user_id("alice"), "sender_display_name": "alice", "room_name": "Lounge",
            "prio": "low", "content": {"msgtype": "m.text", "body": "hello"}, "counts": {"unread": 1},
            "devices": [{"app_id": APP_ID, "pushkey": PUSHKEY, "pushkey_ts": null, "data": {"custom": {"tag": 7}}, "tweaks": {}}],
        })
    );
}

async fn mentions_are_high_priority_and_receipts_update_the_badge(backend: Backend) {
    let gateway = PushGateway::start().await.unwrap();
    let server = start(backend, "").await;
    let (alice, bob, room) = lounge(&server, &gateway, None).await;
    let carol = server.login("carol", "pw").await;
    let other_room = shared_room(&server, &carol, &[&alice, &bob], None).await;

    let mention = json!({"msgtype": "m.text", "body": "bob: look", "m.mentions": {"user_ids": [server.user_id("bob")]}});
    // One at a time: a notification carries the badge as it is when it is sent.
    let first = send(&server, &alice, &room, "m.room.message", mention).await;
    exactly(&gateway, 1).await;
    let second = send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "two"})).await;
    exactly(&gateway, 2).await;
    let third = send(&server, &carol, &other_room, "m.room.message", json!({"msgtype": "m.text", "body": "three"})).await;
    let received = exactly(&gateway, 3).await;
    let ids: Vec<&Value> = received.iter().map(|r| &r.notification()["event_id"]).collect();
    assert_eq!(ids, [&json!(first), &json!(second), &json!(third)], "in order");
    assert_eq!(received[0].notification()["prio"], "high");
    assert_eq!(received[0].device()["tweaks"], json!({"highlight": true, "sound": "default"}));
    assert_eq!(received[1].notification()["prio"], "low");
    assert_eq!(received[1].device()["tweaks"], json!({}));
    // The badge counts rooms with unread notifications.
    let badges: Vec<&Value> = received.iter().map(|r| &r.notification()["counts"]["unread"]).collect();
    assert_eq!(badges, [&json!(1), &json!(1), &json!(2)]);
    assert_eq!(received[2].notification()["room_name"], "carol and alice", "an unnamed room is named after its other members");

    // Reading the first room: a badge-only update with the new count.
    read(&server, &bob, &room, &second).await;
    let received = exactly(&gateway, 4).await;
    let mut badge = received[3].notification().clone();
    badge["devices"][0]["pushkey_ts"] = Value::Null;
    assert_eq!(
        badge,
        json!({"id": "", "type": null, "sender": "", "counts": {"unread": 1},
               "devices": [{"app_id": APP_ID, "pushkey": PUSHKEY, "pushkey_ts": null, "data": {"custom": {"tag": 7}}}]})
    );
    // A receipt that leaves the badge as it was sends nothing.
    read(&server, &bob, &room, &first).await;
    exactly(&gateway, 4).await;
    read(&server, &bob, &other_room, &third).await;
    let received = exactly(&gateway, 5).await;
    assert_eq!(received[4].notification()["counts"], json!({"unread": 0}));
}

async fn the_badge_counts_messages_when_not_grouped_by_room(backend: Backend) {
    let gateway = PushGateway::start().await.unwrap();
    let server = start(backend, "[push]\ngroup_unread_count_by_room = false\ninclude_content = false").await;
    let (alice, _bob, room) = lounge(&server, &gateway, None).await;
    for (n, text) in ["one", "two", "three"].into_iter().enumerate() {
        send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": text})).await;
        exactly(&gateway, n + 1).await;
    }
    let received = gateway.received();
    let badges: Vec<&Value> = received.iter().map(|r| &r.notification()["counts"]["unread"]).collect();
    assert_eq!(badges, [&json!(1), &json!(2), &json!(3)]);
    assert!(received.iter().all(|r| r.notification().get("content").is_none()), "push.include_content = false");
}

async fn event_id_only_and_encrypted_events(backend: Backend) {
    let gateway = PushGateway::start().await.unwrap();
    let server = start(backend, "").await;
    let (alice, _bob, room) = lounge(&server, &gateway, Some("event_id_only")).await;
    let message = send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "secret"})).await;
    let encrypted = json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEnAC", "sender_key": "abc", "session_id": "s1", "device_id": "D"});
    let cipher = send(&server, &alice, &room, "m.room.encrypted", encrypted).await;
    let received = exactly(&gateway, 2).await;
    let device = json!([{"app_id": APP_ID, "pushkey": PUSHKEY, "pushkey_ts": null, "data": {"custom": {"tag": 7}, "format": "event_id_only"}}]);
    for (request, (event_id, prio, unread)) in received.iter().zip([(&message, "low", 1), (&cipher, "high", 1)]) {
        let mut notification = request.notification().clone();
        notification["devices"][0]["pushkey_ts"] = Value::Null;
        assert_eq!(
            notification,
            json!({"event_id": event_id, "room_id": room, "prio": prio, "counts": {"unread": unread}, "devices": device}),
            "only the id, and no tweaks"
        );
    }

    // In full format, an encrypted event is high priority and carries its ciphertext.
    let bob = server.login("bob", "pw").await;
    set_pusher(&server, &bob, pusher_body(&gateway.url(), None)).await;
    let encrypted = json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "BwgAEnAC", "sender_key": "abc", "session_id": "s1", "device_id": "D"});
    send(&server, &alice, &room, "m.room.encrypted", encrypted.clone()).await;
    let received = exactly(&gateway, 3).await;
    assert_eq!(received[2].notification()["prio"], "high");
    assert_eq!(received[2].notification()["type"], "m.room.encrypted");
    assert_eq!(received[2].notification()["content"], encrypted);
}

async fn an_invite_is_pushed_with_its_membership(backend: Backend) {
    let gateway = PushGateway::start().await.unwrap();
    let server = start(backend, "").await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    set_pusher(&server, &bob, pusher_body(&gateway.url(), None)).await;
    let room = create_room(&server, &alice.access_token, json!({"name": "Party"})).await;
    let (status, reply) =
        server.post(&format!("/_matrix/client/v3/rooms/{room}/invite"), Some(&alice.access_token), json!({"user_id": server.user_id("bob")})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let received = exactly(&gateway, 1).await;
    let notification = received[0].notification();
    assert_eq!(notification["type"], "m.room.member");
    assert_eq!(notification["membership"], "invite");
    assert_eq!(notification["user_is_target"], true);
    assert_eq!(notification["room_name"], "Party");
    assert_eq!(notification["counts"], json!({"unread": 1}), "a pending invite counts in the badge");
    assert_eq!(notification["prio"], "high", "the invite rule sets a sound");
}

/// How clients open a direct chat: `createRoom` with `invite` and
/// `is_direct`. The invite is pushed like any other.
async fn an_invite_made_by_create_room_is_pushed(backend: Backend) {
    let gateway = PushGateway::start().await.unwrap();
    let server = start(backend, "").await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    set_pusher(&server, &bob, pusher_body(&gateway.url(), None)).await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [server.user_id("bob")]})).await;
    let received = exactly(&gateway, 1).await;
    let notification = received[0].notification();
    assert_eq!(notification["room_id"], room);
    assert_eq!(notification["type"], "m.room.member");
    assert_eq!(notification["membership"], "invite");
    assert_eq!(notification["user_is_target"], true);
    assert_eq!(notification["content"]["is_direct"], true);
    assert_eq!(notification["counts"], json!({"unread": 1}));
}

async fn a_failing_gateway_is_retried_with_backoff_then_everything_goes_in_order(backend: Backend) {
    let gateway = PushGateway::start().await.unwrap();
    let server = start(backend, "").await;
    let (alice, bob, room) = lounge(&server, &gateway, None).await;
    gateway.script([Reply::Status(500), Reply::Status(500), Reply::Status(500)]);
    let first = send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "one"})).await;
    gateway.wait_for(1, Duration::from_secs(10)).await;
    // The failure is recorded once the gateway's answer is in.
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.state.storage.user_pushers(&server.uid("bob")).await.unwrap()[0].failing_since_ts.is_none() {
        assert!(Instant::now() < deadline, "failing_since is stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // New events during the backoff do not wake the pusher early.
    let mut sent = vec![first];
    for text in ["two", "three"] {
        sent.push(send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": text})).await);
    }
    let received = exactly(&gateway, 6).await;
    let statuses: Vec<u16> = received.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 500, 200, 200, 200]);
    let ids: Vec<String> = received.iter().map(|r| r.notification()["event_id"].as_str().unwrap().to_owned()).collect();
    let expected: Vec<String> = [0, 0, 0, 0, 1, 2].iter().map(|n: &usize| sent[*n].clone()).collect();
    assert_eq!(ids, expected, "the failing one again and again, then all in order, once");
    let gaps: Vec<Duration> = received.windows(2).map(|pair| pair[1].at - pair[0].at).collect();
    for (gap, backoff) in gaps.iter().zip([1, 2, 4]) {
        let backoff = Duration::from_secs(backoff);
        assert!(*gap >= backoff - Duration::from_millis(100) && *gap < backoff + Duration::from_millis(1500), "gaps {gaps:?}");
    }
    assert!(gaps[3] < Duration::from_millis(900) && gaps[4] < Duration::from_millis(900), "the backlog goes back to back: {gaps:?}");
    // Written once the pusher's run through its backlog ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = server.state.storage.user_pushers(&server.uid("bob")).await.unwrap();
        if stored[0].failing_since_ts.is_none() && stored[0].last_success_ts.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "still failing, or no success written: {:?}", stored[0]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = bob;
}

/// The pool hands a pusher the notifications it read (its inbox); a read
/// receipt while they wait must still leave out the ones it covers.
async fn notifications_read_during_a_backoff_are_not_pushed(backend: Backend) {
    let gateway = PushGateway::start().await.unwrap();
    let server = start(backend, "").await;
    let (alice, bob, room) = lounge(&server, &gateway, None).await;
    gateway.script([Reply::Status(500)]);
    let first = send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "one"})).await;
    gateway.wait_for(1, Duration::from_secs(10)).await;
    let second = send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "two"})).await;
    read(&server, &bob, &room, &second).await;
    let third = send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "three"})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let pushed = loop {
        let pushed: Vec<(u16, Value)> =
            gateway.received().iter().filter(|r| r.status == 200).map(|r| (r.status, r.notification()["event_id"].clone())).collect();
        if pushed.iter().any(|(_, event_id)| *event_id == third) {
            break pushed;
        }
        assert!(Instant::now() < deadline, "the third message was not pushed after the backoff: {:#?}", gateway.received());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let event_ids: Vec<Value> = gateway.received().iter().map(|r| r.notification()["event_id"].clone()).filter(|id| !id.is_null()).collect();
    assert_eq!(event_ids, [json!(first), json!(third)], "the first failed, the read ones were left out: {pushed:?}");
}

async fn a_rejected_pushkey_deletes_the_pusher(backend: Backend) {
    let gateway = PushGateway::start().await.unwrap();
    let server = start(backend, "").await;
    let (alice, bob, room) = lounge(&server, &gateway, None).await;
    // Another device's pushkey rejected: only logged.
    gateway.script([Reply::Reject(vec!["someone-else".into()])]);
    send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "one"})).await;
    exactly(&gateway, 1).await;
    let (_, listed) = server.get("/_matrix/client/v3/pushers", Some(&bob.access_token)).await;
    assert_eq!(listed["pushers"].as_array().unwrap().len(), 1);

    gateway.script([Reply::Reject(vec![PUSHKEY.into()])]);
    send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "two"})).await;
    exactly(&gateway, 2).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, listed) = server.get("/_matrix/client/v3/pushers", Some(&bob.access_token)).await;
        assert_eq!(status, StatusCode::OK);
        if listed["pushers"] == json!([]) {
            break;
        }
        assert!(Instant::now() < deadline, "the rejected pusher is still there: {listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "three"})).await;
    exactly(&gateway, 2).await;
}

async fn a_running_pusher_set_again_or_deleted_is_followed_at_once(backend: Backend) {
    let first_gateway = PushGateway::start().await.unwrap();
    let second_gateway = PushGateway::start().await.unwrap();
    let server = start(backend, "").await;
    let (alice, bob, room) = lounge(&server, &first_gateway, None).await;
    let one = send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "one"})).await;
    assert_eq!(exactly(&first_gateway, 1).await[0].notification()["event_id"], one);
    set_pusher(&server, &bob, pusher_body(&second_gateway.url(), None)).await;
    let two = send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "two"})).await;
    assert_eq!(exactly(&second_gateway, 1).await[0].notification()["event_id"], two, "the new gateway, from the next message");
    assert_eq!(first_gateway.received().len(), 1, "nothing more to the old gateway");
    set_pusher(&server, &bob, json!({"kind": null, "app_id": APP_ID, "pushkey": PUSHKEY})).await;
    send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "three"})).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!((first_gateway.received().len(), second_gateway.received().len()), (1, 1), "a deleted pusher sends nothing");
}

async fn a_notification_failing_for_more_than_a_day_is_skipped(backend: Backend) {
    let gateway = PushGateway::start().await.unwrap();
    let server = start(backend, "").await;
    let (alice, _bob, room) = lounge(&server, &gateway, None).await;
    let bob_id = server.uid("bob");
    let key = PusherKey { user_id: &bob_id, app_id: APP_ID, pushkey: PUSHKEY };
    let a_day_ago = weft::storage::now_ms() - 25 * 3600 * 1000;
    assert!(server.state.storage.record_pusher_failure(key, a_day_ago).await.unwrap());
    gateway.script([Reply::Status(500)]);
    let stale = send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "old"})).await;
    let received = exactly(&gateway, 1).await;
    assert_eq!(received[0].notification()["event_id"], stale);
    let fresh = send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "new"})).await;
    let received = exactly(&gateway, 2).await;
    assert_eq!(received[1].notification()["event_id"], fresh, "the stale one was skipped, not retried");
    let stored = server.state.storage.user_pushers(&bob_id).await.unwrap();
    assert_eq!(stored[0].failing_since_ts, None);
}

async fn a_restart_resumes_delivery_where_it_stopped(backend: Backend) {
    let gateway = PushGateway::start().await.unwrap();
    let server = start(backend, "").await;
    let (alice, _bob, room) = lounge(&server, &gateway, None).await;
    gateway.set_reply(Reply::Status(503));
    let mut sent = Vec::new();
    for text in ["one", "two"] {
        sent.push(send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": text})).await);
    }
    gateway.wait_for(1, Duration::from_secs(10)).await;
    let server = server.restart().await;
    gateway.set_reply(Reply::Accept);
    let deadline = Instant::now() + Duration::from_secs(20);
    let delivered = loop {
        let delivered: Vec<String> =
            gateway.received().iter().filter(|r| r.status == 200).map(|r| r.notification()["event_id"].as_str().unwrap().to_owned()).collect();
        if delivered.len() >= 2 || Instant::now() > deadline {
            break delivered;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivered, sent, "both delivered after the restart, in order, once");
    // The position is written once the pusher's run through its backlog ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = server.state.storage.user_pushers(&server.uid("bob")).await.unwrap();
        if stored[0].last_stream_ordering > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the pusher's position was never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn nobody_sends_pushes_with_no_pusher_instances(backend: Backend) {
    let gateway = PushGateway::start().await.unwrap();
    let server = start(backend, "pusher_instances = []").await;
    let (alice, _bob, room) = lounge(&server, &gateway, None).await;
    send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "unheard"})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(gateway.received().is_empty());
    let config = weft::config::load_str("t.toml", "server_name = \"x\"\npusher_instances = []\n").unwrap();
    assert!(weft::config::warnings(&config).iter().any(|w| w.contains("pusher_instances")), "check-config says so");
}
