//! The notifier's queue, run on the instance `notify_appservices_from_worker`
//! names (main when unset), as two parts:
//!
//! - the matcher follows the events stream from the position saved in the
//!   database up to what the notifier says every persister has persisted,
//!   100 events a batch, and queues each event in the client format for every
//!   appservice interested in it (`interest`), saving the position in the same
//!   database transaction as the items: a restart neither loses nor repeats
//!   one. It wakes when any stream moves (replication on a worker), and
//!   queues typing, receipts and presence for the appservices that ask for
//!   them (`ephemeral`), and to-device messages and device-list changes
//!   (`encryption`). Before queueing an event it asks the appservices about
//!   an unknown local sender or member in their namespace (the user query).
//! - one sender per appservice with a `url` turns its queued items into
//!   transactions (up to 100 events, 100 ephemeral and 100 to-device items,
//!   the device-list changes merged, the MSC3202 key counts of the moment;
//!   ids from one sequence for every appservice), stored whole before they
//!   are sent, and sends them oldest first, one at a time, through the
//!   appservice-notifier plugin. A transaction is removed only when the
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

use weft_core::{
    appservice::AppService,
    config::{Config, MAIN_INSTANCE},
};
use weft_plugin_runtime::appservice::{AppserviceCall, Outcome};
use weft_storage::{QueuedItem, StorageError, StoredEvent, Stream};

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
        let wake = Arc::new(Notify::new());
        senders.insert(service.id.clone(), wake.clone());
        tasks.push(tokio::spawn(send_loop(state.clone(), service.clone(), wake, stopped.clone())));
    }
    let mut positions = state.notifier.subscribe();
    let mut position = None;
    let mut cursor = super::ephemeral::Cursor::default();
    let mut devices = super::encryption::Cursor::default();
    let known = KnownUsers::default();
    loop {
        let caught_up = async {
            catch_up(&state, &stopped, &mut position, &senders, &known).await?;
            let mut woken = super::ephemeral::catch_up(&state, &mut cursor).await?;
            // Receipts are read a batch at a time: a backlog is read through
            // now, not when some stream next moves.
            while cursor.receipts_behind(state.notifier.position(Stream::Receipts)) {
                woken.extend(super::ephemeral::catch_up(&state, &mut cursor).await?);
            }
            woken.extend(super::encryption::catch_up(&state, &mut devices).await?);
            for id in woken {
                if let Some(wake) = senders.get(&id) {
                    wake.notify_one();
                }
            }
            Ok::<_, StorageError>(())
        };
        let delay = match caught_up.await {
            Ok(()) => None,
            Err(error) => {
                tracing::warn!(%error, "the appservice notifier failed to match events; retrying");
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
    position: &mut Option<i64>,
    senders: &HashMap<String, Arc<Notify>>,
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
        let events = state.storage.appservice_events(at, upto, BATCH).await?;
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
        state.storage.enqueue_appservice_items(&items, Some(reached)).await?;
        for (id, _, _) in &items {
            if let Some(wake) = senders.get(id) {
                wake.notify_one();
            }
        }
        at = reached;
        *position = Some(reached);
    }
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

/// One appservice's sender: transactions in order, with backoff, until `stopped`.
async fn send_loop(state: AppState, service: Arc<AppService>, wake: Arc<Notify>, mut stopped: watch::Receiver<bool>) {
    let Some(registration) = super::registration(&service) else { return };
    let mut backoff = FIRST_BACKOFF;
    let mut owed = Owed::default();
    loop {
        if *stopped.borrow() {
            return;
        }
        let pause = match next_txn(&state, &service, &mut owed).await {
            Err(error) => {
                tracing::warn!(appservice = %service.id, %error, "the appservice queue cannot be read; retrying");
                Some(RETRY_DELAY)
            }
            Ok(None) => None,
            Ok(Some((txn_id, body))) => {
                let call = AppserviceCall::PushTransaction { registration: registration.clone(), txn_id: txn_id.to_string(), body };
                let started = std::time::Instant::now();
                // A stop abandons the call: the transaction stays stored and is sent again (same id) later.
                let outcome = tokio::select! {
                    outcome = state.appservices.call(call) => outcome,
                    _ = stopped.wait_for(|stop| *stop) => return,
                };
                tracing::debug!(appservice = %service.id, txn_id, elapsed_us = started.elapsed().as_micros() as u64, "transaction sent");
                if outcome.is_success() {
                    metrics::counter!("weft_appservice_transactions_sent_total", "appservice" => service.id.clone()).increment(1);
                    backoff = FIRST_BACKOFF;
                    owed.acknowledged = Some(txn_id);
                    owed.stored = false;
                    continue;
                }
                metrics::counter!("weft_appservice_transactions_failed_total", "appservice" => service.id.clone()).increment(1);
                tracing::warn!(appservice = %service.id, txn_id, outcome = %describe(&outcome), retry_in_secs = backoff.as_secs(),
                    "an appservice did not accept a transaction; it is sent again later");
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                Some(wait)
            }
        };
        match pause {
            Some(wait) => {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
            }
            None => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_CHECK) => {}
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
            }
        }
    }
}

/// What a sender knows of its appservice's stored transactions. Only the
/// sender stores them, so after the first look it knows whether one is
/// owed without asking the database.
#[derive(Debug)]
struct Owed {
    /// Whether a stored transaction may be waiting (at start: unknown, so yes).
    stored: bool,
    /// A transaction answered 2xx and not forgotten yet: forgotten with the
    /// next one stored (one commit a transaction), or alone when nothing is queued.
    acknowledged: Option<i64>,
}

impl Default for Owed {
    fn default() -> Self {
        Self { stored: true, acknowledged: None }
    }
}

/// The oldest transaction still owed, built from the queue when none is.
async fn next_txn(state: &Services, service: &AppService, owed: &mut Owed) -> Result<Option<(i64, String)>, StorageError> {
    if owed.stored {
        if let Some(txn) = state.storage.oldest_appservice_txn(&service.id).await? {
            return Ok(Some(txn));
        }
        owed.stored = false;
    }
    let started = std::time::Instant::now();
    let items = state.storage.appservice_queued(&service.id, PER_TXN).await?;
    if items.is_empty() {
        if let Some(acknowledged) = owed.acknowledged {
            state.storage.delete_appservice_txn(&service.id, acknowledged).await?;
            owed.acknowledged = None;
        }
        return Ok(None);
    }
    let mut body = body(service, &items);
    if let Value::Object(fields) = &mut body {
        fields.extend(super::encryption::msc3202_fields(state, service, &items).await?);
    }
    let body = body.to_string();
    let txn_id = state.storage.store_appservice_txn(&service.id, &body, &items, owed.acknowledged).await?;
    owed.acknowledged = None;
    owed.stored = true;
    tracing::debug!(appservice = %service.id, txn_id, items = items.len(), elapsed_us = started.elapsed().as_micros() as u64, "transaction stored");
    Ok(Some((txn_id, body)))
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

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Reply { status, body } => format!("answered {status}: {}", body.chars().take(200).collect::<String>()),
        Outcome::Unreachable { reason } => format!("unreachable: {reason}"),
        Outcome::Timeout => "no answer in time".into(),
        Outcome::Failed { reason } => reason.clone(),
    }
}
