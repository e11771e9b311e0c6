//! A real Weft instance on 127.0.0.1 port 0 with its own database and server
//! name, and a small JSON client for it.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle};
use weft::{
    config,
    server::{BoundAddress, Server},
    services::{AppState, Services},
};

use super::{Backend, TestDb, database::unique};

pub struct TestServer {
    pub base: String,
    pub state: AppState,
    pub server_name: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// The configuration it was started with, for `restart`.
    config_text: String,
    // Dropped last: the database outlives the server using it.
    pub db: TestDb,
}

/// A logged-in device.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub access_token: String,
    pub device_id: String,
}

pub struct TestServerBuilder {
    backend: Backend,
    extra: String,
    shared_secret: bool,
    x_forwarded: bool,
    port: u16,
    /// The port of a TLS federation listener; the server is then named
    /// `localhost:PORT` (`federation`).
    federation_port: Option<u16>,
    /// Named `127.0.0.1:PORT` rather than `localhost:PORT` (`named_by_address`).
    named_by_address: bool,
}

impl TestServer {
    pub fn builder(backend: Backend) -> TestServerBuilder {
        TestServerBuilder { backend, extra: String::new(), shared_secret: true, x_forwarded: false, port: 0, federation_port: None, named_by_address: false }
    }

    pub async fn start(backend: Backend) -> Self {
        Self::builder(backend).start().await
    }

    pub async fn request(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        self.send(request).await
    }

    /// Sends a prepared request; panics on a 500, which no input may cause.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let (client, request) = request.build_split();
        let request = request.expect("a well-formed request");
        let what = format!("{} {}", request.method(), request.url().path());
        let response = client.execute(request).await.expect("request reaches the server");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "server error on {what}: {text}");
        let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, value)
    }

    pub fn raw(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::PUT, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::DELETE, path, token, Some(body)).await
    }

    /// The TLS federation listener of a server started with `federation()`.
    pub fn federation_base(&self) -> String {
        let port = self.server_name.rsplit_once(':').map(|(_, port)| port).expect("a federating test server is named localhost:PORT");
        format!("https://127.0.0.1:{port}")
    }

    pub fn uid(&self, localpart: &str) -> ruma::OwnedUserId {
        ruma::UserId::parse(self.user_id(localpart)).expect("valid user id")
    }

    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server_name)
    }

    /// Registers through the dummy flow and returns the new session.
    pub async fn register(&self, localpart: &str, password: &str) -> Session {
        let (status, body) =
            self.post("/_matrix/client/v3/register", None, json!({"username": localpart, "password": password, "auth": {"type": "m.login.dummy"}})).await;
        assert_eq!(status, StatusCode::OK, "register {localpart}: {body}");
        session(&body)
    }

    pub async fn login(&self, localpart: &str, password: &str) -> Session {
        let (status, body) = self.post("/_matrix/client/v3/login", None, login_body(localpart, password)).await;
        assert_eq!(status, StatusCode::OK, "login {localpart}: {body}");
        session(&body)
    }

    /// Stops and starts again on the same database, key and configuration.
    pub async fn restart(mut self) -> TestServer {
        self.shutdown().await;
        let config_text = std::mem::take(&mut self.config_text);
        let server_name = self.server_name.clone();
        // Move the database out; `self` is dropped without it.
        let db = std::mem::replace(&mut self.db, TestDb::placeholder());
        drop(self);
        launch(config_text, server_name, db).await
    }

    /// `restart` with `from` replaced by `to` in the configuration.
    pub async fn restart_with(mut self, from: &str, to: &str) -> TestServer {
        assert!(self.config_text.contains(from), "`{from}` is not in the configuration");
        self.config_text = self.config_text.replace(from, to);
        self.restart().await
    }

    /// Stops serving as SIGTERM would, and waits (at most 10 s) for the server to finish.
    pub async fn stop(&mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn login_body(localpart: &str, password: &str) -> Value {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart}, "password": password})
}

pub fn session(body: &Value) -> Session {
    Session {
        user_id: body["user_id"].as_str().expect("user_id").to_owned(),
        access_token: body["access_token"].as_str().expect("access_token").to_owned(),
        device_id: body["device_id"].as_str().expect("device_id").to_owned(),
    }
}

