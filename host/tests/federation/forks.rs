//! Forks in a room shared with another server, and auth events fetched from
//! it. The test plays the other server (`fake_remote`, with its own signing
//! key): its users join a Weft room through `make_join`/`send_join`, then it
//! sends events on two branches from the same parent. The state before each
//! event, the room's current state and what `/sync` shows follow state
//! resolution v2: concurrent topics resolve to the later one
//! (`origin_server_ts`, same power mainline) whichever arrived last; a
//! demotion on one branch makes the resolution drop the demoted user's
//! topic from the other, and a later event of theirs on their branch is
//! soft-failed. A PDU naming an auth event Weft lacks is accepted once the
//! auth event was fetched from its origin (`event_auth`), refused when the
//! origin cannot give it.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use ruma::{CanonicalJsonObject, RoomVersionId};
use serde_json::{Value, json};

use super::{fake_remote::FakeRemote, pdu_checks::Caller};
use crate::{
    on_both_backends,
    support::{Backend, Session, TestServer, encode},
};

on_both_backends!(concurrent_topics_resolve_to_the_later_one, a_demotion_on_one_branch_overrules_the_other, missing_auth_events_are_fetched_from_the_origin);

/// A Weft room with users of the fake server joined.
struct Room<'a> {
    target: &'a TestServer,
    alice: Session,
    room_id: String,
    caller: Caller<'a>,
    /// Event ids of the room's power levels and join rules.
    power_levels: String,
    join_rules: String,
}

