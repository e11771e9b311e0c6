//! `/sync` fan-out (issue 28): listeners of one room woken by the same
//! events share the work done per event (the recent-events log, the client
//! form of each event, which events have relations), each adding only its
//! own parts. What each gets must be exactly what the database path gives
//! it: a token older than the server's start makes that path answer (the
//! log only knows what was persisted after the process started), a token
//! taken after the start makes the shared path answer, and both cover the
//! same events of the room. Unread counts, kept per user between syncs and
//! added to per new event, must be what the database counts after every
//! kind of change (messages, mentions, threads, receipts, leaving and
//! joining again).

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::{create_room, send_text},
    support::{Backend, Session, TestServer},
};

on_both_backends!(each_listener_gets_its_own_view_of_shared_events, unread_counts_kept_between_syncs_are_the_databases);

const PLAIN: &str = r#"{"room":{"timeline":{"limit":30}}}"#;
const LAZY: &str = r#"{"room":{"timeline":{"limit":30},"state":{"lazy_load_members":true}}}"#;

async fn sync(server: &TestServer, session: &Session, filter: &str, since: Option<&str>, timeout_ms: u64) -> Value {
    let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}&filter={}", crate::support::encode(filter));
    if let Some(since) = since {
        path.push_str(&format!("&since={since}"));
    }
    let (status, body) = server.get(&path, Some(&session.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn send(server: &TestServer, session: &Session, room: &str, kind: &str, content: Value) -> String {
    let txn = format!("f{}", crate::support::unique("t"));
    let (status, reply) = server.put(&format!("/_matrix/client/v3/rooms/{room}/send/{kind}/{txn}"), Some(&session.access_token), content).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["event_id"].as_str().unwrap().to_owned()
}

/// The value without `unsigned.age` anywhere (it is as of each answer).
fn without_age(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().filter(|(key, _)| key.as_str() != "age").map(|(key, value)| (key.clone(), without_age(value))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(without_age).collect()),
        other => other.clone(),
    }
}

fn timeline_ids(room: &Value) -> Vec<String> {
    room["timeline"]["events"].as_array().into_iter().flatten().map(|event| event["event_id"].as_str().unwrap().to_owned()).collect()
}

fn event<'a>(room: &'a Value, event_id: &str) -> &'a Value {
    room["timeline"]["events"].as_array().unwrap().iter().find(|event| event["event_id"] == event_id).unwrap_or_else(|| panic!("{event_id} not in {room}"))
}

