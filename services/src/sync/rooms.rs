//! The room part of `/sync`: a room's timeline between two positions (the
//! latest visible events, at most the filter's limit, `limited` with a
//! `prev_batch` when more exist), the state before it (whole for rooms new
//! to the client, the changes since otherwise, with what state resolution
//! changed at forks, lazy-loaded members), and the
//! stripped state shown with invites and knocks.

use std::collections::{HashMap, HashSet};

use ruma::{
    RoomId, UserId,
    api::client::sync::sync_events::v3::{StateEvents, Timeline},
    serde::Raw,
};

use weft_core::json::raw;
use weft_storage::{StorageError, StoredEvent};

use super::{INVITE_STATE_TYPES, StreamToken, SyncOptions, filter, recent::RecentEvent};
use crate::{
    rooms::{aggregations::Aggregations, pdu, txn_ids::TransactionIds, visibility::Visibility},
    services::Services,
};

/// The most events a filtered timeline looks through before calling itself `limited`.
const MAX_FILTERED_SCAN: usize = 1000;

/// A room's part of a sync response, before ephemeral data and counts.
pub(super) struct RoomDelta {
    pub timeline: Timeline,
    pub state: StateEvents,
    /// Whether a membership event is in the timeline or the state: the room's summary may have changed.
    pub memberships_changed: bool,
}

/// The timeline of `(since, upto]` (from the start when `since` is `None`)
/// and the state before it: whole when `full`, else what changed since.
pub(super) async fn timeline_and_state(
    services: &Services,
    room_id: &RoomId,
    user_id: &UserId,
    since: Option<i64>,
    upto: i64,
    options: &SyncOptions,
    full: bool,
) -> Result<RoomDelta, StorageError> {
    let limit = options.timeline_limit;
    let storage = &services.storage;
    let visibility = Visibility::load(storage, room_id, user_id).await?.ignoring(options.ignored_users.clone());
    let after = since.unwrap_or(0);
    let timeline_filter = &options.filter.room.timeline;
    let filtering = filter::drops_events(timeline_filter);
    // Fetch in pages, newest first, until `limit` visible events that pass
    // the filter, or the start. A filter that matches little could walk the
    // whole room: past `MAX_FILTERED_SCAN` events the timeline is `limited`,
    // and the client pages on with `prev_batch`.
    let mut visible: Vec<StoredEvent> = Vec::new();
    let mut cursor = upto;
    let mut more_before = false;
    let mut scanned = 0;
    let page = (limit as i64 + 1).max(20);
    'pages: loop {
        let batch = storage.room_events(room_id, after, cursor, page, true).await?;
        let exhausted = (batch.len() as i64) < page;
        for event in batch {
            if filtering && scanned >= MAX_FILTERED_SCAN {
                more_before = true;
                break 'pages;
            }
            scanned += 1;
            cursor = event.stream_ordering - 1;
            if visibility.can_see(&event, user_id) && filter::event_matches(timeline_filter, &event) {
                if visible.len() == limit {
                    more_before = true;
                    break 'pages;
                }
                visible.push(event);
            }
        }
        if exhausted || limit == 0 {
            break;
        }
    }
    visible.reverse();
    let timeline_start = visible.first().map_or(upto, |event| event.stream_ordering - 1);

    let mut timeline = Timeline::new();
    timeline.limited = more_before;
    timeline.prev_batch = Some(StreamToken::events_at(timeline_start).to_string());
    let txn_ids = TransactionIds::load(storage, user_id, &options.device_id, &visible).await?;
    let aggregations = Aggregations::load(storage, user_id, &visible, false).await?;
    let shaped = |event: &StoredEvent, client_form| super::event_shape::shape(&options.filter, event, client_form);
    timeline.events = visible.iter().map(|event| raw(&shaped(event, aggregations.bundle(event, txn_ids.client_event(event, false))))).collect();

    let mut state_events = if full {
        storage.state_at(room_id, timeline_start).await?
    } else if more_before {
        latest_per_key(storage.state_changes(room_id, after, timeline_start).await?)
    } else {
        Vec::new()
    };
    let from = if full || more_before { timeline_start } else { after };
    let shown: HashSet<&str> = visible.iter().map(|event| event.event_id.as_str()).collect();
    // State resolution at a fork can make an older event the state again
    // (`state_resets`): no timeline shows it, `state` does.
    for (_, event) in storage.state_resets_of(room_id, Some(from), upto).await? {
        if shown.contains(event.event_id.as_str()) {
            continue;
        }
        state_events.retain(|held| held.kind != event.kind || held.state_key != event.state_key);
        state_events.push(event);
    }
    if filtering {
        // State the filter kept out of the timeline would never reach the
        // client: it goes in `state`, as of the end of the timeline.
        for event in latest_per_key(storage.state_changes(room_id, from, upto).await?) {
            if shown.contains(event.event_id.as_str()) || !visibility.can_see(&event, user_id) {
                continue;
            }
            state_events.retain(|held| held.kind != event.kind || held.state_key != event.state_key);
            state_events.push(event);
        }
    }
    // Before lazy loading adds the members the client may lack, which are no change.
    let memberships_changed = visible.iter().chain(&state_events).any(|event| event.kind == "m.room.member");
    if options.lazy_load_members {
        let mut wanted: HashSet<&str> = visible.iter().map(|event| event.sender.as_str()).collect();
        wanted.insert(user_id.as_str());
        let is_wanted_member = |event: &StoredEvent| event.state_key.as_deref().is_some_and(|key| wanted.contains(key));
        state_events.retain(|event| event.kind != "m.room.member" || is_wanted_member(event));
        let mut have: HashSet<String> =
            state_events.iter().chain(visible.iter()).filter(|event| event.kind == "m.room.member").filter_map(|event| event.state_key.clone()).collect();
        if !full {
            // Senders the client may not know yet: their membership before the timeline.
            have.insert(user_id.to_string());
        }
        let missing: Vec<&str> = wanted.iter().copied().filter(|sender| !have.contains(*sender)).collect();
        if !missing.is_empty() {
            let before = storage.state_at(room_id, timeline_start).await?;
            state_events.extend(
                before.into_iter().filter(|event| event.kind == "m.room.member" && event.state_key.as_deref().is_some_and(|key| missing.contains(&key))),
            );
            state_events.sort_by_key(|event| event.stream_ordering);
        }
    }
    state_events.retain(|event| filter::event_matches(&options.filter.room.state, event));
    if let Some(limit) = filter::limit_of(options.filter.room.state.limit) {
        state_events.truncate(limit);
    }
    let mut state = StateEvents::new();
    state.events = state_events.iter().map(|event| raw(&shaped(event, pdu::client_event(event, false)))).collect();
    Ok(RoomDelta { timeline, state, memberships_changed })
}

