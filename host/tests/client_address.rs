//! The client's address, which per-address rate limits and devices'
//! `last_seen_ip` are keyed by: a client cannot choose it with
//! `X-Forwarded-For`, neither through `weft router` (which replaces the
//! header with the peer it saw) nor through a proxy that appends to the
//! client's header (Weft takes the rightmost entry).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::{Backend, KillOnDrop, TestServer, WEFT, errcode, free_port, login_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_choose_its_address_through_the_router() {
    let server = TestServer::builder(Backend::Postgres)
        .behind_proxy()
        .config("[rc_registration]\nper_second = 0.001\nburst_count = 3\n[rc_login.address]\nper_second = 0.001\nburst_count = 3")
        .start()
        .await;
    let server_port: u16 = server.base.rsplit(':').next().and_then(|port| port.parse().ok()).expect("a port");
    let router_port = free_port();
    let shared = server.db.dir().join("shared.toml");
    std::fs::write(
        &shared,
        format!(
            "server_name = \"{}\"\nworker_replication_secret = \"secret\"\n[redis]\nenabled = true\n{}\n[router]\nport = {router_port}\n\
             [instance_map.main]\nhost = \"127.0.0.1\"\nport = 9093\nclient_port = {server_port}\n",
            server.server_name, server.db.config_toml
        ),
    )
    .unwrap();
    let child = Command::new(WEFT).args(["router", "-c"]).arg(&shared).env("RUST_LOG", "warn").stdout(Stdio::null()).spawn().expect("weft router starts");
    let _router = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{router_port}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http.get(format!("{base}/health")).send().await.is_ok_and(|response| response.status() == StatusCode::OK) {
        assert!(Instant::now() < deadline, "the router did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every request claims another address; the router must not pass that on.
    let spoofed = |n: usize| format!("8.8.8.{n}");
    let post = |path: &str, n: usize, body: Value| server.send(http.post(format!("{base}{path}")).header("x-forwarded-for", spoofed(n)).json(&body));

    let mut tokens = Vec::new();
    for n in 0..3 {
        let (status, body) =
            post("/_matrix/client/v3/register", n, json!({"username": format!("user{n}"), "password": "pw", "auth": {"type": "m.login.dummy"}})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }
    let (status, body) = post("/_matrix/client/v3/register", 3, json!({"username": "user3", "password": "pw", "auth": {"type": "m.login.dummy"}})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED"), "registrations are limited per real address: {body}");

    for n in 10..13 {
        let (status, body) = post("/_matrix/client/v3/login", n, login_body("user0", "wrong")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, body) = post("/_matrix/client/v3/login", 13, login_body("user0", "pw")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED"), "logins are limited per real address: {body}");

    // Registration recorded the device's address; an authenticated request
    // would record a new one (in the background).
    let (status, body) = server.send(http.get(format!("{base}/_matrix/client/v3/devices")).header("x-forwarded-for", "8.8.8.8").bearer_auth(&tokens[0])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 0..3 {
        let devices = server.state.storage.devices(&server.uid(&format!("user{n}"))).await.unwrap();
        let seen: Vec<Option<&str>> = devices.iter().map(|device| device.last_seen_ip.as_deref()).collect();
        assert_eq!(seen, vec![Some("127.0.0.1")], "devices record the router's peer, not the client's claim");
    }

    // A proxy that appends to the client's header: only its own entry, the
    // rightmost, is believed.
    let request = server.raw(http::Method::POST, "/_matrix/client/v3/login").header("x-forwarded-for", "8.8.8.8, 203.0.113.7");
    let (status, body) = server.send(request.json(&login_body("user1", "pw"))).await;
    assert_eq!(status, StatusCode::OK, "another address has its own budget: {body}");
    let devices = server.state.storage.devices(&server.uid("user1")).await.unwrap();
    let device = devices.iter().find(|device| device.device_id.as_str() == body["device_id"]).expect("the new device");
    assert_eq!(device.last_seen_ip.as_deref(), Some("203.0.113.7"));
}
