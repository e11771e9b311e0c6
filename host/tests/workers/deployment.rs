//! Starting, stopping and talking to a multi-process deployment.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::support::{Backend, TestDb, unique};
use crate::support::{WEFT, free_port};

pub const SECRET: &str = "test-replication-secret";

/// A `redis-server` of the test's own.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Self {
        let mut redis = Self { port: free_port(), child: None };
        redis.restart();
        redis
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (tests/run.sh checks)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One process of the deployment.
pub struct Process {
    pub client_port: Option<u16>,
    pub replication_port: u16,
    config: PathBuf,
    child: Option<Child>,
}

pub struct Deployment {
    pub server_name: String,
    pub redis: Redis,
    pub processes: BTreeMap<String, Process>,
    shared: PathBuf,
    pub http: reqwest::Client,
    router: Option<Child>,
    router_port: u16,
    _db: TestDb,
    dir: tempfile::TempDir,
}

/// Where other servers reach a federating deployment, on the given port.
#[derive(Clone, Copy)]
enum Federation {
    /// A TLS listener of `main`.
    OnMain(u16),
    /// The router's `tls_port`, which sends the federation groups to `worker2`.
    ThroughRouter(u16),
}

/// What the router sends to worker1 and worker2 (the rest goes to `main`).
pub const WORKER_GROUPS: [&str; 2] = ["sync", "client_reads"];

/// main (client), persister1 and persister2 (events), worker1 and worker2 (client).
pub const INSTANCES: [(&str, bool); 5] = [("main", true), ("persister1", false), ("persister2", false), ("worker1", true), ("worker2", true)];

impl Deployment {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// `start` with `extra_shared_toml` in the shared file, among its
    /// top-level options: it may set options, then open tables (`[[plugins]]`).
    pub async fn start_with(extra_shared_toml: &str) -> Self {
        Self::start_configured(extra_shared_toml, &[]).await
    }

    /// `start_with`, and `(instance, toml)` pairs added to those instances' own files.
    pub async fn start_configured(extra_shared_toml: &str, extra_own_toml: &[(&str, &str)]) -> Self {
        Self::start_inner(extra_shared_toml, extra_own_toml, None).await
    }

    /// A deployment that federates: named `localhost:PORT`, `main` serving
    /// `federation` and `keys` over TLS on that port with the test CA's
    /// certificate, trusting that CA, allowed to reach loopback, no notary;
    /// typing, receipts and to-device are written by `worker1`, so the EDUs
    /// `main` receives must be passed on.
    pub async fn start_federating(extra_shared_toml: &str) -> Self {
        Self::start_inner(extra_shared_toml, &[], Some(Federation::OnMain(free_port()))).await
    }

    /// `start_federating`, but other servers reach the deployment through
    /// the router's TLS port (`[router] tls_port`, which names the server),
    /// and the router sends the federation endpoint groups to `worker2`;
    /// every client listener also serves `federation` and `keys`.
    pub async fn start_federating_through_router() -> Self {
        Self::start_inner("", &[], Some(Federation::ThroughRouter(free_port()))).await
    }

    /// `start_federating` (or `start_federating_through_router`) with
    /// `extra_shared_toml` and `extra_own_toml` as in `start_configured`.
    pub async fn start_federating_configured(extra_shared_toml: &str, extra_own_toml: &[(&str, &str)], through_router: bool) -> Self {
        let port = free_port();
        let federation = if through_router { Federation::ThroughRouter(port) } else { Federation::OnMain(port) };
        Self::start_inner(extra_shared_toml, extra_own_toml, Some(federation)).await
    }