impl Room<'_> {
    /// Creates the room (topic "original"; the fake's `users` at their
    /// power levels) and joins them in order; their join ids and depths.
    async fn start<'a>(target: &'a TestServer, fake: &'a FakeRemote, users: &[(&str, i64)]) -> (Room<'a>, Vec<(String, i64)>) {
        let alice = target.register("alice", "password-of-alice").await;
        let levels: serde_json::Map<String, Value> = users.iter().map(|(user, level)| (format!("@{user}:{}", fake.server_name), json!(level))).collect();
        let body = json!({"preset": "public_chat", "topic": "original", "power_level_content_override": {"users": levels}});
        let (status, created) = target.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), body).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let room_id = created["room_id"].as_str().unwrap().to_owned();
        let caller = Caller { origin: fake.server_name.clone(), destination: target.server_name.clone(), base: target.federation_base(), key: &fake.key };
        let mut room = Room { target, alice, room_id, caller, power_levels: String::new(), join_rules: String::new() };
        let mut joins = Vec::new();
        for (user, _) in users {
            let user_id = format!("@{user}:{}", fake.server_name);
            let path = format!("/_matrix/federation/v1/make_join/{}/{}?ver=12", encode(&room.room_id), encode(&user_id));
            let (status, template) = room.caller.call(Method::GET, &path, None).await;
            assert_eq!(status, StatusCode::OK, "{template}");
            let depth = template["event"]["depth"].as_i64().unwrap();
            let (join_id, join) = room.sign(serde_json::from_value(template["event"].clone()).unwrap());
            let path = format!("/_matrix/federation/v2/send_join/{}/{}", encode(&room.room_id), encode(&join_id));
            let (status, answer) = room.caller.call(Method::PUT, &path, Some(&join)).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            let id_of = |kind: &str| answer["state"].as_array().unwrap().iter().find(|event| event["type"] == kind).map(|event| room.id_of(event)).unwrap();
            let (power_levels, join_rules) = (id_of("m.room.power_levels"), id_of("m.room.join_rules"));
            (room.power_levels, room.join_rules) = (power_levels, join_rules);
            joins.push((join_id, depth));
        }
        (room, joins)
    }

    fn rules() -> ruma::room_version_rules::RoomVersionRules {
        RoomVersionId::V12.rules().unwrap()
    }

    fn id_of(&self, pdu: &Value) -> String {
        let object: CanonicalJsonObject = serde_json::from_value(pdu.clone()).unwrap();
        format!("${}", ruma::signatures::reference_hash(&object, &Self::rules()).unwrap())
    }

    fn sign(&self, mut object: CanonicalJsonObject) -> (String, Value) {
        ruma::signatures::hash_and_sign_event(&self.caller.origin, self.caller.key, &mut object, &Self::rules().redaction).unwrap();
        let pdu = serde_json::to_value(object).unwrap();
        (self.id_of(&pdu), pdu)
    }

    /// A signed event of the fake's `user`.
    #[allow(clippy::too_many_arguments)]
    fn event(&self, user: &str, kind: &str, state_key: Option<&str>, content: Value, prev: &[&str], auth: &[&str], depth: i64, ts: u64) -> (String, Value) {
        let mut event = json!({
            "room_id": self.room_id, "sender": self.user(user), "type": kind, "content": content,
            "prev_events": prev, "auth_events": auth, "depth": depth, "origin_server_ts": ts,
        });
        if let Some(state_key) = state_key {
            event["state_key"] = json!(state_key);
        }
        self.sign(serde_json::from_value(event).unwrap())
    }

    fn user(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.caller.origin)
    }

    /// Sends one PDU in its own transaction: the answer for it.
    async fn send(&self, txn: &str, id: &str, pdu: Value) -> Value {
        let (status, body) = self.caller.send(txn, vec![pdu]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["pdus"][id].clone()
    }

    /// A current state event's content, from the client API.
    async fn state(&self, kind: &str, state_key: &str) -> Value {
        let path = format!("/_matrix/client/v3/rooms/{}/state/{kind}/{}", encode(&self.room_id), encode(state_key));
        let (status, content) = self.target.get(&path, Some(&self.alice.access_token)).await;
        assert_eq!(status, StatusCode::OK, "{content}");
        content
    }

    /// Syncs from `since` until the room's timeline holds `event_id`: the
    /// timeline and state events seen on the way, and the next token.
    async fn sync_until(&self, since: Option<&str>, event_id: &str) -> (Vec<Value>, Vec<Value>, String) {
        let started = Instant::now();
        let mut since = since.map(str::to_owned);
        let (mut timeline, mut state) = (Vec::new(), Vec::new());
        loop {
            let path = match &since {
                Some(since) => format!("/_matrix/client/v3/sync?timeout=1000&since={}", encode(since)),
                None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
            };
            let (status, body) = self.target.get(&path, Some(&self.alice.access_token)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let room = &body["rooms"]["join"][&self.room_id];
            timeline.extend(room["timeline"]["events"].as_array().into_iter().flatten().cloned());
            state.extend(room["state"]["events"].as_array().into_iter().flatten().cloned());
            let next = body["next_batch"].as_str().unwrap().to_owned();
            if timeline.iter().any(|event| event["event_id"] == event_id) {
                return (timeline, state, next);
            }
            assert!(started.elapsed() < Duration::from_secs(30), "never saw {event_id}: {timeline:?}");
            since = Some(next);
        }
    }

    async fn event_status(&self, event_id: &str) -> StatusCode {
        let path = format!("/_matrix/client/v3/rooms/{}/event/{}", encode(&self.room_id), encode(event_id));
        self.target.get(&path, Some(&self.alice.access_token)).await.0
    }
}

fn now() -> u64 {
    ruma::MilliSecondsSinceUnixEpoch::now().get().into()
}

fn topic(topic: &str) -> Value {
    json!({"topic": topic})
}

async fn concurrent_topics_resolve_to_the_later_one(backend: Backend) {
    let fake = FakeRemote::start().await;
    let target = TestServer::builder(backend).federation().start().await;
    let (room, joins) = Room::start(&target, &fake, &[("mallory", 50)]).await;
    let (join, depth) = (joins[0].0.as_str(), joins[0].1);
    let auth = [room.power_levels.as_str(), join];
    let (_, _, token) = room.sync_until(None, join).await;

    // Branch A (the later timestamp) arrives first and is the state.
    let at = now();
    let (a_id, a) = room.event("mallory", "m.room.topic", Some(""), topic("branch A"), &[join], &auth, depth + 1, at + 2_000);
    assert_eq!(room.send("a1", &a_id, a).await, json!({}));
    let (_, _, token) = room.sync_until(Some(&token), &a_id).await;
    assert_eq!(room.state("m.room.topic", "").await["topic"], "branch A");

    // Branch B, from the same parent with an earlier timestamp, arrives
    // later: resolution keeps A (same power mainline, later timestamp).
    let (b_id, b) = room.event("mallory", "m.room.topic", Some(""), topic("branch B"), &[join], &auth, depth + 1, at + 1_000);
    assert_eq!(room.send("a2", &b_id, b).await, json!({}));
    assert_eq!(room.state("m.room.topic", "").await["topic"], "branch A", "the resolved topic is current");
    let (timeline, state, _) = room.sync_until(Some(&token), &b_id).await;
    assert!(timeline.iter().any(|event| event["event_id"] == b_id), "{timeline:?}");
    assert!(state.iter().any(|event| event["event_id"] == a_id && event["content"]["topic"] == "branch A"), "the reset reaches /sync: {state:?}");

    // An event merging both branches: the state before it is the resolution.
    let (merge_id, merge) =
        room.event("mallory", "m.room.message", None, json!({"msgtype": "m.text", "body": "merged"}), &[&a_id, &b_id], &auth, depth + 2, at + 3_000);
    assert_eq!(room.send("a3", &merge_id, merge).await, json!({}));
    assert_eq!(room.state("m.room.topic", "").await["topic"], "branch A");
    let filter = encode(&json!({"room": {"timeline": {"limit": 1}}}).to_string());
    let (status, body) = target.get(&format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"), Some(&room.alice.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let joined = &body["rooms"]["join"][&room.room_id];
    assert_eq!(joined["timeline"]["events"][0]["event_id"], merge_id.as_str(), "{joined}");
    let topics: Vec<&Value> = joined["state"]["events"].as_array().unwrap().iter().filter(|event| event["type"] == "m.room.topic").collect();
    assert_eq!(topics.len(), 1, "{joined}");
    assert_eq!(topics[0]["event_id"], a_id.as_str(), "an initial sync shows the resolved topic: {joined}");
    let (status, all) = target.get(&format!("/_matrix/client/v3/rooms/{}/state", encode(&room.room_id)), Some(&room.alice.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let topic_event = all.as_array().unwrap().iter().find(|event| event["type"] == "m.room.topic").unwrap();
    assert_eq!(topic_event["event_id"], a_id.as_str(), "{all}");
}

async fn a_demotion_on_one_branch_overrules_the_other(backend: Backend) {
    let fake = FakeRemote::start().await;
    let target = TestServer::builder(backend).federation().start().await;
    let (room, joins) = Room::start(&target, &fake, &[("rob", 100), ("mallory", 50)]).await;
    let (rob_join, mallory_join, depth) = (joins[0].0.as_str(), joins[1].0.as_str(), joins[1].1);
    let (_, _, token) = room.sync_until(None, mallory_join).await;
    let at = now();

    // Mallory's branch: a topic, allowed at her level (50).
    let (topic_id, event) =
        room.event("mallory", "m.room.topic", Some(""), topic("mallory's topic"), &[mallory_join], &[&room.power_levels, mallory_join], depth + 1, at);
    assert_eq!(room.send("b1", &topic_id, event).await, json!({}));
    let (_, _, token) = room.sync_until(Some(&token), &topic_id).await;
    assert_eq!(room.state("m.room.topic", "").await["topic"], "mallory's topic");

    // Rob's branch, from the same parent: mallory demoted to 0. Allowed by
    // the state before it; the resolution takes it, and mallory's topic no
    // longer passes the rules under it: the topic is alice's again.
    let mut levels = room.state("m.room.power_levels", "").await;
    levels["users"][room.user("mallory")] = json!(0);
    let (demotion_id, event) =
        room.event("rob", "m.room.power_levels", Some(""), levels, &[mallory_join], &[&room.power_levels, rob_join], depth + 1, at + 1_000);
    assert_eq!(room.send("b2", &demotion_id, event).await, json!({}));
    assert_eq!(room.state("m.room.power_levels", "").await["users"][room.user("mallory")], 0);
    assert_eq!(room.state("m.room.topic", "").await["topic"], "original", "resolution drops the demoted user's topic");
    let (_, state, _) = room.sync_until(Some(&token), &demotion_id).await;
    assert!(state.iter().any(|event| event["type"] == "m.room.topic" && event["content"]["topic"] == "original"), "the reset reaches /sync: {state:?}");

    // Mallory, still on her branch: allowed by the state before it, not by
    // the room's current state: soft-failed (accepted, kept out of the room).
    let (late_id, event) =
        room.event("mallory", "m.room.topic", Some(""), topic("still mallory's"), &[&topic_id], &[&room.power_levels, mallory_join], depth + 2, at + 2_000);
    assert_eq!(room.send("b3", &late_id, event).await, json!({}));
    assert_eq!(room.event_status(&late_id).await, StatusCode::NOT_FOUND, "soft-failed events stay out of the timeline");
    assert_eq!(room.state("m.room.topic", "").await["topic"], "original");
}

async fn missing_auth_events_are_fetched_from_the_origin(backend: Backend) {
    let fake = FakeRemote::start().await;
    let target = TestServer::builder(backend).federation().start().await;
    let (room, joins) = Room::start(&target, &fake, &[("mallory", 50)]).await;
    let (join, depth) = (joins[0].0.as_str(), joins[0].1);
    let at = now();

    // A rename Weft never receives, then a message naming it as an auth event.
    let rename = json!({"membership": "join", "displayname": "Mallory renamed"});
    let mallory = room.user("mallory");
    let (rename_id, event) =
        room.event("mallory", "m.room.member", Some(&mallory), rename, &[join], &[&room.power_levels, join, &room.join_rules], depth + 1, at);
    fake.serve_event(&rename_id, event);
    let (message_id, message) = room.event(
        "mallory",
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "after a rename"}),
        &[join],
        &[&room.power_levels, &rename_id],
        depth + 1,
        at + 1,
    );
    fake.serve_event(&message_id, message.clone());
    assert_eq!(room.send("c1", &message_id, message).await, json!({}), "accepted once the auth event was fetched");
    assert!(!fake.seen("/_matrix/federation/v1/event_auth/").is_empty(), "the auth chain was asked of the origin");
    let (timeline, _, _) = room.sync_until(None, &message_id).await;
    assert!(timeline.iter().any(|event| event["content"]["body"] == "after a rename"), "{timeline:?}");
    assert_eq!(room.state("m.room.member", &mallory).await["membership"], "join");

    // An auth event the origin cannot give: refused, nothing stored.
    let unknown = format!("${}", "A".repeat(43));
    let (orphan_id, orphan) = room.event(
        "mallory",
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "orphan"}),
        &[&message_id],
        &[&room.power_levels, &unknown],
        depth + 2,
        at + 2,
    );
    fake.serve_event(&orphan_id, orphan.clone());
    let answer = room.send("c2", &orphan_id, orphan).await;
    assert!(answer["error"].as_str().is_some_and(|error| error.contains("unknown auth event")), "{answer}");
    assert_eq!(room.event_status(&orphan_id).await, StatusCode::NOT_FOUND);
}
