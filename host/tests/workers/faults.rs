//! Faults: Redis restarting mid-run or down, an event persister killed under
//! load, a forged position published on Redis.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use serde_json::json;

use super::deployment::{Deployment, timeline_bodies};

/// Every message body of `room_id` from the start, through `/messages` on `via`.
async fn all_bodies(d: &Deployment, via: &str, token: &str, room_id: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let mut path = format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=100");
        if let Some(from) = &from {
            path.push_str(&format!("&from={from}"));
        }
        let (status, page) = d.call(via, "GET", &path, Some(token), None).await;
        assert_eq!(status, 200, "{page}");
        let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
        bodies.extend(chunk.iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)));
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
            _ => break,
        }
    }
    bodies.reverse();
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_restarts_every_process_catches_up_and_no_acknowledged_event_is_missing() {
    let mut d = Deployment::start().await;
    let (alice, _) = d.register("worker1", "alice").await;
    let (bob, _) = d.register("worker2", "bob").await;
    let room = d.room_on_persister("worker1", &alice, 1, json!({"preset": "public_chat"})).await;
    assert_eq!(d.call("worker2", "POST", &format!("/_matrix/client/v3/join/{room}"), Some(&bob), Some(json!({}))).await.0, 200);
    let mut since = d.sync("worker2", &bob, None, 0).await["next_batch"].as_str().unwrap().to_owned();

    let mut acknowledged = Vec::new();
    for i in 0..30 {
        if i == 10 {
            d.redis.stop();
        }
        if i == 20 {
            d.redis.restart();
        }
        let body = format!("message {i}");
        let (status, _) = d.send("worker1", &alice, &room, &format!("t{i}"), &body).await;
        if status == 200 {
            acknowledged.push(body);
        }
    }
    assert_eq!(acknowledged.len(), 30, "sends do not depend on Redis");

    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.len() < acknowledged.len() {
        assert!(Instant::now() < deadline, "worker2 did not catch up: {received:?}");
        let sync = d.sync("worker2", &bob, Some(&since), 2_000).await;
        let timeline = &sync["rooms"]["join"][&room]["timeline"];
        if timeline["limited"] == json!(true) {
            // A gap is filled from the database by paginating; what matters is that nothing is lost.
            received = all_bodies(&d, "worker2", &bob, &room).await.into_iter().filter(|b| b.starts_with("message ")).collect();
        } else {
            received.extend(timeline_bodies(&sync, &room));
        }
        since = sync["next_batch"].as_str().unwrap().to_owned();
    }
    assert_eq!(received, acknowledged);
}