impl TestServerBuilder {
    /// Extra top-level TOML, later in the file than the defaults (so keys
    /// set here must not repeat those; tables may be added).
    pub fn config(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    pub fn without_shared_secret(mut self) -> Self {
        self.shared_secret = false;
        self
    }

    /// The listener trusts `X-Forwarded-For` (`x_forwarded = true`), as one
    /// behind a reverse proxy does.
    pub fn behind_proxy(mut self) -> Self {
        self.x_forwarded = true;
        self
    }

    /// Listens on `port` rather than a free one the system picks (for a
    /// `public_baseurl` known before the start; `free_port` finds one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// A federating server: named `localhost:PORT`, with a TLS listener
    /// (`federation`, `keys`) on that port whose certificate is the test
    /// CA's, trusting that CA for its own requests and allowed to reach
    /// loopback (the address policy refuses it by default), with no notary.
    pub fn federation(mut self) -> Self {
        self.federation_port = Some(super::free_port());
        self
    }

    /// A federating server named by its address, `127.0.0.1:PORT` (an IP
    /// literal, which server ACLs can tell from `localhost`).
    pub fn named_by_address(mut self) -> Self {
        self.named_by_address = true;
        self.federation()
    }

    pub async fn start(self) -> TestServer {
        crate::plugins::capture::install();
        let db = TestDb::new(self.backend).await;
        let server_name = match self.federation_port {
            Some(port) if self.named_by_address => format!("127.0.0.1:{port}"),
            Some(port) => format!("localhost:{port}"),
            None => format!("{}.test", unique("hs")),
        };
        // Configurations may name users of this server: `{server_name}` stands for its name.
        let extra = self.extra.replace("{server_name}", &server_name);
        let key_path = db.dir().join("signing.key");
        let has = |key: &str| self.extra.lines().any(|line| line.trim_start().starts_with(key));
        let mut text = format!("server_name = \"{server_name}\"\nsigning_key_path = {:?}\nenable_metrics = true\n", key_path.display().to_string());
        if !has("enable_registration") {
            text.push_str("enable_registration = true\nenable_registration_without_verification = true\n");
        }
        if !has("media_store_path") {
            text.push_str(&format!("media_store_path = {:?}\n", db.dir().join("media_store").display().to_string()));
        }
        if self.shared_secret && !has("registration_shared_secret") {
            text.push_str("registration_shared_secret = \"test-shared-secret\"\n");
        }
        let mut federation_listener = String::new();
        if let Some(port) = self.federation_port {
            let ca = super::synapse::test_ca();
            text.push_str(&format!(
                "tls_certificate_path = {:?}\ntls_private_key_path = {:?}\nfederation_custom_ca_list = [{:?}]\n",
                ca.chain.display().to_string(),
                ca.key.display().to_string(),
                ca.ca.display().to_string()
            ));
            if !has("ip_range_whitelist") {
                text.push_str("ip_range_whitelist = [\"127.0.0.0/8\", \"::1\"]\n");
            }
            if !has("trusted_key_servers") {
                text.push_str("trusted_key_servers = []\n");
            }
            federation_listener = format!(
                "[[listeners]]\nport = {port}\nbind_addresses = [\"127.0.0.1\"]\ntype = \"http\"\ntls = true\n[[listeners.resources]]\nnames = [\"federation\", \"keys\"]\n"
            );
        }
        let mut tables = String::new();
        for (name, body) in [
            ("rc_registration", "per_second = 1000\nburst_count = 1000"),
            ("rc_message", "per_second = 1000\nburst_count = 1000"),
            ("rc_login.address", "per_second = 1000\nburst_count = 1000"),
            ("rc_login.account", "per_second = 1000\nburst_count = 1000"),
            ("rc_login.failed_attempts", "per_second = 1000\nburst_count = 1000"),
            ("rc_room_creation", "per_second = 1000\nburst_count = 1000"),
            ("rc_invites.per_room", "per_second = 1000\nburst_count = 1000"),
            ("rc_invites.per_user", "per_second = 1000\nburst_count = 1000"),
            ("rc_invites.per_issuer", "per_second = 1000\nburst_count = 1000"),
            ("rc_joins.local", "per_second = 1000\nburst_count = 1000"),
        ] {
            if !self.extra.contains(&format!("[{name}]")) {
                tables.push_str(&format!("[{name}]\n{body}\n"));
            }
        }
        let text = format!(
            "{text}{extra}\n{tables}\n{db}\n[[listeners]]\nport = {port}\nbind_addresses = [\"127.0.0.1\"]\ntype = \"http\"\nx_forwarded = {x_forwarded}\n\
             [[listeners.resources]]\nnames = [\"client\", \"federation\", \"health\", \"metrics\"]\n{federation_listener}",
            extra = extra,
            x_forwarded = self.x_forwarded,
            port = self.port,
            db = db.config_toml,
        );
        launch(text, server_name, db).await
    }
}

async fn launch(text: String, server_name: String, db: TestDb) -> TestServer {
    {
        let config = config::load_str("test.toml", &text).unwrap_or_else(|e| panic!("test configuration: {e}\n{text}"));
        let state = Services::build(config).await.expect("services start");
        let server = Server::bind(state.clone()).await.expect("bind");
        let Some(BoundAddress::Tcp(address)) = server.addresses().first().cloned() else { panic!("no TCP listener") };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestServer {
            base: format!("http://{address}"),
            state,
            server_name,
            client: reqwest::Client::builder().no_proxy().build().expect("client"),
            stop: Some(stop),
            task: Some(task),
            config_text: text,
            db,
        }
    }
}

/// The errcode of a Matrix error body.
pub fn errcode(body: &Value) -> &str {
    body["errcode"].as_str().unwrap_or("<none>")
}
