//! What an appservice needs for end-to-end encryption, as Synapse sends it:
//!
//! - to-device messages for the devices of its users (MSC2409/MSC4203, for
//!   an appservice with `receive_ephemeral` or its legacy names), each with
//!   `to_user_id` and `to_device_id` added;
//! - device-list changes (MSC3202, `org.matrix.msc3202`): users it is
//!   interested in (its users, or members of a room it is interested in)
//!   whose devices or cross-signing keys changed, merged into one
//!   `{"changed", "left"}` summary per transaction;
//! - one-time key counts and unused fallback key types (MSC3202) of the
//!   devices of the users a transaction concerns (its sender, its users
//!   joined to the transaction's rooms, the recipients of its to-device
//!   messages), read when the transaction is built and stored in its body.
//!
//! To-device messages and device-list changes are followed from positions
//! saved with the queued items (past rows that queued nothing, only now and
//! then: `crate::jobs::PositionWrites`), so a restart neither loses nor repeats one
//! (Synapse keeps them in memory and drops them when it retries).
//!
//! May call: storage, the notifier, `interest`.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Value, json};
use weft_core::appservice::AppService;
use weft_storage::{AppserviceFeed, QueuedItem, StorageError, Stream};

use crate::{jobs::PositionWrites, services::Services};

/// Rows read per batch.
const BATCH: i64 = 100;

/// Where the to-device and device-list streams have been followed to.
#[derive(Debug, Default)]
pub(super) struct Cursor {
    to_device: Option<i64>,
    device_lists: Option<i64>,
    to_device_written: PositionWrites,
    device_lists_written: PositionWrites,
}

/// Queues what happened on the to-device and device-list streams since the
/// cursor; the appservices that got something.
pub(super) async fn catch_up(state: &Services, cursor: &mut Cursor) -> Result<Vec<String>, StorageError> {
    let mut woken = to_device(state, cursor).await?;
    woken.extend(device_lists(state, cursor).await?);
    woken.sort();
    woken.dedup();
    Ok(woken)
}

async fn position(state: &Services, cached: &mut Option<i64>, feed: AppserviceFeed) -> Result<i64, StorageError> {
    Ok(match *cached {
        Some(at) => at,
        None => *cached.insert(state.storage.appservice_feed_position(feed).await?),
    })
}

async fn to_device(state: &Services, cursor: &mut Cursor) -> Result<Vec<String>, StorageError> {
    let services: Vec<_> = state.config.app_services.all().iter().filter(|service| service.url.is_some() && service.receive_ephemeral).cloned().collect();
    let mut woken = Vec::new();
    loop {
        let at = position(state, &mut cursor.to_device, AppserviceFeed::ToDevice).await?;
        let upto = state.notifier.position(Stream::ToDevice);
        if upto <= at {
            return Ok(woken);
        }
        let messages = if services.is_empty() { Vec::new() } else { state.storage.inbox_messages_between(at, upto, BATCH).await? };
        let reached = match messages.last() {
            Some(last) if messages.len() as i64 == BATCH => last.stream_id,
            _ => upto,
        };
        let mut items = Vec::new();
        for message in &messages {
            let Ok(user_id) = ruma::UserId::parse(&message.user_id) else { continue };
            let Value::Object(fields) = &message.message else { continue };
            for service in services.iter().filter(|service| service.is_interested_in_user(&user_id)) {
                let mut item = serde_json::Map::new();
                item.insert("to_user_id".into(), json!(message.user_id));
                item.insert("to_device_id".into(), json!(message.device_id));
                item.extend(fields.clone());
                items.push((service.id.clone(), "to_device", Value::Object(item).to_string()));
            }
        }
        if cursor.to_device_written.due(reached, !items.is_empty()) {
            state.storage.enqueue_appservice_feed(&items, AppserviceFeed::ToDevice, reached).await?;
            cursor.to_device_written.wrote(reached);
        }
        cursor.to_device = Some(reached);
        woken.extend(items.into_iter().map(|(id, _, _)| id));
    }
}