/// A writer's reply carries its stream positions, and the caller takes them
/// from the reply rather than waiting to hear them on Redis: with Redis
/// down, a send through a worker into another persister's room is answered
/// at once (not after the 5 s read-your-writes wait) and the worker reads
/// it back straight away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_a_forwarded_send_is_answered_at_once_and_read_back_on_its_worker() {
    let mut d = Deployment::start().await;
    let (alice, _) = d.register("worker1", "alice").await;
    let room = d.room_on_persister("worker1", &alice, 1, json!({})).await;
    d.redis.stop();
    for i in 0..3 {
        let body = format!("while Redis is down {i}");
        let started = Instant::now();
        let (status, sent) = d.send("worker1", &alice, &room, &format!("down{i}"), &body).await;
        assert_eq!(status, 200, "{sent}");
        assert!(started.elapsed() < Duration::from_secs(3), "the send waited {:?} to see its own position", started.elapsed());
        let bodies = all_bodies(&d, "worker1", &alice, &room).await;
        assert_eq!(bodies.last(), Some(&body), "worker1 does not read its own write back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persister_killed_under_load_loses_no_acknowledged_event_and_other_rooms_keep_working() {
    let mut d = Deployment::start().await;
    let (alice, _) = d.register("worker1", "alice").await;
    let doomed_room = d.room_on_persister("worker1", &alice, 1, json!({})).await;
    let steady_room = d.room_on_persister("worker1", &alice, 0, json!({})).await;

    let sender = |room: String, prefix: &'static str, count: usize| {
        let (url, alice, http) = (d.client_url("worker1"), alice.clone(), d.http.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut during = Vec::new();
            for i in 0..count {
                let body = format!("{prefix} {i}");
                let sent = http
                    .put(format!("{url}/_matrix/client/v3/rooms/{room}/send/m.room.message/{prefix}{i}"))
                    .bearer_auth(&alice)
                    .timeout(Duration::from_secs(60))
                    .json(&json!({"msgtype": "m.text", "body": body}))
                    .send()
                    .await;
                if let Ok(response) = sent
                    && response.status() == 200
                {
                    acknowledged.push(body);
                    during.push(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acknowledged, during)
        })
    };
    let doomed = sender(doomed_room.clone(), "doomed", 120);
    let steady = sender(steady_room.clone(), "steady", 120);

    tokio::time::sleep(Duration::from_millis(700)).await;
    d.kill("persister2");
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let restarted_at = Instant::now();
    d.start_process("persister2").await;

    let (doomed_acked, _) = doomed.await.unwrap();
    let (steady_acked, steady_times) = steady.await.unwrap();
    assert!(steady_times.iter().any(|t| *t > killed_at && *t < restarted_at), "the other persister's room kept working while persister2 was down");
    assert_eq!(steady_acked.len(), 120);

    for (room, acknowledged) in [(&doomed_room, &doomed_acked), (&steady_room, &steady_acked)] {
        // worker2 reads what the persisters announce: the last events may reach it a moment after their sender's 200.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stored = all_bodies(&d, "worker2", &alice, room).await;
        while Instant::now() < deadline && !acknowledged.iter().all(|body| stored.contains(body)) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stored = all_bodies(&d, "worker2", &alice, room).await;
        }
        let unique: HashSet<&String> = stored.iter().collect();
        assert_eq!(unique.len(), stored.len(), "duplicated events in {room}");
        for body in acknowledged.iter() {
            assert!(unique.contains(body), "acknowledged `{body}` missing from {room}");
        }
    }
}

/// Anyone who can publish on Redis can claim a writer's position. One no
/// writer has persisted is refused: sync tokens keep their place and a
/// message sent afterwards still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_position_on_redis_moves_no_sync_token() {
    let d = Deployment::start().await;
    let (alice, _) = d.register("worker1", "alice").await;
    let (bob, _) = d.register("worker2", "bob").await;
    let room = d.room_on_persister("worker1", &alice, 0, json!({"preset": "public_chat"})).await;
    let (status, body) = d.call("worker2", "POST", &format!("/_matrix/client/v3/join/{room}"), Some(&bob), Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let before = d.sync("worker2", &bob, None, 0).await["next_batch"].as_str().unwrap().to_owned();

    let rows_channel = format!("{}/events", d.server_name);
    for (channel, line) in [
        (d.server_name.as_str(), "POSITION events persister1 1 900000000"),
        (rows_channel.as_str(), "RDATA events persister1 900000001 [\"!forged:x\",\"$forged\",0]"),
    ] {
        let published = std::process::Command::new("redis-cli")
            .args(["-p", &d.redis.port.to_string(), "PUBLISH", channel, line])
            .output()
            .expect("redis-cli is installed with redis-server");
        assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    }
    // Both claims reach worker2; once refused they have been handled.
    let labels = ["stream=\"events\"", "writer=\"persister1\""];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut refused = 0.0;
    while refused < 2.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        refused = d.metric("worker2", "weft_replication_positions_refused_total", &labels).await.unwrap_or(0.0);
    }

    let after = d.sync("worker2", &bob, Some(&before), 0).await["next_batch"].as_str().unwrap().to_owned();
    assert!(!after.contains("90000000"), "the token jumped: {before} became {after}");
    let (status, body) = d.send("worker1", &alice, &room, "after-forgery", "still delivered").await;
    assert_eq!(status, 200, "{body}");
    let mut since = after;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "the message sent after the forged position never reached worker2");
        let sync = d.sync("worker2", &bob, Some(&since), 2_000).await;
        if timeline_bodies(&sync, &room).contains(&"still delivered".to_owned()) {
            break;
        }
        since = sync["next_batch"].as_str().unwrap().to_owned();
    }
    assert_eq!(refused, 2.0, "worker2 counted both forged claims as refused");
    assert!(d.log("worker2").contains("refused a position announced on the bus"), "and logged them");
}
