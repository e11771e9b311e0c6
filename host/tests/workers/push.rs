//! Push from pusher instances, with real processes: `pusher_instances =
//! ["worker1", "worker2"]` split the users by the sha256 of their id, each
//! user's notifications come from exactly one of them, and the reference
//! pusher plugin is pinned to worker2 alone, so worker1 delivers through it
//! remotely (and `/pushers/set` on main checks through it remotely). A
//! pusher instance SIGKILLed in the middle of a backlog and started again
//! delivers the rest: nothing is lost, nothing is duplicated beyond what
//! was delivered since the pusher last wrote its position (at most 50
//! notifications, docs/push.md), also when `weft supervise` is the one that
//! restarts it.

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
/// What a killed pusher instance may send again: the deliveries since its
/// last written position (50 at most) and the one in flight.
pub(super) const UNRECORDED_AT_MOST: usize = 51;

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
        let again = sent_again(&events, &all);
        assert!(again.is_some(), "{user}: nothing lost, in order, one run sent again at most: {events:?}");
        assert!(again <= Some(UNRECORDED_AT_MOST), "{user}: at most the unrecorded deliveries again: {events:?}");
    }
}

/// How many notifications a restart sent again, when `events` is `all` in
/// order but for one run sent again after the restart (`all[..k]`, then
/// `all[j..]` with `j <= k`); `None` when anything is lost or out of order.
fn sent_again(events: &[String], all: &[String]) -> Option<usize> {
    let k = events.iter().zip(all).take_while(|(got, sent)| got == sent).count();
    let j = all.len().checked_sub(events.len() - k)?;
    (j <= k && events[k..] == all[j..]).then_some(k - j)
}

/// The supervisor's part: pusher1, the only pusher instance, is SIGKILLed
/// while the gateway answers slowly and `weft supervise` starts it again;
/// it resumes from its stored positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pusher_instance_sigkilled_under_the_supervisor_resumes_with_nothing_lost() {
    use std::process::{Command, Stdio};

    use super::{
        deployment::Redis,
        supervisor::{alive, pid_of, sigkill, supervise, write_deployment_with},
    };
    use crate::support::{Backend, TestDb, WEFT};

    let gateway = PushGateway::start().await.unwrap();
    let db = TestDb::new(Backend::Postgres).await;
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let shared = format!(
        "pusher_instances = [\"pusher1\"]\nip_range_whitelist = [\"127.0.0.0/8\"]\n\
         plugins = [{{name = \"http-pusher\", role = \"pusher\", path = {:?}, instances = [\"pusher1\"], \
         capabilities = {{allowed_outbound_hosts = [\"*:*\"]}}}}]\n",
        guest("http_pusher").display().to_string()
    );
    let (router_port, _) = write_deployment_with(dir.path(), &db, &redis, &shared, &["pusher1"]);
    let run = dir.path().join("run");
    let mut supervisor =
        Command::new(WEFT).args(["supervise", "-c"]).arg(dir.path().join("shared.toml")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let log_of = |name: &str| std::fs::read_to_string(run.join(format!("{name}.log"))).unwrap_or_default();
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
    let base = format!("http://127.0.0.1:{router_port}/_matrix/client/v3");
    let call = |method: reqwest::Method, path: String, token: Option<String>, body: serde_json::Value| {
        let mut request = http.request(method, format!("{base}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !http.get(format!("http://127.0.0.1:{router_port}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(supervisor.try_wait().unwrap().is_none(), "the supervisor exited\n{}", log_of("main"));
        assert!(Instant::now() < deadline, "the router never answered\n{}", log_of("router"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let register = |name: &str| {
        let body = json!({"username": name, "password": "correct horse battery", "auth": {"type": "m.login.dummy"}});
        call(reqwest::Method::POST, "/register".into(), None, body)
    };
    let (alice, bob) = loop {
        // The router answers once main is up; the first registration may race the workers.
        let (status, reply) = register("alice").await;
        if status == 200 {
            let (status, bob) = register("bob").await;
            assert_eq!(status, 200, "{bob}");
            break (reply, bob);
        }
        assert!(supervisor.try_wait().unwrap().is_none(), "the supervisor exited\n{}", log_of("main"));
        assert!(Instant::now() < deadline, "registration through the router never worked: {status} {reply}\n{}", log_of("router"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let token = |reply: &serde_json::Value| Some(reply["access_token"].as_str().unwrap().to_owned());
    let (status, room) = call(reqwest::Method::POST, "/createRoom".into(), token(&alice), json!({"preset": "public_chat"})).await;
    assert_eq!(status, 200, "{room}");
    let room = room["room_id"].as_str().unwrap().to_owned();
    let (status, reply) = call(reqwest::Method::POST, format!("/join/{room}"), token(&bob), json!({})).await;
    assert_eq!(status, 200, "{reply}");
    let pusher = json!({"kind": "http", "app_id": "org.example.app", "pushkey": "bob-phone", "app_display_name": "App",
        "device_display_name": "Phone", "lang": "en", "data": {"url": gateway.url()}});
    let (status, reply) = call(reqwest::Method::POST, "/pushers/set".into(), token(&bob), pusher).await;
    assert_eq!(status, 200, "main checks the pusher through pusher1: {reply}");

    gateway.set_delay(Duration::from_millis(300));
    let mut sent = Vec::new();
    for n in 0..8 {
        let (status, reply) =
            call(reqwest::Method::PUT, format!("/rooms/{room}/send/m.room.message/s{n}"), token(&alice), json!({"msgtype": "m.text", "body": format!("m{n}")}))
                .await;
        assert_eq!(status, 200, "{reply}");
        sent.push(reply["event_id"].as_str().unwrap().to_owned());
    }
    gateway.wait_for(2, Duration::from_secs(30)).await;
    let killed = pid_of(&run, "pusher1").expect("pusher1.pid");
    assert!(sigkill(killed));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pid_of(&run, "pusher1").is_some_and(|pid| pid != killed && alive(pid)) {
        assert!(Instant::now() < deadline, "the supervisor did not restart pusher1\n{}", log_of("pusher1"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gateway.set_delay(Duration::ZERO);
    let users = [(String::new(), "bob-phone".to_owned())];
    let got = wait_for_all(&gateway, &users, &sent).await;
    let events = got.get("bob-phone").cloned().unwrap_or_default();
    let mut once = events.clone();
    once.dedup();
    assert_eq!(once, sent, "nothing lost, in order, across the SIGKILL: {events:?}\n{}", log_of("pusher1"));
    assert!(events.len() <= sent.len() + 1, "at most the one in flight again: {events:?}");

    let stop = supervise(dir.path(), "stop");
    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    assert!(supervisor.wait().unwrap().success());
}
