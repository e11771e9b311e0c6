//! Replication between the processes of one homeserver: which instance
//! writes what (`weft_core::streams::Writers`), the bus that carries what they wrote (`bus`,
//! `command`), the task that applies other writers' announcements and
//! announces this instance's (`handler`), the handlers streams register for
//! what more they do with announcements (`streams`), and the internal HTTP calls that
//! send writes to their writer (`client`, `room_writes`; whole client
//! requests are forwarded by `weft_api::forward`). The
//! monolith runs the same code with an in-process bus and no other writers.
//! Positions announced on the bus are checked against the database before
//! they move anything (`announced`).
//!
//! Owns: the `Replication` service. May call: `weft_storage`, `sync::notifier`,
//! and the registered stream handlers. Must not: name the modules of the
//! streams it carries (they register a `StreamHandler`), or build
//! client-facing responses (the internal endpoints live in `weft_api::replication`).

mod announced;
mod bus;
pub mod client;
pub mod command;
pub mod handler;
pub mod room_writes;
pub mod streams;

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

pub use bus::{Bus, BusEvent};
pub use command::Command;
use serde_json::Value;
pub use streams::{Follow, StreamHandler};
use tokio::sync::watch;
pub use weft_core::streams::{Writers, shard};

use weft_core::config::Config;
use weft_storage::Stream;

/// This instance has learnt that `instance` persisted `stream` up to
/// `position`, from the bus or from the writer's reply to a call.
pub(crate) fn advance_position(notifier: &crate::sync::Notifier, stream: Stream, instance: &str, position: i64) {
    if notifier.advance(stream, instance, position) {
        metrics::gauge!("weft_replication_position", "stream" => stream.as_str(), "writer" => instance.to_owned()).set(position as f64);
    }
}

/// How long a caller waits to see the positions a writer reported before
/// answering anyway (Synapse waits 5 s too).
pub const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Replication {
    writers: Writers,
    bus: Bus,
    /// A random id per process start, as Synapse's USER_SYNC carries.
    process_id: String,
    pub client: client::InternalClient,
    /// Replies to internal calls already answered, by transaction id, so a
    /// retried call is not applied twice.
    replies: Mutex<HashMap<String, (Instant, client::StoredReply)>>,
    /// Per stream, the last position announced on the bus.
    announced: Mutex<[i64; Stream::COUNT]>,
    /// Per stream, the highest id the database confirmed to another writer's claim.
    confirmed: announced::Confirmed,
    stop: watch::Sender<bool>,
    /// What each stream does with announcements beyond moving its position.
    handlers: streams::StreamHandlers,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication").field("instance", &self.writers.instance()).finish_non_exhaustive()
    }
}

/// Replies remembered for idempotency.
const REPLY_CACHE_TTL: Duration = Duration::from_secs(10 * 60);

impl Replication {
    /// Redis when `redis.enabled`, the in-process bus otherwise.
    pub fn from_config(config: &Config) -> Result<Self, redis::RedisError> {
        let stop = watch::Sender::new(false);
        let bus = if config.redis.enabled {
            Bus::redis(&config.redis, config.server_name().to_owned(), config.follows_event_rows(), stop.subscribe())?
        } else {
            Bus::in_process()
        };
        Ok(Self::with_bus(config, bus, stop))
    }

    pub fn with_bus(config: &Config, bus: Bus, stop: watch::Sender<bool>) -> Self {
        use rand::Rng;
        let process_id: String = rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(5).map(char::from).collect();
        Self {
            writers: Writers::from_config(config),
            bus,
            process_id,
            client: client::InternalClient::from_config(config),
            replies: Mutex::new(HashMap::new()),
            announced: Mutex::new([0; Stream::COUNT]),
            confirmed: announced::Confirmed::default(),
            stop,
            handlers: streams::StreamHandlers::default(),
        }
    }

    pub fn writers(&self) -> &Writers {
        &self.writers
    }

    pub fn instance(&self) -> &str {
        self.writers.instance()
    }

    pub fn process_id(&self) -> &str {
        &self.process_id
    }

    /// Adds a stream's handler; see `streams`. Called while the services are built.
    pub fn register(&mut self, handler: std::sync::Arc<dyn StreamHandler>) {
        self.handlers.register(handler);
    }

    /// The registered stream handlers.
    pub fn handlers(&self) -> &streams::StreamHandlers {
        &self.handlers
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    pub fn publish(&self, command: &Command) {
        self.bus.publish(command);
    }

    /// Announces rows of `stream` up to `token`; `row` names what changed.
    pub fn announce_rows(&self, stream: Stream, token: i64, mut row: Vec<Value>) {
        row.push(Value::from(now_micros()));
        // Where rows reach only some instances, the others learn the
        // position from the next POSITION, which must therefore still go out.
        if bus::rows_reach_everyone(stream.as_str()) {
            self.announced.lock().unwrap_or_else(|p| p.into_inner())[stream.index()] = token;
        }
        self.publish(&Command::Rdata { stream: stream.as_str().into(), instance: self.instance().into(), token, row: Value::Array(row) });
    }

    /// Announces this instance's position on `stream` when it moved since
    /// the last announcement, or always when `force`.
    pub fn announce_position(&self, stream: Stream, position: i64, force: bool) {
        let prev = {
            let mut announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
            let prev = announced[stream.index()];
            if prev == position && !force {
                return;
            }
            announced[stream.index()] = position;
            prev
        };
        self.publish(&Command::Position { stream: stream.as_str().into(), instance: self.instance().into(), prev, new: position });
    }

    /// Stops the bus's connections; announces that this process's users stopped syncing.
    pub fn shutdown(&self) {
        self.publish(&Command::ClearUserSync { process_id: self.process_id.clone() });
        let _ = self.stop.send(true);
    }

    pub fn cached_reply(&self, txn_id: &str) -> Option<client::StoredReply> {
        let replies = self.replies.lock().unwrap_or_else(|p| p.into_inner());
        replies.get(txn_id).map(|(_, reply)| reply.clone())
    }

    pub fn remember_reply(&self, txn_id: String, reply: client::StoredReply) {
        let mut replies = self.replies.lock().unwrap_or_else(|p| p.into_inner());
        if replies.len() > 10_000 {
            replies.retain(|_, (at, _)| at.elapsed() < REPLY_CACHE_TTL);
        }
        replies.insert(txn_id, (Instant::now(), reply));
    }
}

pub fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// The stream named `name` on the wire.
pub fn stream_named(name: &str) -> Option<Stream> {
    Stream::ALL.into_iter().find(|stream| stream.as_str() == name)
}