    async fn start_inner(extra_shared_toml: &str, extra_own_toml: &[(&str, &str)], federation: Option<Federation>) -> Self {
        let federation_port = federation.map(|federation| match federation {
            Federation::OnMain(port) | Federation::ThroughRouter(port) => port,
        });
        let through_router = matches!(federation, Some(Federation::ThroughRouter(_)));
        let db = TestDb::new(Backend::Postgres).await;
        let redis = Redis::start();
        let dir = tempfile::tempdir().unwrap();
        let (server_name, federation_toml) = match federation_port {
            Some(port) => {
                let ca = crate::support::synapse::test_ca();
                let shared = format!(
                    "tls_certificate_path = {:?}\ntls_private_key_path = {:?}\nfederation_custom_ca_list = [{:?}]\n\
                     ip_range_whitelist = [\"127.0.0.0/8\", \"::1\"]\ntrusted_key_servers = []\n",
                    ca.chain.display().to_string(),
                    ca.key.display().to_string(),
                    ca.ca.display().to_string()
                );
                (format!("localhost:{port}"), shared)
            }
            None => (format!("{}.test", unique("workers")), String::new()),
        };
        let ephemeral_writers = match federation_port {
            Some(_) => "typing = [\"worker1\"]\nreceipts = [\"worker1\"]\nto_device = [\"worker1\"]\n",
            None => "",
        };
        let mut processes = BTreeMap::new();
        let mut instance_map = String::new();
        for (name, client) in INSTANCES {
            let replication_port = free_port();
            let client_port = client.then(free_port);
            instance_map.push_str(&format!("[instance_map.{name}]\nhost = \"127.0.0.1\"\nport = {replication_port}\n"));
            if let Some(port) = client_port {
                instance_map.push_str(&format!("client_port = {port}\n"));
            }
            // A worker that runs the media repository is sent the media group.
            let media: &[&str] = if extra_own_toml.contains(&(name, "enable_media_repo = true")) { &["media"] } else { &[] };
            if name == "worker2" && through_router {
                instance_map.push_str(&format!("serves = {:?}\n", [&WORKER_GROUPS[..], &["federation", "federation_transactions"], media].concat()));
            } else if name.starts_with("worker") {
                instance_map.push_str(&format!("serves = {:?}\n", [&WORKER_GROUPS[..], media].concat()));
            }
            let federation_port = federation_port.filter(|_| name == "main" && !through_router);
            let listeners = listeners_toml(client_port, replication_port, federation_port, through_router);
            let extra: String = extra_own_toml.iter().filter(|(instance, _)| *instance == name).map(|(_, toml)| format!("{toml}\n")).collect();
            let own = if name == "main" {
                format!("{extra}listeners = {listeners}\n")
            } else {
                format!("{extra}worker_app = \"synapse.app.generic_worker\"\nworker_name = \"{name}\"\nworker_listeners = {listeners}\n")
            };
            let config = dir.path().join(format!("{name}.toml"));
            std::fs::write(&config, own).unwrap();
            processes.insert(name.to_owned(), Process { client_port, replication_port, config, child: None });
        }
        let router_port = free_port();
        let router_tls = match (through_router, federation_port) {
            (true, Some(port)) => format!("tls_port = {port}\n"),
            _ => String::new(),
        };
        let shared = dir.path().join("shared.toml");
        let key = dir.path().join("signing.key");
        std::fs::write(
            &shared,
            format!(
                "server_name = \"{server_name}\"\nsigning_key_path = {key:?}\nenable_registration = true\n\
                 enable_registration_without_verification = true\nworker_replication_secret = \"{SECRET}\"\n{federation_toml}\
                 rc_message = {{ per_second = 10000, burst_count = 10000 }}\n\
                 rc_registration = {{ per_second = 10000, burst_count = 10000 }}\nenable_metrics = true\n\
                 rc_room_creation = {{ per_second = 10000, burst_count = 10000 }}\n{extra_shared_toml}\n\
                 [rc_invites]\nper_room = {{ per_second = 10000, burst_count = 10000 }}\nper_user = {{ per_second = 10000, burst_count = 10000 }}\n\
                 per_issuer = {{ per_second = 10000, burst_count = 10000 }}\n[rc_joins]\nlocal = {{ per_second = 10000, burst_count = 10000 }}\n\
                 [rc_login]\naddress = {{ per_second = 10000, burst_count = 10000 }}\naccount = {{ per_second = 10000, burst_count = 10000 }}\n\
                 failed_attempts = {{ per_second = 10000, burst_count = 10000 }}\n\
                 [logging]\nlevel = \"info,sqlx=warn\"\n[router]\nport = {router_port}\ndown_for_ms = 60000\n{router_tls}[redis]\nenabled = true\nhost = \"127.0.0.1\"\nport = {}\n\
                 [stream_writers]\nevents = [\"persister1\", \"persister2\"]\n{ephemeral_writers}{}{instance_map}",
                redis.port, db.config_toml
            ),
        )
        .unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut deployment = Self { server_name, redis, processes, shared, http, router: None, router_port, _db: db, dir };
        for (name, _) in INSTANCES {
            deployment.start_process(name).await;
        }
        deployment
    }

