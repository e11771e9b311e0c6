//! What an appservice needs for encryption, in its transactions: to-device
//! messages for its users' devices (exactly once, across a restart of the
//! notifier), and with `org.matrix.msc3202` device-list changes, one-time
//! key counts and unused fallback key types, under the stable and the
//! unstable names; and presence among the ephemeral events.

use std::collections::{BTreeMap, HashMap};

use http::StatusCode;
use serde_json::{Value, json};

use super::{
    AS_TOKEN,
    fake::{FakeAppservice, Mode},
    registration, server,
};
use crate::{
    on_both_backends,
    support::{Backend, TestServer, encode},
};

on_both_backends!(
    to_device_messages_reach_the_appservice_once_across_a_restart,
    device_lists_and_key_counts_go_to_msc3202_appservices,
    presence_goes_to_appservices_that_ask,
);

/// Each transaction once (its last try), in id order.
fn unique(appservice: &FakeAppservice) -> Vec<(i64, Value)> {
    let mut last: BTreeMap<i64, Value> = BTreeMap::new();
    for (id, body) in appservice.transactions() {
        last.insert(id, body);
    }
    last.into_iter().collect()
}

fn all_of(appservice: &FakeAppservice, key: &str) -> Vec<Value> {
    unique(appservice).into_iter().flat_map(|(_, body)| body[key].as_array().cloned().unwrap_or_default()).collect()
}

/// Registers `localpart` through the appservice with a device `device_id`.
async fn puppet_with_device(server: &TestServer, as_token: &str, localpart: &str, device_id: &str) -> String {
    let (status, body) = server
        .post("/_matrix/client/v3/register", Some(as_token), json!({"type": "m.login.application_service", "username": localpart, "device_id": device_id}))
        .await;
    assert_eq!((status, body["device_id"].as_str()), (StatusCode::OK, Some(device_id)), "{body}");
    body["user_id"].as_str().unwrap().to_owned()
}

