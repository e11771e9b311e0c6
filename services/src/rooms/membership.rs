//! Membership changes: join, leave, invite, kick, ban, unban, knock. Each is
//! an `m.room.member` event; who may make it is decided by the room
//! version's authorization rules, not here (a join under a restricted join
//! rule is only given the authorising user those rules ask for, see `restricted`).

use ruma::{OwnedEventId, RoomId, UserId};
use serde_json::json;

use super::{Outgoing, RoomError, RoomState};
use crate::{
    replication::room_writes::{self, RoomWrite},
    services::Services,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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
        if let Some(answer) = room_writes::at_remote_persister(services, room_id, || RoomWrite::Membership {
            sender: sender.to_owned(),
            target: target.to_owned(),
            membership,
            reason: reason.map(str::to_owned),
        })
        .await?
        {
            return Ok(answer);
        }
        let mut content = json!({ "membership": membership.as_str() });
        // As Synapse (`include_profile_data_on_invite`): joins, knocks and
        // invites carry the target's profile, so clients can name them.
        if matches!(membership, Membership::Join | Membership::Invite | Membership::Knock) {
            add_profile(services, target, &mut content).await?;
        }
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        self.with_room(services, room_id, async |state: &RoomState| {
            if sender == target
                && matches!(membership, Membership::Join | Membership::Leave)
                && state.membership_of(target).as_deref() == Some(membership.as_str())
                && let Some(event) = state.get(&ruma::events::StateEventType::RoomMember, target.as_str())
            {
                return Ok((event.event_id.clone(), Vec::new()));
            }
            let mut content = content.clone();
            if membership == Membership::Join
                && let Some(authoriser) = super::restricted::authorising_user(services, state, target).await?
            {
                content["join_authorised_via_users_server"] = json!(authoriser);
            }
            let outgoing = Outgoing { kind: "m.room.member", state_key: Some(target.as_str()), content, txn: None, redacts: None };
            if membership == Membership::Invite && target.server_name() != services.server_name {
                return crate::federation::invite::invite_remote(services, state, sender, target, &outgoing).await;
            }
            super::persist_one(services, state, sender, &outgoing).await
        })
        .await
    }
}

/// A member event's `displayname` and `avatar_url`, from the user's profile.
pub(crate) async fn add_profile(services: &Services, user_id: &UserId, content: &mut serde_json::Value) -> Result<(), RoomError> {
    let profile = services.storage.profile(user_id).await?;
    for field in ["displayname", "avatar_url"] {
        if let Some(value) = profile.get(field) {
            content[field] = value.clone();
        }
    }
    Ok(())
}

impl super::Rooms {
    /// Re-sends the user's join event in a room with their current profile,
    /// unless it already carries it. Returns whether an event was sent.
    pub async fn refresh_member_profile(&self, services: &Services, room_id: &RoomId, user_id: &UserId) -> Result<bool, RoomError> {
        if let Some(answer) = room_writes::at_remote_persister(services, room_id, || RoomWrite::RefreshProfile { user_id: user_id.to_owned() }).await? {
            return Ok(answer);
        }
        let mut content = json!({ "membership": "join" });
        add_profile(services, user_id, &mut content).await?;
        let outgoing = Outgoing { kind: "m.room.member", state_key: Some(user_id.as_str()), content: content.clone(), txn: None, redacts: None };
        self.with_room(services, room_id, async |state: &RoomState| {
            let Some(current) = state.get(&ruma::events::StateEventType::RoomMember, user_id.as_str()) else {
                return Ok((false, Vec::new()));
            };
            let current: serde_json::Value = serde_json::from_str(current.content.get()).unwrap_or_default();
            let unchanged = ["membership", "displayname", "avatar_url"].iter().all(|field| current.get(field) == content.get(field));
            if current["membership"] != "join" || unchanged {
                return Ok((false, Vec::new()));
            }
            let (_, persisted) = super::persist_one(services, state, user_id, &outgoing).await?;
            Ok((true, persisted))
        })
        .await
    }
}