/// The same as `timeline_and_state` for a room the user was joined to
/// throughout `(since, upto]`, when the recent-events log holds that window
/// and it fits the timeline: the events come from memory in the client
/// format every listener shares, each listener adding only its own parts
/// (what it ignores, its transaction ids, the thread participation of
/// bundled aggregations, lazily loaded members). `None` when the window
/// needs the database (`timeline_and_state` gives the same answer then).
pub(super) async fn recent_delta(
    services: &Services,
    room_id: &RoomId,
    user_id: &UserId,
    writer: usize,
    since: i64,
    upto: i64,
    options: &SyncOptions,
) -> Result<Option<RoomDelta>, StorageError> {
    let timeline_filter = &options.filter.room.timeline;
    if filter::drops_events(timeline_filter) {
        return Ok(None);
    }
    let caches = &services.sync_caches;
    let Some(window) = caches.recent.window(room_id, writer, since, upto) else { return Ok(None) };
    if window.iter().any(|held| held.resets_state) {
        return Ok(None);
    }
    // Joined before every event of the window: all of it is visible
    // (`Visibility::can_see` for a member), but what ignored users sent.
    let visible: Vec<&RecentEvent> =
        window.iter().map(|held| &**held).filter(|held| held.event.state_key.is_some() || !options.ignored_users.contains(&held.event.sender)).collect();
    if visible.len() > options.timeline_limit {
        return Ok(None);
    }
    let storage = &services.storage;
    let timeline_start = visible.first().map_or(upto, |held| held.event.stream_ordering - 1);
    let mut timeline = Timeline::new();
    timeline.prev_batch = Some(StreamToken::events_at(timeline_start).to_string());
    let events: Vec<&StoredEvent> = visible.iter().map(|held| &held.event).collect();
    let txn_ids = TransactionIds::load(storage, user_id, &options.device_id, events.iter().copied()).await?;
    let related = caches
        .related
        .get((room_id.to_owned(), since, upto), async || {
            let ids: Vec<&str> = window.iter().map(|held| held.event.event_id.as_str()).collect();
            let counts = storage.relation_counts(room_id, &ids, user_id).await?;
            Ok::<_, StorageError>(counts.into_iter().map(|count| count.parent).collect())
        })
        .await?;
    let aggregations = if events.iter().any(|event| related.contains(event.event_id.as_str())) {
        Aggregations::load(storage, user_id, events.iter().copied(), false).await?
    } else {
        Aggregations::default()
    };
    let now = weft_storage::now_ms();
    timeline.events = visible
        .iter()
        .map(|held| {
            let event = &held.event;
            let form = if event.sender == user_id {
                txn_ids.client_event(event, false)
            } else {
                let mut form = held.client_form().clone();
                form["unsigned"]["age"] = now.saturating_sub(event.origin_server_ts).max(0).into();
                form
            };
            raw(&super::event_shape::shape(&options.filter, event, aggregations.bundle(event, form)))
        })
        .collect();
    let memberships_changed = events.iter().any(|event| event.kind == "m.room.member");
    let mut state_events: Vec<StoredEvent> = Vec::new();
    if options.lazy_load_members {
        // The senders' member events before the timeline, unless it holds them.
        let have: HashSet<&str> = events.iter().filter(|event| event.kind == "m.room.member").filter_map(|event| event.state_key.as_deref()).collect();
        let mut missing: Vec<String> = events
            .iter()
            .map(|event| event.sender.as_str())
            .filter(|sender| *sender != user_id.as_str() && !have.contains(sender))
            .map(str::to_owned)
            .collect();
        missing.sort();
        missing.dedup();
        if !missing.is_empty() {
            let members = caches
                .members_at
                .get((room_id.to_owned(), timeline_start, missing.clone()), async || {
                    let users: Vec<&str> = missing.iter().map(String::as_str).collect();
                    storage.member_events_at(room_id, &users, timeline_start).await
                })
                .await?;
            state_events = members.to_vec();
        }
    }
    state_events.retain(|event| filter::event_matches(&options.filter.room.state, event));
    if let Some(limit) = filter::limit_of(options.filter.room.state.limit) {
        state_events.truncate(limit);
    }
    let mut state = StateEvents::new();
    state.events = state_events.iter().map(|event| raw(&super::event_shape::shape(&options.filter, event, pdu::client_event(event, false)))).collect();
    Ok(Some(RoomDelta { timeline, state, memberships_changed }))
}

