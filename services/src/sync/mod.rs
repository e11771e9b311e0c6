//! `/sync`: what changed for a user between two tokens.
//!
//! Owns: assembling the response from every stream: rooms (see `rooms`)
//! with their ephemeral events (typing, receipts), room account data and
//! unread counts; global account data and push rules; presence; to-device
//! messages (acknowledged, hence deleted, by the next sync's token); device
//! list changes and one-time key counts. Long-polls wait on the notifier,
//! not by polling the database, and a token already at every stream's
//! position waits before looking at all. What listeners woken by the same
//! event share is read once for all of them (`caches`: the recent-events
//! log, memberships, relations, summaries, the push actions unread counts
//! add: `caches`, `unread`); a room or stream that did not
//! move for the user costs no query. May call: `weft_storage`, `rooms`,
//! `typing`.

mod caches;
pub mod device_lists;
mod event_shape;
pub mod filter;
pub mod notifier;
mod recent;
mod rooms;
pub(crate) mod shared;
mod summary;
pub mod token;
mod unread;
mod user_data;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use ruma::{
    OwnedDeviceId, RoomId, UserId,
    api::client::{
        filter::FilterDefinition,
        sync::sync_events::v3::{InvitedRoom, JoinedRoom, KnockedRoom, LeftRoom, Response, State},
    },
};

pub use caches::SyncCaches;
pub use notifier::{Notifier, Positions};
pub use token::{MultiWriterPosition, StreamToken};
pub use user_data::presence_content;

use weft_core::json::raw;
use weft_storage::{AccountDataEntry, StorageError};

use crate::services::Services;

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
    /// The syncing device: its to-device messages and key counts.
    pub device_id: OwnedDeviceId,
    pub timeout: Duration,
    pub full_state: bool,
    pub timeline_limit: usize,
    pub include_leave: bool,
    /// Lazy-loading members: member events in `state` only for the timeline's
    /// senders and the user. Redundant ones are sent again (no per-device
    /// record of what a client has), which the spec allows.
    pub lazy_load_members: bool,
    /// The client asked for per-thread unread counts.
    pub unread_thread_notifications: bool,
    /// The whole filter, for the parts the fields above do not carry
    /// (see `filter` for what is honoured).
    pub filter: FilterDefinition,
    /// Users whose messages and invites the user does not want.
    pub ignored_users: std::sync::Arc<std::collections::HashSet<ruma::OwnedUserId>>,
}

/// Answers at once if anything changed since `since` (or on an initial
/// sync), otherwise waits up to the timeout for something to.
pub async fn sync(services: &Services, user_id: &UserId, options: &SyncOptions) -> Result<Response, StorageError> {
    let deadline = Instant::now() + options.timeout.min(MAX_TIMEOUT);
    if let Some(since) = &options.since
        && !services.sync_caches.inbox_empty_upto(user_id, &options.device_id, since.to_device)
    {
        // The client holds everything up to its token: acknowledged.
        services.storage.delete_to_device_messages(user_id, &options.device_id, since.to_device).await?;
        services.sync_caches.set_inbox_empty_upto(user_id, &options.device_id, since.to_device);
    }
    let mut wake = services.notifier.subscribe();
    let mut first = true;
    // The positions of the last look that found nothing for the user.
    let mut looked: Option<Positions> = None;
    loop {
        wake.borrow_and_update();
        let positions = services.notifier.positions();
        // A token at the current positions of every stream has nothing to
        // catch up on: wait for something to move before looking.
        let nothing_moved = first && options.since.as_ref().is_some_and(|since| *since == StreamToken::from_positions(&positions)) && !options.full_state;
        first = false;
        if !nothing_moved
            && let Some(before) = &looked
            && before.moved_only(&positions, weft_storage::Stream::Presence)
            && !presence_concerns(services, user_id, options, before, &positions).await?
        {
            // Only others' presence moved, of users sharing no room with
            // this one (Synapse wakes only those who share a room).
            looked = Some(positions);
        } else if !nothing_moved || Instant::now() >= deadline {
            let response = compute(services, user_id, options, &positions).await?;
            if options.since.is_none() || has_news(&response) || options.full_state || Instant::now() >= deadline {
                return Ok(response);
            }
            looked = Some(positions);
        }
        if tokio::time::timeout_at(deadline.into(), wake.changed()).await.is_err() {
            let positions = services.notifier.positions();
            return compute(services, user_id, options, &positions).await;
        }
    }
}

