//! The replication bus: how processes tell each other what they wrote. Two
//! implementations behind one type: in-process (a tokio broadcast, for the
//! monolith and for several instances in one test process) and Redis pub/sub
//! on a channel named after `server_name`, as Synapse does. Callers only
//! publish commands and read `BusEvent`s; they never learn which bus it is.
//!
//! On Redis, the rows of the `events` stream (one RDATA per persisted event,
//! nearly all the traffic under load) have a channel of their own,
//! `<server_name>/events`, which only the instances that follow event rows
//! subscribe to (`Config::follows_event_rows`); the others learn the events
//! writers' positions from their POSITION commands on the main channel.
//! Synapse splits USER_IP off the same way.
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

use weft_core::config::RedisConfig;
use weft_storage::Stream;

use super::command::Command;

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
    Redis(mpsc::UnboundedSender<(Channel, String)>),
}

/// Which of the two Redis channels a command goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Main,
    EventRows,
}

impl Channel {
    fn of(command: &Command) -> Self {
        match command {
            Command::Rdata { stream, .. } if !rows_reach_everyone(stream) => Self::EventRows,
            _ => Self::Main,
        }
    }
}

/// Whether every instance receives the RDATA rows of `stream`: all but
/// `events`, whose rows only the instances that follow them receive. On the
/// in-process bus the one instance sees everything anyway.
pub fn rows_reach_everyone(stream: &str) -> bool {
    stream != Stream::Events.as_str()
}

/// The names of the main channel and of the `events` rows channel.
#[derive(Debug, Clone)]
struct ChannelNames {
    main: String,
    event_rows: String,
}

impl ChannelNames {
    fn new(server_name: String) -> Self {
        Self { event_rows: format!("{server_name}/events"), main: server_name }
    }

    fn name(&self, channel: Channel) -> &str {
        match channel {
            Channel::Main => &self.main,
            Channel::EventRows => &self.event_rows,
        }
    }
}

impl Bus {
    /// A bus within this process: every subscriber sees every command.
    pub fn in_process() -> Self {
        Self { events: broadcast::Sender::new(BUFFER), outgoing: Outgoing::InProcess }
    }

    /// A bus over Redis pub/sub on the channels of `server_name`, receiving
    /// `events` rows only when `follow_event_rows`; connects in the
    /// background until `stopped` turns true.
    pub fn redis(config: &RedisConfig, server_name: String, follow_event_rows: bool, stopped: watch::Receiver<bool>) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(redis_url(config))?;
        let events = broadcast::Sender::new(BUFFER);
        let (publish, queue) = mpsc::unbounded_channel();
        let channels = ChannelNames::new(server_name);
        let subscribed = if follow_event_rows { vec![channels.main.clone(), channels.event_rows.clone()] } else { vec![channels.main.clone()] };
        tokio::spawn(subscriber(client.clone(), subscribed, events.clone(), stopped.clone()));
        // Its own thread: on a busy writer, a task would wait behind the
        // request handlers, and every row's lag with it.
        std::thread::Builder::new().name("weft-replication-publisher".into()).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(publisher(client, channels, queue, stopped)),
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
                let _ = queue.send((Channel::of(command), line));
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
        Some(path) => {
            format!("redis+unix://{}?db={db}{}", path.display(), config.password.as_deref().map(|p| format!("&pass={}", urlencode(p))).unwrap_or_default())
        }
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

async fn subscriber(client: redis::Client, channels: Vec<String>, events: broadcast::Sender<BusEvent>, mut stopped: watch::Receiver<bool>) {
    let channel = channels.join(" ");
    let mut attempt = 0;
    loop {
        if *stopped.borrow() {
            return;
        }
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channels).await {
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

/// `lines` (commands, which never contain a newline) joined into messages:
/// consecutive commands for the same channel share one.
fn messages(lines: &[(Channel, String)]) -> Vec<(Channel, String)> {
    let mut messages: Vec<(Channel, String)> = Vec::new();
    for (channel, line) in lines {
        match messages.last_mut() {
            Some((last, message)) if last == channel && message.len() + 1 + line.len() <= MESSAGE_BYTES => {
                message.push('\n');
                message.push_str(line);
            }
            _ => messages.push((*channel, line.clone())),
        }
    }
    messages
}

/// Publishes queued commands in order. Under load, everything queued while
/// the previous round trip was in flight goes out in one pipeline, so the
/// queue (and the lag it adds) does not grow with the write rate.
async fn publisher(client: redis::Client, channels: ChannelNames, mut queue: mpsc::UnboundedReceiver<(Channel, String)>, mut stopped: watch::Receiver<bool>) {
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
            for (channel, message) in messages(&batch) {
                pipeline.cmd("PUBLISH").arg(channels.name(channel)).arg(message).ignore();
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
