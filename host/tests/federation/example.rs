//! The example deployment itself (`config/workers/`, started by `weft
//! supervise`) federating with Synapse: the files are copied as they are,
//! with only what a test must change rewritten (every port to a free one,
//! the database, Redis, the server name `localhost:<router's TLS port>`, and
//! the test CA's certificate where the example keeps its own, plus trust of
//! that CA and of loopback). Synapse joins a Weft room by alias and a Weft
//! user a Synapse room by id; messages go both ways; Synapse's typing and
//! receipt reach a Weft client; a Weft client downloads Synapse's media.
//! The router's TLS port sends federation to `federation1`, and the
//! transactions to Synapse go out from the one federation sender that
//! sha256 picks.

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::media::{png, upload_to_synapse};
use super::peers::Peer;
use super::rooms::{has_message, send_message, synapse_typing_and_receipt_reach, sync_until, weft_user_joins_a_synapse_room};
use crate::{
    support::{Backend, Session, TestDb, WEFT, encode, free_port, synapse::Synapse},
    workers::Redis,
};

/// The example's files under `dir`, rewritten for this test; what the test
/// needs to reach it.
struct Example {
    server_name: String,
    router: String,
    /// Each instance's metrics port, by the instance's name.
    metrics: BTreeMap<String, u16>,
}

