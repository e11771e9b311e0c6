//! Push from pusher instances, with real processes: `pusher_instances =
//! ["worker1", "worker2"]` split the users by the sha256 of their id, each
//! user's notifications come from exactly one of them, and the reference
//! pusher plugin is pinned to worker2 alone, so worker1 delivers through it
//! remotely (and `/pushers/set` on main checks through it remotely). A
//! pusher instance SIGKILLed in the middle of a backlog and started again
//! delivers the rest: nothing is lost, nothing is duplicated beyond the
//! notification in flight.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::json;
use weft_plugin_testkit::push_gateway::PushGateway;

use super::deployment::Deployment;
use crate::plugins::guest;

const PUSHER_INSTANCES: [&str; 2] = ["worker1", "worker2"];
const USERS: usize = 8;

fn shared_toml() -> String {
    format!(
        "pusher_instances = {PUSHER_INSTANCES:?}\nip_range_whitelist = [\"127.0.0.0/8\"]\n\
         [[plugins]]\nname = \"http-pusher\"\nrole = \"pusher\"\npath = {:?}\ninstances = [\"worker2\"]\n\
         [plugins.capabilities]\nallowed_outbound_hosts = [\"*:*\"]\n",
        guest("http_pusher").display().to_string()
    )
}

/// Per pushkey, the event ids the gateway accepted, in arrival order.
fn delivered(gateway: &PushGateway) -> BTreeMap<String, Vec<String>> {
    let mut by_pushkey: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for request in gateway.received().iter().filter(|r| r.status == 200) {
        let pushkey = request.device()["pushkey"].as_str().unwrap_or_default().to_owned();
        by_pushkey.entry(pushkey).or_default().push(request.notification()["event_id"].as_str().unwrap_or_default().to_owned());
    }
    by_pushkey
}

async fn wait_for_all(gateway: &PushGateway, users: &[(String, String)], sent: &[String]) -> BTreeMap<String, Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = delivered(gateway);
        let complete = users.iter().all(|(_, user)| got.get(user).is_some_and(|events| sent.iter().all(|id| events.contains(id))));
        if complete || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pusher_instances_split_users_by_hash_and_a_killed_one_resumes() {
    let gateway = PushGateway::start().await.unwrap();
    let mut d = Deployment::start_with(&shared_toml()).await;
    let (alice, _) = d.register("main", "alice").await;
    let room = d.room_on_persister("main", &alice, 0, json!({"preset": "public_chat"})).await;
    let mut users = Vec::new();
    for n in 0..USERS {
        let (token, user_id) = d.register("main", &format!("user{n}")).await;
        let (status, reply) = d.call("main", "POST", &format!("/_matrix/client/v3/join/{room}"), Some(&token), Some(json!({}))).await;
        assert_eq!(status, 200, "{reply}");
        users.push((token, user_id));
    }
    // Sent before the pushers exist: never pushed.
    let (status, reply) = d.send("main", &alice, &room, "early", "before the pushers").await;
    assert_eq!(status, 200, "{reply}");
    for (token, user_id) in &users {
        // The pushkey is the user id, so the gateway tells users apart.
        let pusher = json!({"kind": "http", "app_id": "org.example.app", "pushkey": user_id, "app_display_name": "App",
            "device_display_name": "Phone", "lang": "en", "data": {"url": gateway.url()}});
        let (status, reply) = d.call("main", "POST", "/_matrix/client/v3/pushers/set", Some(token.as_str()), Some(pusher)).await;
        assert_eq!(status, 200, "main checks the pusher through worker2: {reply}");
    }
    let on = |instance: &str| users.iter().filter(|(_, user)| PUSHER_INSTANCES[weft::replication::shard(user, 2)] == instance).count();
    assert!(on("worker1") > 0 && on("worker2") > 0, "the users fall on both instances");

    let mut sent = Vec::new();
    for n in 0..3 {
        let (status, reply) = d.send("main", &alice, &room, &format!("a{n}"), &format!("message {n}")).await;
        assert_eq!(status, 200, "{reply}");
        sent.push(reply["event_id"].as_str().unwrap().to_owned());
    }
    let got = wait_for_all(&gateway, &users, &sent).await;
    for (_, user) in &users {
        assert_eq!(got.get(user), Some(&sent), "{user}: each notification once, in order, none from before the pusher");
    }
    for instance in PUSHER_INSTANCES {
        // The count follows the gateway's answer: wait for the last one to be counted.
        let expected = Some((on(instance) * sent.len()) as f64);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut counted = d.metric(instance, "weft_push_notifications_sent_total", &[]).await;
        while counted != expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            counted = d.metric(instance, "weft_push_notifications_sent_total", &[]).await;
        }
        assert_eq!(counted, expected, "{instance} sent its users' only");
    }
    assert_eq!(d.metric("main", "weft_push_notifications_sent_total", &[]).await, None, "main is not a pusher instance");
    let remote = ["plugin=\"http-pusher\"", "call=\"notify\""];
    assert!(d.metric("worker2", "weft_plugin_calls_total", &remote).await.is_some_and(|calls| calls >= (USERS * sent.len()) as f64), "worker2 ran every push");

    // A backlog, answered slowly; worker1 is killed in the middle of it.
    gateway.set_delay(Duration::from_millis(150));
    let before = gateway.received().len();
    let mut backlog = Vec::new();
    for n in 0..6 {
        let (status, reply) = d.send("main", &alice, &room, &format!("b{n}"), &format!("backlog {n}")).await;
        assert_eq!(status, 200, "{reply}");
        backlog.push(reply["event_id"].as_str().unwrap().to_owned());
    }
    gateway.wait_for(before + USERS, Duration::from_secs(20)).await;
    d.kill("worker1");
    d.start_process("worker1").await;
    gateway.set_delay(Duration::ZERO);
    let all: Vec<String> = sent.iter().chain(&backlog).cloned().collect();
    let got = wait_for_all(&gateway, &users, &all).await;
    for (_, user) in &users {
        let events = got.get(user).cloned().unwrap_or_default();
        let mut once = events.clone();
        once.dedup();
        assert_eq!(once, all, "{user}: nothing lost, in order: {events:?}");
        assert!(events.len() <= all.len() + 1, "{user}: at most the one in flight again: {events:?}");
    }
}
