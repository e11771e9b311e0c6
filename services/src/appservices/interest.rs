//! Which appservices an event is for, as Synapse's
//! `ApplicationService.is_interested_in_event`: its sender is the
//! appservice's sender or in its users namespace; a member event's state key
//! is; the room id is in its rooms namespace; one of the room's aliases is
//! in its aliases namespace; or one of the room's joined local members is
//! one of its users.
//!
//! May call: storage (the room's aliases and members, read once per event
//! for every appservice).

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
