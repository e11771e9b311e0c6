//! `weft supervise` on a small deployment laid out as `config/workers/` is
//! (shared.toml, main.toml, workers/*.toml): everything starts, the router
//! serves, a worker's `/metrics` shows replication lag, a SIGKILLed worker
//! is restarted, `weft supervise stop` stops it all. And the example in
//! `config/workers/` itself passes `weft check-config`. The deployment
//! writer and the process helpers serve the other supervised tests too
//! (push: a pusher instance SIGKILLed and restarted by the supervisor).

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

use super::deployment::{Redis, SECRET};
use crate::support::{Backend, TestDb, WEFT, free_port, unique};

fn listener(port: u16, names: &str) -> String {
    format!("[[{{key}}]]\nport = {port}\nbind_addresses = [\"127.0.0.1\"]\ntype = \"http\"\n[[{{key}}.resources]]\nnames = [{names}]\n")
}

fn own_file(key: &str, header: &str, listeners: &[String]) -> String {
    let mut text = header.to_owned();
    for one in listeners {
        text.push_str(&one.replace("{key}", key));
    }
    text
}

/// Writes shared.toml, main.toml and workers/{persister1,sync1}.toml, plus
/// each of `extra_workers` with a replication listener; `extra_shared` opens
/// shared.toml, so it holds top-level keys only (tables inline). Returns the
/// router's port and sync1's metrics port.
pub(super) fn write_deployment_with(dir: &Path, db: &TestDb, redis: &Redis, extra_shared: &str, extra_workers: &[&str]) -> (u16, u16) {
    let (main_client, main_repl, persister_repl, sync_client, sync_repl, sync_metrics, router) =
        (free_port(), free_port(), free_port(), free_port(), free_port(), free_port(), free_port());
    let server_name = format!("{}.test", unique("supervised"));
    let extra_ports: Vec<(String, u16)> = extra_workers.iter().map(|name| (name.to_string(), free_port())).collect();
    let extra_instances: String = extra_ports.iter().map(|(name, port)| format!("[instance_map.{name}]\nhost = \"127.0.0.1\"\nport = {port}\n")).collect();
    std::fs::write(
        dir.join("shared.toml"),
        extra_shared.to_owned()
            + &format!(
                "server_name = \"{server_name}\"\nsigning_key_path = \"signing.key\"\nenable_metrics = true\n\
             enable_registration = true\nenable_registration_without_verification = true\n\
             worker_replication_secret = \"{SECRET}\"\n{}\n[redis]\nenabled = true\nhost = \"127.0.0.1\"\nport = {}\n\
             [stream_writers]\nevents = [\"persister1\"]\n\
             [instance_map.main]\nhost = \"127.0.0.1\"\nport = {main_repl}\nclient_port = {main_client}\n\
             [instance_map.persister1]\nhost = \"127.0.0.1\"\nport = {persister_repl}\n\
             [instance_map.sync1]\nhost = \"127.0.0.1\"\nport = {sync_repl}\nclient_port = {sync_client}\nserves = [\"sync\"]\n\
             [router]\nbind_addresses = [\"127.0.0.1\"]\nport = {router}\n[logging]\nlevel = \"info,sqlx=warn\"\n",
                db.config_toml, redis.port
            )
            + &extra_instances,
    )
    .unwrap();
    std::fs::write(
        dir.join("main.toml"),
        own_file("listeners", "", &[listener(main_client, "\"client\", \"health\""), listener(main_repl, "\"replication\", \"health\"")]),
    )
    .unwrap();
    std::fs::create_dir(dir.join("workers")).unwrap();
    let worker = |name: &str| format!("worker_app = \"synapse.app.generic_worker\"\nworker_name = \"{name}\"\n");
    std::fs::write(
        dir.join("workers/persister1.toml"),
        own_file("worker_listeners", &worker("persister1"), &[listener(persister_repl, "\"replication\", \"health\"")]),
    )
    .unwrap();
    let metrics = format!("[[worker_listeners]]\nport = {sync_metrics}\nbind_addresses = [\"127.0.0.1\"]\ntype = \"metrics\"\n");
    std::fs::write(
        dir.join("workers/sync1.toml"),
        own_file(
            "worker_listeners",
            &worker("sync1"),
            &[listener(sync_client, "\"client\", \"health\""), listener(sync_repl, "\"replication\", \"health\""), metrics],
        ),
    )
    .unwrap();
    for (name, port) in &extra_ports {
        std::fs::write(
            dir.join(format!("workers/{name}.toml")),
            own_file("worker_listeners", &worker(name), &[listener(*port, "\"replication\", \"health\"")]),
        )
        .unwrap();
    }
    (router, sync_metrics)
}

fn write_deployment(dir: &Path, db: &TestDb, redis: &Redis) -> (u16, u16) {
    write_deployment_with(dir, db, redis, "", &[])
}

pub(super) fn pid_of(run: &Path, name: &str) -> Option<u32> {
    std::fs::read_to_string(run.join(format!("{name}.pid"))).ok()?.trim().parse().ok()
}

pub(super) fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