    pub async fn start_process(&mut self, name: &str) {
        let process = self.processes.get_mut(name).unwrap();
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new(WEFT)
            .args(["run", "-c"])
            .arg(&self.shared)
            .arg("-c")
            .arg(&process.config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("weft starts");
        process.child = Some(child);
        let url = format!("http://127.0.0.1:{}/health", process.replication_port);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = self.http.get(&url).send().await
                && response.status().is_success()
            {
                break;
            }
            let exited = self.processes.get_mut(name).unwrap().child.as_mut().unwrap().try_wait().unwrap();
            assert!(exited.is_none(), "{name} exited: {exited:?}\n{}", self.log(name));
            assert!(Instant::now() < deadline, "{name} did not become ready\n{}", self.log(name));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts `weft router` on the shared configuration; returns its base URL.
    pub async fn start_router(&mut self) -> String {
        let log = std::fs::File::create(self.dir.path().join("router.log")).unwrap();
        let child = Command::new(WEFT).args(["router", "-c"]).arg(&self.shared).stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("weft starts");
        self.router = Some(child);
        let base = format!("http://127.0.0.1:{}", self.router_port);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.http.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "the router did not become ready\n{}", self.log("router"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        base
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self, name: &str) {
        if let Some(mut child) = self.processes.get_mut(name).unwrap().child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A process's client listener; `"router"` is the router's.
    pub fn client_url(&self, name: &str) -> String {
        if name == "router" {
            return format!("http://127.0.0.1:{}", self.router_port);
        }
        format!("http://127.0.0.1:{}", self.processes[name].client_port.expect("serves clients"))
    }

    pub fn replication_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}", self.processes[name].replication_port)
    }

    /// The value of a Prometheus sample of `name`'s `/metrics` (on its
    /// replication listener) whose line contains every `labels` part.
    pub async fn metric(&self, name: &str, metric: &str, labels: &[&str]) -> Option<f64> {
        let text = self.http.get(format!("{}/metrics", self.replication_url(name))).send().await.ok()?.text().await.ok()?;
        text.lines()
            .filter(|line| line.strip_prefix(metric).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
            .find(|line| labels.iter().all(|label| line.contains(label)))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
    }

    /// Registers `localpart` through `via`; returns its access token and user id.
    pub async fn register(&self, via: &str, localpart: &str) -> (String, String) {
        let body = json!({"username": localpart, "password": "correct horse battery", "auth": {"type": "m.login.dummy"}});
        let (status, response) = self.call(via, "POST", "/_matrix/client/v3/register", None, Some(body)).await;
        assert_eq!(status, 200, "{response}");
        (response["access_token"].as_str().unwrap().to_owned(), response["user_id"].as_str().unwrap().to_owned())
    }

    pub async fn call(&self, via: &str, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.client_url(via));
        let mut request = self.http.request(method.parse().unwrap(), url).timeout(Duration::from_secs(60));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {path} via {via}: {e}"));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates rooms through `via` until one belongs to persister `index` (0 or 1).
    pub async fn room_on_persister(&self, via: &str, token: &str, index: usize, body: Value) -> String {
        for _ in 0..64 {
            let (status, response) = self.call(via, "POST", "/_matrix/client/v3/createRoom", Some(token), Some(body.clone())).await;
            assert_eq!(status, 200, "{response}");
            let room_id = response["room_id"].as_str().unwrap().to_owned();
            if weft::replication::shard(&room_id, 2) == index {
                return room_id;
            }
        }
        panic!("no room landed on persister {index}");
    }

    /// Sends a text message; returns the event id.
    pub async fn send(&self, via: &str, token: &str, room_id: &str, txn: &str, body: &str) -> (u16, Value) {
        let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}");
        self.call(via, "PUT", &path, Some(token), Some(json!({"msgtype": "m.text", "body": body}))).await
    }

    pub async fn sync(&self, via: &str, token: &str, since: Option<&str>, timeout_ms: u64) -> Value {
        // Room for every message a test sends between two syncs.
        let filter = "%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A200%7D%7D%7D";
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}&filter={filter}");
        if let Some(since) = since {
            path.push_str(&format!("&since={since}"));
        }
        let (status, response) = self.call(via, "GET", &path, Some(token), None).await;
        assert_eq!(status, 200, "{response}");
        response
    }
}

fn listeners_toml(client_port: Option<u16>, replication_port: u16, federation_port: Option<u16>, client_serves_federation: bool) -> String {
    let mut listeners = vec![format!(
        "{{ port = {replication_port}, bind_addresses = [\"127.0.0.1\"], resources = [{{ names = [\"replication\", \"health\", \"metrics\"] }}] }}"
    )];
    let client_resources = if client_serves_federation { r#""client", "health", "federation", "keys""# } else { r#""client", "health""# };
    if let Some(port) = client_port {
        listeners.push(format!("{{ port = {port}, bind_addresses = [\"127.0.0.1\"], resources = [{{ names = [{client_resources}] }}] }}"));
    }
    if let Some(port) = federation_port {
        listeners.push(format!("{{ port = {port}, bind_addresses = [\"127.0.0.1\"], tls = true, resources = [{{ names = [\"federation\", \"keys\"] }}] }}"));
    }
    format!("[{}]", listeners.join(", "))
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let names: Vec<String> = self.processes.keys().cloned().collect();
        if std::thread::panicking() {
            for name in names.iter().map(String::as_str).chain(self.router.is_some().then_some("router")) {
                eprintln!("----- log of {name} -----\n{}", self.log(name));
            }
        }
        for name in names {
            self.kill(&name);
        }
        if let Some(mut router) = self.router.take() {
            let _ = router.kill();
            let _ = router.wait();
        }
    }
}

/// The timeline bodies of `room_id` in a sync response.
pub fn timeline_bodies(sync: &Value, room_id: &str) -> Vec<String> {
    sync["rooms"]["join"][room_id]["timeline"]["events"]
        .as_array()
        .map(|events| events.iter().filter_map(|event| event["content"]["body"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Syncs on `via` from `since` until `want` bodies of `room_id` arrived;
/// returns them in order and the last token.
pub async fn collect_bodies(d: &Deployment, via: &str, token: &str, room_id: &str, mut since: String, want: usize) -> (Vec<String>, String) {
    let mut bodies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while bodies.len() < want {
        assert!(Instant::now() < deadline, "only {} of {want} messages arrived on {via}: {bodies:?}", bodies.len());
        let sync = d.sync(via, token, Some(&since), 5_000).await;
        assert_ne!(sync["rooms"]["join"][room_id]["timeline"]["limited"], json!(true), "a gap: {sync}");
        bodies.extend(timeline_bodies(&sync, room_id));
        since = sync["next_batch"].as_str().unwrap().to_owned();
    }
    (bodies, since)
}
