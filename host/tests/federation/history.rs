//! History from before a join, across servers: a user who joins a room of
//! another server pages back with `/messages` through everything sent
//! before the join (fetched with `backfill`), in order, each event once,
//! and none of it shows up as new in that user's incremental `/sync`;
//! Weft joining Synapse and Weft rooms (also with the other server down for
//! a while), and Synapse joining a Weft room.
//! Then what another server may see of a room whose history is `joined`:
//! events from before its users joined come redacted.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{
    pdu_checks::Caller,
    peers::Peer,
    rooms::{has_message, send_message, sync_until},
};
use crate::{
    on_both_backends,
    support::{Backend, Session, TestServer, encode, synapse::Synapse},
};

on_both_backends!(
    weft_pages_back_through_a_synapse_rooms_history_from_before_its_join,
    weft_pages_back_through_a_weft_rooms_history_from_before_its_join,
    synapse_pages_back_through_a_weft_rooms_history_from_before_its_join,
    weft_pages_back_once_the_other_server_is_reachable_again,
    another_server_sees_joined_history_from_before_its_join_redacted
);

/// Messages sent before the join; a topic is set halfway.
const OLD_MESSAGES: usize = 36;

/// `owner`'s user makes a room with `OLD_MESSAGES` messages and a topic
/// change among them; `joiner`'s user joins it by id. Returns both users
/// and the room.
async fn room_with_history(owner: &impl Peer, joiner: &impl Peer, tag: &str) -> (Session, Session, String) {
    let them = owner.user(&format!("historian{tag}")).await;
    let me = joiner.user(&format!("reader{tag}")).await;
    let (status, room) = owner.call(Method::POST, "/_matrix/client/v3/createRoom", &them.access_token, Some(json!({"preset": "public_chat"}))).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    for n in 0..OLD_MESSAGES {
        send_message(owner, &them, &room_id, &format!("old {n}")).await;
        if n == OLD_MESSAGES / 2 {
            let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", encode(&room_id));
            let (status, body) = owner.call(Method::PUT, &path, &them.access_token, Some(json!({"topic": "halfway"}))).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    let path = format!("/_matrix/client/v3/join/{}?via={}", encode(&room_id), encode(owner.name()));
    let (status, body) = joiner.call(Method::POST, &path, &me.access_token, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{} joins {room_id}: {body}\n{}{}", joiner.name(), joiner.logs(), owner.logs());
    (them, me, room_id)
}

/// Pages back through the room with `/messages` (10 at a time) until no
/// `end` token is given; every event returned, newest first.
async fn page_back(peer: &impl Peer, session: &Session, room_id: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..60 {
        let mut path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=10", encode(room_id));
        if let Some(from) = &from {
            path.push_str(&format!("&from={}", encode(from)));
        }
        let (status, body) = peer.call(Method::GET, &path, &session.access_token, None).await;
        assert_eq!(status, StatusCode::OK, "{} /messages: {body}\n{}", peer.name(), peer.logs());
        events.extend(body["chunk"].as_array().unwrap().iter().cloned());
        match body["end"].as_str() {
            Some(end) if Some(end) != from.as_deref() => from = Some(end.to_owned()),
            _ => return events,
        }
    }
    panic!("{} never reached the start of {room_id}", peer.name());
}

/// The bodies of the old messages among `events`, in their order.
fn old_bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|event| event["type"] == "m.room.message")
        .filter_map(|event| event["content"]["body"].as_str())
        .filter(|body| body.starts_with("old "))
        .map(str::to_owned)
        .collect()
}

/// The whole history, newest first, each event once, reaching the room's creation.
fn assert_complete_history(peer: &impl Peer, events: &[Value]) {
    let expected: Vec<String> = (0..OLD_MESSAGES).rev().map(|n| format!("old {n}")).collect();
    assert_eq!(old_bodies(events), expected, "{} pages back through the history in order", peer.name());
    let mut ids: Vec<&str> = events.iter().filter_map(|event| event["event_id"].as_str()).collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "no event is returned twice across pages");
    assert!(events.iter().any(|event| event["type"] == "m.room.create"), "the walk reaches the room's creation");
    assert!(events.iter().any(|event| event["type"] == "m.room.topic" && event["content"]["topic"] == "halfway"));
}

