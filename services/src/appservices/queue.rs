//! The notifier's queue, run on the instance `notify_appservices_from_worker`
//! names (main when unset), as two parts:
//!
//! - the matcher follows the events stream from the position saved in the
//!   database up to what the notifier says every persister has persisted,
//!   100 events a batch, and queues each event in the client format for every
//!   appservice interested in it (`interest`), saving the position in the same
//!   database transaction as the items: a restart neither loses nor repeats
//!   one. That commit is not waited for on disk (`Durability::WithNextFlush`):
//!   the sender's store of the transaction taking the items is, and the
//!   write-ahead log carries the earlier commit with it, so nothing is sent
//!   that a crash of the database could take back. A position past events that went to no appservice is saved only
//!   now and then (`crate::jobs::PositionWrites`), as for every stream the
//!   notifier follows. It wakes when any stream moves (replication on a worker), and
//!   queues typing, receipts and presence for the appservices that ask for
//!   them (`ephemeral`), and to-device messages and device-list changes
//!   (`encryption`). Before queueing an event it asks the appservices about
//!   an unknown local sender or member in their namespace (the user query).
//! - one sender per appservice with a `url` turns its queued items into
//!   transactions (up to 100 events, 100 ephemeral and 100 to-device items,
//!   the device-list changes merged, the MSC3202 key counts of the moment;
//!   ids from one sequence for every appservice), stored whole before they
//!   are sent, and sends them oldest first, one at a time, through the
//!   appservice-notifier plugin, building and storing the next while one is
//!   in flight. A transaction is removed only when the
//!   appservice answers 2xx (in the same database transaction that stores
//!   the next one, so a transaction sent costs one commit); otherwise the same one (same id, same body) is
//!   tried again after 2 s, 4 s, ... at most 512 s (Synapse's recoverer), and
//!   nothing after it goes first. Each appservice's sender is its own task: a
//!   slow or failing appservice delays only itself.
//!
//! An event that cannot be matched is skipped by the rule of `crate::jobs`.
//!
//! May call: storage, the notifier, the appservice-notifier plugin (`super`).

