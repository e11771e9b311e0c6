//! `/sync`: what changed for a user between two tokens.
//!
//! Owns: choosing, per room, the timeline (the latest visible events, at
//! most the filter's limit, `limited` with a `prev_batch` when more exist),
//! the state before the timeline (all of it for rooms new to the client, the
//! changes since the last sync otherwise), invites with their stripped
//! state, and rooms left since the last sync. Long-polls wait on the
//! notifier, not by polling the database. May call: `storage`, `rooms`.

pub mod notifier;
pub mod token;

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use ruma::{
    RoomId, UserId,
    api::client::sync::sync_events::v3::{InvitedRoom, JoinedRoom, KnockedRoom, LeftRoom, Response, State, StateEvents, Timeline},
    serde::Raw,
};
use serde_json::value::to_raw_value;

pub use notifier::{Notifier, Positions};
pub use token::{MultiWriterPosition, StreamToken};

use crate::{
    rooms::{pdu, visibility::Visibility},
    services::Services,
    storage::{StorageError, StoredEvent, Stream},
};

/// The default `timeline.limit`, as Synapse.
pub const DEFAULT_TIMELINE_LIMIT: usize = 10;
/// The longest long-poll honoured.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// State types included in an invite's stripped state, as Synapse's default.
const INVITE_STATE_TYPES: [&str; 7] =
    ["m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.canonical_alias", "m.room.encryption", "m.room.topic"];

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub since: Option<StreamToken>,
    pub timeout: Duration,
    pub full_state: bool,
    pub timeline_limit: usize,
    pub include_leave: bool,
    /// Lazy-loading members: member events in `state` only for the timeline's
    /// senders and the user. Redundant ones are sent again (no per-device
    /// record of what a client has), which the spec allows.
    pub lazy_load_members: bool,
}

/// Answers at once if anything changed since `since` (or on an initial
/// sync), otherwise waits up to the timeout for something to.
pub async fn sync(services: &Services, user_id: &UserId, options: &SyncOptions) -> Result<Response, StorageError> {
    let deadline = Instant::now() + options.timeout.min(MAX_TIMEOUT);
    let mut wake = services.notifier.subscribe();
    loop {
        wake.borrow_and_update();
        let positions = services.notifier.positions();
        let response = compute(services, user_id, options, &positions).await?;
        let rooms = &response.rooms;
        let nothing = rooms.join.is_empty() && rooms.invite.is_empty() && rooms.leave.is_empty() && rooms.knock.is_empty();
        if options.since.is_none() || !nothing || options.full_state || Instant::now() >= deadline {
            return Ok(response);
        }
        if tokio::time::timeout_at(deadline.into(), wake.changed()).await.is_err() {
            return Ok(response);
        }
    }
}

async fn compute(services: &Services, user_id: &UserId, options: &SyncOptions, positions: &Positions) -> Result<Response, StorageError> {
    let storage = &services.storage;
    let since = options.since.as_ref().map(|token| token.events.min);
    let now = positions.get(Stream::Events);
    let next = StreamToken::from_positions(positions);
    let mut response = Response::new(next.to_string());

    for (room_id, mut membership, mut at) in storage.memberships_of(user_id).await? {
        if at > now {
            // Persisted after the position this response is for: use the membership then.
            match storage.membership_history(&room_id, user_id).await?.into_iter().rev().find(|(ordering, _)| *ordering <= now) {
                Some((ordering, earlier)) => (at, membership) = (ordering, earlier),
                None => continue,
            }
        }
        let changed_since_last = since.is_none_or(|since| at > since);
        match membership.as_str() {
            "join" => {
                let new_to_client = changed_since_last || options.full_state;
                if let Some(room) = joined_room(services, &room_id, user_id, since, now, new_to_client, options).await? {
                    response.rooms.join.insert(room_id, room);
                }
            }
            "invite" if changed_since_last => {
                let mut room = InvitedRoom::new();
                room.invite_state.events = stripped_state(services, &room_id, user_id, at).await?;
                response.rooms.invite.insert(room_id, room);
            }
            "knock" if changed_since_last => {
                let mut room = KnockedRoom::new();
                room.knock_state.events = stripped_state(services, &room_id, user_id, at).await?;
                response.rooms.knock.insert(room_id, room);
            }
            "leave" | "ban"
                if changed_since_last
                    && (since.is_some() || options.include_leave)
                    && !storage.room_forgotten(user_id, &room_id).await? =>
            {
                let (timeline, state) = timeline_and_state(services, &room_id, user_id, since, at, options, true).await?;
                let mut room = LeftRoom::new();
                room.timeline = timeline;
                room.state = State::Before(state);
                response.rooms.leave.insert(room_id, room);
            }
            _ => {}
        }
    }
    Ok(response)
}

