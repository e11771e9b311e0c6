//! Ephemeral events for the appservices that ask for them
//! (`receive_ephemeral` or its legacy names): typing (`m.typing`, a room's
//! typists now, for a room the appservice is interested in), public read
//! receipts (`m.receipt`, one per receipt, in the format of `/sync`) and
//! presence (`m.presence`, as Synapse sends it: `sender` and the content
//! without `user_id`, for a user the appservice is interested in), queued
//! in the database like events, so a retried transaction keeps them (Synapse
//! drops them on retry). Receipts and presence are followed from positions
//! saved with the items (past rows that queued nothing, only now and then:
//! `crate::jobs::PositionWrites`); typing, which is not kept anywhere, from the
//! position the notifier started at.
//!
//! May call: storage, the typing stream, `interest`, the presence format of `sync`.

use std::collections::HashMap;

use serde_json::{Value, json};
use weft_core::appservice::AppService;
use weft_storage::{AppserviceFeed, StorageError, Stream};

use crate::{jobs::PositionWrites, services::Services};

/// Receipts read per batch.
const BATCH: i64 = 100;

/// Where the ephemeral streams have been followed to.
#[derive(Debug, Default)]
pub(super) struct Cursor {
    typing: Option<i64>,
    receipts: Option<i64>,
    presence: Option<i64>,
    receipts_written: PositionWrites,
    presence_written: PositionWrites,
}

impl Cursor {
    /// Whether receipts are left to read up to `upto` (a batch stopped short).
    pub(super) fn receipts_behind(&self, upto: i64) -> bool {
        self.receipts.is_some_and(|reached| reached < upto)
    }
}

/// Queues what happened on the typing, receipts and presence streams since the
/// cursor; the appservices that got something.
pub(super) async fn catch_up(state: &Services, cursor: &mut Cursor) -> Result<Vec<String>, StorageError> {
    let services: Vec<_> = state.config.app_services.all().iter().filter(|service| service.url.is_some() && service.receive_ephemeral).cloned().collect();
    if services.is_empty() {
        return Ok(Vec::new());
    }
    let mut items: Vec<(String, &str, String)> = Vec::new();

    let typing_at = *cursor.typing.get_or_insert_with(|| state.typing.position());
    let typing_now = state.typing.position();
    let mut typing = Vec::new();
    if typing_now > typing_at {
        typing = state.typing.rooms_changed_since(typing_at);
    }

    let receipts_at = match cursor.receipts {
        Some(at) => at,
        None => *cursor.receipts.insert(state.storage.appservice_feed_position(AppserviceFeed::Receipts).await?),
    };
    let receipts_upto = state.notifier.position(Stream::Receipts);
    let receipts = if receipts_upto > receipts_at { state.storage.appservice_receipts(receipts_at, receipts_upto, BATCH).await? } else { Vec::new() };
    let receipts_reached = match receipts.last() {
        Some(last) if receipts.len() as i64 == BATCH => last.stream_id,
        _ => receipts_upto.max(receipts_at),
    };

    let mut rooms = super::interest::Rooms::new();
    for (room_id, users) in &typing {
        let (aliases, members) = rooms.entry(room_id.to_string()).or_default();
        for service in &services {
            if super::interest::interested_in_room(state, service, room_id, aliases, members).await? {
                let edu = json!({"type": "m.typing", "room_id": room_id, "content": {"user_ids": users}});
                items.push((service.id.clone(), "ephemeral", edu.to_string()));
            }
        }
    }
    for receipt in &receipts {
        let Ok(room_id) = ruma::OwnedRoomId::try_from(receipt.room_id.as_str()) else { continue };
        let (aliases, members) = rooms.entry(receipt.room_id.clone()).or_default();
        for service in &services {
            if super::interest::interested_in_room(state, service, &room_id, aliases, members).await? {
                let mut read = json!({"ts": receipt.ts});
                if !receipt.thread_id.is_empty() {
                    read["thread_id"] = json!(receipt.thread_id);
                }
                let mut by_user = serde_json::Map::new();
                by_user.insert(receipt.user_id.clone(), read);
                let mut by_type = serde_json::Map::new();
                by_type.insert(receipt.receipt_type.clone(), Value::Object(by_user));
                let mut content = serde_json::Map::new();
                content.insert(receipt.event_id.clone(), Value::Object(by_type));
                let edu = json!({"type": "m.receipt", "room_id": receipt.room_id, "content": content});
                items.push((service.id.clone(), "ephemeral", edu.to_string()));
            }
        }
    }
    // Typing items are queued with the receipts' position, moved or not.
    if !items.is_empty() || (receipts_reached != receipts_at && cursor.receipts_written.due(receipts_reached, false)) {
        state.storage.enqueue_appservice_feed(&items, AppserviceFeed::Receipts, receipts_reached).await?;
        cursor.receipts_written.wrote(receipts_reached);
    }
    cursor.typing = Some(typing_now);
    cursor.receipts = Some(receipts_reached);
    let mut woken: Vec<String> = items.into_iter().map(|(id, _, _)| id).collect();
    woken.extend(presence(state, &services, cursor, &mut rooms).await?);
    woken.sort();
    woken.dedup();
    Ok(woken)
}

/// Queues the presence changes since the cursor; the appservices that got some.
async fn presence(
    state: &Services,
    services: &[std::sync::Arc<AppService>],
    cursor: &mut Cursor,
    rooms: &mut super::interest::Rooms,
) -> Result<Vec<String>, StorageError> {
    let at = match cursor.presence {
        Some(at) => at,
        None => *cursor.presence.insert(state.storage.appservice_feed_position(AppserviceFeed::Presence).await?),
    };
    let upto = state.notifier.position(Stream::Presence);
    if upto <= at {
        return Ok(Vec::new());
    }
    let rows = if state.config.presence.enabled { state.storage.presence_between(at, upto).await? } else { Vec::new() };
    let now = weft_storage::now_ms();
    let mut joined = HashMap::new();
    let mut items = Vec::new();
    for row in &rows {
        let Ok(user_id) = ruma::OwnedUserId::try_from(row.user_id.as_str()) else { continue };
        for service in services {
            if super::interest::interested_in_user_rooms(state, service, &user_id, &mut joined, rooms).await? {
                let edu = json!({"type": "m.presence", "sender": row.user_id, "content": crate::sync::presence_content(row, now)});
                items.push((service.id.clone(), "ephemeral", edu.to_string()));
            }
        }
    }
    if cursor.presence_written.due(upto, !items.is_empty()) {
        state.storage.enqueue_appservice_feed(&items, AppserviceFeed::Presence, upto).await?;
        cursor.presence_written.wrote(upto);
    }
    cursor.presence = Some(upto);
    Ok(items.into_iter().map(|(id, _, _)| id).collect())
}
