//! A joined room's `summary` in `/sync`: the joined and invited member
//! counts, and the heroes a client names the room after when it has neither
//! a name nor a canonical alias (the spec's rule: the first five joined or
//! invited members by stream ordering, never the user; when there are none,
//! those who left or were banned).

use ruma::{RoomId, UInt, UserId, api::client::sync::sync_events::v3::RoomSummary};
use serde_json::Value;

use weft_storage::{Storage, StorageError};

use crate::services::Services;

const HEROES: usize = 5;

/// The summary `user_id` gets, from the room's members as of `position`
/// (read once for every listener woken at that position).
pub(super) async fn summary(services: &Services, room_id: &RoomId, user_id: &UserId, position: i64) -> Result<RoomSummary, StorageError> {
    let members = services.sync_caches.room_members(&services.storage, room_id, position).await?;
    let memberships = &members.memberships;
    let count = |membership: &str| UInt::try_from(memberships.iter().filter(|(_, held)| held == membership).count()).unwrap_or_default();
    let mut summary = RoomSummary::new();
    summary.joined_member_count = Some(count("join"));
    summary.invited_member_count = Some(count("invite"));
    if members.named {
        return Ok(summary);
    }
    let others = |wanted: &[&str]| -> Vec<_> {
        memberships
            .iter()
            .filter(|(member, membership)| member != user_id && wanted.contains(&membership.as_str()))
            .map(|(member, _)| member.clone())
            .take(HEROES)
            .collect()
    };
    summary.heroes = others(&["join", "invite"]);
    if summary.heroes.is_empty() {
        summary.heroes = others(&["leave", "ban"]);
    }
    Ok(summary)
}

/// Whether the room has a non-empty `m.room.name` or canonical alias.
pub(super) async fn has_a_name(storage: &Storage, room_id: &RoomId) -> Result<bool, StorageError> {
    for (kind, field) in [("m.room.name", "name"), ("m.room.canonical_alias", "alias")] {
        let Some(event) = storage.current_state_event(room_id, kind, "").await? else { continue };
        let json: Value = serde_json::from_str(&event.json).unwrap_or_default();
        if json["content"][field].as_str().is_some_and(|value| !value.is_empty()) {
            return Ok(true);
        }
    }
    Ok(false)
}