async fn send_to_device(server: &TestServer, token: &str, txn: &str, user_id: &str, device_id: &str, n: u64) {
    let path = format!("/_matrix/client/v3/sendToDevice/m.test.ping/{txn}");
    let (status, body) = server.put(&path, Some(token), json!({"messages": {user_id: {device_id: {"n": n}}}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn to_device_messages_reach_the_appservice_once_across_a_restart(backend: Backend) {
    let appservice = FakeAppservice::start(Mode::Accept).await;
    let plain = FakeAppservice::start(Mode::Accept).await;
    let registrations = [
        registration("bridge", Some(&appservice.url()), AS_TOKEN, "de.sorunome.msc2409.push_ephemeral: true\norg.matrix.msc3202: true\n"),
        registration("plain", Some(&plain.url()), "as-plain", ""),
    ];
    let (server, dir) = server(backend, &registrations, "").await;
    let puppet = puppet_with_device(&server, AS_TOKEN, "bridge_alice", "PUPPETDEV").await;
    let carol = server.register("carol", "pw").await;
    let dave = server.register("dave", "pw").await;
    send_to_device(&server, &carol.access_token, "t1", &puppet, "PUPPETDEV", 1).await;
    send_to_device(&server, &carol.access_token, "t-dave", &dave.user_id, &dave.device_id, 99).await;
    appservice.wait_for(20, "the first to-device message", |_| !all_of(&appservice, "de.sorunome.msc2409.to_device").is_empty()).await;
    let first = all_of(&appservice, "de.sorunome.msc2409.to_device")[0].clone();
    assert_eq!(
        first,
        json!({"to_user_id": puppet, "to_device_id": "PUPPETDEV", "type": "m.test.ping", "sender": carol.user_id, "content": {"n": 1}}),
        "as Synapse sends it"
    );
    assert_eq!(all_of(&appservice, "to_device"), vec![first.clone()], "also under the stable name");

    // Down: the message waits in its stored transaction across a restart.
    appservice.set_mode(Mode::Status(500, "down"));
    send_to_device(&server, &carol.access_token, "t2", &puppet, "PUPPETDEV", 2).await;
    appservice
        .wait_for(20, "a first try of the second", |_| {
            appservice
                .transactions()
                .iter()
                .any(|(_, body)| body["de.sorunome.msc2409.to_device"].as_array().is_some_and(|m| m.iter().any(|m| m["content"]["n"] == 2)))
        })
        .await;
    let server = server.restart().await;
    send_to_device(&server, &carol.access_token, "t3", &puppet, "PUPPETDEV", 3).await;
    appservice.set_mode(Mode::Accept);
    appservice.wait_for(40, "every message", |_| all_of(&appservice, "de.sorunome.msc2409.to_device").iter().any(|m| m["content"]["n"] == 3)).await;
    let numbers: Vec<u64> = all_of(&appservice, "de.sorunome.msc2409.to_device").iter().filter_map(|m| m["content"]["n"].as_u64()).collect();
    assert_eq!(numbers, [1, 2, 3], "each once, in order, nothing for users outside the namespace");
    let mut ids: HashMap<i64, Value> = HashMap::new();
    for (id, body) in appservice.transactions() {
        assert_eq!(ids.entry(id).or_insert_with(|| body.clone()), &body, "a retry sends the same body");
    }
    assert!(all_of(&plain, "de.sorunome.msc2409.to_device").is_empty() && all_of(&plain, "to_device").is_empty(), "not without receive_ephemeral");
    drop(dir);
}

async fn device_lists_and_key_counts_go_to_msc3202_appservices(backend: Backend) {
    let appservice = FakeAppservice::start(Mode::Accept).await;
    let plain = FakeAppservice::start(Mode::Accept).await;
    let registrations = [
        registration("bridge", Some(&appservice.url()), AS_TOKEN, "org.matrix.msc3202: true\n"),
        registration("plain", Some(&plain.url()), "as-plain", "receive_ephemeral: true\n"),
    ];
    let (server, _dir) = server(backend, &registrations, "").await;
    let puppet = puppet_with_device(&server, AS_TOKEN, "bridge_alice", "PUPPETDEV").await;
    let carol = server.register("carol", "pw").await;
    let (_, room) = server.post("/_matrix/client/v3/createRoom", Some(&carol.access_token), json!({"preset": "public_chat"})).await;
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    let as_puppet = |path: &str| format!("{path}?user_id={}&device_id=PUPPETDEV", encode(&puppet));
    assert_eq!(server.post(&as_puppet(&format!("/_matrix/client/v3/join/{room_id}")), Some(AS_TOKEN), json!({})).await.0, StatusCode::OK);
    assert_eq!(server.post(&format!("/_matrix/client/v3/join/{room_id}"), Some("as-plain"), json!({})).await.0, StatusCode::OK);
    let keys = json!({
        "one_time_keys": {"signed_curve25519:A1": {"key": "k1"}, "signed_curve25519:A2": {"key": "k2"}, "signed_curve25519:A3": {"key": "k3"}},
        "fallback_keys": {"signed_curve25519:F1": {"key": "f1", "fallback": true}},
    });
    let (status, body) = server.post(&as_puppet("/_matrix/client/v3/keys/upload"), Some(AS_TOKEN), keys).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let say = |n: u32| {
        let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/k{n}");
        let token = carol.access_token.clone();
        let server = &server;
        async move { server.put(&path, Some(&token), json!({"msgtype": "m.text", "body": format!("count {n}")})).await.0 }
    };
    let count_with = |body: &str| -> Option<Value> {
        unique(&appservice)
            .into_iter()
            .find(|(_, txn)| txn["events"].as_array().is_some_and(|events| events.iter().any(|e| e["content"]["body"] == body)))
            .map(|(_, txn)| txn)
    };
    assert_eq!(say(1).await, StatusCode::OK);
    appservice.wait_for(20, "the first message", |_| count_with("count 1").is_some()).await;
    let txn = count_with("count 1").unwrap();
    for key in ["device_one_time_keys_count", "org.matrix.msc3202.device_one_time_keys_count", "org.matrix.msc3202.device_one_time_key_counts"] {
        assert_eq!(txn[key][&puppet]["PUPPETDEV"], json!({"signed_curve25519": 3}), "{key}: {txn}");
    }
    for key in ["device_unused_fallback_key_types", "org.matrix.msc3202.device_unused_fallback_key_types"] {
        assert_eq!(txn[key][&puppet]["PUPPETDEV"], json!(["signed_curve25519"]), "{key}: {txn}");
    }
    assert!(txn["device_one_time_keys_count"].get(&carol.user_id).is_none(), "only the appservice's users: {txn}");

    // carol claims a key, then a new device of hers changes her device list.
    let claim = json!({"one_time_keys": {&puppet: {"PUPPETDEV": "signed_curve25519"}}});
    let (status, claimed) = server.post("/_matrix/client/v3/keys/claim", Some(&carol.access_token), claim).await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    server.login("carol", "pw").await;
    assert_eq!(say(2).await, StatusCode::OK);
    appservice
        .wait_for(20, "the second count and carol's device change", |_| {
            count_with("count 2").is_some() && all_device_lists(&appservice).iter().any(|changed| changed == &carol.user_id)
        })
        .await;
    let txn = count_with("count 2").unwrap();
    assert_eq!(txn["device_one_time_keys_count"][&puppet]["PUPPETDEV"], json!({"signed_curve25519": 2}), "one claimed: {txn}");
    let with_lists = unique(&appservice).into_iter().map(|(_, txn)| txn).find(|txn| txn.get("device_lists").is_some()).unwrap();
    assert_eq!(with_lists["device_lists"], with_lists["org.matrix.msc3202.device_lists"], "both names: {with_lists}");
    assert_eq!(with_lists["device_lists"]["left"], json!([]), "{with_lists}");

    plain.wait_for(20, "the plain appservice's messages", |_| plain.transactions().iter().any(|(_, txn)| txn["events"].to_string().contains("count 2"))).await;
    for (_, txn) in plain.transactions() {
        for key in ["device_lists", "org.matrix.msc3202.device_lists", "device_one_time_keys_count", "device_unused_fallback_key_types"] {
            assert!(txn.get(key).is_none(), "{key} needs org.matrix.msc3202: {txn}");
        }
    }
}

fn all_device_lists(appservice: &FakeAppservice) -> Vec<String> {
    unique(appservice)
        .into_iter()
        .flat_map(|(_, txn)| txn["device_lists"]["changed"].as_array().cloned().unwrap_or_default())
        .filter_map(|user| user.as_str().map(str::to_owned))
        .collect()
}

async fn presence_goes_to_appservices_that_ask(backend: Backend) {
    let eager = FakeAppservice::start(Mode::Accept).await;
    let plain = FakeAppservice::start(Mode::Accept).await;
    let registrations =
        [registration("eager", Some(&eager.url()), "as-eager", "receive_ephemeral: true\n"), registration("plain", Some(&plain.url()), "as-plain", "")];
    let (server, _dir) = server(backend, &registrations, "").await;
    let carol = server.register("carol", "pw").await;
    let dave = server.register("dave", "pw").await;
    let (_, room) = server.post("/_matrix/client/v3/createRoom", Some(&carol.access_token), json!({"preset": "public_chat"})).await;
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    for token in ["as-eager", "as-plain"] {
        assert_eq!(server.post(&format!("/_matrix/client/v3/join/{room_id}"), Some(token), json!({})).await.0, StatusCode::OK);
    }
    for (user, token) in [(&dave.user_id, &dave.access_token), (&carol.user_id, &carol.access_token)] {
        let path = format!("/_matrix/client/v3/presence/{}/status", encode(user));
        assert_eq!(server.put(&path, Some(token), json!({"presence": "online", "status_msg": "bridging"})).await.0, StatusCode::OK);
    }
    let presence = |appservice: &FakeAppservice| -> Vec<Value> { all_of(appservice, "ephemeral").into_iter().filter(|e| e["type"] == "m.presence").collect() };
    eager.wait_for(20, "carol's presence", |_| presence(&eager).iter().any(|e| e["sender"] == carol.user_id.as_str())).await;
    let event = presence(&eager).into_iter().find(|e| e["sender"] == carol.user_id.as_str()).unwrap();
    assert_eq!((event["content"]["presence"].as_str(), event["content"]["status_msg"].as_str()), (Some("online"), Some("bridging")), "{event}");
    assert!(event["content"].get("user_id").is_none(), "as Synapse: the sender, no user_id in the content: {event}");
    assert!(presence(&eager).iter().all(|e| e["sender"] != dave.user_id.as_str()), "dave shares no room with the appservice");
    let (_, sent) = server
        .put(&format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/p"), Some(&carol.access_token), json!({"msgtype": "m.text", "body": "p"}))
        .await;
    let event_id = sent["event_id"].as_str().unwrap().to_owned();
    plain.wait_for(20, "the message", |_| plain.transactions().iter().any(|(_, txn)| txn["events"].to_string().contains(&event_id))).await;
    assert!(presence(&plain).is_empty(), "an appservice that did not ask gets none");
}
