//! Events and per-user streams written through one process reach clients
//! syncing on another.

use std::time::{Duration, Instant};

use serde_json::json;

use super::deployment::{Deployment, collect_bodies, timeline_bodies};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_through_one_worker_reaches_a_sync_on_another_and_tokens_carry_over() {
    let d = Deployment::start().await;
    let (alice, _) = d.register("worker1", "alice").await;
    let (bob, _) = d.register("worker2", "bob").await;
    let room = d.room_on_persister("worker1", &alice, 1, json!({"preset": "public_chat"})).await;
    let (status, body) = d.call("worker2", "POST", &format!("/_matrix/client/v3/join/{room}"), Some(&bob), Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");

    // Bob long-polls on worker2 while Alice sends through worker1.
    let start = d.sync("worker2", &bob, None, 0).await;
    let mut since = start["next_batch"].as_str().unwrap().to_owned();
    let (status, body) = d.send("worker1", &alice, &room, "t1", "hello from worker1").await;
    assert_eq!(status, 200, "{body}");
    let sent_at = Instant::now();
    let sync = loop {
        assert!(sent_at.elapsed() < Duration::from_secs(10), "the event did not reach worker2");
        let sync = d.sync("worker2", &bob, Some(&since), 10_000).await;
        if !timeline_bodies(&sync, &room).is_empty() {
            break sync;
        }
        since = sync["next_batch"].as_str().unwrap().to_owned();
    };
    assert_eq!(timeline_bodies(&sync, &room), ["hello from worker1"]);

    // A token from worker1, used on worker2 and back: every message exactly once.
    let token_a = d.sync("worker1", &bob, Some(sync["next_batch"].as_str().unwrap()), 0).await["next_batch"].as_str().unwrap().to_owned();
    for i in 0..20 {
        let (status, body) = d.send("worker1", &alice, &room, &format!("m{i}"), &format!("message {i}")).await;
        assert_eq!(status, 200, "{body}");
    }
    let (first, token_b) = collect_bodies(&d, "worker2", &bob, &room, token_a, 10).await;
    let (rest, _) = collect_bodies(&d, "worker1", &bob, &room, token_b, 20 - first.len()).await;
    let all: Vec<String> = first.into_iter().chain(rest).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("message {i}")).collect();
    assert_eq!(all, expected, "duplicates or gaps across workers");

    // The room's messages read back from any worker.
    let (status, messages) = d.call("worker2", "GET", &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=5"), Some(&bob), None).await;
    assert_eq!(status, 200);
    assert_eq!(messages["chunk"][0]["content"]["body"], "message 19");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_streams_written_through_a_worker_reach_their_writer_and_every_sync() {
    let d = Deployment::start().await;
    let (alice, alice_id) = d.register("worker1", "alice").await;
    let (bob, bob_id) = d.register("worker2", "bob").await;
    let room = d.room_on_persister("worker1", &alice, 0, json!({"preset": "public_chat"})).await;
    assert_eq!(d.call("worker2", "POST", &format!("/_matrix/client/v3/join/{room}"), Some(&bob), Some(json!({}))).await.0, 200);
    let (status, sent) = d.send("worker1", &alice, &room, "r1", "read me").await;
    assert_eq!(status, 200);
    let event_id = sent["event_id"].as_str().unwrap().to_owned();
    let since_bob = d.sync("worker2", &bob, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let since_main = d.sync("main", &bob, None, 0).await["next_batch"].as_str().unwrap().to_owned();

    // All through worker1, whose writer for these streams is main.
    let typing = json!({"typing": true, "timeout": 30000});
    assert_eq!(d.call("worker1", "PUT", &format!("/_matrix/client/v3/rooms/{room}/typing/{alice_id}"), Some(&alice), Some(typing)).await.0, 200);
    let receipt = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}");
    assert_eq!(d.call("worker1", "POST", &receipt, Some(&alice), Some(json!({}))).await.0, 200);
    let account_data = format!("/_matrix/client/v3/user/{bob_id}/account_data/org.example.setting");
    assert_eq!(d.call("worker1", "PUT", &account_data, Some(&bob), Some(json!({"colour": "teal"}))).await.0, 200);
    let to_device = json!({"messages": {bob_id.clone(): {"*": {"hello": "bob"}}}});
    assert_eq!(d.call("worker1", "PUT", "/_matrix/client/v3/sendToDevice/org.example.ping/d1", Some(&alice), Some(to_device)).await.0, 200);

    // Read-your-writes: the account data is readable at once from the worker that wrote it.
    let (status, read) = d.call("worker1", "GET", &account_data, Some(&bob), None).await;
    assert_eq!((status, read["colour"].as_str()), (200, Some("teal")));

    for (via, since) in [("worker2", since_bob), ("main", since_main)] {
        let mut seen = (false, false, false, false);
        let mut since = since;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(seen.0 && seen.1 && seen.2 && seen.3) {
            assert!(Instant::now() < deadline, "on {via}: typing, receipt, account data, to-device seen = {seen:?}");
            let sync = d.sync(via, &bob, Some(&since), 2_000).await;
            let ephemeral = sync["rooms"]["join"][&room]["ephemeral"]["events"].as_array().cloned().unwrap_or_default();
            seen.0 |= ephemeral.iter().any(|e| e["type"] == "m.typing" && e["content"]["user_ids"] == json!([alice_id]));
            seen.1 |= ephemeral.iter().any(|e| e["type"] == "m.receipt" && e["content"][&event_id]["m.read"][&alice_id].is_object());
            seen.2 |= sync["account_data"]["events"].as_array().into_iter().flatten().any(|e| e["type"] == "org.example.setting");
            seen.3 |= sync["to_device"]["events"].as_array().into_iter().flatten().any(|e| e["type"] == "org.example.ping");
            since = sync["next_batch"].as_str().unwrap().to_owned();
        }
    }

    // Presence: a /sync on worker1 asking for `unavailable` is applied by
    // main (the presence writer), and not undone by worker1's USER_SYNC.
    let mut path = "/_matrix/client/v3/sync?timeout=0&set_presence=unavailable".to_owned();
    for _ in 0..2 {
        let (status, sync) = d.call("worker1", "GET", &path, Some(&alice), None).await;
        assert_eq!(status, 200, "{sync}");
        path = format!("/_matrix/client/v3/sync?timeout=0&set_presence=unavailable&since={}", sync["next_batch"].as_str().unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for via in ["main", "worker2"] {
        let (status, presence) = d.call(via, "GET", &format!("/_matrix/client/v3/presence/{alice_id}/status"), Some(&bob), None).await;
        assert_eq!((status, presence["presence"].as_str()), (200, Some("unavailable")), "on {via}: {presence}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replication_listener_refuses_a_missing_or_wrong_secret_and_does_nothing() {
    let d = Deployment::start().await;
    let (alice, _) = d.register("worker1", "alice").await;
    let room = d.room_on_persister("worker1", &alice, 1, json!({})).await;
    let write = json!({"write": "send", "sender": "@alice:x", "event_type": "m.room.message", "state_key": null,
        "content": {"body": "sneaky"}, "txn": null, "redacts": null});
    let url = format!("{}/_weft/replication/v1/rooms/{room}/write/abc", d.replication_url("persister2"));
    for secret in [None, Some("wrong")] {
        let mut request = d.http.post(&url).json(&write);
        if let Some(secret) = secret {
            request = request.bearer_auth(secret);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "secret {secret:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["errcode"].as_str().is_some_and(|code| code.starts_with("M_")), "{body}");
    }
    let (_, messages) = d.call("worker1", "GET", &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b"), Some(&alice), None).await;
    assert!(!messages.to_string().contains("sneaky"));
    // The client listener does not serve the replication resource at all.
    let on_client =
        d.http.get(format!("{}/_weft/replication/v1/positions", d.client_url("worker1"))).bearer_auth(super::deployment::SECRET).send().await.unwrap();
    assert_eq!(on_client.status(), 404);
}

/// `events` rows travel on their own Redis channel, to the instances that
/// follow them (main and the workers that serve reads); an events persister
/// that only writes its own rooms gets none, and learns the other
/// persister's position from its POSITION commands instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_rows_reach_only_their_followers_and_positions_reach_everyone() {
    let d = Deployment::start().await;
    let (alice, _) = d.register("worker1", "alice").await;
    let room = d.room_on_persister("worker1", &alice, 1, json!({})).await;
    for i in 0..5 {
        let (status, body) = d.send("worker1", &alice, &room, &format!("r{i}"), &format!("row {i}")).await;
        assert_eq!(status, 200, "{body}");
    }
    let rows = ["stream=\"events\"", "writer=\"persister2\""];
    let deadline = Instant::now() + Duration::from_secs(10);
    let followed = loop {
        let applied = d.metric("worker2", "weft_replication_lag_seconds_count", &rows).await.unwrap_or(0.0);
        if applied >= 5.0 {
            break d.metric("worker2", "weft_replication_position", &rows).await.expect("worker2 saw persister2's position");
        }
        assert!(Instant::now() < deadline, "worker2 applied only {applied} of persister2's rows");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let position = d.metric("persister1", "weft_replication_position", &rows).await.unwrap_or(0.0);
        if position >= followed {
            break;
        }
        assert!(Instant::now() < deadline, "persister1 saw persister2 at {position}, worker2 at {followed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(d.metric("persister1", "weft_replication_lag_seconds_count", &rows).await.unwrap_or(0.0), 0.0, "persister1 received events rows");
}

/// Which instances of the example deployment follow `events` rows (background1
/// sends the pushes).
#[test]
fn in_the_example_deployment_main_and_the_read_workers_follow_event_rows() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/workers");
    let follows = |own: std::path::PathBuf| {
        let config = weft::config::load_files(&[root.join("shared.toml"), own]).expect("the example configuration is valid");
        config.follows_event_rows()
    };
    assert!(follows(root.join("main.toml")), "main");
    for (worker, expected) in [("sync1", true), ("client1", true), ("persister1", false), ("persister2", false), ("ephemeral1", false), ("background1", true)] {
        assert_eq!(follows(root.join(format!("workers/{worker}.toml"))), expected, "{worker}");
    }
    // With every room on persister1, persister2 still serves `event_sending`
    // but only forwards: it learns positions from persister1's replies.
    let one_persister =
        weft::config::load_files(&[root.join("shared.toml"), root.join("bench-one-persister.toml"), root.join("workers/persister2.toml")]).unwrap();
    assert!(!one_persister.follows_event_rows(), "a persister2 that only forwards");
}
