//! `weft-loadgen`: a load generator for any Matrix homeserver (Weft, Synapse,
//! ...), speaking only the client-server API.
//!
//! Scenarios:
//! - `send`: U users in R rooms, C concurrent senders, for a duration;
//!   reports messages per second and send latency percentiles.
//! - `fanout`: L listeners long-polling `/sync` in one room and one sender;
//!   reports send-to-delivery latency percentiles (one clock: both ends run
//!   here), and per message the send's own latency and the first and last
//!   listener's delivery.
//! - `push`: every user holds an HTTP pusher to a push gateway this process
//!   runs; messages at a fixed rate; reports notifications per second and
//!   event-to-gateway latency (`push`).
//!
//! `--metrics URL` (repeatable) points at Weft processes' `/metrics`: the
//! replication lag they observed during the measured phase is reported too.
//!
//! Users register through open registration (`m.login.dummy`), so the
//! server must allow it and its message and registration rate limits must
//! be lifted. See docs/benchmarks.md.

mod lag;
mod push;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Parser)]
#[command(name = "weft-loadgen", about = "Load generator for Matrix homeservers: send throughput and sync fan-out latency")]
struct Args {
    /// The homeserver's client API base URL.
    #[arg(long, default_value = "http://127.0.0.1:8008")]
    url: String,
    /// A Weft process's metrics URL (repeatable): report the replication lag it observed.
    #[arg(long = "metrics")]
    metrics: Vec<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// U users in R rooms; C concurrent senders for a duration.
    Send {
        #[arg(long, default_value_t = 20)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        rooms: usize,
        #[arg(long, default_value_t = 20)]
        concurrency: usize,
        /// Seconds of sending after a short warm-up.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// L listeners long-polling one room; one sender sends M messages, one every interval.
    Fanout {
        #[arg(long, default_value_t = 20)]
        listeners: usize,
        #[arg(long, default_value_t = 300)]
        messages: usize,
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
    },
    /// U users with HTTP pushers to a gateway run here, in R rooms; messages at a fixed rate.
    Push {
        #[arg(long, default_value_t = 20)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        rooms: usize,
        /// Messages per second, spread over the rooms and users.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Where the push gateway listens.
        #[arg(long, default_value = "127.0.0.1:0")]
        gateway_bind: String,
        /// The gateway's host as the homeserver reaches it.
        #[arg(long, default_value = "127.0.0.1")]
        gateway_host: String,
    },
}

struct Client {
    http: reqwest::Client,
    base: String,
    metrics: Vec<String>,
}

#[derive(Clone)]
struct User {
    token: String,
}

impl Client {
    async fn call(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = self.http.request(method, format!("{}/_matrix/client/v3{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {value}");
        }
        Ok(value)
    }

    async fn register(&self, prefix: &str, n: usize) -> anyhow::Result<User> {
        let name = format!("{prefix}{n}");
        let body = json!({"username": name, "password": "loadgen-password", "auth": {"type": "m.login.dummy"}, "inhibit_login": false});
        let reply = self.call(reqwest::Method::POST, "/register", None, Some(body)).await.context("registration must be open")?;
        Ok(User { token: reply["access_token"].as_str().context("no access token")?.to_owned() })
    }

    async fn create_public_room(&self, user: &User) -> anyhow::Result<String> {
        let reply = self.call(reqwest::Method::POST, "/createRoom", Some(&user.token), Some(json!({"preset": "public_chat"}))).await?;
        Ok(reply["room_id"].as_str().context("no room id")?.to_owned())
    }

    async fn join(&self, user: &User, room: &str) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, &format!("/rooms/{}/join", encode(room)), Some(&user.token), Some(json!({}))).await?;
        Ok(())
    }

    async fn send(&self, user: &User, room: &str, txn: &str, body: &str) -> anyhow::Result<()> {
        let path = format!("/rooms/{}/send/m.room.message/{txn}", encode(room));
        self.call(reqwest::Method::PUT, &path, Some(&user.token), Some(json!({"msgtype": "m.text", "body": body}))).await?;
        Ok(())
    }
}

impl Client {
    async fn lag_snapshot(&self) -> anyhow::Result<Option<lag::LagSnapshot>> {
        if self.metrics.is_empty() {
            return Ok(None);
        }
        Ok(Some(lag::LagSnapshot::scrape(&self.http, &self.metrics).await.context("scraping --metrics")?))
    }

    fn report_lag(&self, before: Option<lag::LagSnapshot>, after: Option<lag::LagSnapshot>) {
        if let (Some(before), Some(after)) = (before, after) {
            after.report_since(&before);
        }
    }
}

