//! Rooms across servers with Synapse 1.163 as the peer, and Weft with Weft:
//! a user of one joins rooms created on the other (by alias through the
//! directory query, and by room id with `server_name`/`via`), and messages
//! flow both ways, each seen in the other side's `/sync`; the Synapse side
//! goes down for a while and the events sent meanwhile reach it when it
//! returns.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::peers::Peer;
use crate::{
    on_both_backends,
    support::{Backend, Session, TestServer, encode, errcode, synapse::Synapse},
};

on_both_backends!(
    synapse_joins_weft_rooms_and_messages_flow_both_ways,
    weft_joins_synapse_rooms_and_messages_flow_both_ways,
    weft_joins_weft_rooms,
    invites_kicks_and_leaves_across_servers,
    three_servers_share_a_room
);

/// Syncs as `session` on `peer` until `found` holds for the room's
/// timeline events; fails after 60 s.
pub(super) async fn sync_until(peer: &impl Peer, session: &Session, room_id: &str, what: &str, found: impl Fn(&[Value]) -> bool) {
    let started = Instant::now();
    let mut since: Option<String> = None;
    let mut seen: Vec<Value> = Vec::new();
    loop {
        let path = match &since {
            Some(since) => format!("/_matrix/client/v3/sync?timeout=1000&since={}", encode(since)),
            None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
        };
        let (status, body) = peer.call(Method::GET, &path, &session.access_token, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if let Some(events) = body["rooms"]["join"][room_id]["timeline"]["events"].as_array() {
            seen.extend(events.iter().cloned());
        }
        if found(&seen) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{} never saw {what} in {room_id}: {seen:?}\n{}", peer.name(), peer.logs());
        since = body["next_batch"].as_str().map(str::to_owned);
    }
}

/// `bob` of Synapse types in the room and sends a read receipt for
/// `read_me`: both reach `alice`'s `/sync` on `weft`.
pub(super) async fn synapse_typing_and_receipt_reach(weft: &impl Peer, alice: &Session, synapse: &Synapse, bob: &Session, room_id: &str, read_me: &str) {
    let typing = format!("/_matrix/client/v3/rooms/{}/typing/{}", encode(room_id), encode(&bob.user_id));
    let (status, body) = synapse.request(Method::PUT, &typing, Some(&bob.access_token), Some(json!({"typing": true, "timeout": 30000}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let receipt = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", encode(room_id), encode(read_me));
    let (status, body) = synapse.post(&receipt, Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until_ephemeral(weft, alice, room_id, "bob typing", |event| {
        event["type"] == "m.typing" && event["content"]["user_ids"].as_array().is_some_and(|ids| ids.iter().any(|id| *id == bob.user_id))
    })
    .await;
    sync_until_ephemeral(weft, alice, room_id, "bob's receipt", |event| {
        event["type"] == "m.receipt" && event["content"][read_me]["m.read"].get(&bob.user_id).is_some()
    })
    .await;
}

/// A new user of `weft`, carol, joins a new public room of `bob` on
/// Synapse by id with `via`; messages flow both ways.
pub(super) async fn weft_user_joins_a_synapse_room(weft: &impl Peer, synapse: &Synapse, bob: &Session) {
    let (status, room) = synapse.post("/_matrix/client/v3/createRoom", Some(&bob.access_token), json!({"preset": "public_chat"})).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let synapse_room = room["room_id"].as_str().unwrap().to_owned();
    let carol = weft.user("carol").await;
    let path = format!("/_matrix/client/v3/join/{}?via={}", encode(&synapse_room), encode(&synapse.server_name));
    let (status, body) = weft.call(Method::POST, &path, &carol.access_token, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "carol joins the Synapse room {synapse_room}: {body}\n{}", weft.logs());
    send_message(synapse, bob, &synapse_room, "welcome carol").await;
    sync_until(weft, &carol, &synapse_room, "bob's welcome", |events| has_message(events, "welcome carol")).await;
    send_message(weft, &carol, &synapse_room, "thanks bob").await;
    sync_until(synapse, bob, &synapse_room, "carol's thanks", |events| has_message(events, "thanks bob")).await;
}

/// Syncs until an ephemeral event of the room satisfies `found`; fails after 60 s.
pub(super) async fn sync_until_ephemeral(peer: &impl Peer, session: &Session, room_id: &str, what: &str, found: impl Fn(&Value) -> bool) {
    let started = Instant::now();
    let mut since: Option<String> = None;
    loop {
        let path = match &since {
            Some(since) => format!("/_matrix/client/v3/sync?timeout=1000&since={}", encode(since)),
            None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
        };
        let (status, body) = peer.call(Method::GET, &path, &session.access_token, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["rooms"]["join"][room_id]["ephemeral"]["events"].as_array().is_some_and(|events| events.iter().any(&found)) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{} never saw {what} in {room_id}\n{}", peer.name(), peer.logs());
        since = body["next_batch"].as_str().map(str::to_owned);
    }
}

pub(super) fn has_message(events: &[Value], text: &str) -> bool {
    events.iter().any(|event| event["type"] == "m.room.message" && event["content"]["body"] == text)
}

pub(super) async fn send_message(peer: &impl Peer, session: &Session, room_id: &str, text: &str) -> String {
    let txn = format!("t{}", rand_suffix());
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", encode(room_id));
    let (status, body) = peer.call(Method::PUT, &path, &session.access_token, Some(json!({"msgtype": "m.text", "body": text}))).await;
    assert_eq!(status, StatusCode::OK, "{} sends into {room_id}: {body}", peer.name());
    body["event_id"].as_str().unwrap().to_owned()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

async fn synapse_joins_weft_rooms_and_messages_flow_both_ways(backend: Backend) {
    let mut synapse = Synapse::start().await;
    let weft = TestServer::builder(backend).federation().start().await;
    let alice = weft.register("alice", "password-of-alice").await;
    let bob = synapse.register("bob").await;

    // By alias: Synapse asks Weft's directory, then joins through Weft.
    let (status, room) =
        weft.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), json!({"room_alias_name": "fed", "preset": "public_chat"})).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    let alias = format!("#fed:{}", weft.server_name);
    let (status, body) = synapse.post(&format!("/_matrix/client/v3/join/{}", encode(&alias)), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "Synapse joins {alias}: {body}\n{}", synapse.logs());
    assert_eq!(body["room_id"], room_id);

    // Weft sees the remote join, then messages go both ways.
    sync_until(&weft, &alice, &room_id, "bob's join", |events| {
        events.iter().any(|event| event["type"] == "m.room.member" && event["state_key"] == bob.user_id && event["content"]["membership"] == "join")
    })
    .await;
    send_message(&weft, &alice, &room_id, "hello from Weft").await;
    sync_until(&synapse, &bob, &room_id, "Weft's message", |events| has_message(events, "hello from Weft")).await;
    send_message(&synapse, &bob, &room_id, "hello from Synapse").await;
    sync_until(&weft, &alice, &room_id, "Synapse's message", |events| has_message(events, "hello from Synapse")).await;
    let (status, members) = weft.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", encode(&room_id)), Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{members}");
    assert!(members["joined"].get(&bob.user_id).is_some(), "{members}");

    // Synapse redacts its message: Weft applies the redaction.
    let regretted = send_message(&synapse, &bob, &room_id, "regretted").await;
    sync_until(&weft, &alice, &room_id, "the message to redact", |events| has_message(events, "regretted")).await;
    let (status, body) = synapse
        .request(
            Method::PUT,
            &format!("/_matrix/client/v3/rooms/{}/redact/{}/r1", encode(&room_id), encode(&regretted)),
            Some(&bob.access_token),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until(&weft, &alice, &room_id, "the redaction", |events| events.iter().any(|event| event["type"] == "m.room.redaction")).await;
    let (status, event) = weft.get(&format!("/_matrix/client/v3/rooms/{}/event/{}", encode(&room_id), encode(&regretted)), Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["content"], json!({}), "redacted on Weft: {event}");

    // Typing and a read receipt from Synapse reach Weft's /sync.
    let weft_message = send_message(&weft, &alice, &room_id, "read me").await;
    sync_until(&synapse, &bob, &room_id, "the message to read", |events| has_message(events, "read me")).await;
    let (status, body) = synapse
        .request(
            Method::PUT,
            &format!("/_matrix/client/v3/rooms/{}/typing/{}", encode(&room_id), encode(&bob.user_id)),
            Some(&bob.access_token),
            Some(json!({"typing": true, "timeout": 30000})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until_ephemeral(&weft, &alice, &room_id, "bob typing", |edu| {
        edu["type"] == "m.typing" && edu["content"]["user_ids"].as_array().is_some_and(|ids| ids.contains(&json!(bob.user_id)))
    })
    .await;
    let (status, body) = synapse
        .post(&format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", encode(&room_id), encode(&weft_message)), Some(&bob.access_token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until_ephemeral(&weft, &alice, &room_id, "bob's receipt", |edu| {
        edu["type"] == "m.receipt" && edu["content"][&weft_message]["m.read"].get(&bob.user_id).is_some()
    })
    .await;

    // And Weft's typing and read receipt reach Synapse's /sync.
    let synapse_message = send_message(&synapse, &bob, &room_id, "read me too").await;
    sync_until(&weft, &alice, &room_id, "the message to read", |events| has_message(events, "read me too")).await;
    let (status, body) = weft
        .put(
            &format!("/_matrix/client/v3/rooms/{}/typing/{}", encode(&room_id), encode(&alice.user_id)),
            Some(&alice.access_token),
            json!({"typing": true, "timeout": 30000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until_ephemeral(&synapse, &bob, &room_id, "alice typing", |edu| {
        edu["type"] == "m.typing" && edu["content"]["user_ids"].as_array().is_some_and(|ids| ids.contains(&json!(alice.user_id)))
    })
    .await;
    let (status, body) = weft
        .post(&format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", encode(&room_id), encode(&synapse_message)), Some(&alice.access_token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until_ephemeral(&synapse, &bob, &room_id, "alice's receipt", |edu| {
        edu["type"] == "m.receipt" && edu["content"][&synapse_message]["m.read"].get(&alice.user_id).is_some()
    })
    .await;

    // A to-device message from Synapse reaches the Weft device, once.
    let to_device = json!({"messages": {alice.user_id.clone(): {alice.device_id.clone(): {"secret": "for alice's device"}}}});
    let (status, body) = synapse.request(Method::PUT, "/_matrix/client/v3/sendToDevice/m.test.secret/td1", Some(&bob.access_token), Some(to_device)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let started = Instant::now();
    loop {
        let (status, body) = weft.get("/_matrix/client/v3/sync?timeout=1000", Some(&alice.access_token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let events = body["to_device"]["events"].as_array().cloned().unwrap_or_default();
        if let Some(message) = events.iter().find(|event| event["type"] == "m.test.secret") {
            assert_eq!((&message["sender"], &message["content"]["secret"]), (&json!(bob.user_id), &json!("for alice's device")), "{message}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the to-device message never came\n{}", synapse.logs());
    }

    // And one from Weft reaches the Synapse device.
    let to_device = json!({"messages": {bob.user_id.clone(): {bob.device_id.clone(): {"secret": "for bob's device"}}}});
    let (status, body) = weft.put("/_matrix/client/v3/sendToDevice/m.test.secret/td2", Some(&alice.access_token), to_device).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let started = Instant::now();
    let mut since: Option<String> = None;
    loop {
        let path = match &since {
            Some(since) => format!("/_matrix/client/v3/sync?timeout=1000&since={}", encode(since)),
            None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
        };
        let (status, body) = synapse.request(Method::GET, &path, Some(&bob.access_token), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let events = body["to_device"]["events"].as_array().cloned().unwrap_or_default();
        if let Some(message) = events.iter().find(|event| event["type"] == "m.test.secret") {
            assert_eq!((&message["sender"], &message["content"]["secret"]), (&json!(alice.user_id), &json!("for bob's device")), "{message}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the to-device message never reached Synapse\n{}", synapse.logs());
        since = body["next_batch"].as_str().map(str::to_owned);
    }

    // By room id with `server_name` (version 12 room ids name no server).
    let (status, room) = weft.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), json!({"preset": "public_chat"})).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let second = room["room_id"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/join/{}?server_name={}", encode(&second), encode(&weft.server_name));
    let (status, body) = synapse.post(&path, Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "Synapse joins {second} by id: {body}\n{}", synapse.logs());
    send_message(&synapse, &bob, &second, "by id from Synapse").await;
    sync_until(&weft, &alice, &second, "Synapse's message", |events| has_message(events, "by id from Synapse")).await;
    for n in 0..3 {
        send_message(&weft, &alice, &second, &format!("burst {n}")).await;
    }
    sync_until(&synapse, &bob, &second, "Weft's burst", |events| (0..3).all(|n| has_message(events, &format!("burst {n}")))).await;

    // Synapse goes down: what Weft sends meanwhile is queued (the sender
    // fails and backs off) and delivered when Synapse is back.
    synapse.stop();
    for n in 0..3 {
        send_message(&weft, &alice, &room_id, &format!("while down {n}")).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    synapse.resume().await;
    sync_until(&synapse, &bob, &room_id, "what was sent while it was down", |events| (0..3).all(|n| has_message(events, &format!("while down {n}")))).await;
}

/// A user of `joiner` joins a room of `owner` by alias and one by id with
/// `via` (of `version`), and messages go both ways in each.
async fn join_across(owner: &impl Peer, joiner: &impl Peer, tag: &str, version: &str) {
    let them = owner.user(&format!("owner{tag}")).await;
    let me = joiner.user(&format!("joiner{tag}")).await;
    let (status, room) = owner
        .call(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            &them.access_token,
            Some(json!({"room_alias_name": format!("across{tag}"), "preset": "public_chat"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    send_message(owner, &them, &room_id, "before the join").await;
    let alias = format!("#across{tag}:{}", owner.name());
    let (status, body) = joiner.call(Method::POST, &format!("/_matrix/client/v3/join/{}", encode(&alias)), &me.access_token, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{} joins {alias}: {body}\n{}{}", joiner.name(), joiner.logs(), owner.logs());
    assert_eq!(body["room_id"], room_id);
    sync_until(owner, &them, &room_id, "the remote join", |events| {
        events.iter().any(|event| event["type"] == "m.room.member" && event["state_key"] == me.user_id && event["content"]["membership"] == "join")
    })
    .await;
    send_message(joiner, &me, &room_id, &format!("hello from {}", joiner.name())).await;
    sync_until(owner, &them, &room_id, "the joiner's message", |events| has_message(events, &format!("hello from {}", joiner.name()))).await;
    send_message(owner, &them, &room_id, &format!("hello from {}", owner.name())).await;
    sync_until(joiner, &me, &room_id, "the owner's message", |events| has_message(events, &format!("hello from {}", owner.name()))).await;
    let (status, members) = joiner.call(Method::GET, &format!("/_matrix/client/v3/rooms/{}/joined_members", encode(&room_id)), &me.access_token, None).await;
    assert_eq!(status, StatusCode::OK, "{members}");
    assert!(members["joined"].get(&them.user_id).is_some() && members["joined"].get(&me.user_id).is_some(), "{members}");

    // By id with `via`, in the given room version.
    let (status, room) =
        owner.call(Method::POST, "/_matrix/client/v3/createRoom", &them.access_token, Some(json!({"preset": "public_chat", "room_version": version}))).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let second = room["room_id"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/join/{}?via={}", encode(&second), encode(owner.name()));
    let (status, body) = joiner.call(Method::POST, &path, &me.access_token, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{} joins {second} (v{version}) by id: {body}\n{}{}", joiner.name(), joiner.logs(), owner.logs());
    send_message(owner, &them, &second, "by id").await;
    sync_until(joiner, &me, &second, "the owner's message", |events| has_message(events, "by id")).await;
    send_message(joiner, &me, &second, "by id, answered").await;
    sync_until(owner, &them, &second, "the joiner's message", |events| has_message(events, "by id, answered")).await;
}

async fn weft_joins_synapse_rooms_and_messages_flow_both_ways(backend: Backend) {
    let synapse = Synapse::start().await;
    let weft = TestServer::builder(backend).federation().start().await;
    join_across(&synapse, &weft, "s12", "12").await;
    join_across(&synapse, &weft, "s10", "10").await;
    join_across(&synapse, &weft, "s1", "1").await;
}

async fn weft_joins_weft_rooms(backend: Backend) {
    let one = TestServer::builder(backend).federation().start().await;
    let two = TestServer::builder(backend).federation().start().await;
    join_across(&one, &two, "w12", "12").await;
    join_across(&one, &two, "w3", "3").await;
}

/// Syncs as `session` on `peer` until the room is in the `section` of
/// `rooms` (`invite`, `leave`); fails after 60 s.
pub(super) async fn sync_until_in(peer: &impl Peer, session: &Session, section: &str, room_id: &str) {
    sync_until_in_with(peer, session, section, room_id, |_| true).await;
}

/// Syncs as `session` on `peer` until the room is in the `section` of
/// `rooms` and `found` holds for what that section says of it; fails after
/// 60 s.
async fn sync_until_in_with(peer: &impl Peer, session: &Session, section: &str, room_id: &str, found: impl Fn(&Value) -> bool) {
    let started = Instant::now();
    let mut since: Option<String> = None;
    loop {
        // Left rooms are in an initial sync only when the filter asks.
        let filter = encode(r#"{"room":{"include_leave":true}}"#);
        let path = match &since {
            Some(since) => format!("/_matrix/client/v3/sync?timeout=1000&filter={filter}&since={}", encode(since)),
            None => format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"),
        };
        let (status, body) = peer.call(Method::GET, &path, &session.access_token, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["rooms"][section].get(room_id).is_some_and(&found) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{} never listed {room_id} as expected in rooms.{section}\n{}", peer.name(), peer.logs());
        since = body["next_batch"].as_str().map(str::to_owned);
    }
}

/// Whether the last membership event of `user_id` among `events` is `membership`.
fn latest_membership_is(events: &[Value], user_id: &str, membership: &str) -> bool {
    events
        .iter()
        .rfind(|event| event["type"] == "m.room.member" && event["state_key"] == user_id)
        .is_some_and(|event| event["content"]["membership"] == membership)
}

pub(super) fn member_is(events: &[Value], user_id: &str, membership: &str) -> bool {
    events.iter().any(|event| event["type"] == "m.room.member" && event["state_key"] == user_id && event["content"]["membership"] == membership)
}

/// `inviter` invites a user of `invitee_side`, who accepts; then the
/// inviter kicks them, opens the room and they join again; then the
/// inviter bans them: the ban reaches the invitee's server, which cannot
/// join them again (the room is public: only the ban refuses) until the
/// inviter lifts it; at last they leave.
async fn invite_across(inviter_side: &impl Peer, invitee_side: &impl Peer, tag: &str) {
    let inviter = inviter_side.user(&format!("inviter{tag}")).await;
    let invitee = invitee_side.user(&format!("invitee{tag}")).await;
    let (status, room) = inviter_side.call(Method::POST, "/_matrix/client/v3/createRoom", &inviter.access_token, Some(json!({"preset": "private_chat"}))).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    let (status, body) = inviter_side
        .call(Method::POST, &format!("/_matrix/client/v3/rooms/{}/invite", encode(&room_id)), &inviter.access_token, Some(json!({"user_id": invitee.user_id})))
        .await;
    assert_eq!(status, StatusCode::OK, "{} invites {}: {body}\n{}{}", inviter_side.name(), invitee.user_id, inviter_side.logs(), invitee_side.logs());
    sync_until_in(invitee_side, &invitee, "invite", &room_id).await;
    let (status, body) =
        invitee_side.call(Method::POST, &format!("/_matrix/client/v3/join/{}", encode(&room_id)), &invitee.access_token, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{} accepts: {body}\n{}{}", invitee_side.name(), invitee_side.logs(), inviter_side.logs());
    sync_until(inviter_side, &inviter, &room_id, "the invitee's join", |events| member_is(events, &invitee.user_id, "join")).await;
    send_message(invitee_side, &invitee, &room_id, "thanks for the invite").await;
    sync_until(inviter_side, &inviter, &room_id, "the invitee's message", |events| has_message(events, "thanks for the invite")).await;

    // A kick from the inviter's side reaches the invitee's.
    let (status, body) = inviter_side
        .call(Method::POST, &format!("/_matrix/client/v3/rooms/{}/kick", encode(&room_id)), &inviter.access_token, Some(json!({"user_id": invitee.user_id})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until_in(invitee_side, &invitee, "leave", &room_id).await;

    // The invitee's server has no one left in the room: it joins through
    // the inviter's, once the room is public.
    let rejoin = format!("/_matrix/client/v3/join/{}?via={}", encode(&room_id), encode(inviter_side.name()));
    let (status, body) = inviter_side
        .call(
            Method::PUT,
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.join_rules/", encode(&room_id)),
            &inviter.access_token,
            Some(json!({"join_rule": "public"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = invitee_side.call(Method::POST, &rejoin, &invitee.access_token, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{} joins the public room again after the kick: {body}\n{}", invitee_side.name(), inviter_side.logs());
    sync_until(inviter_side, &inviter, &room_id, "the invitee's second join", |events| latest_membership_is(events, &invitee.user_id, "join")).await;

    // A ban from the inviter's side reaches the invitee's.
    let (status, body) = inviter_side
        .call(
            Method::POST,
            &format!("/_matrix/client/v3/rooms/{}/ban", encode(&room_id)),
            &inviter.access_token,
            Some(json!({"user_id": invitee.user_id, "reason": "testing bans"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until_in_with(invitee_side, &invitee, "leave", &room_id, |left| {
        ["timeline", "state"].iter().any(|part| {
            left[part]["events"].as_array().is_some_and(|events| {
                events.iter().any(|event| member_is(std::slice::from_ref(event), &invitee.user_id, "ban") && event["content"]["reason"] == "testing bans")
            })
        })
    })
    .await;

    // Banned: the join is refused, though the room is public.
    let (status, body) = invitee_side.call(Method::POST, &rejoin, &invitee.access_token, Some(json!({}))).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{} joins while banned: {body}", invitee_side.name());
    let (status, body) = inviter_side
        .call(
            Method::GET,
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", encode(&room_id), encode(&invitee.user_id)),
            &inviter.access_token,
            None,
        )
        .await;
    assert_eq!((status, &body["membership"]), (StatusCode::OK, &json!("ban")), "the refused join changed nothing: {body}");

    // Unbanned, they may join again: the ban was what refused them.
    let (status, body) = inviter_side
        .call(Method::POST, &format!("/_matrix/client/v3/rooms/{}/unban", encode(&room_id)), &inviter.access_token, Some(json!({"user_id": invitee.user_id})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The invitee's server, out of the room since the ban, never sees the
    // unban: its join must go to the inviter's server, which has it.
    let (status, body) = invitee_side.call(Method::POST, &rejoin, &invitee.access_token, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{} joins after the unban: {body}\n{}{}", invitee_side.name(), invitee_side.logs(), inviter_side.logs());
    let (status, body) =
        invitee_side.call(Method::POST, &format!("/_matrix/client/v3/rooms/{}/leave", encode(&room_id)), &invitee.access_token, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until(inviter_side, &inviter, &room_id, "the invitee's leave", |events| latest_membership_is(events, &invitee.user_id, "leave")).await;
}

async fn invites_kicks_and_leaves_across_servers(backend: Backend) {
    let synapse = Synapse::start().await;
    let weft = TestServer::builder(backend).federation().start().await;
    invite_across(&weft, &synapse, "ws").await;
    invite_across(&synapse, &weft, "sw").await;
    let other = TestServer::builder(backend).federation().start().await;
    invite_across(&weft, &other, "ww").await;

    // A Weft user leaves a Synapse room.
    let owner = synapse.register("leaveowner").await;
    let leaver = weft.register("leaver", "password-of-leaver").await;
    let (status, room) = synapse.post("/_matrix/client/v3/createRoom", Some(&owner.access_token), json!({"preset": "public_chat"})).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/join/{}?via={}", encode(&room_id), encode(&synapse.server_name));
    let (status, body) = weft.post(&path, Some(&leaver.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = weft.post(&format!("/_matrix/client/v3/rooms/{}/leave", encode(&room_id)), Some(&leaver.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until(&synapse, &owner, &room_id, "the Weft user's leave", |events| member_is(events, &leaver.user_id, "leave")).await;

    // A Synapse user rejects an invite to a Weft room. Synapse is not in the
    // room: it asks Weft for a leave template (`make_leave`) and sends the
    // signed leave back (`send_leave`).
    let host = weft.register("rejecthost", "password-of-rejecthost").await;
    let rejecter = synapse.register("rejecter").await;
    let (status, room) = weft.post("/_matrix/client/v3/createRoom", Some(&host.access_token), json!({"preset": "private_chat"})).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    let (status, body) =
        weft.post(&format!("/_matrix/client/v3/rooms/{}/invite", encode(&room_id)), Some(&host.access_token), json!({"user_id": rejecter.user_id})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = synapse.post(&format!("/_matrix/client/v3/rooms/{}/leave", encode(&room_id)), Some(&rejecter.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "Synapse rejects the invite through Weft's make_leave and send_leave: {body}");
    sync_until(&weft, &host, &room_id, "the rejected invite", |events| member_is(events, &rejecter.user_id, "leave")).await;
}

/// Weft, Synapse and a second Weft in one room of the first: the resident
/// Weft passes each joining server's join on to the others, so messages of
/// each server reach the other two.
async fn three_servers_share_a_room(backend: Backend) {
    let synapse = Synapse::start().await;
    let weft = TestServer::builder(backend).federation().start().await;
    let other = TestServer::builder(backend).federation().start().await;
    let alice = weft.register("alice", "password-of-alice").await;
    let bob = synapse.register("bob").await;
    let carol = other.register("carol", "password-of-carol").await;
    let (status, room) =
        weft.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), json!({"room_alias_name": "three", "preset": "public_chat"})).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    let alias = format!("#three:{}", weft.server_name);
    let (status, body) = synapse.post(&format!("/_matrix/client/v3/join/{}", encode(&alias)), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = other.post(&format!("/_matrix/client/v3/join/{}", encode(&alias)), Some(&carol.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until(&synapse, &bob, &room_id, "carol's join, passed on", |events| member_is(events, &carol.user_id, "join")).await;
    send_message(&synapse, &bob, &room_id, "from Synapse to both").await;
    sync_until(&other, &carol, &room_id, "Synapse's message", |events| has_message(events, "from Synapse to both")).await;
    sync_until(&weft, &alice, &room_id, "Synapse's message", |events| has_message(events, "from Synapse to both")).await;
    send_message(&other, &carol, &room_id, "from the second Weft").await;
    sync_until(&synapse, &bob, &room_id, "the second Weft's message", |events| has_message(events, "from the second Weft")).await;
    sync_until(&weft, &alice, &room_id, "the second Weft's message", |events| has_message(events, "from the second Weft")).await;
}
