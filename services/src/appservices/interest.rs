//! Which appservices an event is for, as Synapse's
//! `ApplicationService.is_interested_in_event`: its sender is the
//! appservice's sender or in its users namespace; a member event's state key
//! is; the room id is in its rooms namespace; one of the room's aliases is
//! in its aliases namespace; or one of the room's joined local members is
//! one of its users. And, for presence and device-list changes, whether it
//! is interested in a user: the user is one of its users, or is joined to a
//! room it is interested in (Synapse's `is_interested_in_presence` and
//! `_is_appservice_interested_in_device_lists_of_user`).
//!
//! May call: storage (the room's aliases and members, read once per event
//! for every appservice).

use std::collections::HashMap;

use ruma::{OwnedRoomAliasId, OwnedUserId, RoomId, UserId};
use weft_core::appservice::AppService;
use weft_storage::{StorageError, StoredEvent};

use crate::services::Services;

pub(super) async fn interested(
    state: &Services,
    service: &AppService,
    event: &StoredEvent,
    aliases: &mut Option<Vec<OwnedRoomAliasId>>,
    members: &mut Option<Vec<OwnedUserId>>,
) -> Result<bool, StorageError> {
    if service.is_interested_in_user(&event.sender) {
        return Ok(true);
    }
    if event.kind == "m.room.member"
        && let Some(target) = event.state_key.as_deref().and_then(|key| UserId::parse(key).ok())
        && service.is_interested_in_user(&target)
    {
        return Ok(true);
    }
    interested_in_room(state, service, &event.room_id, aliases, members).await
}

/// Whether the appservice is interested in what happens in `room_id`: the
/// room id, one of its aliases or one of its joined local members is in its
/// namespaces (Synapse's `is_interested_in_room`, used for ephemeral events).
/// `aliases` and `members` are the room's, read when first needed.
pub(super) async fn interested_in_room(
    state: &Services,
    service: &AppService,
    room_id: &RoomId,
    aliases: &mut Option<Vec<OwnedRoomAliasId>>,
    members: &mut Option<Vec<OwnedUserId>>,
) -> Result<bool, StorageError> {
    if service.is_interested_in_room(room_id.as_str()) {
        return Ok(true);
    }
    if !service.namespaces.aliases.is_empty() {
        let aliases = match aliases {
            Some(aliases) => aliases,
            None => aliases.insert(state.storage.aliases_of(room_id).await?),
        };
        if aliases.iter().any(|alias| service.is_interested_in_alias(alias.as_str())) {
            return Ok(true);
        }
    }
    let members = match members {
        Some(members) => members,
        None => members.insert(state.storage.members_with(room_id, "join").await?),
    };
    Ok(members.iter().any(|member| member.server_name() == state.server_name && service.is_interested_in_user(member)))
}

/// Rooms' aliases and joined members, read once for every appservice asking.
pub(super) type Rooms = HashMap<String, (Option<Vec<OwnedRoomAliasId>>, Option<Vec<OwnedUserId>>)>;

/// Whether the appservice is interested in `user_id`'s presence or device
/// list: one of its users, or joined to a room it is interested in.
/// `joined` caches users' joined rooms, `rooms` the rooms' aliases and members.
pub(super) async fn interested_in_user_rooms(
    state: &Services,
    service: &AppService,
    user_id: &UserId,
    joined: &mut HashMap<OwnedUserId, Vec<ruma::OwnedRoomId>>,
    rooms: &mut Rooms,
) -> Result<bool, StorageError> {
    if service.is_interested_in_user(user_id) {
        return Ok(true);
    }
    if !joined.contains_key(user_id) {
        let memberships = state.storage.memberships_of(user_id).await?;
        let ids = memberships.into_iter().filter(|(_, membership, _)| membership == "join").map(|(room, _, _)| room).collect();
        joined.insert(user_id.to_owned(), ids);
    }
    for room_id in joined.get(user_id).map(Vec::as_slice).unwrap_or_default() {
        let (aliases, members) = rooms.entry(room_id.to_string()).or_default();
        if interested_in_room(state, service, room_id, aliases, members).await? {
            return Ok(true);
        }
    }
    Ok(false)
}