async fn each_listener_gets_its_own_view_of_shared_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let [bob, carol, dave, erin, frank] = [
        server.register("bob", "pw").await,
        server.register("carol", "pw").await,
        server.register("dave", "pw").await,
        server.register("erin", "pw").await,
        server.register("frank", "pw").await,
    ];
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    let join = async |session: &Session| {
        let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&session.access_token), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    };
    for listener in [&bob, &carol, &erin, &frank] {
        join(listener).await;
    }
    let older = send_text(&server, &alice.access_token, &room, "older").await;
    // Dave joins after the room's history became visible to members only since they joined.
    let (status, _) = server
        .put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.history_visibility/"), Some(&alice.access_token), json!({"history_visibility": "joined"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    join(&dave).await;
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), Some(&erin.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let ignore = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", carol.user_id);
    let (status, _) = server.put(&ignore, Some(&carol.access_token), json!({"ignored_users": {alice.user_id.clone(): {}}})).await;
    assert_eq!(status, StatusCode::OK);

    let listeners = [(&bob, PLAIN), (&carol, PLAIN), (&dave, PLAIN), (&erin, PLAIN), (&frank, LAZY)];
    let mut before_start = Vec::new();
    for (listener, filter) in listeners {
        before_start.push(sync(&server, listener, filter, None, 0).await["next_batch"].as_str().unwrap().to_owned());
    }
    let server = server.restart().await;
    // Something elsewhere, so that the tokens above are older than what the new process knows.
    create_room(&server, &alice.access_token, json!({})).await;
    let mut after_start = Vec::new();
    for ((listener, filter), since) in listeners.iter().zip(&before_start) {
        after_start.push(sync(&server, listener, filter, Some(since), 0).await["next_batch"].as_str().unwrap().to_owned());
    }

    // The events every listener is woken by: a thread root with a reply, an
    // edit, a reference and a reaction; a message and its redaction; an
    // edit of an older message; a history visibility change.
    let root = send_text(&server, &alice.access_token, &room, "root").await;
    let reply = send(
        &server,
        &bob,
        &room,
        "m.room.message",
        json!({"msgtype": "m.text", "body": "in thread", "m.relates_to": {"rel_type": "m.thread", "event_id": root}}),
    )
    .await;
    let edit = send(
        &server,
        &alice,
        &room,
        "m.room.message",
        json!({"msgtype": "m.text", "body": "* root!", "m.new_content": {"msgtype": "m.text", "body": "root!"}, "m.relates_to": {"rel_type": "m.replace", "event_id": root}}),
    )
    .await;
    let reference = send(
        &server,
        &bob,
        &room,
        "m.room.message",
        json!({"msgtype": "m.text", "body": "see", "m.relates_to": {"rel_type": "m.reference", "event_id": root}}),
    )
    .await;
    send(&server, &bob, &room, "m.reaction", json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "+1"}})).await;
    let doomed = send_text(&server, &alice.access_token, &room, "doomed").await;
    let (status, _) = server.put(&format!("/_matrix/client/v3/rooms/{room}/redact/{doomed}/r1"), Some(&alice.access_token), json!({"reason": "no"})).await;
    assert_eq!(status, StatusCode::OK);
    send(
        &server,
        &alice,
        &room,
        "m.room.message",
        json!({"msgtype": "m.text", "body": "* older!", "m.new_content": {"msgtype": "m.text", "body": "older!"}, "m.relates_to": {"rel_type": "m.replace", "event_id": older}}),
    )
    .await;
    let (status, _) = server
        .put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.history_visibility/"), Some(&alice.access_token), json!({"history_visibility": "shared"}))
        .await;
    assert_eq!(status, StatusCode::OK);

    let mut views = Vec::new();
    for (((listener, filter), old), recent) in listeners.iter().zip(&before_start).zip(&after_start) {
        let shared = sync(&server, listener, filter, Some(recent), 0).await;
        let from_database = sync(&server, listener, filter, Some(old), 0).await;
        let (shared_room, database_room) = (&shared["rooms"]["join"][&room], &from_database["rooms"]["join"][&room]);
        assert_eq!(without_age(shared_room), without_age(database_room), "{}: the shared path and the database path differ", listener.user_id);
        assert!(shared["rooms"]["leave"].get(&room).is_none() && from_database["rooms"]["leave"].get(&room).is_none(), "{}", listener.user_id);
        views.push(shared_room.clone());
    }
    let [bob_view, carol_view, dave_view, erin_view, frank_view] = <[Value; 5]>::try_from(views).unwrap();

    // Bob sees everything, took part in the thread, and gets the bundled aggregations.
    assert_eq!(timeline_ids(&bob_view).len(), 9, "{bob_view}");
    let relations = &event(&bob_view, &root)["unsigned"]["m.relations"];
    assert_eq!(relations["m.thread"]["count"], 1, "{relations}");
    assert_eq!(relations["m.thread"]["latest_event"]["event_id"], json!(reply));
    assert_eq!(relations["m.thread"]["current_user_participated"], true);
    assert_eq!(relations["m.replace"]["event_id"], json!(edit));
    assert_eq!(relations["m.reference"]["chunk"], json!([{"event_id": reference}]));
    assert!(event(&bob_view, &doomed)["unsigned"]["redacted_because"].is_object(), "the redaction shows: {bob_view}");
    assert!(event(&bob_view, &doomed)["content"].as_object().unwrap().is_empty());
    // Dave sees the same events, but did not take part in the thread.
    assert_eq!(timeline_ids(&dave_view), timeline_ids(&bob_view));
    assert_eq!(event(&dave_view, &root)["unsigned"]["m.relations"]["m.thread"]["current_user_participated"], false);
    // Carol ignores alice: only bob's events and alice's state change.
    let senders: Vec<&str> = carol_view["timeline"]["events"].as_array().unwrap().iter().map(|event| event["sender"].as_str().unwrap()).collect();
    assert_eq!(senders, vec![bob.user_id.as_str(); 3].into_iter().chain([alice.user_id.as_str()]).collect::<Vec<_>>(), "{carol_view}");
    // Erin left before all of it: nothing of it reaches her.
    assert!(erin_view.is_null(), "{erin_view}");
    // Frank loads members lazily: the senders' member events come along.
    let members: Vec<&str> = frank_view["state"]["events"].as_array().unwrap().iter().filter_map(|event| event["state_key"].as_str()).collect();
    assert_eq!(members.len(), 2, "{frank_view}");
    assert!(members.contains(&alice.user_id.as_str()) && members.contains(&bob.user_id.as_str()));

    // Woken together by one more event, each long-poll gets its own answer.
    let mut polls = Vec::new();
    for ((listener, filter), recent) in listeners.iter().zip(&after_start) {
        let since = sync(&server, listener, filter, Some(recent), 0).await["next_batch"].as_str().unwrap().to_owned();
        let timeout = if listener.user_id == bob.user_id || listener.user_id == dave.user_id || listener.user_id == frank.user_id { 10_000 } else { 1_500 };
        let path = format!("/_matrix/client/v3/sync?timeout={timeout}&since={since}&filter={}", crate::support::encode(filter));
        let request = server.raw(http::Method::GET, &path).bearer_auth(&listener.access_token);
        polls.push(tokio::spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let last = send_text(&server, &alice.access_token, &room, "to everyone").await;
    let mut answers = Vec::new();
    for poll in polls {
        answers.push(poll.await.unwrap());
    }
    for (index, answer) in answers.iter().enumerate() {
        let view = &answer["rooms"]["join"][&room];
        match index {
            0 | 2 | 4 => assert_eq!(timeline_ids(view), vec![last.clone()], "{answer}"),
            _ => assert!(view.is_null(), "an ignored sender or a left room wakes nothing: {answer}"),
        }
    }
}

const THREADS: &str = r#"{"room":{"timeline":{"limit":30,"unread_thread_notifications":true}}}"#;

/// What the database counts for the user now: `(notifications, highlights)` per thread.
async fn counted(server: &TestServer, room: &str, session: &Session) -> std::collections::HashMap<String, (i64, i64)> {
    let room_id = ruma::RoomId::parse(room).unwrap();
    let user_id = ruma::UserId::parse(&session.user_id).unwrap();
    server.state.storage.unread_base(&room_id, &user_id, i64::MAX).await.unwrap().counts
}

/// The room's counts in a sync answer, in the database's shape.
fn answered(room: &Value, threads: bool) -> std::collections::HashMap<String, (i64, i64)> {
    let pair = |count: &Value| (count["notification_count"].as_i64().unwrap_or(0), count["highlight_count"].as_i64().unwrap_or(0));
    let mut counts = std::collections::HashMap::new();
    let main = pair(&room["unread_notifications"]);
    if main != (0, 0) {
        counts.insert("main".to_owned(), main);
    }
    if threads {
        for (thread, count) in room["unread_thread_notifications"].as_object().into_iter().flatten() {
            counts.insert(thread.clone(), pair(count));
        }
    }
    counts
}

/// Everything `counts` holds in one total, as a client without thread counts sees it.
fn total(counts: &std::collections::HashMap<String, (i64, i64)>) -> std::collections::HashMap<String, (i64, i64)> {
    let sum = counts.values().fold((0, 0), |(n, h), (dn, dh)| (n + dn, h + dh));
    if sum == (0, 0) { std::collections::HashMap::new() } else { std::collections::HashMap::from([("main".to_owned(), sum)]) }
}

async fn unread_counts_kept_between_syncs_are_the_databases(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    for listener in [&bob, &carol] {
        let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&listener.access_token), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Bob sees totals, carol per-thread counts; both keep syncing from their last token.
    let listeners = [(&bob, PLAIN, false), (&carol, THREADS, true)];
    let mut tokens = Vec::new();
    for (listener, filter, _) in listeners {
        tokens.push(sync(&server, listener, filter, None, 0).await["next_batch"].as_str().unwrap().to_owned());
    }
    let root = send_text(&server, &alice.access_token, &room, "root").await;
    let mut last = root.clone();
    for step in 0..9 {
        match step {
            0 => last = send_text(&server, &alice.access_token, &room, "plain").await,
            1 => {
                let mentions = json!({"msgtype": "m.text", "body": "you two", "m.mentions": {"user_ids": [bob.user_id, carol.user_id]}});
                last = send(&server, &alice, &room, "m.room.message", mentions).await;
            }
            2 => {
                let reply = json!({"msgtype": "m.text", "body": "in thread", "m.relates_to": {"rel_type": "m.thread", "event_id": root}});
                send(&server, &alice, &room, "m.room.message", reply.clone()).await;
                send(&server, &alice, &room, "m.room.message", reply).await;
            }
            3 => {
                // Both read the main timeline up to the mention; the thread stays unread.
                for listener in [&bob, &carol] {
                    let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{last}");
                    let (status, body) = server.post(&path, Some(&listener.access_token), json!({"thread_id": "main"})).await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                }
                last = send_text(&server, &alice.access_token, &room, "after the receipt").await;
            }
            4 => {
                // Carol reads everything, unthreaded.
                let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{last}");
                let (status, body) = server.post(&path, Some(&carol.access_token), json!({})).await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
            5 => {
                // Bob leaves and joins again: what came before his join no longer counts.
                for action in ["leave", "join"] {
                    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/{action}"), Some(&bob.access_token), json!({})).await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                }
            }
            6 => last = send_text(&server, &alice.access_token, &room, "welcome back").await,
            7 => {
                // A redaction changes no count.
                let (status, _) = server.put(&format!("/_matrix/client/v3/rooms/{room}/redact/{last}/r{step}"), Some(&alice.access_token), json!({})).await;
                assert_eq!(status, StatusCode::OK);
            }
            _ => {
                // Carol's own message notifies nobody else's count of her.
                last = send_text(&server, &carol.access_token, &room, "mine").await;
            }
        }
        for ((listener, filter, threads), since) in listeners.iter().zip(tokens.iter_mut()) {
            let answer = sync(&server, listener, filter, Some(since), 0).await;
            *since = answer["next_batch"].as_str().unwrap().to_owned();
            let expected = counted(&server, &room, listener).await;
            let expected = if *threads { expected } else { total(&expected) };
            let view = &answer["rooms"]["join"][&room];
            if view.is_null() {
                continue;
            }
            assert_eq!(answered(view, *threads), expected, "step {step}, {}: {view}", listener.user_id);
        }
    }
    // The steps above moved the counts: this checks something.
    let carol_counts = counted(&server, &room, &carol).await;
    assert_eq!(carol_counts, std::collections::HashMap::from([("main".to_owned(), (1, 0))]), "carol read all but \"welcome back\"");
    let bob_counts = total(&counted(&server, &room, &bob).await);
    assert_eq!(bob_counts["main"], (2, 0), "after his join: the redacted message and carol's: {bob_counts:?}");
}
