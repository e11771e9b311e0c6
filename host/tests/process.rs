//! The `weft` binary as users run it: the zero-setup start and restart,
//! SIGTERM, `weft check-config` and `weft register-user`.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::{WEFT, free_port};

/// A `weft run` child process, killed if the test fails.
struct Running {
    child: Child,
    base: String,
}

impl Running {
    async fn start_zero_setup(data_dir: &Path, port: u16) -> Self {
        let child = Command::new(WEFT)
            .args(["run", "--data-dir"])
            .arg(data_dir)
            .args(["--port", &port.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weft starts");
        let running = Self { child, base: format!("http://127.0.0.1:{port}") };
        running.wait_ready().await;
        running
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(response) = client.get(format!("{}/health", self.base)).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("weft did not become ready at {}", self.base);
    }

    /// SIGTERM, then the exit status and everything printed on stdout.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "weft did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stdout = String::new();
        use std::io::Read;
        self.child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        (status, stdout)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(base: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client.post(format!("{base}{path}")).json(&body).send().await.unwrap();
    (response.status(), response.json().await.unwrap_or(Value::Null))
}

fn login(user: &str, password: &str) -> Value {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password})
}

#[tokio::test]
async fn zero_setup_start_registers_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();

    let first = Running::start_zero_setup(&data, port).await;
    let (status, body) = post(&first.base, "/_matrix/client/v3/register", json!({"username": "newcomer", "password": "pw"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "open registration offers the dummy stage: {body}");
    assert_eq!(body["flows"], json!([{"stages": ["m.login.dummy"]}]));
    let (status, body) = post(
        &first.base,
        "/_matrix/client/v3/register",
        json!({"username": "newcomer", "password": "pw", "auth": {"type": "m.login.dummy", "session": body["session"]}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@newcomer:localhost");
    let (status, _) = post(&first.base, "/_matrix/client/v3/login", login("newcomer", "pw")).await;
    assert_eq!(status, StatusCode::OK);
    let key_before = reqwest::get(format!("{}/_matrix/key/v2/server", first.base)).await.unwrap().json::<Value>().await.unwrap();
    let (status, stdout) = first.terminate();
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");
    assert!(stdout.contains(&format!("Weft is listening on http://localhost:{port}/")), "{stdout}");
    assert!(stdout.contains("Registration is open"), "{stdout}");

    for file in ["weft.toml", "localhost.signing.key", "weft.db"] {
        assert!(data.join(file).exists(), "{file} written on first start");
    }
    let config_before = std::fs::read_to_string(data.join("weft.toml")).unwrap();

    let second = Running::start_zero_setup(&data, port).await;
    let (status, body) = post(&second.base, "/_matrix/client/v3/login", login("newcomer", "pw")).await;
    assert_eq!(status, StatusCode::OK, "the user is still there: {body}");
    let key_after = reqwest::get(format!("{}/_matrix/key/v2/server", second.base)).await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(key_before["verify_keys"], key_after["verify_keys"], "the signing key is reused");
    assert_eq!(std::fs::read_to_string(data.join("weft.toml")).unwrap(), config_before, "the configuration is reused as it is");

    // The generated configuration carries a shared secret for `weft register-user`.
    let output =
        Command::new(WEFT).args(["register-user", "-c"]).arg(data.join("weft.toml")).args(["-u", "admin", "-p", "s3cret", "--admin"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Registered @admin:localhost"));
    let (status, _) = post(&second.base, "/_matrix/client/v3/login", login("admin", "s3cret")).await;
    assert_eq!(status, StatusCode::OK);
    let output = Command::new(WEFT).args(["register-user", "-k", "wrong-secret", "-u", "eve", "-p", "pw", &second.base]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("HMAC incorrect"), "{}", String::from_utf8_lossy(&output.stderr));
    let (status, _) = second.terminate();
    assert!(status.success());
}

#[tokio::test]
async fn zero_setup_runs_the_built_in_reference_plugins() {
    use weft::config::zero_setup::{APPSERVICE_HTTP, HTTP_PUSHER, REFERENCE_PLUGINS, SPAM_RULES};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let (status, _) = Running::start_zero_setup(&data, port).await.terminate();
    assert!(status.success());
    for plugin in REFERENCE_PLUGINS {
        assert!(!plugin.wasm.is_empty(), "weft is built with its reference plugin {} (the wasm32-wasip2 target is installed)", plugin.path);
        let written = std::fs::read(data.join(plugin.path)).expect("the plugin is written into the data directory");
        assert_eq!(written, plugin.wasm, "{}", plugin.path);
    }
    let config = std::fs::read_to_string(data.join("weft.toml")).unwrap();
    assert!(config.contains("name = \"spam-rules\"") && config.contains(&format!("path = \"{}\"", SPAM_RULES.path)), "{config}");
    assert!(config.contains("name = \"http-pusher\"\nrole = \"pusher\"") && config.contains(&format!("path = \"{}\"", HTTP_PUSHER.path)), "{config}");
    let notifier = format!("name = \"appservice-http\"\nrole = \"appservice-notifier\"\npath = \"{}\"", APPSERVICE_HTTP.path);
    assert!(config.contains(&notifier), "{config}");

    // Give it a rule, as an operator would, and start again: the plugin runs.
    let with_rule = config.replace("# body_patterns = ", "body_patterns = ");
    assert_ne!(with_rule, config, "the configuration shows where rules go");
    std::fs::write(data.join("weft.toml"), with_rule).unwrap();
    let server = Running::start_zero_setup(&data, port).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let (_, flows) = post(&server.base, "/_matrix/client/v3/register", json!({"username": "ann", "password": "pw"})).await;
    let (status, registered) = post(
        &server.base,
        "/_matrix/client/v3/register",
        json!({"username": "ann", "password": "pw", "auth": {"type": "m.login.dummy", "session": flows["session"]}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{registered}");
    let token = registered["access_token"].as_str().unwrap().to_owned();
    let room: Value =
        http.post(format!("{}/_matrix/client/v3/createRoom", server.base)).bearer_auth(&token).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let room_id = room["room_id"].as_str().expect("a room").to_owned();
    let send = |txn: &str, body: &str| {
        http.put(format!("{}/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}", server.base))
            .bearer_auth(&token)
            .json(&json!({"msgtype": "m.text", "body": body}))
            .send()
    };
    let refused = send("t1", "BUY NOW, cheap").await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!((refused["errcode"].as_str(), refused["pattern"].as_str()), (Some("M_FORBIDDEN"), Some("(?i)buy now")), "{refused}");
    assert_eq!(send("t2", "hello").await.unwrap().status(), StatusCode::OK);

    // http-pusher runs too: it accepts a push gateway URL and refuses a loopback one.
    let set_pusher = |url: &str| {
        let pusher = json!({
            "kind": "http", "app_id": "org.example.app", "pushkey": url, "app_display_name": "App",
            "device_display_name": "Phone", "lang": "en", "data": {"url": url},
        });
        http.post(format!("{}/_matrix/client/v3/pushers/set", server.base)).bearer_auth(&token).json(&pusher).send()
    };
    let accepted = set_pusher("https://push.example.org/_matrix/push/v1/notify").await.unwrap();
    assert_eq!(accepted.status(), StatusCode::OK, "{}", accepted.text().await.unwrap());
    let refused = set_pusher("http://127.0.0.1:9/_matrix/push/v1/notify").await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let refused: Value = refused.json().await.unwrap();
    assert!(refused["error"].as_str().unwrap().contains("ip_range_blacklist"), "{refused}");
    let listed: Value = http.get(format!("{}/_matrix/client/v3/pushers", server.base)).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["pushers"].as_array().map(Vec::len), Some(1), "{listed}");
    let (status, _) = server.terminate();
    assert!(status.success());
}

#[test]
fn check_config_prints_every_error_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared.toml");
    let worker = dir.path().join("worker.toml");
    std::fs::write(&shared, "server_name = \"example.org\"\nenable_registration = true\nsurprise = 1\n").unwrap();
    std::fs::write(&worker, "[[listeners]]\nport = \"x\"\n").unwrap();
    let output = Command::new(WEFT).args(["check-config", "-c"]).arg(&shared).arg("-c").arg(&worker).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{}: `surprise`: unknown key", shared.display())), "{stderr}");
    assert!(stderr.contains(&format!("{}: `listeners[0].port`: invalid type", worker.display())), "{stderr}");
    assert!(stderr.contains("2 configuration errors"), "{stderr}");

    std::fs::write(&worker, "[[listeners]]\nport = 8008\n[[listeners.resources]]\nnames = [\"client\"]\n").unwrap();
    let output = Command::new(WEFT).args(["check-config", "-c"]).arg(&shared).arg("-c").arg(&worker).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`enable_registration`: open registration"), "{stderr}");
}

#[test]
fn check_config_describes_a_valid_configuration() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/monolith.toml");
    let output = Command::new(WEFT).args(["check-config", "-c", example]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(stdout.contains("instance `main` (the main process)"), "{stdout}");
}

#[test]
fn check_config_warns_of_a_replication_listener_on_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("homeserver.toml");
    let config = |replication_bind: &str| {
        format!(
            "server_name = \"example.org\"\n[database]\nname = \"sqlite3\"\nargs = {{ database = \"weft.db\" }}\n\
             [[listeners]]\nport = 8008\nbind_addresses = [\"127.0.0.1\"]\n[[listeners.resources]]\nnames = [\"client\"]\n\
             [[listeners]]\nport = 9093\n{replication_bind}\n[[listeners.resources]]\nnames = [\"replication\"]\n"
        )
    };
    let check = |text: String| {
        std::fs::write(&file, text).unwrap();
        let output = Command::new(WEFT).args(["check-config", "-c"]).arg(&file).output().unwrap();
        assert!(output.status.success(), "a warning, not an error: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = check(config(""));
    assert!(
        stderr.contains("warning: `listeners[1].bind_addresses`: the `replication` listener binds to ::, 0.0.0.0"),
        "the default binds everywhere: {stderr}"
    );
    let stderr = check(config("bind_addresses = [\"127.0.0.1\", \"203.0.113.4\"]"));
    assert!(stderr.contains("warning: `listeners[1].bind_addresses`: the `replication` listener binds to 203.0.113.4 "), "{stderr}");
    let stderr = check(config("bind_addresses = [\"127.0.0.1\", \"::1\"]"));
    assert!(!stderr.contains("warning"), "loopback only: {stderr}");
}

#[test]
fn help_explains_each_command() {
    let output = Command::new(WEFT).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["run", "check-config", "register-user"] {
        assert!(help.contains(command), "{help}");
    }
    let version = Command::new(WEFT).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("weft "));
}

#[test]
fn check_config_says_who_sends_pushes_and_warns_when_nobody_does() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("homeserver.toml");
    let check = |extra: &str| {
        let text = format!(
            "server_name = \"example.org\"\n{extra}\n[database]\nname = \"sqlite3\"\nargs = {{ database = \"weft.db\" }}\n\
             [[listeners]]\nport = 8008\nbind_addresses = [\"127.0.0.1\"]\n[[listeners.resources]]\nnames = [\"client\"]\n"
        );
        std::fs::write(&file, text).unwrap();
        let output = Command::new(WEFT).args(["check-config", "-c"]).arg(&file).output().unwrap();
        assert!(output.status.success(), "a warning, not an error: {}", String::from_utf8_lossy(&output.stderr));
        (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (stdout, stderr) = check("");
    assert!(stdout.contains("sends push notifications: yes, for every user"), "unset is main: {stdout}");
    assert!(!stderr.contains("pusher_instances"), "{stderr}");
    let (stdout, stderr) = check("pusher_instances = []");
    assert!(stdout.contains("sends push notifications: no (pusher_instances is empty"), "{stdout}");
    assert!(stderr.contains("warning: `pusher_instances`: the list is empty, so no instance sends push notifications"), "{stderr}");
}
