//! Joins under the `restricted` and `knock_restricted` join rules (in
//! the room versions whose rules have them, 8 and 10 on): a user not invited may
//! join if they are joined to a room in the rule's `allow` list. The join
//! event then names, in `join_authorised_via_users_server`, a local member
//! with the power to invite, which is what the authorization rules check.
//! Only local rooms are consulted: a membership this server does not hold
//! cannot be verified, so it does not count (Synapse asks no other server either).

use std::collections::HashSet;

use ruma::{OwnedUserId, UserId, events::StateEventType};
use serde_json::Value;

use super::{RoomError, RoomState};
use crate::services::Services;

/// The user to name in a join's `join_authorised_via_users_server`, when
/// the room's join rule asks for one: `None` when the join needs none (the
/// rule is not restricted, or the user is invited or joined already).
pub(crate) async fn authorising_user(services: &Services, state: &RoomState, joiner: &UserId) -> Result<Option<OwnedUserId>, RoomError> {
    let Some(join_rules) = state.content_of(&StateEventType::RoomJoinRules, "") else { return Ok(None) };
    let rules = &state.rules.authorization;
    let restricted = match join_rules.get("join_rule").and_then(Value::as_str) {
        Some("restricted") => rules.restricted_join_rule,
        Some("knock_restricted") => rules.knock_restricted_join_rule,
        _ => false,
    };
    if !restricted || matches!(state.membership_of(joiner).as_deref(), Some("join" | "invite")) {
        return Ok(None);
    }
    let allowed: Vec<&str> = join_rules
        .get("allow")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|entry| entry.get("type").and_then(Value::as_str) == Some("m.room_membership"))
        .filter_map(|entry| entry.get("room_id").and_then(Value::as_str))
        .collect();
    let joined: HashSet<String> = services
        .storage
        .memberships_of(joiner)
        .await?
        .into_iter()
        .filter(|(_, membership, _)| membership == "join")
        .map(|(room_id, _, _)| room_id.to_string())
        .collect();
    if !allowed.iter().any(|room_id| joined.contains(*room_id)) {
        return Err(RoomError::Forbidden("You do not belong to any of the required rooms to join this room".into()));
    }
    let invite_level = state.content_of(&StateEventType::RoomPowerLevels, "").and_then(|levels| levels.get("invite")?.as_i64()).unwrap_or(0);
    // The most powerful local member who may invite; ties go to the smallest user id, so the choice is stable.
    let authoriser = state
        .joined_members()
        .into_iter()
        .map(|(user_id, _)| user_id)
        .filter(|user_id| user_id.server_name() == services.server_name && state.power_level_of(user_id) >= invite_level)
        .max_by(|a, b| state.power_level_of(a).cmp(&state.power_level_of(b)).then_with(|| b.cmp(a)));
    authoriser.map(Some).ok_or(RoomError::UnableToGrantJoin)
}
