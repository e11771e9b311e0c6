//! A generic worker stopped behind `weft router`: its share of `/sync` and
//! client reads goes to the worker left in its group.

use super::deployment::{Deployment, collect_bodies};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_generic_worker_has_its_traffic_sent_to_the_others() {
    let mut d = Deployment::start().await;
    d.start_router().await;
    let mut users = Vec::new();
    for n in 0..8 {
        users.push(d.register("router", &format!("failover{n}")).await);
    }
    let (alice, _) = &users[0];
    let room = d.room_on_persister("router", alice, 1, serde_json::json!({"preset": "public_chat"})).await;
    for (token, _) in &users[1..] {
        let (status, body) = d.call("router", "POST", &format!("/_matrix/client/v3/join/{room}"), Some(token), Some(serde_json::json!({}))).await;
        assert_eq!(status, 200, "{body}");
    }
    let mut since = Vec::new();
    for (token, _) in &users {
        since.push(d.sync("router", token, None, 0).await["next_batch"].as_str().unwrap().to_owned());
    }

    // The router spread the users over both workers: worker1 answered some /sync.
    let served = d.metric("worker1", "weft_http_requests_total", &["group=\"sync\"", "status=\"200\""]).await;
    assert!(served.is_some_and(|count| count > 0.0), "worker1 served no /sync before it stopped: {served:?}");

    d.kill("worker1");
    let (status, body) = d.send("router", alice, &room, "after-kill", "sent with worker1 down").await;
    assert_eq!(status, 200, "{body}");
    for ((token, user_id), since) in users.iter().zip(&since) {
        // Users whose /sync stuck to worker1 are moved to worker2, which
        // serves the token it has never seen (tokens are not per worker).
        // Presence and device-list changes may wake a /sync before the message.
        let (bodies, _) = collect_bodies(&d, "router", token, &room, since.clone(), 1).await;
        assert_eq!(bodies, ["sent with worker1 down"], "{user_id} via the router after worker1 stopped");
        let (status, body) = d.call("router", "GET", "/_matrix/client/v3/account/whoami", Some(token), None).await;
        assert_eq!((status, body["user_id"].as_str()), (200, Some(user_id.as_str())), "{body}");
        let (status, body) = d.call("router", "GET", &format!("/_matrix/client/v3/rooms/{room}/joined_members"), Some(token), None).await;
        assert_eq!(status, 200, "client reads fail over too: {body}");
    }
}
