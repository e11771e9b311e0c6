//! The replication bus: how processes tell each other what they wrote. Two
//! implementations behind one type: in-process (a tokio broadcast, for the
//! monolith and for several instances in one test process) and Redis pub/sub
//! on one channel named after `server_name`, as Synapse does. Callers only
//! publish commands and read `BusEvent`s; they never learn which bus it is.
//!
//! The Redis bus keeps two connections, one subscribed and one publishing,
//! and reconnects each with exponential backoff capped at 5 s. Every
//! (re)subscription is reported as `BusEvent::Connected`, on which the
//! handler catches up; commands published while Redis is away are dropped,
//! which catch-up makes good.
//!
//! The publisher runs on a thread of its own, so that what a busy writer
//! announces is not queued behind its request handlers. Commands queued
//! together go out as one message, one command per line.
//! Synapse publishes one command per message; Weft processes only talk to
//! each other, and under load this saves every subscriber a wake-up per
//! command.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc, watch};

use super::command::Command;
use crate::config::RedisConfig;

/// How many commands a slow subscriber may fall behind before it misses
/// some (and catches up, as after a reconnect).
const BUFFER: usize = 16_384;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub enum BusEvent {
    Command(Arc<Command>),
    /// Subscribed (again): commands may have been missed before this.
    Connected,
}

#[derive(Debug, Clone)]
pub struct Bus {
    events: broadcast::Sender<BusEvent>,
    outgoing: Outgoing,
}

#[derive(Debug, Clone)]
enum Outgoing {
    InProcess,
    Redis(mpsc::UnboundedSender<String>),
}

impl Bus {
    /// A bus within this process: every subscriber sees every command.
    pub fn in_process() -> Self {
        Self { events: broadcast::Sender::new(BUFFER), outgoing: Outgoing::InProcess }
    }

    /// A bus over Redis pub/sub on `channel`; connects in the background
    /// until `stopped` turns true.
    pub fn redis(config: &RedisConfig, channel: String, stopped: watch::Receiver<bool>) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(redis_url(config))?;
        let events = broadcast::Sender::new(BUFFER);
        let (publish, queue) = mpsc::unbounded_channel();
        tokio::spawn(subscriber(client.clone(), channel.clone(), events.clone(), stopped.clone()));
        // Its own thread: on a busy writer, a task would wait behind the
        // request handlers, and every row's lag with it.
        std::thread::Builder::new().name("weft-replication-publisher".into()).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(publisher(client, channel, queue, stopped)),
                Err(error) => tracing::error!(%error, "replication: cannot start the publisher; nothing will be published"),
            }
        })?;
        Ok(Self { events, outgoing: Outgoing::Redis(publish) })
    }

    pub fn publish(&self, command: &Command) {
        match &self.outgoing {
            Outgoing::InProcess => {
                let _ = self.events.send(BusEvent::Command(Arc::new(command.clone())));
            }
            Outgoing::Redis(queue) => {
                let line = command.to_string();
                // Only a client-chosen device id could bring one in.
                if line.contains('\n') {
                    tracing::warn!(command = command.name(), "replication: not publishing a command with a line break");
                    return;
                }
                let _ = queue.send(line);
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.events.subscribe()
    }
}

fn redis_url(config: &RedisConfig) -> String {
    let password = config.password.as_deref().map(|password| format!(":{}@", urlencode(password))).unwrap_or_default();
    let db = config.dbid.unwrap_or(0);
    match &config.path {
        Some(path) => format!("redis+unix://{}?db={db}{}", path.display(), config.password.as_deref().map(|p| format!("&pass={}", urlencode(p))).unwrap_or_default()),
        None => format!("redis://{password}{}:{}/{db}", config.host, config.port),
    }
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn backoff(attempt: &mut u32, stopped: &mut watch::Receiver<bool>) -> bool {
    let delay = Duration::from_millis(100 * 2u64.pow((*attempt).min(6))).min(MAX_BACKOFF);
    *attempt += 1;
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = async { let _ = stopped.wait_for(|stop| *stop).await; } => false,
    }
}

async fn subscriber(client: redis::Client, channel: String, events: broadcast::Sender<BusEvent>, mut stopped: watch::Receiver<bool>) {
    let mut attempt = 0;
    loop {
        if *stopped.borrow() {
            return;
        }
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    if attempt > 0 {
                        tracing::info!(%channel, "replication: subscribed to Redis again");
                    }
                    attempt = 0;
                    metrics::gauge!("weft_replication_connected").set(1.0);
                    let _ = events.send(BusEvent::Connected);
                    let mut messages = pubsub.on_message();
                    loop {
                        tokio::select! {
                            message = messages.next() => match message {
                                Some(message) => {
                                    let Ok(lines) = std::str::from_utf8(message.get_payload_bytes()) else { continue };
                                    for line in lines.split('\n').filter(|line| !line.is_empty()) {
                                        match Command::parse(line) {
                                            Ok(command) => { let _ = events.send(BusEvent::Command(Arc::new(command))); }
                                            Err(error) => tracing::warn!(%error, "replication: ignoring a command"),
                                        }
                                    }
                                }
                                None => break,
                            },
                            _ = async { let _ = stopped.wait_for(|stop| *stop).await; } => return,
                        }
                    }
                    metrics::gauge!("weft_replication_connected").set(0.0);
                    tracing::warn!(%channel, "replication: lost the Redis subscription; reconnecting");
                }
                Err(error) => tracing::warn!(%error, "replication: cannot subscribe on Redis"),
            },
            Err(error) => {
                if attempt == 0 {
                    tracing::warn!(%error, "replication: cannot connect to Redis; retrying");
                }
            }
        }
        if !backoff(&mut attempt, &mut stopped).await {
            return;
        }
    }
}

