//! Outbound transactions. A dispatcher follows the events stream from its
//! saved position, woken by the notifier (local persists and every other
//! persister's, through replication) when a stream's position for readers
//! moves: one persister moving ahead of the others gives it nothing to read
//! yet, and the stream follows within a replication tick. Each event this
//! server's users sent is queued, in the same database transaction that moves the
//! position, for every other server with a joined member in its room (and
//! the server of a remote member it removes); a position past events that
//! go nowhere is written only now and then (`crate::jobs::PositionWrites`). One task per destination then
//! sends that destination's queue in `PUT /send/{txnId}` transactions, in
//! stream order, up to 50 PDUs each with up to 100 queued EDUs
//! (`federation_edu_outbox`: to-device messages, see `queue_edus`; typing
//! and receipts; device lists and presence, which `device_lists` and
//! `presence` queue from their streams on each dispatch), one
//! transaction in flight. Those queues fill outside the events stream: the
//! dispatcher looks for destinations with something queued when another
//! stream moved, on a sweep every 2 s, and, woken by events alone, at most
//! every 200 ms but no later than 200 ms after the look it passed over (a
//! read per event would be two statements per event for nothing). A queued
//! event leaves the queue only when a transaction holding it was accepted,
//! so nothing acknowledged to a client is lost across a restart. A failed
//! transaction is retried after a backoff (1 s doubling to 5 minutes), with
//! the same transaction id while its contents are the same. After
//! an outage with more queued than one transaction holds, the destination is
//! caught up as Synapse does: the newest event of each room, from which the
//! destination fetches what it misses with `get_missing_events`.
//!
//! Runs on each instance of `federation_sender_instances` (main when it is
//! empty): each queues and sends only for the destinations it owns
//! (`Config::federation_sender_of`, by sha256 of the server name), from a
//! position of its own (`federation_sender_positions`). The queues are
//! kept by destination, so after the list changed (and the senders
//! restarted) a destination's new owner sends what its old one left.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedRoomId, OwnedServerName, OwnedTransactionId, UserId, api::federation::transactions::send_transaction_message, serde::Raw,
};
use tokio::sync::{Notify, watch};

use weft_storage::{DestinationRetry, OutboxRow, StorageError, StoredEvent, Stream};

use super::pdus;
use crate::services::{AppState, Services};

/// The most PDUs in one transaction (the specification's limit).
pub const MAX_PDUS: i64 = 50;
/// The most EDUs in one transaction (the specification's limit).
pub const MAX_EDUS: i64 = 100;
/// Events read from the stream at once.
const BATCH: i64 = 200;
const FIRST_RETRY_MS: i64 = 1_000;
const MAX_RETRY_MS: i64 = 5 * 60 * 1_000;
/// How often the dispatcher looks for destinations with queued EDUs or
/// forwarded events even when no stream moved.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);
/// On wake-ups by the events stream alone, the dispatcher looks for queued
/// EDUs and forwarded events at most this often, and a look passed over
/// comes this long after the last one (another stream moving, as typing and
/// receipts do after queueing theirs, looks at once).
const QUEUES_LOOK_INTERVAL: Duration = Duration::from_millis(200);
/// After a failure of the database, the dispatcher tries again after this.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Whether this instance sends federation transactions.
pub fn sends_here(services: &Services) -> bool {
    services.config.sends_federation()
}

/// Whether this instance sends to `destination`.
pub(super) fn owns(services: &Services, destination: &str) -> bool {
    services.config.federation_sender_of(destination) == services.config.instance_name()
}

/// The key of this sender's position on `stream` (sent as EDUs): the
/// stream's name for the one sender (main), `stream@instance` for each of
/// several, which start where the one sender was.
pub(super) fn stream_position_key(services: &Services, stream: &str) -> String {
    match services.config.federation_sender_instances.is_empty() {
        true => stream.to_owned(),
        false => format!("{stream}@{}", services.config.instance_name()),
    }
}