/// The stripped state shown with an invite or a knock.
pub(super) async fn stripped_state<T>(services: &Services, room_id: &RoomId, user_id: &UserId, at: i64) -> Result<Vec<Raw<T>>, StorageError> {
    let state = services.storage.state_at(room_id, at).await?;
    // The user's own member event, and (as Synapse) that of whoever invited them.
    let inviter =
        state.iter().find(|event| event.kind == "m.room.member" && event.state_key.as_deref() == Some(user_id.as_str())).map(|own| own.sender.to_string());
    let wanted_member = |key: Option<&str>| key == Some(user_id.as_str()) || (key.is_some() && key.map(str::to_owned) == inviter);
    let mut stripped: Vec<serde_json::Value> = state
        .iter()
        .filter(|event| INVITE_STATE_TYPES.contains(&event.kind.as_str()) || (event.kind == "m.room.member" && wanted_member(event.state_key.as_deref())))
        .map(pdu::stripped_event)
        .collect();
    // A room this server is not in: what the inviting or knocked-on server gave.
    if !state.iter().any(|event| event.kind == "m.room.create")
        && let Some(json) = services.storage.remote_stripped_state(room_id, user_id).await?
    {
        let given: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap_or_default();
        let key =
            |event: &serde_json::Value| (event["type"].as_str().unwrap_or_default().to_owned(), event["state_key"].as_str().unwrap_or_default().to_owned());
        let held: HashSet<(String, String)> = stripped.iter().map(key).collect();
        stripped.extend(given.into_iter().filter(|event| !held.contains(&key(event))));
    }
    Ok(stripped.iter().map(raw).collect())
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
