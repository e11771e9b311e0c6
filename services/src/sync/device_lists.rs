//! Whose device lists a user must re-fetch between two tokens, for `/sync`'s
//! `device_lists` and `/keys/changes`: users sharing a room whose devices or
//! cross-signing keys changed, users who started sharing a room with them
//! (`changed`), and users who no longer share any (`left`).

use std::collections::HashSet;

use ruma::{OwnedUserId, RoomId, UserId};

use weft_storage::StorageError;

use super::{StreamToken, caches::Memberships};
use crate::services::Services;

#[derive(Debug, Default)]
pub struct DeviceListChanges {
    pub changed: Vec<OwnedUserId>,
    pub left: Vec<OwnedUserId>,
}

pub async fn changes(services: &Services, user_id: &UserId, from: &StreamToken, to: &StreamToken) -> Result<DeviceListChanges, StorageError> {
    changes_among(services, user_id, from, to, None).await
}

/// `changes`, given the user's current memberships when the caller has
/// them: then membership changes are looked for in the recent-events log
/// first, and the database is asked only when the log shows one (or cannot
/// tell).
pub(super) async fn changes_among(
    services: &Services,
    user_id: &UserId,
    from: &StreamToken,
    to: &StreamToken,
    memberships: Option<&Memberships>,
) -> Result<DeviceListChanges, StorageError> {
    let storage = &services.storage;
    let mut changed = storage.device_lists_changed(from.device_lists, to.device_lists).await?;
    let mut left_candidates = HashSet::new();
    let (after, upto) = (from.events.min, to.events.min);
    let writers = services.notifier.writers();
    let none_changed = after >= upto
        || memberships.is_some_and(|memberships| {
            memberships.iter().all(|(room_id, _, _)| {
                let window = services.sync_caches.recent.window(room_id, writers.events_writer_index(room_id.as_str()), after, upto);
                window.is_some_and(|events| events.iter().all(|held| held.event.kind != "m.room.member"))
            })
        });
    let membership_changes = if none_changed { Vec::new() } else { storage.membership_changes_around(user_id, after, upto).await? };
    for (room_id, member, membership) in membership_changes {
        let joined = membership == "join";
        let gone = membership == "leave" || membership == "ban";
        if member == user_id.as_str() {
            let Ok(room_id) = <&RoomId>::try_from(room_id.as_str()) else { continue };
            let members = storage.members_with(room_id, "join").await?;
            let members = members.into_iter().map(String::from);
            if joined {
                changed.extend(members);
            } else if gone {
                left_candidates.extend(members);
            }
        } else if joined {
            changed.insert(member);
        } else if gone {
            left_candidates.insert(member);
        }
    }
    if changed.is_empty() && left_candidates.is_empty() {
        return Ok(DeviceListChanges::default());
    }
    let sharing = storage.users_sharing_rooms_with(user_id).await?;
    let to_ids = |users: Vec<String>| -> Vec<OwnedUserId> {
        let mut ids: Vec<OwnedUserId> = users.into_iter().filter_map(|user| OwnedUserId::try_from(user).ok()).collect();
        ids.sort();
        ids
    };
    let left = left_candidates.iter().filter(|user| !sharing.contains(*user)).cloned().collect();
    let changed = changed.into_iter().filter(|user| sharing.contains(user)).collect();
    Ok(DeviceListChanges { changed: to_ids(changed), left: to_ids(left) })
}