/// The sender: dispatches new events to the destinations' queues and runs
/// one task per destination, until `stopped`.
pub async fn run(state: AppState, mut stopped: watch::Receiver<bool>) {
    let destinations = Destinations::default();
    match state.storage.outbox_destinations().await {
        Ok(names) => {
            for name in names.iter().filter(|name| owns(&state, name)) {
                destinations.wake(&state, &stopped, name);
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read the federation queue"),
    }
    let mut positions = state.notifier.subscribe();
    let mut position = None;
    let mut written = crate::jobs::PositionWrites::default();
    let mut streams = StreamEdus::default();
    let mut due = true;
    // Whether to look for destinations with queued EDUs or forwarded
    // events: those are queued outside the events stream, so a wake-up by
    // the events stream alone looks only if the last look is old enough,
    // and a look it passed over comes when it is.
    let mut queues_due = true;
    let mut queues_looked = tokio::time::Instant::now();
    let mut queues_passed_over = false;
    let mut seen = readable(&positions.borrow_and_update());
    let mut sweep_at = tokio::time::Instant::now();
    let mut delay = None;
    loop {
        if due {
            sweep_at = tokio::time::Instant::now() + SWEEP_INTERVAL;
            let look = queues_due || queues_looked.elapsed() >= QUEUES_LOOK_INTERVAL;
            if look {
                queues_looked = tokio::time::Instant::now();
            }
            queues_passed_over = !look;
            delay = match dispatch(&state, &stopped, &destinations, &mut position, &mut written, &mut streams, look).await {
                Ok(()) => None,
                Err(error) => {
                    tracing::warn!(%error, "the federation sender failed; retrying");
                    Some(RETRY_DELAY)
                }
            };
        }
        tokio::select! {
            moved = positions.changed(), if delay.is_none() => {
                if moved.is_err() {
                    break;
                }
                // One persister's own position moving (a room's events
                // readable before the stream's) leaves the sender nothing
                // to read; the stream follows within a replication tick.
                let now = readable(&positions.borrow_and_update());
                due = now != seen;
                queues_due = Stream::ALL.iter().zip(now.iter().zip(&seen)).any(|(stream, (now, seen))| *stream != Stream::Events && now != seen);
                seen = now;
            }
            _ = tokio::time::sleep(delay.unwrap_or_default()), if delay.is_some() => (due, queues_due) = (true, true),
            _ = tokio::time::sleep_until(queues_looked + QUEUES_LOOK_INTERVAL), if queues_passed_over && delay.is_none() => (due, queues_due) = (true, true),
            // What was queued outside the events stream without a wake-up.
            _ = tokio::time::sleep_until(sweep_at), if delay.is_none() => (due, queues_due) = (true, true),
            _ = stopped.wait_for(|stop| *stop) => break,
        }
    }
}

/// What the dispatcher reads up to: each stream's position (the minimum
/// over its writers).
fn readable(positions: &crate::sync::Positions) -> [i64; Stream::COUNT] {
    Stream::ALL.map(|stream| positions.get(stream))
}

/// The destination tasks, each woken when its queue grows.
#[derive(Default, Clone)]
struct Destinations {
    tasks: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl Destinations {
    fn wake(&self, state: &AppState, stopped: &watch::Receiver<bool>, destination: &str) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(notify) = tasks.get(destination) {
            notify.notify_one();
            return;
        }
        let Ok(name) = OwnedServerName::try_from(destination) else { return };
        let notify = Arc::new(Notify::new());
        tasks.insert(destination.to_owned(), notify.clone());
        tokio::spawn(destination_loop(state.clone(), stopped.clone(), name, notify));
    }
}

/// The positions on the streams sent as EDUs (`device_lists`, `presence`).
#[derive(Default)]
struct StreamEdus {
    device_lists: StreamCursor,
    presence: StreamCursor,
}

/// The sender's place on a stream it sends as EDUs: a position past changes
/// that queued nothing is written only now and then, as for events
/// (`crate::jobs::PositionWrites`).
#[derive(Default)]
pub(super) struct StreamCursor {
    pub(super) position: Option<i64>,
    written: Option<std::time::Instant>,
}

impl StreamCursor {
    /// Whether a position that queued nothing is to be written now.
    pub(super) fn due(&self) -> bool {
        self.written.is_none_or(|when| when.elapsed() >= crate::jobs::UNWRITTEN_FOR)
    }

    /// The position reached, `written` or kept in memory only.
    pub(super) fn reached(&mut self, position: i64, written: bool) {
        self.position = Some(position);
        if written {
            self.written = Some(std::time::Instant::now());
        }
    }
}

async fn dispatch(
    state: &AppState,
    stopped: &watch::Receiver<bool>,
    destinations: &Destinations,
    position: &mut Option<i64>,
    written: &mut crate::jobs::PositionWrites,
    streams: &mut StreamEdus,
    queues_due: bool,
) -> Result<(), StorageError> {
    super::device_lists::dispatch(state, &mut streams.device_lists).await?;
    super::presence::dispatch(state, &mut streams.presence).await?;
    // EDUs and forwarded events are queued outside the events stream.
    if queues_due {
        let mut queued = state.storage.edu_destinations().await?;
        queued.extend(state.storage.outbox_destinations().await?);
        queued.retain(|destination| owns(state, destination));
        queued.sort();
        queued.dedup();
        for destination in queued {
            destinations.wake(state, stopped, &destination);
        }
    }
    let mut at = match *position {
        Some(at) => at,
        None => *position.insert(state.storage.federation_sender_position(state.config.instance_name()).await?),
    };
    loop {
        let upto = state.notifier.position(Stream::Events);
        if at >= upto || *stopped.borrow() {
            return Ok(());
        }
        let events = state.storage.events_between(at, upto, BATCH).await?;
        let reached = match events.last() {
            Some(last) if events.len() as i64 == BATCH => last.stream_ordering,
            _ => upto,
        };
        let mut rows = Vec::new();
        let mut rooms = RoomServers::default();
        for event in &events {
            for destination in destinations_of(state, &mut rooms, event).await?.into_iter().filter(|destination| owns(state, destination)) {
                rows.push(OutboxRow {
                    destination,
                    stream_ordering: event.stream_ordering,
                    room_id: event.room_id.clone(),
                    event_id: event.event_id.to_string(),
                });
            }
        }
        // Events that go to no other server queue nothing (`PositionWrites`).
        if written.due(reached, !rows.is_empty()) {
            state.storage.enqueue_outbox(&rows, state.config.instance_name(), reached).await?;
            written.wrote(reached);
        }
        let mut woken: Vec<&str> = rows.iter().map(|row| row.destination.as_str()).collect();
        woken.sort_unstable();
        woken.dedup();
        for destination in woken {
            destinations.wake(state, stopped, destination);
        }
        at = reached;
        *position = Some(reached);
    }
}

/// The servers with a joined member in each room, read once per batch of
/// events; a membership event reads its room's again.
#[derive(Default)]
struct RoomServers(HashMap<OwnedRoomId, Vec<String>>);

impl RoomServers {
    async fn of(&mut self, state: &Services, event: &StoredEvent) -> Result<Vec<String>, StorageError> {
        if event.kind == "m.room.member" {
            self.0.remove(&event.room_id);
        }
        if let Some(servers) = self.0.get(&event.room_id) {
            return Ok(servers.clone());
        }
        let servers = super::inbound::servers_in_room(state, &event.room_id).await?;
        self.0.insert(event.room_id.clone(), servers.clone());
        Ok(servers)
    }
}

/// The servers an event of this server goes to: those with a joined member
/// in its room, and the server of a remote user it removes or invites.
async fn destinations_of(state: &Services, rooms: &mut RoomServers, event: &StoredEvent) -> Result<Vec<String>, StorageError> {
    if event.sender.server_name() != state.server_name {
        return Ok(Vec::new());
    }
    let mut servers = rooms.of(state, event).await?;
    if event.kind == "m.room.member"
        && let Some(target) = event.state_key.as_deref().and_then(|key| UserId::parse(key).ok())
    {
        servers.push(target.server_name().to_string());
    }
    servers.sort();
    servers.dedup();
    servers.retain(|server| server != state.server_name.as_str());
    Ok(servers)
}

async fn destination_loop(state: AppState, mut stopped: watch::Receiver<bool>, destination: OwnedServerName, notify: Arc<Notify>) {
    let mut counter: u64 = 0;
    let mut last_failed = None;
    let started = weft_storage::now_ms();
    loop {
        if *stopped.borrow() {
            return;
        }
        let wait = match send_some(&state, &destination, &mut counter, started, &mut last_failed).await {
            Ok(true) => continue,
            Ok(false) => None,
            Err(retry_in) => Some(retry_in),
        };
        match wait {
            None => {
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
            }
            Some(delay) => {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
            }
        }
    }
}

/// Sends one transaction if anything is queued: `Ok(true)` when one was
/// accepted, `Ok(false)` when the queue is empty, `Err(delay)` to wait
/// before the next try.
/// The contents (event and EDU ids) and id of a transaction that failed.
type FailedTransaction = (Vec<String>, OwnedTransactionId);

async fn send_some(
    state: &Services,
    destination: &OwnedServerName,
    counter: &mut u64,
    started: i64,
    last_failed: &mut Option<FailedTransaction>,
) -> Result<bool, Duration> {
    let storage = &state.storage;
    let name = destination.as_str();
    let retry = storage.destination_retry(name).await.map_err(|_| RETRY_DELAY)?;
    let now = weft_storage::now_ms();
    if retry.retry_interval > 0 && now < retry.retry_last_ts + retry.retry_interval {
        return Err(Duration::from_millis((retry.retry_last_ts + retry.retry_interval - now) as u64));
    }
    let queued = storage.outbox_len(name).await.map_err(|_| RETRY_DELAY)?;
    let edus = storage.outbox_edus(name, MAX_EDUS).await.map_err(|_| RETRY_DELAY)?;
    if queued == 0 && edus.is_empty() {
        return Ok(false);
    }
    let catching_up = retry.retry_interval > 0 && queued > MAX_PDUS;
    let events = if catching_up { storage.outbox_latest_per_room(name, MAX_PDUS).await } else { storage.outbox_events(name, MAX_PDUS).await }
        .map_err(|_| RETRY_DELAY)?;
    // A retry of the same transaction carries the same id (the receiver
    // answers it from what it kept); anything else gets a new one.
    let contents: Vec<String> = events.iter().map(|event| event.event_id.to_string()).chain(edus.iter().map(|(id, _)| id.to_string())).collect();
    let txn_id = match last_failed.take() {
        Some((tried, txn_id)) if tried == contents => txn_id,
        _ => {
            *counter += 1;
            OwnedTransactionId::from(format!("{started}-{counter}"))
        }
    };
    let mut request = send_transaction_message::v1::Request::new(txn_id.clone(), state.server_name.clone(), MilliSecondsSinceUnixEpoch::now());
    request.pdus = events.iter().filter_map(|event| pdus::outgoing(&event.json)).collect();
    request.edus = edus.iter().filter_map(|(_, json)| Raw::from_json_string(json.clone()).ok()).collect();
    match state.federation.client.send_request(destination, request).await {
        Ok(response) => {
            for (event_id, outcome) in &response.pdus {
                if let Err(reason) = outcome {
                    tracing::info!(%destination, %event_id, %reason, "the destination refused an event");
                }
            }
            *last_failed = None;
            metrics::counter!("weft_federation_transactions_sent_total", "destination" => name.to_owned()).increment(1);
            // Exactly the rows sent leave the queue: an event queued behind
            // one already sent (a join passed on) stays for the next one.
            let sent: Vec<(OwnedRoomId, i64)> = events.iter().map(|event| (event.room_id.clone(), event.stream_ordering)).collect();
            if !sent.is_empty() {
                storage.outbox_acknowledge(name, &sent, catching_up).await.map_err(|_| RETRY_DELAY)?;
            }
            if let Some((last, _)) = edus.last() {
                storage.acknowledge_edus(name, *last).await.map_err(|_| RETRY_DELAY)?;
                if sent.is_empty() {
                    storage.outbox_acknowledge(name, &[], false).await.map_err(|_| RETRY_DELAY)?;
                }
            }
            Ok(true)
        }
        Err(error) => {
            *last_failed = Some((contents, txn_id));
            let interval = if retry.retry_interval == 0 { FIRST_RETRY_MS } else { (retry.retry_interval * 2).min(MAX_RETRY_MS) };
            tracing::info!(%destination, %error, retry_in_ms = interval, "a transaction failed");
            metrics::counter!("weft_federation_transactions_failed_total", "destination" => name.to_owned()).increment(1);
            let _ = storage.set_destination_retry(name, DestinationRetry { retry_last_ts: weft_storage::now_ms(), retry_interval: interval }).await;
            Err(Duration::from_millis(interval as u64))
        }
    }
}

/// Queues EDUs for other servers (`(destination, EDU JSON)`): they go with
/// each destination's next transaction, woken by the next stream change.
pub async fn queue_edus(services: &Services, edus: &[(String, String)]) -> Result<(), StorageError> {
    services.storage.enqueue_edus(edus).await
}

/// Queues one EDU for every other server with a joined member in the room
/// (typing, receipts).
pub async fn queue_room_edu(services: &Services, room_id: &ruma::RoomId, edu: &serde_json::Value) -> Result<(), StorageError> {
    let json = edu.to_string();
    let edus: Vec<(String, String)> = super::inbound::servers_in_room(services, room_id)
        .await?
        .into_iter()
        .filter(|server| server != services.server_name.as_str())
        .map(|server| (server, json.clone()))
        .collect();
    if edus.is_empty() {
        return Ok(());
    }
    services.storage.enqueue_edus(&edus).await
}
