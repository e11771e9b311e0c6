//! Synapse 1.163 as a real federation peer, and the test CA both sides trust.
//!
//! The CA and a leaf certificate for `localhost` and 127.0.0.1 are made once
//! per test process with the `openssl` command; the certificate file holds
//! the leaf then the CA. Synapse runs from the virtual environment
//! `WEFT_SYNAPSE_VENV` names (tests/run.sh installs `matrix-synapse==1.163.0`
//! into `$CARGO_TARGET_DIR/synapse-venv`), on SQLite, named `localhost:PORT`
//! with TLS on that port, loopback allowed, no notary, rate limits lifted
//! and open registration. A missing environment fails the test: a skipped
//! federation test would prove nothing.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{KillOnDrop, Session, free_port};

pub struct TestCa {
    _dir: tempfile::TempDir,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The leaf certificate then the CA's (PEM).
    pub chain: PathBuf,
    /// The leaf's private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// The test CA of this process, made on first use.
pub fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = |name: &str| dir.path().join(name);
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl").args(args).current_dir(dir.path()).output().expect("the openssl command is installed");
            assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(
            &[
                &["req", "-x509"],
                &ec[..],
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "3",
                    "-subj",
                    "/CN=Weft test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        openssl(&[&["req"], &ec[..], &["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost"]].concat());
        std::fs::write(
            path("leaf.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.crt",
            "-days",
            "3",
            "-extfile",
            "leaf.ext",
        ]);
        let chain = [std::fs::read_to_string(path("leaf.crt")).unwrap(), std::fs::read_to_string(path("ca.crt")).unwrap()].concat();
        std::fs::write(path("chain.pem"), chain).unwrap();
        TestCa { ca: path("ca.crt"), chain: path("chain.pem"), key: path("leaf.key"), _dir: dir }
    })
}

/// An HTTPS client that trusts the test CA.
pub fn https_client() -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&test_ca().ca).unwrap()).unwrap();
    reqwest::Client::builder().no_proxy().tls_certs_only([ca]).build().expect("client")
}

