//! Slow, silent and unauthenticated clients: every connection has deadlines
//! for its headers and its body, a request without a valid token holds no
//! body, shutdown waits a bounded time, and the process raises its
//! open-file limit so idle connections cannot starve everyone else.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use http::StatusCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    on_both_backends,
    support::{Backend, KillOnDrop, TestServer, WEFT, free_port},
};

on_both_backends!(
    silent_drip_fed_and_idle_connections_are_closed,
    a_body_that_stops_arriving_gets_408,
    requests_without_a_valid_token_send_no_body,
    shutdown_waits_for_a_half_sent_request_only_for_its_grace_period,
);

const TIMEOUTS: &str = "[http_timeouts]\nheader = \"1s\"\nbody = \"1s\"\nshutdown_grace = \"1s\"";

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://")).await.expect("connect")
}

/// Reads until the peer closes; the time it took and what arrived.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Duration, String) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => panic!("the connection was still open after {limit:?}; received {:?}", String::from_utf8_lossy(&received)),
        }
    }
    (started.elapsed(), String::from_utf8_lossy(&received).into_owned())
}

async fn silent_drip_fed_and_idle_connections_are_closed(backend: Backend) {
    let server = TestServer::builder(backend).config(TIMEOUTS).start().await;

    let mut silent = connect(&server).await;
    let (took, _) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(900), "closed after {took:?}, before the header timeout");

    // One byte every 200 ms never finishes the headers within a second.
    let mut drip = connect(&server).await;
    let started = Instant::now();
    let request = b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut closed = false;
    for byte in request.iter().chain(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()) {
        if drip.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    if !closed {
        let (took, _) = read_until_closed(&mut drip, Duration::from_secs(2)).await;
        assert!(started.elapsed() < Duration::from_secs(5), "drip-fed connection open for {took:?}");
    }

    // A keep-alive connection that answered one request and then idles.
    let mut idle = connect(&server).await;
    idle.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (took, response) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(took >= Duration::from_millis(900), "the idle connection was closed after {took:?}");

    // The server still serves everyone else.
    let (status, _) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK);
}

async fn a_body_that_stops_arriving_gets_408(backend: Backend) {
    let server = TestServer::builder(backend).config(TIMEOUTS).start().await;
    let alice = server.register("alice", "pw").await;
    let mut stream = connect(&server).await;
    let head = format!(
        "POST /_matrix/client/v3/createRoom HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        alice.access_token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (took, response) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "answered after {took:?}");

    // A media upload that stalls is refused the same way, and leaves no file.
    let mut stream = connect(&server).await;
    let head = format!(
        "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nhello",
        alice.access_token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (_, response) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
}

async fn requests_without_a_valid_token_send_no_body(backend: Backend) {
    let server = TestServer::start(backend).await;
    // A 12 MB body is announced and never sent: the token is checked first,
    // so the answer comes at once instead of after the body.
    for token in [None, Some("not-a-token")] {
        let mut stream = connect(&server).await;
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let head =
            format!("POST /_matrix/client/v3/createRoom HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 12000000\r\n\r\n{{");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buffer = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await.expect("an answer before the body").unwrap();
        let response = String::from_utf8_lossy(&buffer[..n]);
        assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    }
    // Endpoints open to anyone take small bodies only.
    let big = serde_json::json!({"type": "m.login.password", "password": "x".repeat(100_000), "identifier": {"type": "m.id.user", "user": "a"}});
    let (status, body) = server.post("/_matrix/client/v3/login", None, big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["errcode"], "M_TOO_LARGE");
}

async fn shutdown_waits_for_a_half_sent_request_only_for_its_grace_period(backend: Backend) {
    let server = TestServer::builder(backend).config("[http_timeouts]\nheader = \"60s\"\nbody = \"60s\"\nshutdown_grace = \"1s\"").start().await;
    let alice = server.register("alice", "pw").await;
    let mut stream = connect(&server).await;
    let head =
        format!("POST /_matrix/client/v3/createRoom HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 100\r\n\r\n{{", alice.access_token);
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut server = server;
    server.stop().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?} with a half-sent request open");
    let (_, _) = read_until_closed(&mut stream, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let data_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let script = format!("ulimit -S -n 256 && exec {WEFT} run --data-dir {} --port {port}", data_dir.path().display());
    let child = KillOnDrop(Command::new("sh").args(["-c", &script]).env("RUST_LOG", "warn").stdout(Stdio::null()).spawn().expect("weft starts"));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("http://127.0.0.1:{port}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "weft did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.0.id())).unwrap();
    let line = limits.lines().find(|line| line.starts_with("Max open files")).expect("Max open files");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft limit raised to the hard limit: {line}");
    assert_ne!(numbers[0], "256", "{line}");
}