async fn joined_room(
    services: &Services,
    room_id: &RoomId,
    user_id: &UserId,
    since: Option<i64>,
    now: i64,
    new_to_client: bool,
    options: &SyncOptions,
) -> Result<Option<JoinedRoom>, StorageError> {
    let since_for_room = if new_to_client { None } else { since };
    let (timeline, state) = timeline_and_state(services, room_id, user_id, since_for_room, now, options, new_to_client).await?;
    if !new_to_client && timeline.events.is_empty() && state.events.is_empty() {
        return Ok(None);
    }
    let mut room = JoinedRoom::new();
    room.timeline = timeline;
    room.state = State::Before(state);
    Ok(Some(room))
}

/// The timeline of `(since, upto]` (from the start when `since` is `None`)
/// and the state before it: whole when `full`, else what changed since.
async fn timeline_and_state(
    services: &Services,
    room_id: &RoomId,
    user_id: &UserId,
    since: Option<i64>,
    upto: i64,
    options: &SyncOptions,
    full: bool,
) -> Result<(Timeline, StateEvents), StorageError> {
    let limit = options.timeline_limit;
    let storage = &services.storage;
    let visibility = Visibility::load(storage, room_id, user_id).await?;
    let after = since.unwrap_or(0);
    // Fetch in pages, newest first, until `limit` visible events or the start.
    let mut visible: Vec<StoredEvent> = Vec::new();
    let mut cursor = upto;
    let mut more_before = false;
    let page = (limit as i64 + 1).max(20);
    loop {
        let batch = storage.room_events(room_id, after, cursor, page, true).await?;
        let exhausted = (batch.len() as i64) < page;
        for event in batch {
            cursor = event.stream_ordering - 1;
            if visibility.can_see(&event, user_id) {
                if visible.len() == limit {
                    more_before = true;
                    break;
                }
                visible.push(event);
            }
        }
        if more_before || exhausted || limit == 0 {
            break;
        }
    }
    visible.reverse();
    let timeline_start = visible.first().map_or(upto, |event| event.stream_ordering - 1);

    let mut timeline = Timeline::new();
    timeline.limited = more_before;
    timeline.prev_batch = Some(StreamToken::events_at(timeline_start).to_string());
    timeline.events = visible.iter().map(|event| raw(pdu::client_event(event, false))).collect();

    let mut state_events = if full {
        storage.state_at(room_id, timeline_start).await?
    } else if more_before {
        latest_per_key(storage.state_changes(room_id, after, timeline_start).await?)
    } else {
        Vec::new()
    };
    if options.lazy_load_members {
        let mut wanted: HashSet<&str> = visible.iter().map(|event| event.sender.as_str()).collect();
        wanted.insert(user_id.as_str());
        let is_wanted_member = |event: &StoredEvent| event.state_key.as_deref().is_some_and(|key| wanted.contains(key));
        state_events.retain(|event| event.kind != "m.room.member" || is_wanted_member(event));
        let mut have: HashSet<String> = state_events
            .iter()
            .chain(visible.iter())
            .filter(|event| event.kind == "m.room.member")
            .filter_map(|event| event.state_key.clone())
            .collect();
        if !full {
            // Senders the client may not know yet: their membership before the timeline.
            have.insert(user_id.to_string());
        }
        let missing: Vec<&str> = wanted.iter().copied().filter(|sender| !have.contains(*sender)).collect();
        if !missing.is_empty() {
            let before = storage.state_at(room_id, timeline_start).await?;
            state_events.extend(before.into_iter().filter(|event| {
                event.kind == "m.room.member" && event.state_key.as_deref().is_some_and(|key| missing.contains(&key))
            }));
            state_events.sort_by_key(|event| event.stream_ordering);
        }
    }
    let mut state = StateEvents::new();
    state.events = state_events.iter().map(|event| raw(pdu::client_event(event, false))).collect();
    Ok((timeline, state))
}

/// The stripped state shown with an invite or a knock.
async fn stripped_state<T>(services: &Services, room_id: &RoomId, user_id: &UserId, at: i64) -> Result<Vec<Raw<T>>, StorageError> {
    let state = services.storage.state_at(room_id, at).await?;
    Ok(state
        .iter()
        .filter(|event| {
            INVITE_STATE_TYPES.contains(&event.kind.as_str()) || (event.kind == "m.room.member" && event.state_key.as_deref() == Some(user_id.as_str()))
        })
        .map(|event| raw(pdu::stripped_event(event)))
        .collect())
}

fn latest_per_key(events: Vec<StoredEvent>) -> Vec<StoredEvent> {
    let mut latest: HashMap<(String, String), StoredEvent> = HashMap::new();
    for event in events {
        let key = (event.kind.clone(), event.state_key.clone().unwrap_or_default());
        latest.insert(key, event);
    }
    let mut events: Vec<StoredEvent> = latest.into_values().collect();
    events.sort_by_key(|event| event.stream_ordering);
    events
}

fn raw<T>(value: serde_json::Value) -> Raw<T> {
    Raw::from_json(to_raw_value(&value).expect("a JSON value serialises"))
}