/// The virtual environment with Synapse; panics when there is none.
fn venv() -> PathBuf {
    let venv = std::env::var_os("WEFT_SYNAPSE_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|dir| PathBuf::from(dir).join("synapse-venv")))
        .unwrap_or_else(|| PathBuf::from("target/synapse-venv"));
    assert!(
        venv.join("bin/python").exists(),
        "no Synapse virtual environment at {} (bash tests/run.sh installs matrix-synapse==1.163.0 there; or set WEFT_SYNAPSE_VENV)",
        venv.display()
    );
    venv
}

/// Synapse's default `ip_range_blacklist` without loopback.
const BLACKLIST_WITHOUT_LOOPBACK: &str = "['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '192.0.0.0/24', '169.254.0.0/16', \
     '192.88.99.0/24', '198.18.0.0/15', '192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24', '224.0.0.0/4', 'fe80::/10', 'fc00::/7', \
     '2001:db8::/32', 'ff00::/8', 'fec0::/10']";

pub struct Synapse {
    pub server_name: String,
    /// `https://127.0.0.1:PORT`: client and federation API.
    pub base: String,
    client: reqwest::Client,
    dir: tempfile::TempDir,
    process: Option<KillOnDrop>,
}

impl Synapse {
    pub async fn start() -> Synapse {
        let venv = venv();
        let ca = test_ca();
        let port = free_port();
        let dir = tempfile::tempdir().expect("temporary directory");
        let d = dir.path();
        let limit = "{per_second: 1000, burst_count: 1000}";
        let config = format!(
            "server_name: 'localhost:{port}'\n\
             pid_file: '{d}/homeserver.pid'\n\
             listeners:\n  - port: {port}\n    bind_addresses: ['127.0.0.1']\n    type: http\n    tls: true\n    x_forwarded: false\n    resources:\n      - names: [client, federation]\n        compress: false\n\
             tls_certificate_path: '{chain}'\n\
             tls_private_key_path: '{key}'\n\
             federation_custom_ca_list: ['{ca}']\n\
             database:\n  name: sqlite3\n  args:\n    database: '{d}/homeserver.db'\n\
             log_config: '{d}/log.yaml'\n\
             media_store_path: '{d}/media'\n\
             signing_key_path: '{d}/signing.key'\n\
             report_stats: false\n\
             macaroon_secret_key: 'test-macaroon'\n\
             form_secret: 'test-form'\n\
             registration_shared_secret: 'test-shared-secret'\n\
             enable_registration: true\n\
             enable_registration_without_verification: true\n\
             ip_range_blacklist: {BLACKLIST_WITHOUT_LOOPBACK}\n\
             ip_range_whitelist: ['127.0.0.0/8']\n\
             trusted_key_servers: []\n\
             suppress_key_server_warning: true\n\
             room_list_publication_rules: [{{action: allow}}]\n\
             allow_public_rooms_over_federation: true\n\
             rc_message: {limit}\n\
             rc_registration: {limit}\n\
             rc_login: {{address: {limit}, account: {limit}, failed_attempts: {limit}}}\n\
             rc_joins: {{local: {limit}, remote: {limit}}}\n\
             rc_invites: {{per_room: {limit}, per_user: {limit}, per_issuer: {limit}}}\n\
             rc_room_creation: {limit}\n\
             rc_key_requests: {limit}\n\
             rc_federation: {{window_size: 1000, sleep_limit: 1000, sleep_delay: 1, reject_limit: 10000, concurrent: 100}}\n",
            d = d.display(),
            chain = ca.chain.display(),
            key = ca.key.display(),
            ca = ca.ca.display(),
        );
        std::fs::write(d.join("homeserver.yaml"), config).unwrap();
        // A signing key in Synapse's format (`--generate-keys` would cost a second start).
        let der = ruma::signatures::Ed25519KeyPair::generate();
        let seed = base64::Engine::encode(&base64::engine::general_purpose::STANDARD_NO_PAD, &der[16..48]);
        std::fs::write(d.join("signing.key"), format!("ed25519 a_syn {seed}\n")).unwrap();
        std::fs::write(
            d.join("log.yaml"),
            format!(
                "version: 1\nformatters:\n  plain:\n    format: '%(asctime)s %(levelname)s %(name)s %(message)s'\n\
                 handlers:\n  file:\n    class: logging.FileHandler\n    filename: '{}/homeserver.log'\n    formatter: plain\n\
                 root:\n  level: INFO\n  handlers: [file]\ndisable_existing_loggers: false\n",
                d.display()
            ),
        )
        .unwrap();
        let client = https_client();
        let base = format!("https://127.0.0.1:{port}");
        let process = spawn(&venv, d, &client, &base).await;
        Synapse { server_name: format!("localhost:{port}"), base, client, dir, process: Some(process) }
    }

    /// Stops Synapse (its data stays): an outage, until `resume`.
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Starts the stopped Synapse again on the same data and port.
    pub async fn resume(&mut self) {
        let process = spawn(&venv(), self.dir.path(), &self.client, &self.base).await;
        self.process = Some(process);
    }

    /// The end of Synapse's logs, for failure messages.
    pub fn logs(&self) -> String {
        logs(self.dir.path())
    }

    pub async fn request(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("Synapse answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A request to build by hand (a file upload, a download read as bytes).
    pub fn raw(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, token, Some(body)).await
    }

    /// Registers through user-interactive auth's dummy stage.
    pub async fn register(&self, localpart: &str) -> Session {
        let body = json!({"username": localpart, "password": "synapse-password", "inhibit_login": false});
        let (status, challenge) = self.post("/_matrix/client/v3/register", None, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "register {localpart} on Synapse: {challenge}");
        let mut body = body;
        body["auth"] = json!({"type": "m.login.dummy", "session": challenge["session"]});
        let (status, answer) = self.post("/_matrix/client/v3/register", None, body).await;
        assert_eq!(status, StatusCode::OK, "register {localpart} on Synapse: {answer}");
        super::server::session(&answer)
    }
}

/// Starts Synapse on the configuration in `d` and waits until it answers.
async fn spawn(venv: &Path, d: &Path, client: &reqwest::Client, base: &str) -> KillOnDrop {
    let child = Command::new(venv.join("bin/python"))
        .args(["-m", "synapse.app.homeserver", "-c"])
        .arg(d.join("homeserver.yaml"))
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(d.join("stderr.log")).unwrap())
        .spawn()
        .expect("start Synapse");
    let mut process = KillOnDrop(child);
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(format!("{base}/health")).send().await
            && response.status() == StatusCode::OK
        {
            break;
        }
        if let Ok(Some(status)) = process.0.try_wait() {
            panic!("Synapse exited ({status}) before answering:\n{}", logs(d));
        }
        assert!(started.elapsed() < Duration::from_secs(60), "Synapse did not answer within 60 s:\n{}", logs(d));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    process
}

fn logs(dir: &Path) -> String {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let tail = |text: String| text.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    format!("stderr:\n{}\nlog:\n{}", tail(read("stderr.log")), tail(read("homeserver.log")))
}