fn encode(s: &str) -> String {
    s.replace('!', "%21").replace(':', "%3A")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(label: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: n={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        latencies.len(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.90)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Arc::new(Client {
        http: reqwest::Client::builder().no_proxy().pool_max_idle_per_host(256).build()?,
        base: args.url.trim_end_matches('/').to_owned(),
        metrics: args.metrics,
    });
    let run = format!("lg{}x", std::process::id());
    match args.scenario {
        Scenario::Send { users, rooms, concurrency, seconds } => send(client, &run, users, rooms, concurrency, seconds).await,
        Scenario::Fanout { listeners, messages, interval_ms } => fanout(client, &run, listeners, messages, interval_ms).await,
        Scenario::Push { users, rooms, rate, seconds, gateway_bind, gateway_host } => {
            push::run(client, &run, push::PushRun { users, rooms, rate, seconds, gateway_bind, gateway_host }).await
        }
    }
}

async fn send(client: Arc<Client>, run: &str, users: usize, rooms: usize, concurrency: usize, seconds: u64) -> anyhow::Result<()> {
    let mut members = Vec::new();
    for n in 0..users.max(1) {
        members.push(client.register(&format!("{run}s"), n).await?);
    }
    let mut room_ids = Vec::new();
    for n in 0..rooms.max(1) {
        let room = client.create_public_room(&members[n % members.len()]).await?;
        for user in &members {
            client.join(user, &room).await?;
        }
        room_ids.push(room);
    }
    println!("send: {users} users, {rooms} rooms, {concurrency} concurrent senders, {seconds}s");
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for worker in 0..concurrency.max(1) {
        let (client, stop, measuring, sent, failures, latencies) =
            (client.clone(), stop.clone(), measuring.clone(), sent.clone(), failures.clone(), latencies.clone());
        let user = members[worker % members.len()].clone();
        let rooms = room_ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let room = &rooms[(worker + n) % rooms.len()];
                let started = Instant::now();
                let result = client.send(&user, room, &format!("w{worker}n{n}"), "load").await;
                n += 1;
                if measuring.load(Ordering::Relaxed) {
                    match result {
                        Ok(()) => {
                            mine.push(started.elapsed());
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => {
                            if failures.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("first failure: {error}");
                            }
                        }
                    }
                }
            }
            latencies.lock().await.extend(mine);
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lag_before = client.lag_snapshot().await?;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let lag_after = client.lag_snapshot().await?;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    let count = sent.load(Ordering::Relaxed);
    println!(
        "throughput: {:.0} messages/s ({count} in {:.1}s, {} failed)",
        count as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        failures.load(Ordering::Relaxed)
    );
    report("send latency", std::mem::take(&mut *latencies.lock().await));
    client.report_lag(lag_before, lag_after);
    Ok(())
}

async fn fanout(client: Arc<Client>, run: &str, listeners: usize, messages: usize, interval_ms: u64) -> anyhow::Result<()> {
    let sender = client.register(&format!("{run}f"), 0).await?;
    let room = client.create_public_room(&sender).await?;
    let epoch = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for n in 0..listeners.max(1) {
        let user = client.register(&format!("{run}l"), n).await?;
        client.join(&user, &room).await?;
        let initial = client.call(reqwest::Method::GET, "/sync?timeout=0", Some(&user.token), None).await?;
        let mut since = initial["next_batch"].as_str().context("no next_batch")?.to_owned();
        let (client, room, latencies) = (client.clone(), room.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let mut received = 0usize;
            let mut mine = Vec::new();
            while received < messages {
                let path = format!("/sync?timeout=10000&since={since}&filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A100%7D%7D%7D");
                let Ok(reply) = client.call(reqwest::Method::GET, &path, Some(&user.token), None).await else { break };
                let now = epoch.elapsed();
                since = reply["next_batch"].as_str().unwrap_or(&since).to_owned();
                for event in reply["rooms"]["join"][&room]["timeline"]["events"].as_array().into_iter().flatten() {
                    if let Some(sent_at) = event["content"]["sent_at_us"].as_u64() {
                        mine.push((sent_at, now.saturating_sub(Duration::from_micros(sent_at))));
                        received += 1;
                    }
                }
            }
            latencies.lock().await.extend(mine);
        }));
    }
    println!("fanout: {listeners} listeners, {messages} messages, one every {interval_ms}ms");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lag_before = client.lag_snapshot().await?;
    let mut sends = Vec::with_capacity(messages);
    for n in 0..messages {
        let path = format!("/rooms/{}/send/m.room.message/f{n}", encode(&room));
        let body = json!({"msgtype": "m.text", "body": "fanout", "sent_at_us": epoch.elapsed().as_micros() as u64});
        let started = Instant::now();
        client.call(reqwest::Method::PUT, &path, Some(&sender.token), Some(body)).await?;
        sends.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(interval_ms)).await;
    }
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    }
    // Per message, the first and the last listener to get it: what the send
    // itself costs against what waking every listener adds.
    let deliveries: Vec<(u64, Duration)> = std::mem::take(&mut *latencies.lock().await);
    let mut by_message: HashMap<u64, (Duration, Duration)> = HashMap::new();
    for &(sent_at, latency) in &deliveries {
        let (first, last) = by_message.entry(sent_at).or_insert((latency, latency));
        *first = (*first).min(latency);
        *last = (*last).max(latency);
    }
    report("fanout-send", sends);
    report("first-delivery", by_message.values().map(|(first, _)| *first).collect());
    report("last-delivery", by_message.values().map(|(_, last)| *last).collect());
    report("send-to-delivery", deliveries.into_iter().map(|(_, latency)| latency).collect());
    client.report_lag(lag_before, client.lag_snapshot().await?);
    Ok(())
}