impl Example {
    fn write(dir: &Path, db: &TestDb, redis: &Redis) -> Self {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/workers");
        let mut files = vec![("shared.toml".to_owned(), source.join("shared.toml")), ("main.toml".to_owned(), source.join("main.toml"))];
        for entry in std::fs::read_dir(source.join("workers")).unwrap() {
            let path = entry.unwrap().path();
            files.push((format!("workers/{}", path.file_name().unwrap().to_string_lossy()), path));
        }
        std::fs::create_dir(dir.join("workers")).unwrap();
        let mut ports: BTreeMap<u16, u16> = BTreeMap::new();
        let mut renumber = |text: &str| -> String {
            text.lines()
                .map(|line| {
                    let Some((key, value)) = line.split_once(" = ") else { return line.to_owned() };
                    let number = value.split_whitespace().next().and_then(|n| n.parse::<u16>().ok());
                    match (key.trim(), number) {
                        ("port" | "client_port" | "tls_port", Some(port)) if port != 5432 && port != 6379 => {
                            let new = *ports.entry(port).or_insert_with(free_port);
                            line.replacen(&port.to_string(), &new.to_string(), 1)
                        }
                        _ => line.to_owned(),
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        };
        let mut texts: Vec<(String, String)> = files.iter().map(|(name, path)| (name.clone(), renumber(&std::fs::read_to_string(path).unwrap()))).collect();
        let tls_port = ports[&8448];
        let router_port = ports[&8008];
        let server_name = format!("localhost:{tls_port}");
        let ca = crate::support::synapse::test_ca();
        let mut metrics = BTreeMap::new();
        for (name, text) in &mut texts {
            if name == "shared.toml" {
                let (head, tail) = text.split_once("[database]").expect("shared.toml has [database]");
                let tail = &tail[tail.find("\n[redis]").expect("[redis] follows [database]")..];
                *text = format!(
                    "federation_custom_ca_list = [{:?}]\nip_range_whitelist = [\"127.0.0.0/8\", \"::1\"]\ntrusted_key_servers = []\n{}{}{}",
                    ca.ca.display().to_string(),
                    head.replace("server_name = \"localhost\"", &format!("server_name = \"{server_name}\""))
                        .replace("public_baseurl = \"http://localhost:8008/\"", &format!("public_baseurl = \"http://127.0.0.1:{router_port}/\"")),
                    db.config_toml,
                    tail.replace("port = 6379", &format!("port = {}", redis.port)),
                );
            }
            let instance = match name.as_str() {
                "shared.toml" => None,
                "main.toml" => Some("main".to_owned()),
                other => other.strip_prefix("workers/").and_then(|file| file.strip_suffix(".toml")).map(str::to_owned),
            };
            if let Some(instance) = instance
                && let Some(metrics_port) = metrics_port_of(text)
            {
                metrics.insert(instance, metrics_port);
            }
            std::fs::write(dir.join(name.as_str()), text.as_bytes()).unwrap();
        }
        std::fs::copy(&ca.chain, dir.join("localhost.tls.crt")).unwrap();
        std::fs::copy(&ca.key, dir.join("localhost.tls.key")).unwrap();
        Self { server_name, router: format!("http://127.0.0.1:{router_port}"), metrics }
    }
}

/// The port of the `metrics` listener in an instance's own file.
fn metrics_port_of(text: &str) -> Option<u16> {
    let mut last_port = None;
    for line in text.lines() {
        if let Some(port) = line.strip_prefix("port = ") {
            last_port = port.trim().parse().ok();
        }
        if line.trim() == "type = \"metrics\"" {
            return last_port;
        }
    }
    None
}

/// The example deployment as a federation peer: clients go through the router.
struct ThroughExample {
    example: Example,
    http: reqwest::Client,
    run: std::path::PathBuf,
}

impl Peer for ThroughExample {
    fn name(&self) -> &str {
        &self.example.server_name
    }
    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.example.router)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or_default())
    }
    async fn user(&self, localpart: &str) -> Session {
        let body = json!({"username": localpart, "password": format!("password-of-{localpart}"), "auth": {"type": "m.login.dummy"}});
        let reply: Value =
            self.http.post(format!("{}/_matrix/client/v3/register", self.example.router)).json(&body).send().await.unwrap().json().await.unwrap();
        let access_token = reply["access_token"].as_str().unwrap_or_else(|| panic!("{reply}")).to_owned();
        Session { user_id: reply["user_id"].as_str().unwrap().to_owned(), access_token, device_id: String::new() }
    }
    fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["main", "persister1", "persister2", "federation1", "fedsender1", "fedsender2", "router"] {
            let log = std::fs::read_to_string(self.run.join(format!("{name}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            out.push_str(&format!("----- {name} -----\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
        }
        out
    }
}

impl ThroughExample {
    /// A counter of an instance's `/metrics` summed over the lines with every label of `labels`.
    async fn metric(&self, instance: &str, name: &str, labels: &[&str]) -> f64 {
        let port = self.example.metrics[instance];
        let text = self.http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")) && labels.iter().all(|label| line.contains(label)))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_deployment_federates_with_synapse() {
    let db = TestDb::new(Backend::Postgres).await;
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let example = Example::write(dir.path(), &db, &redis);
    let shared = dir.path().join("shared.toml");
    let mut supervisor = Command::new(WEFT).args(["supervise", "-c"]).arg(&shared).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let weft =
        ThroughExample { example, http: reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap(), run: dir.path().join("run") };
    let deadline = Instant::now() + Duration::from_secs(180);
    while !weft.http.get(format!("{}/_matrix/client/versions", weft.example.router)).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(supervisor.try_wait().unwrap().is_none(), "the supervisor exited\n{}", weft.logs());
        assert!(Instant::now() < deadline, "the example deployment never answered\n{}", weft.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let synapse = Synapse::start().await;
    let alice = weft.user("alice").await;
    let bob = synapse.register("bob").await;

    // Synapse joins by alias: main answers the directory query, federation1
    // the join, the room's persister makes and takes it.
    let (status, room) = weft
        .call(Method::POST, "/_matrix/client/v3/createRoom", &alice.access_token, Some(json!({"preset": "public_chat", "room_alias_name": "example"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{room}\n{}", weft.logs());
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    let alias = format!("#example:{}", weft.example.server_name);
    let (status, joined) = synapse.post(&format!("/_matrix/client/v3/join/{}", encode(&alias)), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "Synapse joins {alias}: {joined}\n{}\n{}", synapse.logs(), weft.logs());
    send_message(&weft, &alice, &room_id, "hello from the example").await;
    sync_until(&synapse, &bob, &room_id, "the example's message", |events| has_message(events, "hello from the example")).await;
    let read_me = send_message(&synapse, &bob, &room_id, "hello from Synapse").await;
    sync_until(&weft, &alice, &room_id, "Synapse's message", |events| has_message(events, "hello from Synapse")).await;

    // Typing and a receipt from Synapse reach alice through their writer.
    synapse_typing_and_receipt_reach(&weft, &alice, &synapse, &bob, &room_id, &read_me).await;

    // A Weft user joins a Synapse room by id with `via`; messages both ways.
    weft_user_joins_a_synapse_room(&weft, &synapse, &bob).await;

    // Synapse's media, downloaded through the example.
    let picture = png(32, 32);
    let media = format!("{}/{}", synapse.server_name, upload_to_synapse(&synapse, &bob, "picture.png", picture.clone()).await);
    let download =
        weft.http.get(format!("{}/_matrix/client/v1/media/download/{media}", weft.example.router)).bearer_auth(&alice.access_token).send().await.unwrap();
    assert_eq!(download.status(), StatusCode::OK, "{}", weft.logs());
    assert_eq!(download.bytes().await.unwrap().to_vec(), picture, "Synapse's media, byte for byte");

    // federation1 answered Synapse's transactions, main none; one sender sent to Synapse.
    let answered = |instance| weft.metric(instance, "weft_http_requests_total", &["group=\"federation_transactions\"", "status=\"200\""]);
    assert!(answered("federation1").await > 0.0, "federation1 answered Synapse's transactions");
    assert_eq!(answered("main").await, 0.0, "main answered no transaction");
    let senders = ["fedsender1", "fedsender2"];
    let owner = senders[weft::replication::shard(&synapse.server_name, senders.len())];
    let destination = format!("destination=\"{}\"", synapse.server_name);
    for instance in ["main", "fedsender1", "fedsender2"] {
        let sent = weft.metric(instance, "weft_federation_transactions_sent_total", &[destination.as_str()]).await;
        match instance == owner {
            true => assert!(sent > 0.0, "{owner} sent to Synapse"),
            false => assert_eq!(sent, 0.0, "{instance} sent to Synapse, which {owner} owns"),
        }
    }

    let stop = Command::new(WEFT).args(["supervise", "stop", "-c"]).arg(&shared).output().unwrap();
    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    assert!(supervisor.wait().unwrap().success());
}
