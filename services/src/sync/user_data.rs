//! The per-user streams in `/sync`: a room's ephemeral events (typing,
//! receipts) and unread counts, account data and push rules, presence of
//! users sharing a room, to-device messages and one-time key counts.

use std::collections::BTreeMap;

use ruma::{
    DeviceId, OneTimeKeyAlgorithm, OwnedEventId, RoomId, UInt, UserId,
    api::client::{
        filter::{Filter, RoomEventFilter},
        sync::sync_events::{
            UnreadNotificationsCount,
            v3::{JoinedRoom, Response},
        },
    },
    serde::Raw,
};
use serde_json::{Value, json};

use weft_core::json::raw;
use weft_storage::{AccountDataEntry, PresenceRow, StorageError, Stream, now_ms};

use super::{Positions, StreamToken, SyncOptions, caches::Memberships};
use crate::services::Services;

/// To-device messages delivered per sync, as Synapse; the rest follow.
const TO_DEVICE_LIMIT: i64 = 100;

pub(super) fn account_data_event(entry: &AccountDataEntry) -> Value {
    json!({"type": entry.kind, "content": entry.content})
}

/// Typing and receipts of a room: those since the client's position, or
/// everything current for a room new to the client.
pub(super) async fn ephemeral<T>(
    services: &Services,
    room_id: &RoomId,
    user_id: &UserId,
    since: &StreamToken,
    positions: &Positions,
    new_to_client: bool,
    filter: &RoomEventFilter,
) -> Result<Vec<Raw<T>>, StorageError> {
    let mut events = Vec::new();
    let typing_since = if new_to_client { 0 } else { since.typing };
    let wanted = |kind: &str| super::filter::room_item_matches(filter, room_id, kind, None);
    if wanted("m.typing")
        && let Some(users) = services.typing.changed_since(room_id, typing_since)
    {
        events.push(raw(&json!({"type": "m.typing", "content": {"user_ids": users}})));
    }
    let receipts_since = if new_to_client { 0 } else { since.receipts.min };
    let receipts_upto = positions.get(Stream::Receipts);
    let receipts = if receipts_since < receipts_upto && wanted("m.receipt") {
        services.storage.receipts_between(room_id, receipts_since, receipts_upto).await?
    } else {
        Vec::new()
    };
    let mut content = serde_json::Map::new();
    for receipt in receipts {
        if receipt.receipt_type == "m.read.private" && receipt.user_id != user_id.as_str() {
            continue;
        }
        let mut data = json!({"ts": receipt.ts});
        if !receipt.thread_id.is_empty() {
            data["thread_id"] = json!(receipt.thread_id);
        }
        let by_type = content.entry(receipt.event_id).or_insert_with(|| json!({}));
        let by_user = by_type.as_object_mut().expect("built as an object").entry(receipt.receipt_type).or_insert_with(|| json!({}));
        by_user[receipt.user_id.as_str()] = data;
    }
    if !content.is_empty() {
        events.push(raw(&json!({"type": "m.receipt", "content": content})));
    }
    Ok(events)
}

/// `m.push_rules` in global account data: on an initial sync, and whenever the user's rules changed.
pub(super) async fn push_rules(
    services: &Services,
    user_id: &UserId,
    since: &StreamToken,
    next: &StreamToken,
    initial: bool,
    response: &mut Response,
) -> Result<(), StorageError> {
    let storage = &services.storage;
    let moved = since.push_rules < next.push_rules;
    if initial || (moved && storage.push_rules_changed_since(user_id, since.push_rules).await?) {
        let ruleset = storage.push_ruleset(user_id).await?;
        let global = crate::push::client_format::global(&ruleset);
        response.account_data.events.push(raw(&json!({"type": "m.push_rules", "content": {"global": global}})));
    }
    Ok(())
}

/// Presence of the user and of users sharing a room with them, changed since
/// the token.
pub(super) async fn presence(
    services: &Services,
    user_id: &UserId,
    memberships: &Memberships,
    (since, next, positions): (&StreamToken, &StreamToken, &Positions),
    filter: &Filter,
    response: &mut Response,
) -> Result<(), StorageError> {
    let rows = wanted_presence(services, user_id, memberships, (since.presence, next.presence), positions, filter).await?;
    let limit = super::filter::limit_of(filter.limit).unwrap_or(usize::MAX);
    response.presence.events = rows.iter().take(limit).map(|row| raw(&presence_event(row, now_ms()))).collect();
    Ok(())
}

