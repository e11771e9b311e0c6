//! The events persisted lately, in memory, read from the database once per
//! position the persisters reach rather than once per woken `/sync`: which
//! rooms moved, their new events (parsed into the client format once), and
//! whose membership changed, for every listener whose token is recent.
//!
//! Per persister (`stream_writers.events` order) the log knows every event
//! it wrote in `(floor, covered]`; a question about anything at or before
//! `floor` (before this process started, or trimmed away) is answered
//! "unknown", and the caller reads the database as before. At most
//! `CAPACITY` events are held; the oldest go first. A redaction re-reads
//! its target, whose stored JSON it changed, so the log never shows an
//! event as it was before being redacted.
//!
//! May call: `weft_storage`.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, OnceLock, RwLock},
};

use ruma::{OwnedRoomId, RoomId, UserId};
use serde_json::Value;

use weft_storage::{StateResetMark, Storage, StorageError, StoredEvent};

use crate::rooms::pdu;

/// Most events held.
const CAPACITY: usize = 20_000;
/// Most events read per persister at once; a larger gap starts the log afresh.
const FILL_LIMIT: i64 = 2_000;

/// An event of the log, with what every listener shares of it.
pub struct RecentEvent {
    pub event: StoredEvent,
    writer: usize,
    client_form: OnceLock<Value>,
    /// State resolution changed the room's state at this event beyond the
    /// event itself (`state_resets`): the database path shows it.
    pub resets_state: bool,
}

impl RecentEvent {
    fn new(event: StoredEvent, writer: usize, resets_state: bool) -> Arc<Self> {
        Arc::new(Self { event, writer, client_form: OnceLock::new(), resets_state })
    }

    /// The event in the client format without `room_id`, as `/sync` shows
    /// it; `unsigned.age` is as of the first reader, callers set their own.
    pub fn client_form(&self) -> &Value {
        self.client_form.get_or_init(|| pdu::client_event(&self.event, false))
    }
}

#[derive(Default)]
struct Log {
    started: bool,
    floor: Vec<i64>,
    covered: Vec<i64>,
    by_room: HashMap<OwnedRoomId, VecDeque<Arc<RecentEvent>>>,
    /// `(writer, ordering, room)` in the order appended, for trimming.
    order: VecDeque<(usize, i64, OwnedRoomId)>,
    /// Per user, per writer: the ordering of their latest member event.
    members: HashMap<String, Vec<i64>>,
}

impl Log {
    fn start(&mut self, at: &[i64]) {
        *self = Log { started: true, floor: at.to_vec(), covered: at.to_vec(), ..Log::default() };
    }

    fn append(&mut self, writer: usize, events: Vec<StoredEvent>, upto: i64, redacted: &[StoredEvent], resets: &[StateResetMark]) {
        for target in redacted {
            if let Some(held) = self.by_room.get_mut(&target.room_id)
                && let Some(slot) = held.iter_mut().find(|held| held.event.event_id == target.event_id)
            {
                *slot = RecentEvent::new(target.clone(), slot.writer, slot.resets_state);
            }
        }
        for reset in resets.iter().filter(|reset| reset.kind == "m.room.member") {
            let writers = self.covered.len();
            let last = self.members.entry(reset.state_key.clone()).or_insert_with(|| vec![i64::MIN; writers]);
            last[writer] = last[writer].max(reset.stream_ordering);
        }
        for event in events {
            let resets_state = resets.iter().any(|reset| reset.stream_ordering == event.stream_ordering);
            if event.kind == "m.room.member"
                && let Some(user) = &event.state_key
            {
                let writers = self.covered.len();
                let last = self.members.entry(user.clone()).or_insert_with(|| vec![i64::MIN; writers]);
                last[writer] = last[writer].max(event.stream_ordering);
            }
            self.order.push_back((writer, event.stream_ordering, event.room_id.clone()));
            let room = self.by_room.entry(event.room_id.clone()).or_default();
            let at = room.partition_point(|held| held.event.stream_ordering < event.stream_ordering);
            room.insert(at, RecentEvent::new(event, writer, resets_state));
        }
        self.covered[writer] = self.covered[writer].max(upto);
        while self.order.len() > CAPACITY {
            let Some((writer, ordering, room_id)) = self.order.pop_front() else { break };
            self.floor[writer] = self.floor[writer].max(ordering);
            if let Some(room) = self.by_room.get_mut(&room_id) {
                // Appended in order: the oldest of the room is at its front.
                while room.front().is_some_and(|held| held.writer == writer && held.event.stream_ordering <= ordering) {
                    room.pop_front();
                }
                if room.is_empty() {
                    self.by_room.remove(&room_id);
                }
            }
        }
        if self.members.len() > CAPACITY {
            let floor = self.floor.clone();
            self.members.retain(|_, last| last.iter().zip(&floor).any(|(at, floor)| at > floor));
        }
    }

