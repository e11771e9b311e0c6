//! Presence across servers (`m.presence`), when `presence.enabled`.
//!
//! Outbound: local users' rows of the `presence` stream since the sender's
//! saved position, batched into one EDU per destination (every other server
//! with a user sharing a room with them), queued durably with the position
//! that covers them.
//!
//! Inbound: another server's users' presence, for users sharing a room with
//! a local user, written on the `presence` stream by its writer, so that
//! local `/sync` shows it as any presence. Remote users are not timed out
//! as local ones (their server says when they go idle or offline); one not
//! heard of for `REMOTE_TIMEOUT_MS` goes offline, as in Synapse.
//!
//! May call: `weft_storage`, `device_lists` (who shares rooms with whom).

use std::collections::BTreeMap;

use ruma::{OwnedUserId, ServerName};
use serde_json::{Value, json};

use weft_core::config::MAIN_INSTANCE;
use weft_storage::{NewPresence, StorageError, Stream, now_ms};

use super::{
    device_lists::{servers_sharing_rooms_with, shares_room_with_local_user},
    sender::StreamCursor,
};
use crate::{presence::SETTABLE_STATES, services::Services};

/// The sender's position name in `federation_stream_positions`.
const POSITION: &str = "presence";
/// Users in one `m.presence` EDU.
const USERS_PER_EDU: usize = 100;
/// A remote user not heard of for this long is shown offline (Synapse's FEDERATION_TIMEOUT).
pub const REMOTE_TIMEOUT_MS: i64 = 30 * 60 * 1000;

/// Queues `m.presence` EDUs for local users' presence changes since the
/// saved position; returns the destinations given some.
pub(super) async fn dispatch(state: &Services, cursor: &mut StreamCursor) -> Result<Vec<String>, StorageError> {
    if !state.config.presence.enabled {
        return Ok(Vec::new());
    }
    let storage = &state.storage;
    let position = match cursor.position {
        Some(position) => position,
        None => *cursor.position.insert(storage.federation_stream_position(&super::sender::stream_position_key(state, POSITION), POSITION).await?),
    };
    let upto = state.notifier.position(Stream::Presence);
    if position >= upto {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let mut pushes: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for row in storage.presence_between(position, upto).await? {
        let Ok(user_id) = OwnedUserId::try_from(row.user_id.as_str()) else { continue };
        if user_id.server_name() != state.server_name {
            continue;
        }
        let mut push = crate::sync::presence_content(&row, now);
        push["user_id"] = json!(user_id);
        for server in servers_sharing_rooms_with(state, &user_id).await?.into_iter().filter(|server| super::sender::owns(state, server)) {
            pushes.entry(server).or_default().push(push.clone());
        }
    }
    let edus: Vec<(String, String)> = pushes
        .iter()
        .flat_map(|(server, push)| {
            push.chunks(USERS_PER_EDU).map(move |chunk| (server.clone(), json!({"edu_type": "m.presence", "content": {"push": chunk}}).to_string()))
        })
        .collect();
    let write = !edus.is_empty() || cursor.due();
    if write {
        storage.enqueue_stream_edus(&super::sender::stream_position_key(state, POSITION), upto, &edus).await?;
    }
    cursor.reached(upto, write);
    Ok(pushes.into_keys().collect())
}

/// `{push: [{user_id, presence, last_active_ago, currently_active, status_msg}]}`
/// from `origin`, on the presence writer.
pub async fn received(state: &Services, origin: &ServerName, content: &Value) -> Result<(), StorageError> {
    let writer = state.config.stream_writers.presence.first().map_or(MAIN_INSTANCE, String::as_str);
    if !state.config.presence.enabled || writer != state.config.instance_name() {
        return Ok(());
    }
    let now = now_ms();
    let mut written = false;
    for push in content["push"].as_array().into_iter().flatten() {
        let Some(user_id) = push["user_id"].as_str().and_then(|id| OwnedUserId::try_from(id).ok()) else { continue };
        let Some(presence) = push["presence"].as_str().filter(|presence| SETTABLE_STATES.contains(presence)) else { continue };
        if user_id.server_name() != origin || !shares_room_with_local_user(state, &user_id).await? {
            continue;
        }
        let ago = push["last_active_ago"].as_i64().unwrap_or(0).clamp(0, now);
        let new = NewPresence {
            state: presence,
            status_msg: push["status_msg"].as_str(),
            last_active_ts: now - ago,
            // When this server last heard of them, for `REMOTE_TIMEOUT_MS`.
            last_sync_ts: now,
            currently_active: push["currently_active"].as_bool().unwrap_or(false),
        };
        state.storage.set_presence(&user_id, new).await?;
        written = true;
    }
    if written {
        state.stream_advanced(Stream::Presence);
    }
    Ok(())
}
