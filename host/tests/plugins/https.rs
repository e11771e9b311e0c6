//! Outbound `https` from a plugin (`http-send`), end to end: a `weft` process
//! whose plugin calls a local TLS server (`openssl s_server` with a
//! certificate for `localhost` from a private CA). With the CA trusted
//! through `SSL_CERT_FILE` the call goes through; otherwise the certificate
//! is refused and the plugin's `on_error` applies; with no trusted
//! certificates at all the server still starts. No internet needed.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::guest;
use crate::support::{KillOnDrop, WEFT, free_port};

fn openssl(args: &[&str], dir: &Path) -> Command {
    let mut command = Command::new("openssl");
    command.args(args).current_dir(dir).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    command
}

/// A private CA (`ca.pem`), a certificate it signed for `localhost`, and a
/// TLS server with it on `port`.
fn tls_server(dir: &Path, port: u16) -> KillOnDrop {
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    std::fs::write(dir.join("leaf.ext"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    let steps: [&[&str]; 3] = [
        &[&["req", "-x509"][..], &key, &["-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=Weft test CA"]].concat(),
        &[&["req"][..], &key, &["-keyout", "key.pem", "-out", "leaf.csr", "-subj", "/CN=localhost"]].concat(),
        &["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", "leaf.ext", "-out", "cert.pem"],
    ];
    for step in steps {
        assert!(openssl(step, dir).status().expect("the openssl command is installed").success(), "openssl {step:?}");
    }
    let server = openssl(&["s_server", "-accept", &port.to_string(), "-cert", "cert.pem", "-key", "key.pem", "-www", "-quiet"], dir)
        .spawn()
        .expect("openssl s_server starts");
    let server = KillOnDrop(server);
    wait_for(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    server
}

fn wait_for(mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "not ready in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A monolith whose plugin, on every login, GETs `url` and refuses the login
/// with the status it got (fail-open when it gets none).
fn weft(dir: &Path, name: &str, url: &str, allow: &str, ca: Option<&Path>) -> (KillOnDrop, String, std::path::PathBuf) {
    let port = free_port();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "server_name = \"{name}.test\"\nsigning_key_path = \"{name}.key\"\nenable_registration = true\nenable_registration_without_verification = true\n\
             [database]\nname = \"sqlite3\"\nargs = {{ database = \"{name}.db\" }}\n\
             [[listeners]]\nport = {port}\nbind_addresses = [\"127.0.0.1\"]\nresources = [{{ names = [\"client\", \"health\"] }}]\n\
             [[plugins]]\nname = \"tls\"\npath = {path:?}\non_error = \"fail-open\"\n[plugins.limits]\ntimeout_ms = 5000\n\
             [plugins.config]\nmode = \"http\"\nurl = \"{url}\"\n\
             [plugins.capabilities]\nallowed_outbound_hosts = [\"{allow}\"]\nallow_private_addresses = true\n",
            path = guest("misbehave").display().to_string()
        ),
    )
    .unwrap();
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut command = Command::new(WEFT);
    command.args(["run", "-c"]).arg(&config).current_dir(dir).stdout(file.try_clone().unwrap()).stderr(file);
    command.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
    if let Some(ca) = ca {
        command.env("SSL_CERT_FILE", ca);
    }
    let mut child = KillOnDrop(command.spawn().expect("weft starts"));
    wait_for(|| {
        let exited = child.0.try_wait().unwrap();
        assert!(exited.is_none(), "weft exited ({exited:?}):\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (child, format!("http://127.0.0.1:{port}"), log)
}

async fn register_and_login(http: &reqwest::Client, base: &str) -> (u16, Value) {
    let register = json!({"username": "alice", "password": "correct horse battery", "auth": {"type": "m.login.dummy"}});
    let response = http.post(format!("{base}/_matrix/client/v3/register")).json(&register).send().await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let login = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "correct horse battery"});
    let response = http.post(format!("{base}/_matrix/client/v3/login")).json(&login).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_reaches_an_https_host_whose_certificate_is_trusted_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let tls_port = free_port();
    let _server = tls_server(dir.path(), tls_port);
    let url = format!("https://localhost:{tls_port}/");
    let allow = format!("https://localhost:{tls_port}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let (_trusting, base, log) = weft(dir.path(), "trusting", &url, &allow, Some(&dir.path().join("ca.pem")));
    let (status, reply) = register_and_login(&http, &base).await;
    let log = std::fs::read_to_string(log).unwrap();
    assert_eq!((status, reply["error"].as_str(), reply["status"].as_u64()), (403, Some("reached the host"), Some(200)), "{reply}\n{log}");

    let (_wary, base, log) = weft(dir.path(), "wary", &url, &allow, None);
    let (status, reply) = register_and_login(&http, &base).await;
    assert_eq!(status, 200, "the call failed and fail-open let the login through: {reply}");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("plugin call failed") && log.contains("invalid peer certificate"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_trusted_certificates_starts_and_only_https_fails() {
    let dir = tempfile::tempdir().unwrap();
    let tls_port = free_port();
    let _server = tls_server(dir.path(), tls_port);
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("https://localhost:{tls_port}/");
    let (_bare, base, log) = weft(dir.path(), "bare", &url, &format!("https://localhost:{tls_port}"), Some(&dir.path().join("empty.pem")));
    let (status, reply) = register_and_login(&http, &base).await;
    assert_eq!(status, 200, "fail-open: {reply}");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("no trusted certificates") && log.contains("plugin call failed"), "{log}");
}