async fn device_lists(state: &Services, cursor: &mut Cursor) -> Result<Vec<String>, StorageError> {
    let services: Vec<_> = state.config.app_services.all().iter().filter(|service| service.url.is_some() && service.msc3202).cloned().collect();
    let at = position(state, &mut cursor.device_lists, AppserviceFeed::DeviceLists).await?;
    let upto = state.notifier.position(Stream::DeviceLists);
    if upto <= at {
        return Ok(Vec::new());
    }
    let changed = if services.is_empty() { Default::default() } else { state.storage.device_lists_changed(at, upto).await? };
    let mut changed: Vec<_> = changed.into_iter().filter_map(|user| ruma::OwnedUserId::try_from(user).ok()).collect();
    changed.sort();
    let (mut joined, mut rooms) = (HashMap::new(), super::interest::Rooms::new());
    let mut items = Vec::new();
    for service in &services {
        let mut users = Vec::new();
        for user_id in &changed {
            if super::interest::interested_in_user_rooms(state, service, user_id, &mut joined, &mut rooms).await? {
                users.push(user_id.as_str());
            }
        }
        if !users.is_empty() {
            items.push((service.id.clone(), "device_lists", json!({"changed": users, "left": []}).to_string()));
        }
    }
    if cursor.device_lists_written.due(upto, !items.is_empty()) {
        state.storage.enqueue_appservice_feed(&items, AppserviceFeed::DeviceLists, upto).await?;
        cursor.device_lists_written.wrote(upto);
    }
    cursor.device_lists = Some(upto);
    Ok(items.into_iter().map(|(id, _, _)| id).collect())
}

/// The queued device-list summaries merged in order, as Synapse merges
/// them: a user changed after leaving is changed, and the reverse.
pub(super) fn merged_device_lists(items: &[QueuedItem]) -> Option<Value> {
    let mut changed = BTreeSet::new();
    let mut left = BTreeSet::new();
    for item in items.iter().filter(|item| item.kind == "device_lists") {
        let Ok(summary) = serde_json::from_str::<Value>(&item.json) else { continue };
        let users = |key: &str| -> Vec<String> { summary[key].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect() };
        for user in users("changed") {
            left.remove(&user);
            changed.insert(user);
        }
        for user in users("left") {
            changed.remove(&user);
            left.insert(user);
        }
    }
    (!changed.is_empty() || !left.is_empty()).then(|| json!({"changed": changed, "left": left}))
}

/// The MSC3202 fields of a transaction of `items` for `service`, under the
/// stable names and the unstable ones Synapse sends (`device_lists` too);
/// each left out when empty, as Synapse. Nothing unless the registration
/// sets `org.matrix.msc3202`.
pub(super) async fn msc3202_fields(state: &Services, service: &AppService, items: &[QueuedItem]) -> Result<serde_json::Map<String, Value>, StorageError> {
    let mut fields = serde_json::Map::new();
    if !service.msc3202 {
        return Ok(fields);
    }
    let mut users = BTreeSet::from([service.sender.to_string()]);
    let mut room_ids = BTreeSet::new();
    for item in items {
        let Ok(value) = serde_json::from_str::<Value>(&item.json) else { continue };
        match item.kind.as_str() {
            "event" | "ephemeral" => room_ids.extend(value["room_id"].as_str().map(str::to_owned)),
            "to_device" => users.extend(value["to_user_id"].as_str().map(str::to_owned)),
            _ => {}
        }
    }
    for room_id in room_ids {
        let Ok(room_id) = ruma::OwnedRoomId::try_from(room_id) else { continue };
        for member in state.storage.members_with(&room_id, "join").await? {
            if member.server_name() == state.server_name && service.is_interested_in_user(&member) {
                users.insert(member.to_string());
            }
        }
    }
    let (counts, fallback) = state.storage.key_counts_of(&users).await?;
    if !counts.is_empty() {
        let counts = serde_json::to_value(counts).unwrap_or_default();
        for key in ["device_one_time_keys_count", "org.matrix.msc3202.device_one_time_keys_count", "org.matrix.msc3202.device_one_time_key_counts"] {
            fields.insert(key.into(), counts.clone());
        }
    }
    if !fallback.is_empty() {
        let fallback = serde_json::to_value(fallback).unwrap_or_default();
        for key in ["device_unused_fallback_key_types", "org.matrix.msc3202.device_unused_fallback_key_types"] {
            fields.insert(key.into(), fallback.clone());
        }
    }
    if let Some(summary) = merged_device_lists(items) {
        fields.insert("device_lists".into(), summary.clone());
        fields.insert("org.matrix.msc3202.device_lists".into(), summary);
    }
    Ok(fields)
}