    fn knows(&self, writer: usize, after: i64, upto: i64) -> bool {
        self.started && writer < self.floor.len() && after >= self.floor[writer] && upto <= self.covered[writer]
    }
}

#[derive(Default)]
pub struct RecentEvents {
    log: RwLock<Log>,
    filling: tokio::sync::Mutex<()>,
}

impl RecentEvents {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Log> {
        self.log.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Log> {
        self.log.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads what the persisters `writers` (in configured order) wrote up
    /// to `targets` (one position each), once for all callers.
    pub async fn catch_up(&self, storage: &Storage, writers: &[String], targets: &[i64]) -> Result<(), StorageError> {
        let behind = |log: &Log| !log.started || log.covered.len() != targets.len() || log.covered.iter().zip(targets).any(|(have, want)| have < want);
        if !behind(&self.read()) {
            return Ok(());
        }
        let _filling = self.filling.lock().await;
        let covered = {
            let mut log = self.write();
            if !log.started || log.covered.len() != targets.len() {
                log.start(targets);
                return Ok(());
            }
            log.covered.clone()
        };
        for (writer, instance) in writers.iter().enumerate() {
            let (after, upto) = (covered[writer], targets[writer]);
            if after >= upto {
                continue;
            }
            let events = storage.events_written_between(instance, after, upto, FILL_LIMIT).await?;
            if events.len() as i64 >= FILL_LIMIT {
                self.write().start(targets);
                return Ok(());
            }
            let mut redacted = Vec::new();
            for event in events.iter().filter(|event| event.kind == "m.room.redaction") {
                if let Some(target) = redaction_target(event)
                    && let Ok(target) = <&ruma::EventId>::try_from(target.as_str())
                    && let Some(target) = storage.event(target).await?
                {
                    redacted.push(target);
                }
            }
            let resets = if events.is_empty() { Vec::new() } else { storage.state_resets_between(after, upto).await? };
            self.write().append(writer, events, upto, &redacted, &resets);
        }
        Ok(())
    }

    /// Where the log stands: per persister, everything up to here is known.
    /// `None` before it started.
    pub fn stamp(&self) -> Option<Vec<i64>> {
        let log = self.read();
        log.started.then(|| log.covered.clone())
    }

    /// The events of `room_id` (persisted by `writer`) in `(after, upto]`,
    /// oldest first; `None` when the log does not know that range whole.
    pub fn window(&self, room_id: &RoomId, writer: usize, after: i64, upto: i64) -> Option<Vec<Arc<RecentEvent>>> {
        let log = self.read();
        if !log.knows(writer, after, upto) {
            return None;
        }
        let Some(room) = log.by_room.get(room_id) else { return Some(Vec::new()) };
        let mut events: Vec<Arc<RecentEvent>> = room
            .iter()
            .rev()
            .skip_while(|held| held.event.stream_ordering > upto)
            .take_while(|held| held.event.stream_ordering > after)
            .filter(|held| held.writer == writer)
            .cloned()
            .collect();
        events.reverse();
        Some(events)
    }

    /// Whether `user_id`'s membership in some room may have changed after
    /// `stamp` (from `stamp`), up to where the log stands; `true` when the
    /// log cannot tell.
    pub fn membership_may_have_changed(&self, user_id: &UserId, stamp: &[i64]) -> bool {
        let log = self.read();
        if !log.started || stamp.len() != log.floor.len() || stamp.iter().zip(&log.floor).any(|(at, floor)| at < floor) {
            return true;
        }
        log.members.get(user_id.as_str()).is_some_and(|last| last.iter().zip(stamp).any(|(changed, at)| changed > at))
    }
}

/// The event a redaction redacts: top-level `redacts`, or in the content from room version 11.
fn redaction_target(event: &StoredEvent) -> Option<String> {
    let pdu: Value = serde_json::from_str(&event.json).ok()?;
    pdu.get("redacts").or_else(|| pdu.pointer("/content/redacts")).and_then(Value::as_str).map(str::to_owned)
}
