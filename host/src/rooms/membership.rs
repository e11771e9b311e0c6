//! Membership changes: join, leave, invite, kick, ban, unban, knock. Each is
//! an `m.room.member` event; who may make it is decided by the room
//! version's authorization rules, not here.

use ruma::{OwnedEventId, RoomId, UserId};
use serde_json::json;

use super::{Outgoing, RoomError, RoomState, create::displayname_of};
use crate::services::Services;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Join,
    Leave,
    Invite,
    Ban,
    Knock,
}

impl Membership {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Leave => "leave",
            Self::Invite => "invite",
            Self::Ban => "ban",
            Self::Knock => "knock",
        }
    }
}

impl super::Rooms {
    /// Sets `target`'s membership in the room, as `sender`. Joining a room one
    /// has joined already, or leaving one left already, changes nothing and
    /// returns the current member event.
    pub async fn set_membership(
        &self,
        services: &Services,
        room_id: &RoomId,
        sender: &UserId,
        target: &UserId,
        membership: Membership,
        reason: Option<&str>,
    ) -> Result<OwnedEventId, RoomError> {
        let mut content = json!({ "membership": membership.as_str() });
        if membership == Membership::Join {
            content["displayname"] = json!(displayname_of(target));
        }
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        let outgoing = Outgoing { kind: "m.room.member", state_key: Some(target.as_str()), content, txn: None, redacts: None };
        self.with_room(services, room_id, async |state: &RoomState| {
            if sender == target
                && matches!(membership, Membership::Join | Membership::Leave)
                && state.membership_of(target).as_deref() == Some(membership.as_str())
                && let Some(event) = state.get(&ruma::events::StateEventType::RoomMember, target.as_str())
            {
                return Ok((event.event_id.clone(), Vec::new()));
            }
            super::persist_one(services, state, sender, &outgoing).await
        })
        .await
    }
}