/// A Weft user joins `owner`'s room with history, takes a sync token,
/// pages back through the history, and sees none of it as new in its
/// incremental `/sync`; the room is then fully backfilled.
async fn weft_pages_back(owner: &impl Peer, weft: &TestServer, tag: &str) {
    let (them, me, room_id) = room_with_history(owner, weft, tag).await;
    let (status, body) = weft.get("/_matrix/client/v3/sync?timeout=0", Some(&me.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["rooms"]["join"].get(&room_id).is_some(), "{body}");
    let since = body["next_batch"].as_str().unwrap().to_owned();

    let events = page_back(weft, &me, &room_id).await;
    assert_complete_history(weft, &events);
    let room = ruma::RoomId::parse(&room_id).unwrap();
    let left = weft.state.storage.backward_extremities(&room).await.unwrap();
    assert!(left.is_empty(), "the room's history is all here, nothing left to ask for: {left:?}");
    // Again, from what is here only: the same history.
    assert_eq!(old_bodies(&page_back(weft, &me, &room_id).await), old_bodies(&events));

    // Nothing of it is new to `/sync`; what is sent next is.
    send_message(owner, &them, &room_id, "after the pagination").await;
    let mut since = since;
    let mut seen: Vec<Value> = Vec::new();
    let started = std::time::Instant::now();
    while !has_message(&seen, "after the pagination") {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the new message never came: {seen:?}");
        let (status, body) = weft.get(&format!("/_matrix/client/v3/sync?timeout=1000&since={}", encode(&since)), Some(&me.access_token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        seen.extend(body["rooms"]["join"][&room_id]["timeline"]["events"].as_array().into_iter().flatten().cloned());
        since = body["next_batch"].as_str().unwrap().to_owned();
    }
    assert!(old_bodies(&seen).is_empty(), "backfilled events are not new in /sync: {seen:?}");
}

async fn weft_pages_back_through_a_synapse_rooms_history_from_before_its_join(backend: Backend) {
    let synapse = Synapse::start().await;
    let weft = TestServer::builder(backend).federation().start().await;
    weft_pages_back(&synapse, &weft, "s").await;
}

async fn weft_pages_back_through_a_weft_rooms_history_from_before_its_join(backend: Backend) {
    let owner = TestServer::builder(backend).federation().start().await;
    let weft = TestServer::builder(backend).federation().start().await;
    weft_pages_back(&owner, &weft, "w").await;
}

/// The room's only other server is down: `/messages` answers with what is
/// here (no error); once it is back, paging again brings the history.
async fn weft_pages_back_once_the_other_server_is_reachable_again(backend: Backend) {
    let mut synapse = Synapse::start().await;
    let weft = TestServer::builder(backend).federation().start().await;
    let (_, me, room_id) = room_with_history(&synapse, &weft, "d").await;
    synapse.stop();
    let events = page_back(&weft, &me, &room_id).await;
    assert!(events.iter().any(|event| event["type"] == "m.room.member" && event["state_key"] == me.user_id), "{events:?}");
    assert!(old_bodies(&events).is_empty(), "nothing could be fetched: {events:?}");
    synapse.resume().await;
    assert_complete_history(&weft, &page_back(&weft, &me, &room_id).await);
}

/// Synapse joins a Weft room with history and pages back over Weft's
/// `backfill`.
async fn synapse_pages_back_through_a_weft_rooms_history_from_before_its_join(backend: Backend) {
    let synapse = Synapse::start().await;
    let weft = TestServer::builder(backend).federation().start().await;
    let (_, me, room_id) = room_with_history(&weft, &synapse, "ws").await;
    let events = page_back(&synapse, &me, &room_id).await;
    assert_complete_history(&synapse, &events);
}

/// A room whose history is `joined`: another server whose user joins
/// later gets the events from before that join redacted (`backfill`,
/// `event`, `get_missing_events`), and its user's `/messages` shows none
/// of their content; events from while its user is joined come whole.
async fn another_server_sees_joined_history_from_before_its_join_redacted(backend: Backend) {
    let owner = TestServer::builder(backend).federation().start().await;
    let other = TestServer::builder(backend).federation().start().await;
    let alice = owner.register("alice", "password-of-alice").await;
    let bob = other.register("bob", "password-of-bob").await;
    let initial_state = json!([{"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}]);
    let (status, room) =
        owner.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), json!({"preset": "public_chat", "initial_state": initial_state})).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    let mut secrets = Vec::new();
    for n in 0..5 {
        secrets.push(send_message(&owner, &alice, &room_id, &format!("secret {n}")).await);
    }
    let path = format!("/_matrix/client/v3/join/{}?via={}", encode(&room_id), encode(&owner.server_name));
    let (status, body) = other.post(&path, Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = send_message(&owner, &alice, &room_id, "while bob is here").await;
    sync_until(&other, &bob, &room_id, "the message sent after the join", |events| has_message(events, "while bob is here")).await;

    // Bob's server asks for the history itself.
    let caller =
        Caller { origin: other.server_name.clone(), destination: owner.server_name.clone(), base: owner.federation_base(), key: &other.state.signing_key.pair };
    let (status, body) = caller.call(Method::GET, &format!("/_matrix/federation/v1/backfill/{}?v={}&limit=100", encode(&room_id), encode(&after)), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let pdus = body["pdus"].as_array().unwrap();
    let hidden: Vec<&Value> = pdus.iter().filter(|pdu| pdu["type"] == "m.room.message" && pdu["content"].get("body").is_none()).collect();
    assert_eq!(hidden.len(), secrets.len(), "the messages from before the join come redacted, not left out: {body}");
    assert!(!pdus.iter().any(|pdu| pdu["content"]["body"].as_str().is_some_and(|text| text.starts_with("secret"))), "{body}");
    assert!(pdus.iter().any(|pdu| pdu["content"]["body"] == "while bob is here"), "{body}");

    let (status, body) = caller.call(Method::GET, &format!("/_matrix/federation/v1/event/{}", encode(&secrets[0])), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pdus"][0]["content"], json!({}), "one event asked for by id comes redacted: {body}");
    let (status, body) = caller.call(Method::GET, &format!("/_matrix/federation/v1/event/{}", encode(&after)), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pdus"][0]["content"]["body"], "while bob is here", "{body}");

    let missing = json!({"earliest_events": [], "latest_events": [after], "limit": 20});
    let (status, body) = caller.call(Method::POST, &format!("/_matrix/federation/v1/get_missing_events/{}", encode(&room_id)), Some(&missing)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let messages: Vec<&Value> = body["events"].as_array().unwrap().iter().filter(|event| event["type"] == "m.room.message").collect();
    assert_eq!(messages.len(), secrets.len(), "the messages before the one named: {body}");
    assert!(messages.iter().all(|event| event["content"] == json!({})), "{body}");

    // Bob's own pagination (backfilled from the owner) shows none of it.
    let events = page_back(&other, &bob, &room_id).await;
    assert!(has_message(&events, "while bob is here"), "{events:?}");
    assert!(!events.iter().any(|event| event["content"]["body"].as_str().is_some_and(|text| text.starts_with("secret"))), "{events:?}");
}
