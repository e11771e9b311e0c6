//! PDUs from another server, checked as the specification orders: the test
//! plays that server with a second Weft's signing key (joining through
//! `make_join`/`send_join` itself), then sends a good event, one with a bad
//! signature, one whose content hash does not match (stored redacted), one
//! that fails the authorization rules, a repeated transaction, garbage, and
//! a request with a wrong X-Matrix signature. Refused events are named in
//! the answer and nothing of them is stored; nothing answers 500.

use http::{Method, StatusCode};
use ruma::{CanonicalJsonObject, RoomVersionId, signatures::Ed25519KeyPair};
use serde_json::{Value, json};

use super::rooms::{has_message, sync_until};
use crate::{
    on_both_backends,
    support::{Backend, TestServer, encode, errcode, synapse::https_client},
};

on_both_backends!(pdus_from_another_server_are_checked_before_they_are_stored);

/// Plays another server: requests X-Matrix signed with its key.
pub(super) struct Caller<'a> {
    pub(super) origin: String,
    pub(super) destination: String,
    pub(super) base: String,
    pub(super) key: &'a Ed25519KeyPair,
}

impl Caller<'_> {
    pub(super) async fn call(&self, method: Method, uri: &str, body: Option<&Value>) -> (StatusCode, Value) {
        self.call_signed_with(self.key, method, uri, body).await
    }

    async fn call_signed_with(&self, key: &Ed25519KeyPair, method: Method, uri: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let bytes = body.map(|body| serde_json::to_vec(body).unwrap()).unwrap_or_default();
        let request = http::Request::builder().method(method.clone()).uri(uri).body(bytes.clone()).unwrap();
        let input = ruma::api::federation::authentication::XMatrixSigningInput::new(
            self.origin.as_str().try_into().unwrap(),
            self.destination.as_str().try_into().unwrap(),
            key,
        );
        let authorization = ruma::api::federation::authentication::XMatrix::sign_http_request(&request, input).unwrap().to_string();
        let mut request = https_client().request(method, format!("{}{uri}", self.base)).header("Authorization", authorization);
        if body.is_some() {
            request = request.header("Content-Type", "application/json").body(bytes);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}: {text}");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub(super) async fn send(&self, txn: &str, pdus: Vec<Value>) -> (StatusCode, Value) {
        let body = json!({"origin": self.origin, "origin_server_ts": 1, "pdus": pdus});
        self.call(Method::PUT, &format!("/_matrix/federation/v1/send/{txn}"), Some(&body)).await
    }
}

fn rules() -> ruma::room_version_rules::RoomVersionRules {
    RoomVersionId::V12.rules().unwrap()
}

pub(super) fn signed(origin: &str, key: &Ed25519KeyPair, mut object: CanonicalJsonObject) -> (String, Value) {
    ruma::signatures::hash_and_sign_event(origin, key, &mut object, &rules().redaction).unwrap();
    let id = format!("${}", ruma::signatures::reference_hash(&object, &rules()).unwrap());
    (id, serde_json::to_value(object).unwrap())
}