/// Most commands sent to Redis in one round trip.
const PUBLISH_BATCH: usize = 256;
/// A message grows by whole commands up to about this size.
const MESSAGE_BYTES: usize = 64 * 1024;

/// `lines` (commands, which never contain a newline) joined into messages.
fn messages(lines: &[String]) -> Vec<String> {
    let mut messages: Vec<String> = Vec::new();
    for line in lines {
        match messages.last_mut() {
            Some(message) if message.len() + 1 + line.len() <= MESSAGE_BYTES => {
                message.push('\n');
                message.push_str(line);
            }
            _ => messages.push(line.clone()),
        }
    }
    messages
}

/// Publishes queued commands in order. Under load, everything queued while
/// the previous round trip was in flight goes out in one pipeline, so the
/// queue (and the lag it adds) does not grow with the write rate.
async fn publisher(client: redis::Client, channel: String, mut queue: mpsc::UnboundedReceiver<String>, mut stopped: watch::Receiver<bool>) {
    let mut connection: Option<redis::aio::MultiplexedConnection> = None;
    let mut attempt = 0;
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    loop {
        tokio::select! {
            received = queue.recv_many(&mut batch, PUBLISH_BATCH) => if received == 0 { return },
            _ = async { let _ = stopped.wait_for(|stop| *stop).await; } => return,
        };
        loop {
            if connection.is_none() {
                match client.get_multiplexed_async_connection().await {
                    Ok(connected) => {
                        connection = Some(connected);
                        attempt = 0;
                    }
                    Err(error) => {
                        if attempt == 0 {
                            tracing::warn!(%error, "replication: cannot publish to Redis; retrying");
                        }
                        // Commands queued meanwhile are stale: positions are re-announced on reconnect.
                        batch.clear();
                        while queue.try_recv().is_ok() {}
                        if !backoff(&mut attempt, &mut stopped).await {
                            return;
                        }
                        break;
                    }
                }
            }
            let Some(conn) = connection.as_mut() else { break };
            let mut pipeline = redis::pipe();
            for message in messages(&batch) {
                pipeline.cmd("PUBLISH").arg(&channel).arg(message).ignore();
            }
            match pipeline.query_async::<()>(conn).await {
                Ok(()) => {
                    batch.clear();
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "replication: publishing failed; reconnecting");
                    connection = None;
                }
            }
        }
    }
}