/// The presence changes at positions in `(after, upto]` of the presence
/// stream that `user_id` sees: their own and those of users sharing a room
/// with them, as `filter` lets through. The changes are read once for every
/// listener woken at the same positions, and who shares a room comes from
/// the members of the user's joined rooms as every listener of those rooms
/// shares them: a presence change costs a listener no statement of its own.
pub(super) async fn wanted_presence(
    services: &Services,
    user_id: &UserId,
    memberships: &Memberships,
    (after, upto): (i64, i64),
    positions: &Positions,
    filter: &Filter,
) -> Result<Vec<PresenceRow>, StorageError> {
    if !services.config.presence.enabled || after >= upto {
        return Ok(Vec::new());
    }
    let rows = services.sync_caches.presence_between(&services.storage, after, upto).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let writers = services.notifier.writers();
    let mut rooms = Vec::new();
    for (room_id, _, _) in memberships.iter().filter(|(_, membership, _)| membership == "join") {
        let position = positions.events_writer(writers.events_writer_index(room_id.as_str()));
        rooms.push(services.sync_caches.room_members(&services.storage, room_id, position).await?);
    }
    let shares_a_room = |sender: &UserId| sender == user_id || rooms.iter().any(|room| room.joined.contains(sender));
    let wanted = |row: &&PresenceRow| {
        UserId::parse(&row.user_id).is_ok_and(|sender| shares_a_room(&sender) && super::filter::item_matches(filter, "m.presence", Some(&sender)))
    };
    Ok(rows.iter().filter(wanted).cloned().collect())
}

/// An `m.presence` event as clients receive it.
pub fn presence_event(row: &PresenceRow, now: i64) -> Value {
    let mut content = presence_content(row, now);
    content["user_id"] = json!(row.user_id);
    json!({"type": "m.presence", "sender": row.user_id, "content": content})
}

/// The content of a presence event, also the body of `GET /presence/{userId}/status`.
pub fn presence_content(row: &PresenceRow, now: i64) -> Value {
    let mut content = json!({
        "presence": row.state,
        "last_active_ago": (now - row.last_active_ts).max(0),
    });
    if row.state != "offline" {
        content["currently_active"] = json!(row.currently_active);
    }
    if let Some(status) = &row.status_msg {
        content["status_msg"] = json!(status);
    }
    content
}

/// The device's waiting messages after the token, at most `TO_DEVICE_LIMIT`;
/// returns the to-device position the next token carries.
pub(super) async fn to_device(
    services: &Services,
    user_id: &UserId,
    options: &SyncOptions,
    since: &StreamToken,
    upto: i64,
    response: &mut Response,
) -> Result<i64, StorageError> {
    if since.to_device >= upto {
        return Ok(upto);
    }
    let messages = services.storage.to_device_messages(user_id, &options.device_id, since.to_device, upto, TO_DEVICE_LIMIT).await?;
    let next = match messages.last() {
        Some(last) if messages.len() as i64 == TO_DEVICE_LIMIT => last.stream_id,
        _ => upto,
    };
    response.to_device.events = messages.iter().map(|message| raw(&message.message)).collect();
    Ok(next)
}

pub(super) async fn key_counts(services: &Services, user_id: &UserId, device_id: &DeviceId, response: &mut Response) -> Result<(), StorageError> {
    let (counts, unused) = services.storage.key_counts(user_id, device_id).await?;
    response.device_one_time_keys_count = counts
        .into_iter()
        .map(|(algorithm, count)| (OneTimeKeyAlgorithm::from(algorithm.as_str()), UInt::try_from(count.max(0)).unwrap_or_default()))
        .collect();
    response.device_unused_fallback_key_types = Some(unused.iter().map(|algorithm| OneTimeKeyAlgorithm::from(algorithm.as_str())).collect());
    Ok(())
}

/// Notifications and highlights not yet read as of the room's position
/// `upto` (of its persister `writer`; see `unread`): in total, or for the
/// main timeline and per thread when the client asked for thread counts.
pub(super) async fn unread_counts(
    services: &Services,
    room_id: &RoomId,
    user_id: &UserId,
    (writer, upto): (usize, i64),
    per_thread: bool,
    room: &mut JoinedRoom,
) -> Result<(), StorageError> {
    let counts = services.sync_caches.unread.counts(services, room_id, user_id, writer, upto).await?;
    let count = |(notifications, highlights): (i64, i64)| {
        let mut count = UnreadNotificationsCount::new();
        count.notification_count = Some(UInt::try_from(notifications.max(0)).unwrap_or_default());
        count.highlight_count = Some(UInt::try_from(highlights.max(0)).unwrap_or_default());
        count
    };
    if per_thread {
        let main = counts.get("main").copied().unwrap_or((0, 0));
        room.unread_notifications = count(main);
        let threads: BTreeMap<OwnedEventId, UnreadNotificationsCount> = counts
            .iter()
            .filter(|(thread, _)| thread.as_str() != "main")
            .filter_map(|(thread, value)| Some((OwnedEventId::try_from(thread.as_str()).ok()?, count(*value))))
            .collect();
        room.unread_thread_notifications = threads;
    } else {
        let total = counts.values().fold((0, 0), |(n, h), (dn, dh)| (n + dn, h + dh));
        room.unread_notifications = count(total);
    }
    Ok(())
}