pub(super) fn supervise(dir: &Path, action: &str) -> std::process::Output {
    Command::new(WEFT).args(["supervise", action, "-c"]).arg(dir.join("shared.toml")).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervise_starts_restarts_and_stops_a_deployment() {
    let db = TestDb::new(Backend::Postgres).await;
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let (router_port, metrics_port) = write_deployment(dir.path(), &db, &redis);
    let run = dir.path().join("run");
    let mut supervisor =
        Command::new(WEFT).args(["supervise", "-c"]).arg(dir.path().join("shared.toml")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
    let base = format!("http://127.0.0.1:{router_port}");
    let log_of = |name: &str| std::fs::read_to_string(run.join(format!("{name}.log"))).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !http.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(supervisor.try_wait().unwrap().is_none(), "the supervisor exited\n{}\n{}", log_of("main"), log_of("sync1"));
        assert!(Instant::now() < deadline, "the router never answered\n{}", log_of("router"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let status = String::from_utf8(supervise(dir.path(), "status").stdout).unwrap();
    for name in ["supervisor", "main", "persister1", "sync1", "router"] {
        assert!(status.lines().any(|line| line.starts_with(name) && line.contains("running (pid")), "{name} in:\n{status}");
    }

    let body = json!({"username": "sup", "password": "correct horse battery", "auth": {"type": "m.login.dummy"}});
    let reply: serde_json::Value = http.post(format!("{base}/_matrix/client/v3/register")).json(&body).send().await.unwrap().json().await.unwrap();
    let token = reply["access_token"].as_str().unwrap_or_else(|| panic!("{reply}")).to_owned();
    let call = |method: reqwest::Method, path: String, body: Option<serde_json::Value>| {
        let request = http.request(method, format!("{base}/_matrix/client/v3{path}")).bearer_auth(&token);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let (status, room) = call(reqwest::Method::POST, "/createRoom".into(), Some(json!({}))).await;
    assert_eq!(status, 200, "{room}");
    let room = room["room_id"].as_str().unwrap().to_owned();
    let (status, body) =
        call(reqwest::Method::PUT, format!("/rooms/{room}/send/m.room.message/t1"), Some(json!({"msgtype": "m.text", "body": "supervised"}))).await;
    assert_eq!(status, 200, "{body}");
    // sync1 sees the message once persister1's row has reached it over
    // replication: long-poll from the previous batch until it does.
    let (status, mut sync) = call(reqwest::Method::GET, "/sync?timeout=0".into(), None).await;
    assert_eq!(status, 200, "{sync}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let bodies: Vec<_> =
            sync["rooms"]["join"][&room]["timeline"]["events"].as_array().into_iter().flatten().map(|e| e["content"]["body"].clone()).collect();
        if bodies.contains(&json!("supervised")) {
            break;
        }
        assert!(Instant::now() < deadline, "the message never reached sync1: {sync}");
        let since = sync["next_batch"].as_str().unwrap_or_default().to_owned();
        let (status, next) = call(reqwest::Method::GET, format!("/sync?timeout=5000&since={since}"), None).await;
        assert_eq!(status, 200, "{next}");
        sync = next;
    }

    // sync1 applied persister1's rows: its /metrics shows the lag it saw.
    let metrics = http.get(format!("http://127.0.0.1:{metrics_port}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|line| line.starts_with("weft_replication_lag_seconds_count{")
            && line.contains("stream=\"events\"")
            && line.contains("writer=\"persister1\"")),
        "{metrics}"
    );
    assert!(metrics.contains("weft_replication_position{"), "{metrics}");

    let killed = pid_of(&run, "sync1").expect("sync1.pid");
    assert!(sigkill(killed));
    let deadline = Instant::now() + Duration::from_secs(30);
    let restarted = loop {
        if let Some(pid) = pid_of(&run, "sync1").filter(|pid| *pid != killed && alive(*pid)) {
            break pid;
        }
        assert!(Instant::now() < deadline, "sync1 was not restarted\n{}", log_of("sync1"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = call(reqwest::Method::GET, "/sync?timeout=0".into(), None).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "sync through the router after the restart: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(alive(restarted), "the restarted sync1 keeps running");

    let pids: Vec<u32> = ["main", "persister1", "sync1", "router"].iter().map(|name| pid_of(&run, name).unwrap()).collect();
    let stop = supervise(dir.path(), "stop");
    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    let exit = supervisor.wait().unwrap();
    assert!(exit.success(), "the supervisor exits 0 when stopped: {exit:?}");
    for pid in pids {
        assert!(!alive(pid), "pid {pid} outlived the supervisor");
    }
    let stop_again = supervise(dir.path(), "stop");
    assert!(!stop_again.status.success(), "stopping what is not running is an error");
}

pub(super) fn sigkill(pid: u32) -> bool {
    Command::new("kill").args(["-KILL", &pid.to_string()]).status().is_ok_and(|status| status.success())
}

#[test]
fn the_example_deployment_passes_check_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/workers");
    let mut own: Vec<_> = std::fs::read_dir(root.join("workers")).unwrap().map(|entry| entry.unwrap().path()).collect();
    own.push(root.join("main.toml"));
    assert!(own.len() >= 10, "main and nine workers: {own:?}");
    for file in own {
        for overlay in [&[][..], &["bench.toml"][..], &["bench.toml", "bench-one-persister.toml"][..]] {
            let mut command = Command::new(WEFT);
            command.args(["check-config", "-c"]).arg(root.join("shared.toml"));
            for extra in overlay {
                command.arg("-c").arg(root.join(extra));
            }
            let output = command.arg("-c").arg(&file).output().unwrap();
            assert!(
                output.status.success(),
                "{} with {overlay:?}: {}{}",
                file.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