/// Whether the presence changes between two looks hold any the user sees.
async fn presence_concerns(services: &Services, user_id: &UserId, options: &SyncOptions, before: &Positions, now: &Positions) -> Result<bool, StorageError> {
    let memberships = services.sync_caches.memberships(&services.storage, user_id).await?;
    let range = (before.get(weft_storage::Stream::Presence), now.get(weft_storage::Stream::Presence));
    Ok(!user_data::wanted_presence(services, user_id, &memberships, range, now, &options.filter.presence).await?.is_empty())
}

fn has_news(response: &Response) -> bool {
    let rooms = &response.rooms;
    !(rooms.join.is_empty()
        && rooms.invite.is_empty()
        && rooms.leave.is_empty()
        && rooms.knock.is_empty()
        && response.account_data.events.is_empty()
        && response.presence.events.is_empty()
        && response.to_device.events.is_empty()
        && response.device_lists.changed.is_empty()
        && response.device_lists.left.is_empty())
}

async fn compute(services: &Services, user_id: &UserId, options: &SyncOptions, positions: &Positions) -> Result<Response, StorageError> {
    let storage = &services.storage;
    let since_token = options.since.clone().unwrap_or_default();
    let writers = services.notifier.writers();
    let mut next = StreamToken::from_positions(positions);
    let mut response = Response::new(String::new());

    let account_data = if since_token.account_data < next.account_data {
        storage.account_data_between(user_id, since_token.account_data, next.account_data).await?
    } else {
        Vec::new()
    };
    let mut room_account_data: HashMap<String, Vec<AccountDataEntry>> = HashMap::new();
    let global_filter = &options.filter.account_data;
    for entry in account_data {
        match entry.room_id.clone() {
            Some(room_id) => room_account_data.entry(room_id).or_default().push(entry),
            None if filter::item_matches(global_filter, &entry.kind, None) => {
                response.account_data.events.push(raw(&user_data::account_data_event(&entry)));
            }
            None => {}
        }
    }
    let context = RoomContext { since_token: &since_token, positions, options, room_account_data: &room_account_data };

    let events_writers = writers.of(weft_storage::Stream::Events);
    let targets: Vec<i64> = (0..events_writers.len()).map(|writer| positions.events_writer(writer)).collect();
    services.sync_caches.recent.catch_up(storage, events_writers, &targets).await?;
    let memberships = services.sync_caches.memberships(storage, user_id).await?;
    for (room_id, mut membership, mut at) in memberships.iter().cloned() {
        // A room's events all come from its persister: read it up to that persister's position.
        let writer = writers.events_writer_index(room_id.as_str());
        let since = options.since.as_ref().map(|token| token.events.of_writer(writer));
        let now = positions.events_writer(writer);
        if at > now {
            // Persisted after the position this response is for: use the membership then.
            match storage.membership_history(&room_id, user_id).await?.into_iter().rev().find(|(ordering, _)| *ordering <= now) {
                Some((ordering, earlier)) => (at, membership) = (ordering, earlier),
                None => continue,
            }
        }
        if !filter::room_allowed(&options.filter.room, &room_id) {
            continue;
        }
        let changed_since_last = since.is_none_or(|since| at > since);
        match membership.as_str() {
            "join" => {
                let new_to_client = changed_since_last || options.full_state;
                if let Some(room) = joined_room(services, &room_id, user_id, (writer, since), now, new_to_client, &context).await? {
                    response.rooms.join.insert(room_id, room);
                }
            }
            "invite" if changed_since_last && !invited_by_ignored(storage, &room_id, user_id, at, options).await? => {
                let mut room = InvitedRoom::new();
                room.invite_state.events = rooms::stripped_state(services, &room_id, user_id, at).await?;
                response.rooms.invite.insert(room_id, room);
            }
            "knock" if changed_since_last => {
                let mut room = KnockedRoom::new();
                room.knock_state.events = rooms::stripped_state(services, &room_id, user_id, at).await?;
                response.rooms.knock.insert(room_id, room);
            }
            "leave" | "ban" if changed_since_last && (since.is_some() || options.include_leave) && !storage.room_forgotten(user_id, &room_id).await? => {
                // What changed since the client last synced, as for joined rooms; all of it on an initial sync.
                let full = since.is_none() || options.full_state;
                let rooms::RoomDelta { timeline, state, .. } = rooms::timeline_and_state(services, &room_id, user_id, since, at, options, full).await?;
                let mut room = LeftRoom::new();
                room.timeline = timeline;
                room.state = State::Before(state);
                response.rooms.leave.insert(room_id, room);
            }
            _ => {}
        }
    }

    if filter::item_matches(global_filter, "m.push_rules", None) {
        user_data::push_rules(services, user_id, &since_token, &next, options.since.is_none(), &mut response).await?;
    }
    if let Some(limit) = filter::limit_of(global_filter.limit) {
        response.account_data.events.truncate(limit);
    }
    user_data::presence(services, user_id, &memberships, (&since_token, &next, positions), &options.filter.presence, &mut response).await?;
    next.to_device = user_data::to_device(services, user_id, options, &since_token, next.to_device, &mut response).await?;
    if options.since.is_some() && response.to_device.events.is_empty() {
        // Nothing waited after the token, and nothing before it (it was acknowledged).
        services.sync_caches.set_inbox_empty_upto(user_id, &options.device_id, next.to_device);
    }
    if options.since.is_some() {
        let changes = device_lists::changes_among(services, user_id, &since_token, &next, Some(memberships.as_ref())).await?;
        response.device_lists.changed = changes.changed;
        response.device_lists.left = changes.left;
    }
    user_data::key_counts(services, user_id, &options.device_id, &mut response).await?;
    response.next_batch = next.to_string();
    Ok(response)
}