pub(super) fn event_id_of(pdu: &Value) -> String {
    let object: CanonicalJsonObject = serde_json::from_value(pdu.clone()).unwrap();
    format!("${}", ruma::signatures::reference_hash(&object, &rules()).unwrap())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn unsigned_event(
    room_id: &str,
    sender: &str,
    kind: &str,
    state_key: Option<&str>,
    content: Value,
    prev: &str,
    auth: &[&str],
    depth: i64,
) -> CanonicalJsonObject {
    let mut event = json!({
        "room_id": room_id, "sender": sender, "type": kind, "content": content,
        "prev_events": [prev], "auth_events": auth, "depth": depth,
        "origin_server_ts": ruma::MilliSecondsSinceUnixEpoch::now(),
    });
    if let Some(state_key) = state_key {
        event["state_key"] = json!(state_key);
    }
    serde_json::from_value(event).unwrap()
}

async fn pdus_from_another_server_are_checked_before_they_are_stored(backend: Backend) {
    let target = TestServer::builder(backend).federation().start().await;
    let other = TestServer::builder(Backend::Sqlite).federation().start().await;
    let alice = target.register("alice", "password-of-alice").await;
    let (status, room) = target.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), json!({"preset": "public_chat"})).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    let caller = Caller {
        origin: other.server_name.clone(),
        destination: target.server_name.clone(),
        base: target.federation_base(),
        key: &other.state.signing_key.pair,
    };
    let mallory = format!("@mallory:{}", caller.origin);

    // Joining: the template, signed here, then send_join.
    let (status, body) = caller.call(Method::GET, &format!("/_matrix/federation/v1/make_join/{}/{}?ver=12", encode(&room_id), encode(&mallory)), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_version"], "12");
    let depth = body["event"]["depth"].as_i64().unwrap();
    let (status, refused) = caller.call(Method::GET, &format!("/_matrix/federation/v1/make_join/{}/{}?ver=11", encode(&room_id), encode(&mallory)), None).await;
    assert_eq!((status, errcode(&refused)), (StatusCode::BAD_REQUEST, "M_INCOMPATIBLE_ROOM_VERSION"), "{refused}");
    let someone_else = format!("@eve:{}", target.server_name);
    let (status, refused) =
        caller.call(Method::GET, &format!("/_matrix/federation/v1/make_join/{}/{}?ver=12", encode(&room_id), encode(&someone_else)), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a join for another server's user: {refused}");
    let (join_id, join) = signed(&caller.origin, caller.key, serde_json::from_value(body["event"].clone()).unwrap());
    let (status, answer) = caller.call(Method::PUT, &format!("/_matrix/federation/v2/send_join/{}/{}", encode(&room_id), encode(&join_id)), Some(&join)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let state = answer["state"].as_array().unwrap();
    assert!(state.iter().any(|event| event["type"] == "m.room.create"), "{answer}");
    assert!(!state.iter().any(|event| event["state_key"] == mallory), "the state is the state before the join: {answer}");
    assert!(!answer["auth_chain"].as_array().unwrap().is_empty(), "{answer}");
    let power_levels = state.iter().find(|event| event["type"] == "m.room.power_levels").map(event_id_of).unwrap();
    sync_until(&target, &alice, &room_id, "mallory's join", |events| events.iter().any(|event| event["state_key"] == mallory)).await;

    let auth = [power_levels.as_str(), join_id.as_str()];
    let message = |text: &str, prev: &str, depth: i64| {
        unsigned_event(&room_id, &mallory, "m.room.message", None, json!({"msgtype": "m.text", "body": text}), prev, &auth, depth)
    };

    // A good event: accepted and seen by the room's local member.
    let (good_id, good) = signed(&caller.origin, caller.key, message("signed well", &join_id, depth + 1));
    let (status, body) = caller.send("t1", vec![good.clone()]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pdus"][&good_id], json!({}), "{body}");
    sync_until(&target, &alice, &room_id, "the good event", |events| has_message(events, "signed well")).await;

    // A bad signature (the right key id, another key): refused, not stored.
    let impostor = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), caller.key.version().into()).unwrap();
    let (forged_id, forged) = signed(&caller.origin, &impostor, message("forged", &good_id, depth + 2));
    let (status, body) = caller.send("t2", vec![forged]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["pdus"][&forged_id]["error"].is_string(), "{body}");
    let event_path = |id: &str| format!("/_matrix/client/v3/rooms/{}/event/{}", encode(&room_id), encode(id));
    let (status, _) = target.get(&event_path(&forged_id), Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A content hash that does not match: accepted, redacted.
    let (tampered_id, mut tampered) = signed(&caller.origin, caller.key, message("original", &good_id, depth + 2));
    tampered["content"]["body"] = json!("tampered");
    let (status, body) = caller.send("t3", vec![tampered]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pdus"][&tampered_id], json!({}), "{body}");
    let (status, stored) = target.get(&event_path(&tampered_id), Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["content"], json!({}), "stored redacted: {stored}");

    // An event the authorization rules refuse (power levels by a member at 0).
    let grab = unsigned_event(&room_id, &mallory, "m.room.power_levels", Some(""), json!({"users": {mallory.clone(): 100}}), &tampered_id, &auth, depth + 3);
    let (grab_id, grab) = signed(&caller.origin, caller.key, grab);
    let (status, body) = caller.send("t4", vec![grab]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["pdus"][&grab_id]["error"].is_string(), "{body}");
    let (status, _) = target.get(&event_path(&grab_id), Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The same transaction id again: the first answer, nothing new handled.
    let (late_id, late) = signed(&caller.origin, caller.key, message("late", &tampered_id, depth + 3));
    let (status, body) = caller.send("t1", vec![late]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pdus"], json!({good_id.clone(): {}}), "{body}");
    let (status, _) = target.get(&event_path(&late_id), Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The good event again, in a new transaction: accepted, kept once, and
    // counted as sent again.
    let (status, body) = caller.send("t8", vec![good]).await;
    assert_eq!((status, &body["pdus"][&good_id]), (StatusCode::OK, &json!({})), "{body}");
    assert_eq!(super::repeated_pdus(&target, &caller.origin).await, 1.0, "the repeated PDU is counted");

    // Garbage: a body of the wrong shape is 400; PDUs that are not events are dropped.
    let (status, body) = caller.call(Method::PUT, "/_matrix/federation/v1/send/t5", Some(&json!({"origin": caller.origin, "pdus": "nope"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = caller.send("t6", vec![json!(42), json!({"room_id": room_id, "type": 7}), json!({"room_id": "!unknown:nowhere"})]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answers = body["pdus"].as_object().unwrap();
    assert!(answers.values().all(|answer| answer["error"].is_string()), "none accepted: {body}");

    // A wrong X-Matrix signature on the transaction itself.
    let body = json!({"origin": caller.origin, "origin_server_ts": 1, "pdus": []});
    let (status, answer) = caller.call_signed_with(&impostor, Method::PUT, "/_matrix/federation/v1/send/t7", Some(&body)).await;
    assert_eq!((status, errcode(&answer)), (StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED"), "{answer}");
}
