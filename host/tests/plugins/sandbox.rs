//! What a plugin can reach: the testkit's fakes (key-value across calls,
//! fixed clock, seeded randomness, recording HTTP), a granted data directory
//! and nothing above it, and real outbound HTTP through the allow-list and the
//! address check after DNS.

use std::sync::Arc;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft::{
    config::{self, PluginCapabilities},
    plugins::{
        LiveServices,
        spam::{SpamAnswer, SpamVerdict},
        testkit::Testkit,
    },
};

use super::{capture, guest, message};

fn rejection(answer: SpamAnswer) -> weft::plugins::spam::Rejection {
    match answer {
        SpamAnswer::Verdict(SpamVerdict::Reject(rejection)) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_state_survives_calls_but_instances_do_not() {
    let plugin = Testkit::new(guest("misbehave")).name("sb-count").config(json!({"mode": "count"})).load().await.unwrap();
    assert_eq!(plugin.call(message("1")).await.unwrap(), SpamAnswer::Verdict(SpamVerdict::Allow));
    assert_eq!(plugin.call(message("2")).await.unwrap(), SpamAnswer::Verdict(SpamVerdict::Allow));
    let third = rejection(plugin.call(message("3")).await.unwrap());
    assert_eq!(third.fields["count"], json!(3));
    assert_eq!(plugin.kv_get("count"), Some(3u64.to_le_bytes().to_vec()));
    let logs = plugin.logs();
    assert_eq!(logs.len(), 3);
    assert_eq!(logs[2].fields, vec![("count".to_owned(), "3".to_owned())]);
    assert_eq!(logs[2].call, "check-event-for-spam");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_and_randomness_are_fixed_in_the_testkit() {
    let load = |seed| Testkit::new(guest("misbehave")).name("sb-now").config(json!({"mode": "now"})).clock_ms(42_000).seed(seed).load();
    let a = load(7).await.unwrap();
    let b = load(7).await.unwrap();
    let c = load(8).await.unwrap();
    let first = rejection(a.call(message("x")).await.unwrap());
    assert_eq!(first.fields["now_ms"], json!(42_000));
    assert_eq!(first.fields["random"], rejection(b.call(message("x")).await.unwrap()).fields["random"]);
    assert_ne!(first.fields["random"], rejection(c.call(message("x")).await.unwrap()).fields["random"]);
    let stats = a.last_stats().expect("stats");
    assert!(stats.peak_memory_bytes > 0 && stats.peak_memory_bytes <= 64 << 20, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_are_reached_and_recorded() {
    let plugin = Testkit::new(guest("misbehave"))
        .name("sb-http")
        .config(json!({"mode": "http", "url": "https://rules.example.org/v1/check"}))
        .allow_host("https://rules.example.org")
        .respond("https://rules.example.org/", 200, "{}")
        .load()
        .await
        .unwrap();
    let answer = rejection(plugin.call(message("x")).await.unwrap());
    assert_eq!(answer.fields["status"], json!(200));
    let calls = plugin.http_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].request.url, "https://rules.example.org/v1/check");
    assert_eq!(calls[0].outcome, Ok(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_is_granted_and_nothing_above_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("words.txt"), "spam eggs").unwrap();
    let granted = PluginCapabilities { data_dir: Some(dir.path().to_owned()), ..PluginCapabilities::default() };
    let load = |name: &'static str, path: &str| {
        Testkit::new(guest("misbehave")).name(name).config(json!({"mode": "file", "path": path})).capabilities(granted.clone()).load()
    };
    let reads = load("sb-data", "/data/words.txt").await.unwrap();
    assert_eq!(rejection(reads.call(message("x")).await.unwrap()).fields["bytes"], json!(9));
    capture::install();
    let escapes = load("sb-escape", "/data/../../../../etc/passwd").await.unwrap();
    assert_eq!(escapes.call(message("x")).await.unwrap_err().reason(), "trap");
    let elsewhere = load("sb-elsewhere", "/etc/passwd").await.unwrap();
    assert_eq!(elsewhere.call(message("x")).await.unwrap_err().reason(), "trap");
}

/// A one-shot HTTP server on 127.0.0.1 that answers 200 and counts requests.
async fn local_http() -> (String, tokio::task::JoinHandle<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut served = 0;
        while let Ok(Ok((mut socket, _))) = tokio::time::timeout(std::time::Duration::from_millis(1500), listener.accept()).await {
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
            served += 1;
        }
        served
    });
    (format!("localhost:{port}"), task)
}

async fn live_plugin(name: &str, url: &str, allow: &str, allow_private: bool) -> Arc<weft::plugins::LoadedPlugin> {
    let text = format!(
        "server_name = \"example.org\"\n[[plugins]]\nname = \"{name}\"\npath = {path:?}\n\
         [plugins.config]\nmode = \"http\"\nurl = \"{url}\"\n\
         [plugins.capabilities]\nallowed_outbound_hosts = [\"{allow}\"]\nallow_private_addresses = {allow_private}\n",
        path = guest("misbehave").display().to_string()
    );
    let config = config::load_str("live.toml", &text).expect("valid");
    weft::plugins::load(&config, Arc::new(LiveServices::default())).await.expect("loads").remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_http_checks_addresses_after_dns() {
    capture::install();
    let (host, server) = local_http().await;
    let url = format!("http://{host}/check");
    // Allowed by name, but `localhost` resolves to loopback: refused.
    let refused = live_plugin("sb-live-refused", &url, &format!("http://{host}"), false).await;
    assert_eq!(refused.call(&message("x")).await.unwrap_err().reason(), "trap");
    assert!(capture::lines("sb-live-refused").iter().any(|l| l.text.contains("loopback")), "{:?}", capture::lines("sb-live-refused"));
    // With private addresses allowed, the request goes through.
    let allowed = live_plugin("sb-live-allowed", &url, &format!("http://{host}"), true).await;
    let (answer, _) = allowed.call(&message("x")).await.expect("answers");
    assert_eq!(rejection(answer).fields["status"], json!(200));
    assert_eq!(server.await.unwrap(), 1, "exactly the allowed request reached the server");
}
