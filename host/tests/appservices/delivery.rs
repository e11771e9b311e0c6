//! Transactions and queries through the reference notifier
//! `appservice-http`, to `fake` appservices: the body and its keys, the
//! Bearer `hs_token`, ids from one sequence, retries of the same
//! transaction with backoff until 2xx, nothing lost across a restart,
//! appservices that fail not slowing anyone, the ping, the user query
//! before an invite, and ephemeral events.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{
    AS_TOKEN, HS_TOKEN,
    fake::{FakeAppservice, Mode},
    registration, server,
};
use crate::{
    on_both_backends,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(
    events_of_interest_arrive_in_transactions_with_every_key,
    a_failed_transaction_is_retried_the_same_with_backoff_and_order_holds,
    queued_transactions_survive_a_restart,
    events_for_no_appservice_leave_the_saved_position_alone,
    failing_appservices_slow_neither_sending_nor_each_other,
    the_ping_reports_the_appservice_answer,
    inviting_an_unknown_puppet_asks_the_appservice_first,
    typing_and_receipts_go_to_appservices_that_ask,
);

/// Messages the appservice received, by body, in order of arrival (retries included).
fn bodies(transactions: &[(i64, Value)]) -> Vec<String> {
    transactions
        .iter()
        .flat_map(|(_, body)| body["events"].as_array().cloned().unwrap_or_default())
        .filter(|event| event["type"] == "m.room.message")
        .filter_map(|event| event["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

async fn send(server: &TestServer, token: &str, room_id: &str, txn: &str, body: &str) -> StatusCode {
    let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}");
    server.put(&path, Some(token), json!({"msgtype": "m.text", "body": body})).await.0
}

/// A room of `token`'s user that the appservice's sender joined (so the
/// appservice is interested in it).
async fn shared_room(server: &TestServer, token: &str, as_token: &str) -> String {
    let (_, room) = server.post("/_matrix/client/v3/createRoom", Some(token), json!({"preset": "public_chat"})).await;
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    let (status, body) = server.post(&format!("/_matrix/client/v3/join/{room_id}"), Some(as_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    room_id
}

async fn events_of_interest_arrive_in_transactions_with_every_key(backend: Backend) {
    let appservice = FakeAppservice::start(Mode::Accept).await;
    let (server, _dir) = server(backend, &[registration("bridge", Some(&appservice.url()), AS_TOKEN, "")], "").await;
    let carol = server.register("carol", "pw").await;
    let dave = server.register("dave", "pw").await;
    let (_, private) = server.post("/_matrix/client/v3/createRoom", Some(&dave.access_token), json!({})).await;
    assert_eq!(send(&server, &dave.access_token, private["room_id"].as_str().unwrap(), "d1", "not for the bridge").await, StatusCode::OK);
    let room_id = shared_room(&server, &carol.access_token, AS_TOKEN).await;
    assert_eq!(send(&server, &carol.access_token, &room_id, "c1", "hello bridge").await, StatusCode::OK);
    appservice.wait_for(20, "carol's message", |_| bodies(&appservice.transactions()).contains(&"hello bridge".to_owned())).await;
    let received = appservice.received();
    let first = received.iter().find(|r| r.path.starts_with("/_matrix/app/v1/transactions/")).unwrap();
    assert_eq!(first.method, "PUT");
    assert_eq!(first.authorization.as_deref(), Some(format!("Bearer {HS_TOKEN}").as_str()));
    for (_, body) in appservice.transactions() {
        for key in ["events", "ephemeral", "de.sorunome.msc2409.to_device"] {
            assert!(body[key].is_array(), "{key} is in every transaction: {body}");
        }
        for event in body["events"].as_array().unwrap() {
            assert_eq!(event["room_id"], room_id.as_str(), "only the shared room's events: {event}");
            assert!(event["event_id"].is_string() && event["sender"].is_string() && event.get("signatures").is_none(), "client format: {event}");
        }
    }
    assert!(!bodies(&appservice.transactions()).contains(&"not for the bridge".to_owned()));
    let ids: Vec<i64> = appservice.transactions().iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "increasing ids: {ids:?}");
}

async fn a_failed_transaction_is_retried_the_same_with_backoff_and_order_holds(backend: Backend) {
    let appservice = FakeAppservice::start(Mode::Accept).await;
    let (server, _dir) = server(backend, &[registration("bridge", Some(&appservice.url()), AS_TOKEN, "")], "").await;
    let carol = server.register("carol", "pw").await;
    let room_id = shared_room(&server, &carol.access_token, AS_TOKEN).await;
    appservice.wait_for(20, "the join", |r| !r.is_empty()).await;
    let before = appservice.transactions().len();
    appservice.script([Mode::Status(500, "{\"errcode\": \"M_UNKNOWN\"}"), Mode::Status(502, "bad gateway")]);
    let started = Instant::now();
    for n in 0..5 {
        assert_eq!(send(&server, &carol.access_token, &room_id, &format!("m{n}"), &format!("message {n}")).await, StatusCode::OK);
    }
    let expected: Vec<String> = (0..5).map(|n| format!("message {n}")).collect();
    appservice
        .wait_for(30, "every message after the failures", |_| {
            let got = bodies(&appservice.transactions());
            expected.iter().all(|body| got.contains(body))
        })
        .await;
    let transactions = appservice.transactions()[before..].to_vec();
    assert!(started.elapsed() >= Duration::from_secs(6), "waited 2 s then 4 s: {:?}", started.elapsed());
    // The first transaction was tried three times, the same each time.
    assert_eq!(transactions[0], transactions[1]);
    assert_eq!(transactions[1], transactions[2]);
    let delivered: Vec<(i64, Value)> = transactions[2..].to_vec();
    let mut got: Vec<String> = bodies(&delivered);
    got.retain(|body| body.starts_with("message "));
    assert_eq!(got, expected, "in order, each once");
    let ids: Vec<i64> = delivered.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
}

async fn queued_transactions_survive_a_restart(backend: Backend) {
    let appservice = FakeAppservice::start(Mode::Status(500, "down")).await;
    let (server, dir) = server(backend, &[registration("bridge", Some(&appservice.url()), AS_TOKEN, "")], "").await;
    let carol = server.register("carol", "pw").await;
    let room_id = shared_room(&server, &carol.access_token, AS_TOKEN).await;
    for n in 0..3 {
        assert_eq!(send(&server, &carol.access_token, &room_id, &format!("r{n}"), &format!("before restart {n}")).await, StatusCode::OK);
    }
    appservice.wait_for(20, "a first try", |r| !r.is_empty()).await;
    let server = server.restart().await;
    appservice.set_mode(Mode::Accept);
    assert_eq!(send(&server, &carol.access_token, &room_id, "r3", "after restart").await, StatusCode::OK);
    appservice
        .wait_for(40, "everything", |_| {
            let got = bodies(&appservice.transactions());
            (0..3).all(|n| got.contains(&format!("before restart {n}"))) && got.contains(&"after restart".to_owned())
        })
        .await;
    assert_eq!(delivered(&appservice), ["before restart 0", "before restart 1", "before restart 2", "after restart"]);
    drop(dir);
}

/// Events that go to no appservice are not worth a write each: the saved
/// position stays where the last queued event left it (Weft writes it only
/// every 1,000 events or 10 s then); after a restart they are read again and
/// queue nothing, and the next event of interest saves the position with it.
async fn events_for_no_appservice_leave_the_saved_position_alone(backend: Backend) {
    let appservice = FakeAppservice::start(Mode::Accept).await;
    let (server, dir) = server(backend, &[registration("bridge", Some(&appservice.url()), AS_TOKEN, "")], "").await;
    let carol = server.register("carol", "pw").await;
    let dave = server.register("dave", "pw").await;
    let room_id = shared_room(&server, &carol.access_token, AS_TOKEN).await;
    assert_eq!(send(&server, &carol.access_token, &room_id, "c1", "first").await, StatusCode::OK);
    appservice.wait_for(20, "the first message", |_| bodies(&appservice.transactions()).contains(&"first".to_owned())).await;
    let saved = server.state.storage.appservice_stream_position().await.unwrap();

    let (_, private) = server.post("/_matrix/client/v3/createRoom", Some(&dave.access_token), json!({})).await;
    let private = private["room_id"].as_str().unwrap().to_owned();
    for n in 0..5 {
        assert_eq!(send(&server, &dave.access_token, &private, &format!("d{n}"), "for nobody").await, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.state.storage.appservice_stream_position().await.unwrap(), saved, "no write for events no appservice wants");

    let server = server.restart().await;
    assert_eq!(send(&server, &carol.access_token, &room_id, "c2", "second").await, StatusCode::OK);
    appservice.wait_for(20, "the second message", |_| bodies(&appservice.transactions()).contains(&"second".to_owned())).await;
    assert_eq!(bodies(&appservice.transactions()), ["first", "second"], "nothing repeated, nothing for nobody");
    let now = server.state.storage.appservice_stream_position().await.unwrap();
    assert!(now > saved, "saved with the second message: {now} > {saved}");
    drop(dir);
}

/// The restart messages of each transaction once (its last try, the one
/// accepted), in transaction id order.
fn delivered(appservice: &FakeAppservice) -> Vec<String> {
    let mut last: std::collections::BTreeMap<i64, Value> = std::collections::BTreeMap::new();
    for (id, body) in appservice.transactions() {
        last.insert(id, body);
    }
    let unique: Vec<(i64, Value)> = last.into_iter().collect();
    bodies(&unique).into_iter().filter(|body| body.contains("restart")).collect()
}

async fn failing_appservices_slow_neither_sending_nor_each_other(backend: Backend) {
    let hanging = FakeAppservice::start(Mode::Hang).await;
    let failing = FakeAppservice::start(Mode::Status(500, "always")).await;
    let garbage = FakeAppservice::start(Mode::Garbage).await;
    let healthy = FakeAppservice::start(Mode::Accept).await;
    let registrations = [
        registration("hang", Some(&hanging.url()), "as-hang", ""),
        registration("fail", Some(&failing.url()), "as-fail", ""),
        registration("junk", Some(&garbage.url()), "as-junk", ""),
        registration("good", Some(&healthy.url()), "as-good", ""),
    ];
    let (server, _dir) = server(backend, &registrations, "").await;
    let carol = server.register("carol", "pw").await;
    let (_, room) = server.post("/_matrix/client/v3/createRoom", Some(&carol.access_token), json!({"preset": "public_chat"})).await;
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    for token in ["as-hang", "as-fail", "as-junk", "as-good"] {
        assert_eq!(server.post(&format!("/_matrix/client/v3/join/{room_id}"), Some(token), json!({})).await.0, StatusCode::OK);
    }
    let mut slowest = Duration::ZERO;
    for n in 0..20 {
        let started = Instant::now();
        assert_eq!(send(&server, &carol.access_token, &room_id, &format!("s{n}"), &format!("fast {n}")).await, StatusCode::OK);
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_secs(1), "sending is not held up by the appservices: {slowest:?}");
    healthy
        .wait_for(20, "the healthy appservice's messages", |_| {
            let got = bodies(&healthy.transactions());
            (0..20).all(|n| got.contains(&format!("fast {n}")))
        })
        .await;
    garbage.wait_for(20, "the garbage appservice's messages", |_| bodies(&garbage.transactions()).contains(&"fast 19".to_owned())).await;
    assert!(!failing.transactions().is_empty() && !hanging.received().is_empty(), "the failing ones were tried");
}

async fn the_ping_reports_the_appservice_answer(backend: Backend) {
    let appservice = FakeAppservice::start(Mode::Accept).await;
    let registrations = [registration("bridge", Some(&appservice.url()), AS_TOKEN, ""), registration("nourl", None, "as-nourl", "")];
    let (server, _dir) = server(backend, &registrations, "").await;
    let ping = |id: &str, token: &str, body: Value| {
        let path = format!("/_matrix/client/v1/appservice/{id}/ping");
        server.send(server.raw(Method::POST, &path).bearer_auth(token).json(&body))
    };
    let (status, body) = ping("bridge", AS_TOKEN, json!({"transaction_id": "t1"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["duration_ms"].is_u64(), "{body}");
    let received = appservice.received();
    let sent = received.iter().find(|r| r.path == "/_matrix/app/v1/ping").expect("the appservice was pinged");
    assert_eq!(sent.body, json!({"transaction_id": "t1"}));
    assert_eq!(sent.authorization.as_deref(), Some(format!("Bearer {HS_TOKEN}").as_str()));

    let (status, body) = ping("other", AS_TOKEN, json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
    let carol = server.register("carol", "pw").await;
    let (status, body) = ping("bridge", &carol.access_token, json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
    let (status, body) = ping("nourl", "as-nourl", json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_URL_NOT_SET"), "{body}");

    appservice.set_mode(Mode::Status(418, "{\"errcode\": \"M_TEAPOT\"}"));
    let (status, body) = ping("bridge", AS_TOKEN, json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_GATEWAY, "M_BAD_STATUS"), "{body}");
    assert_eq!((body["status"].as_u64(), body["body"].as_str()), (Some(418), Some("{\"errcode\": \"M_TEAPOT\"}")), "{body}");
}

async fn inviting_an_unknown_puppet_asks_the_appservice_first(backend: Backend) {
    // The appservice "registers" nobody, so the invite stays refused; one
    // that does (mautrix-python) is in tests/appservice/bridge.py.
    let appservice = FakeAppservice::start(Mode::Status(404, "{}")).await;
    let (server, _dir) = server(backend, &[registration("bridge", Some(&appservice.url()), AS_TOKEN, "")], "").await;
    let carol = server.register("carol", "pw").await;
    let (_, room) = server.post("/_matrix/client/v3/createRoom", Some(&carol.access_token), json!({})).await;
    let room_id = room["room_id"].as_str().unwrap();
    let puppet = server.user_id("bridge_zed");
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room_id}/invite"), Some(&carol.access_token), json!({"user_id": puppet})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let asked = appservice.received();
    assert!(
        asked.iter().any(|r| r.method == "GET" && r.path == format!("/_matrix/app/v1/users/{}", crate::support::encode(&puppet))),
        "the user query was made: {asked:#?}"
    );
    // Once the appservice registered the puppet, the invite goes through.
    server
        .post("/_matrix/client/v3/register", Some(AS_TOKEN), json!({"type": "m.login.application_service", "username": "bridge_zed", "inhibit_login": true}))
        .await;
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room_id}/invite"), Some(&carol.access_token), json!({"user_id": puppet})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn typing_and_receipts_go_to_appservices_that_ask(backend: Backend) {
    let eager = FakeAppservice::start(Mode::Accept).await;
    let plain = FakeAppservice::start(Mode::Accept).await;
    let registrations =
        [registration("eager", Some(&eager.url()), "as-eager", "receive_ephemeral: true\n"), registration("plain", Some(&plain.url()), "as-plain", "")];
    let (server, _dir) = server(backend, &registrations, "").await;
    let carol = server.register("carol", "pw").await;
    let room_id = shared_room(&server, &carol.access_token, "as-eager").await;
    assert_eq!(server.post(&format!("/_matrix/client/v3/join/{room_id}"), Some("as-plain"), json!({})).await.0, StatusCode::OK);
    let (_, sent) = server
        .put(&format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t"), Some(&carol.access_token), json!({"msgtype": "m.text", "body": "x"}))
        .await;
    let typing = format!("/_matrix/client/v3/rooms/{room_id}/typing/{}", crate::support::encode(&carol.user_id));
    assert_eq!(server.put(&typing, Some(&carol.access_token), json!({"typing": true, "timeout": 30000})).await.0, StatusCode::OK);
    let receipt = format!("/_matrix/client/v3/rooms/{room_id}/receipt/m.read/{}", crate::support::encode(sent["event_id"].as_str().unwrap()));
    assert_eq!(server.post(&receipt, Some(&carol.access_token), json!({})).await.0, StatusCode::OK);
    let ephemeral = |appservice: &FakeAppservice| -> Vec<Value> {
        appservice.transactions().into_iter().flat_map(|(_, body)| body["ephemeral"].as_array().cloned().unwrap_or_default()).collect()
    };
    eager
        .wait_for(20, "typing and the receipt", |_| {
            let got = ephemeral(&eager);
            got.iter().any(|e| e["type"] == "m.typing" && e["content"]["user_ids"][0] == carol.user_id.as_str())
                && got.iter().any(|e| e["type"] == "m.receipt" && e["content"][sent["event_id"].as_str().unwrap()]["m.read"][&carol.user_id]["ts"].is_number())
        })
        .await;
    let with_unstable = eager.transactions().into_iter().any(|(_, body)| body["de.sorunome.msc2409.ephemeral"].as_array().is_some_and(|e| !e.is_empty()));
    assert!(with_unstable, "also under the unstable name");
    plain.wait_for(20, "the message", |_| bodies(&plain.transactions()).contains(&"x".to_owned())).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(ephemeral(&plain).is_empty(), "an appservice that did not ask gets none: {:?}", ephemeral(&plain));
}