/// What every joined room's part of the response is computed against.
struct RoomContext<'a> {
    since_token: &'a StreamToken,
    positions: &'a Positions,
    options: &'a SyncOptions,
    room_account_data: &'a HashMap<String, Vec<AccountDataEntry>>,
}

async fn joined_room(
    services: &Services,
    room_id: &RoomId,
    user_id: &UserId,
    (writer, since): (usize, Option<i64>),
    now: i64,
    new_to_client: bool,
    context: &RoomContext<'_>,
) -> Result<Option<JoinedRoom>, StorageError> {
    let options = context.options;
    let since_for_room = if new_to_client { None } else { since };
    let recent = match since_for_room {
        Some(since) => rooms::recent_delta(services, room_id, user_id, writer, since, now, options).await?,
        None => None,
    };
    let rooms::RoomDelta { timeline, state, memberships_changed } = match recent {
        Some(delta) => delta,
        None => rooms::timeline_and_state(services, room_id, user_id, since_for_room, now, options, new_to_client).await?,
    };
    let room_filter = &options.filter.room;
    let mut ephemeral = user_data::ephemeral(services, room_id, user_id, context.since_token, context.positions, new_to_client, &room_filter.ephemeral).await?;
    if let Some(limit) = filter::limit_of(room_filter.ephemeral.limit) {
        ephemeral.truncate(limit);
    }
    let mut account_data: Vec<&AccountDataEntry> = context
        .room_account_data
        .get(room_id.as_str())
        .into_iter()
        .flatten()
        .filter(|entry| filter::room_item_matches(&room_filter.account_data, room_id, &entry.kind, None))
        .collect();
    if let Some(limit) = filter::limit_of(room_filter.account_data.limit) {
        account_data.truncate(limit);
    }
    if !new_to_client && timeline.events.is_empty() && state.events.is_empty() && ephemeral.is_empty() && account_data.is_empty() {
        return Ok(None);
    }
    let mut room = JoinedRoom::new();
    // As Synapse: recomputed when the client may not have the counts yet, or
    // when a membership changed in what it gets now.
    if new_to_client || memberships_changed {
        room.summary = summary::summary(services, room_id, user_id, now).await?;
    }
    room.timeline = timeline;
    room.state = State::Before(state);
    room.ephemeral.events = ephemeral;
    room.account_data.events = account_data.into_iter().map(|entry| raw(&user_data::account_data_event(entry))).collect();
    user_data::unread_counts(services, room_id, user_id, (writer, now), options.unread_thread_notifications, &mut room).await?;
    Ok(Some(room))
}

/// Whether the user's invite to `room_id` (their member event at `at`) came
/// from someone they ignore: such invites are not shown, as the spec asks.
async fn invited_by_ignored(
    storage: &weft_storage::Storage,
    room_id: &ruma::RoomId,
    user_id: &UserId,
    at: i64,
    options: &SyncOptions,
) -> Result<bool, StorageError> {
    if options.ignored_users.is_empty() {
        return Ok(false);
    }
    let state = storage.state_at(room_id, at).await?;
    let invite = state.iter().find(|event| event.kind == "m.room.member" && event.state_key.as_deref() == Some(user_id.as_str()));
    Ok(invite.is_some_and(|invite| options.ignored_users.contains(&invite.sender)))
}
