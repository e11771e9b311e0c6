//! The `push` scenario: every user holds an HTTP pusher to a push gateway
//! this process runs, senders send at a fixed rate into rooms of those
//! users, and the gateway counts what arrives. Reports notifications
//! delivered per second and event-to-gateway latency (each message carries
//! its send time in `content.sent_at_us`, so the server must send content:
//! `push.include_content`, the default, in Weft and Synapse).
//!
//! The gateway is a minimal HTTP/1.1 server with keep-alive that answers
//! every `POST` with `{"rejected": []}`. The homeserver must be allowed to
//! reach it (`ip_range_whitelist` for a loopback address, in Weft and
//! Synapse alike).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::Mutex,
};

use super::{Client, User, encode, report};

/// What the gateway saw.
#[derive(Default)]
struct Seen {
    notifications: AtomicU64,
    /// Send-to-gateway latencies of notifications carrying `sent_at_us`.
    latencies: Mutex<Vec<Duration>>,
    first_at: Mutex<Option<Duration>>,
    last_at: Mutex<Option<Duration>>,
}

pub struct PushRun {
    pub users: usize,
    pub rooms: usize,
    pub rate: u64,
    pub seconds: u64,
    pub gateway_bind: String,
    pub gateway_host: String,
}

pub async fn run(client: Arc<Client>, run: &str, options: PushRun) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&options.gateway_bind).await.context("binding the gateway")?;
    let port = listener.local_addr()?.port();
    let gateway_url = format!("http://{}:{port}/_matrix/push/v1/notify", options.gateway_host);
    let epoch = Instant::now();
    let seen = Arc::new(Seen::default());
    let accepting = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket, accepting.clone(), epoch));
        }
    });

    let mut members = Vec::new();
    for n in 0..options.users.max(2) {
        let user = client.register(&format!("{run}p"), n).await?;
        let pusher = json!({"kind": "http", "app_id": "org.example.loadgen", "pushkey": format!("{run}-{n}"),
            "app_display_name": "loadgen", "device_display_name": "loadgen", "lang": "en", "data": {"url": gateway_url}});
        client.call(reqwest::Method::POST, "/pushers/set", Some(&user.token), Some(pusher)).await.context("setting a pusher (is the gateway allowed?)")?;
        members.push(user);
    }
    let mut room_ids = Vec::new();
    for n in 0..options.rooms.max(1) {
        let room = client.create_public_room(&members[n % members.len()]).await?;
        for user in &members {
            client.join(user, &room).await?;
        }
        room_ids.push(room);
    }
    // Joins and room creation notify nobody (member events do not notify);
    // wait for anything left over to drain before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = seen.notifications.load(Ordering::Relaxed);
    seen.latencies.lock().await.clear();
    *seen.first_at.lock().await = None;
    println!(
        "push: {} users with pushers, {} rooms, {} messages/s for {}s, gateway {gateway_url}",
        members.len(),
        room_ids.len(),
        options.rate,
        options.seconds
    );

    let total = options.rate * options.seconds;
    let interval = Duration::from_secs_f64(1.0 / options.rate.max(1) as f64);
    let failures = Arc::new(AtomicU64::new(0));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for n in 0..total as usize {
        ticker.tick().await;
        let (client, failures) = (client.clone(), failures.clone());
        let user: User = members[n % members.len()].clone();
        let room = room_ids[n % room_ids.len()].clone();
        sends.spawn(async move {
            let path = format!("/rooms/{}/send/m.room.message/push{n}", encode(&room));
            let body = json!({"msgtype": "m.text", "body": "push", "sent_at_us": epoch.elapsed().as_micros() as u64});
            if let Err(error) = client.call(reqwest::Method::PUT, &path, Some(&user.token), Some(body)).await
                && failures.fetch_add(1, Ordering::Relaxed) == 0
            {
                eprintln!("first failure: {error}");
            }
        });
    }
    while sends.join_next().await.is_some() {}
    let sending = started.elapsed();
    let sent = total - failures.load(Ordering::Relaxed);
    // Every user is in every room: a message notifies everyone but its sender.
    let expected = sent * (members.len() as u64 - 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.notifications.load(Ordering::Relaxed) - before < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = seen.notifications.load(Ordering::Relaxed) - before;
    let first = seen.first_at.lock().await.unwrap_or_default();
    let last = seen.last_at.lock().await.unwrap_or_default();
    let window = last.saturating_sub(first).max(Duration::from_millis(1));
    println!(
        "sent {sent} messages in {:.1}s ({:.0}/s, {} failed); gateway got {delivered} of {expected} notifications",
        sending.as_secs_f64(),
        sent as f64 / sending.as_secs_f64(),
        failures.load(Ordering::Relaxed)
    );
    println!("delivery: {:.0} notifications/s (first to last notification, {:.1}s)", delivered as f64 / window.as_secs_f64(), window.as_secs_f64());
    report("event-to-gateway latency", std::mem::take(&mut *seen.latencies.lock().await));
    Ok(())
}

/// Serves one keep-alive connection: each `POST` is a notification.
async fn serve(socket: TcpStream, seen: Arc<Seen>, epoch: Instant) {
    let _ = socket.set_nodelay(true);
    let (read, mut write) = socket.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                if first {
                    continue;
                }
                break;
            }
            first = false;
            if let Some((name, value)) = trimmed.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let now = epoch.elapsed();
        if let Ok(request) = serde_json::from_slice::<Value>(&body) {
            let notification = &request["notification"];
            if notification["event_id"].is_string() {
                seen.notifications.fetch_add(1, Ordering::Relaxed);
                seen.first_at.lock().await.get_or_insert(now);
                *seen.last_at.lock().await = Some(now);
                if let Some(sent_at) = notification["content"]["sent_at_us"].as_u64() {
                    seen.latencies.lock().await.push(now.saturating_sub(Duration::from_micros(sent_at)));
                }
            }
        }
        let answer = br#"{"rejected":[]}"#;
        // One write: a head and a body written apart wait for the client's
        // delayed ACK (Nagle), 40 ms an answer.
        let mut reply = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", answer.len()).into_bytes();
        reply.extend_from_slice(answer);
        if write.write_all(&reply).await.is_err() {
            return;
        }
    }
}