use std::{collections::HashMap, sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::handoff::Handoff;

use weft_core::{
    appservice::AppService,
    config::{Config, MAIN_INSTANCE},
};
use weft_plugin_runtime::appservice::{AppserviceCall, Outcome};
use weft_storage::{Durability, QUEUED_KINDS, QueuedItem, StorageError, StoredEvent, Stream};

use crate::services::{AppState, Services};

/// Events matched per batch (Synapse's 100); the position is saved after each.
const BATCH: i64 = 100;
/// The most items of each kind in one transaction (Synapse's 100).
const PER_TXN: i64 = 100;
/// The first wait after a failed delivery; it doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(512);
/// How long to wait before trying again after a database error.
const RETRY_DELAY: Duration = Duration::from_secs(5);
/// A sender with nothing to do looks at its queue this often anyway.
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// Whether this instance notifies the appservices.
pub fn notifies_here(config: &Config) -> bool {
    !config.app_services.is_empty() && config.notify_appservices_from_worker.as_deref().unwrap_or(MAIN_INSTANCE) == config.instance_name()
}

/// The matcher and the senders, until `stopped`.
pub async fn run(state: AppState, mut stopped: watch::Receiver<bool>) {
    let mut senders = HashMap::new();
    let mut tasks = Vec::new();
    for service in state.config.app_services.all().iter().filter(|service| service.url.is_some()) {
        let link = Arc::new(Link::default());
        senders.insert(service.id.clone(), link.clone());
        tasks.push(tokio::spawn(send_loop(state.clone(), service.clone(), link, stopped.clone())));
    }
    let mut positions = state.notifier.subscribe();
    let mut position = None;
    let mut written = crate::jobs::PositionWrites::default();
    let mut cursor = super::ephemeral::Cursor::default();
    let mut devices = super::encryption::Cursor::default();
    let known = KnownUsers::default();
    loop {
        let caught_up = async {
            catch_up(&state, &stopped, (&mut position, &mut written), &senders, &known).await?;
            let mut woken = super::ephemeral::catch_up(&state, &mut cursor).await?;
            // Receipts are read a batch at a time: a backlog is read through
            // now, not when some stream next moves.
            while cursor.receipts_behind(state.notifier.position(Stream::Receipts)) {
                woken.extend(super::ephemeral::catch_up(&state, &mut cursor).await?);
            }
            woken.extend(super::encryption::catch_up(&state, &mut devices).await?);
            // Queued and not handed over: the senders read their queues.
            for id in woken {
                if let Some(link) = senders.get(&id) {
                    link.handoff.invalidate();
                    link.wake.notify_one();
                }
            }
            Ok::<_, StorageError>(())
        };
        let delay = match caught_up.await {
            Ok(()) => None,
            Err(error) => {
                tracing::warn!(%error, "the appservice notifier failed to match events; retrying");
                // Whether the failed write committed is unknown.
                senders.values().for_each(|link| link.handoff.invalidate());
                Some(RETRY_DELAY)
            }
        };
        tokio::select! {
            moved = positions.changed(), if delay.is_none() => {
                if moved.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep(delay.unwrap_or_default()), if delay.is_some() => {}
            _ = stopped.wait_for(|stop| *stop) => break,
        }
    }
    for task in tasks {
        let _ = task.await;
    }
}

async fn catch_up(
    state: &Services,
    stopped: &watch::Receiver<bool>,
    (position, written): (&mut Option<i64>, &mut crate::jobs::PositionWrites),
    senders: &HashMap<String, Arc<Link>>,
    known: &KnownUsers,
) -> Result<(), StorageError> {
    let mut at = match *position {
        Some(at) => at,
        None => *position.insert(state.storage.appservice_stream_position().await?),
    };
    loop {
        let upto = state.notifier.position(Stream::Events);
        if at >= upto || *stopped.borrow() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let events = state.storage.appservice_events(at, upto, BATCH).await?;
        let read_us = started.elapsed().as_micros() as u64;
        let reached = match events.last() {
            Some(last) if events.len() as i64 == BATCH => last.stream_ordering,
            _ => upto,
        };
        let mut items = Vec::new();
        for event in &events {
            let matched = std::sync::Mutex::new(Vec::new());
            let found = &matched;
            let outcome = crate::jobs::process_item("appservice_notifier", event.event_id.as_str(), &state.storage, || async move {
                let ids = matches(state, event, known).await?;
                *found.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = ids;
                Ok::<_, StorageError>(())
            })
            .await?;
            if outcome == crate::jobs::Outcome::Processed {
                let client = crate::rooms::pdu::client_event(event, true).to_string();
                let ids = matched.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
                items.extend(ids.into_iter().map(|id| (id, "event", client.clone())));
            }
        }
        if written.due(reached, !items.is_empty()) {
            // Not flushed: the sender's store of the transaction that takes
            // these items is, and carries this commit with it (one
            // write-ahead log) before anything is sent. A crash of the
            // database before that loses the items and the position
            // together: the events are matched again.
            let seqs = state.storage.enqueue_appservice_items(&items, Some(reached), Durability::WithNextFlush).await?;
            written.wrote(reached);
            tracing::debug!(
                events = events.len(),
                items = items.len(),
                read_us,
                elapsed_us = started.elapsed().as_micros() as u64,
                lag_ms = events.first().map_or(0, |event| weft_storage::now_ms() - event.origin_server_ts),
                "events queued"
            );
            let mut handed: HashMap<String, Vec<QueuedItem>> = HashMap::new();
            for ((id, kind, json), seq) in items.into_iter().zip(seqs) {
                handed.entry(id).or_default().push(QueuedItem { seq, kind: kind.to_owned(), json });
            }
            for (id, items) in handed {
                if let Some(link) = senders.get(&id) {
                    link.handoff.queued(items);
                    link.wake.notify_one();
                }
            }
        }
        at = reached;
        *position = Some(reached);
    }
}

/// What the matcher shares with one appservice's sender: its wake-up, and
/// the events queued for it, handed over in memory.
#[derive(Debug, Default)]
struct Link {
    wake: Notify,
    handoff: super::handoff::Handoff,
}

/// The appservices (with a `url`) interested in `event`. When there are
/// some, an unknown local sender or member event target in an appservice's
/// users namespace is asked about first (the user query), as Synapse does
/// before it queues the event.
async fn matches(state: &Services, event: &StoredEvent, known: &KnownUsers) -> Result<Vec<String>, StorageError> {
    let mut found = Vec::new();
    let mut aliases = None;
    let mut members = None;
    for service in state.config.app_services.all().iter().filter(|service| service.url.is_some()) {
        if super::interest::interested(state, service, event, &mut aliases, &mut members).await? {
            found.push(service.id.clone());
        }
    }
    if !found.is_empty() {
        ask_if_unknown(state, &event.sender, known).await?;
        if event.kind == "m.room.member"
            && let Some(target) = event.state_key.as_deref().and_then(|key| ruma::UserId::parse(key).ok())
        {
            ask_if_unknown(state, &target, known).await?;
        }
    }
    Ok(found)
}

/// The user query for a local user this server has no account for (and who
/// is no appservice's sender), when an appservice claims it.
async fn ask_if_unknown(state: &Services, user_id: &ruma::UserId, known: &KnownUsers) -> Result<(), StorageError> {
    if user_id.server_name() != state.server_name || state.config.app_services.is_sender(user_id) || known.has(user_id) {
        return Ok(());
    }
    if !state.config.app_services.all().iter().any(|service| service.is_user_in_namespace(user_id.as_str())) {
        return Ok(());
    }
    if state.storage.user(user_id).await?.is_some() {
        known.add(user_id);
    } else {
        super::query_user(state, user_id.as_str()).await;
    }
    Ok(())
}

/// Local users known to have an account (accounts are never removed), so
/// the matcher reads each one once; forgotten wholesale past `KNOWN_USERS`.
#[derive(Debug, Default)]
struct KnownUsers(std::sync::Mutex<std::collections::HashSet<ruma::OwnedUserId>>);

const KNOWN_USERS: usize = 100_000;

impl KnownUsers {
    fn has(&self, user_id: &ruma::UserId) -> bool {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(user_id)
    }

    fn add(&self, user_id: &ruma::UserId) {
        let mut known = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if known.len() >= KNOWN_USERS {
            known.clear();
        }
        known.insert(user_id.to_owned());
    }
}

/// One appservice's sender: transactions in order, with backoff, until
/// `stopped`. While one is in flight the next is built and stored, so that
/// it leaves as soon as the appservice acknowledges the first.
async fn send_loop(state: AppState, service: Arc<AppService>, link: Arc<Link>, mut stopped: watch::Receiver<bool>) {
    let Some(registration) = super::registration(&service) else { return };
    let mut backoff = FIRST_BACKOFF;
    let mut owed = Owed::default();
    loop {
        if *stopped.borrow() {
            return;
        }
        let (txn_id, body) = match owed.front(&state, &service, &link.handoff).await {
            Err(error) => {
                tracing::warn!(appservice = %service.id, %error, "the appservice queue cannot be read; retrying");
                owed.unknown = true;
                if pause(RETRY_DELAY, &mut stopped).await {
                    return;
                }
                continue;
            }
            Ok(Some(txn)) => txn,
            Ok(None) => {
                tokio::select! {
                    _ = link.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_CHECK) => {}
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
                continue;
            }
        };
        let call = AppserviceCall::PushTransaction { registration: registration.clone(), txn_id: txn_id.to_string(), body: body.clone() };
        let started = std::time::Instant::now();
        let notifiers = state.appservices.clone();
        let mut sending = tokio::spawn(async move { notifiers.call(call).await });
        // The next transaction, built meanwhile: at once if items are
        // queued, else when the matcher queues some.
        let outcome = loop {
            if owed.may_build() {
                owed.build_next(&state, &service, &link.handoff).await;
            }
            let waiting = owed.may_build();
            tokio::select! {
                outcome = &mut sending => break outcome,
                _ = link.wake.notified(), if waiting => {}
                // A stop abandons the call: the transaction stays stored and is sent again (same id) later.
                _ = stopped.wait_for(|stop| *stop) => {
                    sending.abort();
                    return;
                }
            }
        };
        let outcome = outcome.unwrap_or_else(|error| Outcome::Failed { reason: format!("the delivery task failed: {error}") });
        tracing::debug!(appservice = %service.id, txn_id, elapsed_us = started.elapsed().as_micros() as u64, age_ms = oldest_age_ms(&body), "transaction sent");
        if outcome.is_success() {
            metrics::counter!("weft_appservice_transactions_sent_total", "appservice" => service.id.clone()).increment(1);
            backoff = FIRST_BACKOFF;
            owed.acknowledge(txn_id);
            continue;
        }
        metrics::counter!("weft_appservice_transactions_failed_total", "appservice" => service.id.clone()).increment(1);
        tracing::warn!(appservice = %service.id, txn_id, outcome = %describe(&outcome), retry_in_secs = backoff.as_secs(),
            "an appservice did not accept a transaction; it is sent again later");
        let wait = backoff;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        if pause(wait, &mut stopped).await {
            return;
        }
    }
}

/// Sleeps `wait`; whether the notifier was stopped meanwhile.
async fn pause(wait: Duration, stopped: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stopped.wait_for(|stop| *stop) => true,
    }
}

/// What a sender knows of its appservice's stored transactions. Only the
/// sender stores them, so after the first look it knows which are owed
/// without asking the database again.
#[derive(Debug)]
struct Owed {
    /// The transaction to send (again, after a failure), and the one stored after it.
    front: Option<(i64, String)>,
    next: Option<(i64, String)>,
    /// Whether stored transactions may be waiting beyond those in memory
    /// (at start, or after a database error left a store in doubt).
    unknown: bool,
    /// The last transaction answered 2xx; it and those before it are
    /// forgotten with the next one stored (one commit a transaction), or
    /// alone when nothing is queued.
    acknowledged: Option<i64>,
    /// Whether `acknowledged` is still stored.
    unforgotten: bool,
}

impl Default for Owed {
    fn default() -> Self {
        Self { front: None, next: None, unknown: true, acknowledged: None, unforgotten: false }
    }
}

impl Owed {
    /// The transaction to send now: the one that failed, the one built
    /// meanwhile, one stored and not acknowledged, or one built from the
    /// queue; `None` when nothing is owed or queued.
    async fn front(&mut self, state: &Services, service: &AppService, handoff: &Handoff) -> Result<Option<(i64, String)>, StorageError> {
        if self.front.is_none() {
            self.front = self.next.take();
        }
        if self.front.is_none() && self.unknown {
            match state.storage.oldest_appservice_txn(&service.id, self.acknowledged).await? {
                Some(txn) => self.front = Some(txn),
                None => self.unknown = false,
            }
        }
        if self.front.is_none() {
            self.front = self.build(state, service, handoff).await?;
        }
        if self.front.is_none()
            && self.unforgotten
            && let Some(acknowledged) = self.acknowledged
        {
            state.storage.delete_appservice_txns(&service.id, acknowledged).await?;
            self.unforgotten = false;
        }
        Ok(self.front.clone())
    }

    /// Whether the next transaction may be built ahead: nothing stored is
    /// in doubt and none is built yet.
    fn may_build(&self) -> bool {
        !self.unknown && self.next.is_none()
    }

    /// Builds the next transaction while the front one is in flight.
    async fn build_next(&mut self, state: &Services, service: &AppService, handoff: &Handoff) {
        match self.build(state, service, handoff).await {
            Ok(built) => self.next = built,
            Err(error) => {
                tracing::warn!(appservice = %service.id, %error, "the next appservice transaction could not be stored; it is built again later");
                self.unknown = true;
            }
        }
    }

    fn acknowledge(&mut self, txn_id: i64) {
        self.front = None;
        self.acknowledged = Some(txn_id);
        self.unforgotten = true;
    }

    /// A transaction of the oldest queued items, stored; `None` when nothing
    /// is queued. The items come from the hand-off when it holds the whole
    /// queue, else from the queue.
    async fn build(&mut self, state: &Services, service: &AppService, handoff: &Handoff) -> Result<Option<(i64, String)>, StorageError> {
        let started = std::time::Instant::now();
        let generation = handoff.generation();
        let (items, read) = match handoff.oldest(PER_TXN as usize) {
            Some(items) => (items, false),
            None => (state.storage.appservice_queued(&service.id, PER_TXN).await?, true),
        };
        // A read that found fewer than a transaction takes of every kind saw the whole queue.
        let whole = read && QUEUED_KINDS.iter().all(|kind| items.iter().filter(|item| item.kind == *kind).count() < PER_TXN as usize);
        if items.is_empty() {
            if whole {
                handoff.caught_up(generation);
            }
            return Ok(None);
        }
        let mut body = body(service, &items);
        if let Value::Object(fields) = &mut body {
            fields.extend(super::encryption::msc3202_fields(state, service, &items).await?);
        }
        let body = body.to_string();
        let forget = self.acknowledged.filter(|_| self.unforgotten);
        let txn_id = match state.storage.store_appservice_txn(&service.id, &body, &items, forget).await {
            Ok(txn_id) => txn_id,
            Err(error) => {
                handoff.invalidate();
                return Err(error);
            }
        };
        self.unforgotten = false;
        handoff.taken(items.iter().map(|item| item.seq).max().unwrap_or_default());
        if whole {
            handoff.caught_up(generation);
        }
        tracing::debug!(appservice = %service.id, txn_id, items = items.len(), read, elapsed_us = started.elapsed().as_micros() as u64, age_ms = oldest_age_ms(&body), "transaction stored");
        Ok(Some((txn_id, body)))
    }
}

/// A transaction's body as Synapse 1.163 sends it: `events`, `ephemeral`
/// and `de.sorunome.msc2409.to_device`, even when empty (for an appservice
/// that asks for ephemeral events, these also under the unstable
/// `de.sorunome.msc2409.ephemeral` and the stable `to_device` of MSC4203).
/// The MSC3202 fields are `encryption`'s.
pub fn body(service: &AppService, items: &[QueuedItem]) -> Value {
    let of = |kind: &str| -> Vec<Value> { items.iter().filter(|item| item.kind == kind).filter_map(|item| serde_json::from_str(&item.json).ok()).collect() };
    let ephemeral = of("ephemeral");
    let to_device = of("to_device");
    let mut body = json!({
        "events": of("event"),
        "ephemeral": ephemeral.clone(),
        "de.sorunome.msc2409.to_device": to_device.clone(),
    });
    if service.receive_ephemeral {
        body["de.sorunome.msc2409.ephemeral"] = Value::Array(ephemeral);
        body["to_device"] = Value::Array(to_device);
    }
    body
}

/// How long ago the oldest event of a transaction body was sent (its
/// `origin_server_ts`), for the debug log; 0 when the log is off.
fn oldest_age_ms(body: &str) -> i64 {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return 0;
    }
    let oldest = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|body| body["events"].as_array().and_then(|events| events.iter().filter_map(|event| event["origin_server_ts"].as_i64()).min()));
    oldest.map_or(0, |ts| weft_storage::now_ms() - ts)
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Reply { status, body } => format!("answered {status}: {}", body.chars().take(200).collect::<String>()),
        Outcome::Unreachable { reason } => format!("unreachable: {reason}"),
        Outcome::Timeout => "no answer in time".into(),
        Outcome::Failed { reason } => reason.clone(),
    }
}
