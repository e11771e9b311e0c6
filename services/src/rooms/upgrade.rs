//! Room upgrades (`POST /rooms/{roomId}/upgrade`), as the spec and Synapse
//! do them:
//!
//! 1. a new room of the new version whose create event names its
//!    predecessor, with the old room's type and `m.federate`, its power
//!    levels, join rules, name, topic, avatar, history visibility, guest
//!    access, encryption, server ACL, a space's children, and its bans;
//! 2. an `m.room.tombstone` in the old room pointing at the new one;
//! 3. the old room's `events_default` and `invite` raised to at least 50
//!    (and above `users_default`), so ordinary members stop talking there;
//! 4. the old room's local aliases, canonical alias and directory listing
//!    moved to the new room;
//! 5. each local member's tags of the old room copied to the new one, and
//!    the new room added to every `m.direct` entry naming the old one, so a
//!    favourite or a direct chat stays one. This is account data: the
//!    instance writing that stream does it (always, in a monolith); another
//!    instance logs that it skipped it;
//! 6. each local member's push rules for the old room copied for the new
//!    one, by the writer of the `push_rules` stream.
//!
//! Steps 3 to 6 follow the upgrade itself; a failure there is logged and
//! does not undo it, as in Synapse.
//!
//! To room version 12, as Synapse: the predecessor names only the old room
//! (the new room's id is its create event's hash, made before anything is
//! sent in the old room), the upgrader and the request's
//! `additional_creators` are the new room's creators, and they are taken
//! out of the copied power levels' `users`.

use ruma::{
    OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId,
    events::StateEventType,
    push::{EventMatchConditionData, NewConditionalPushRule, NewPushRule, NewSimplePushRule, PushCondition, Ruleset},
};
use serde_json::{Map, Value, json};

use weft_storage::Stream;

use super::{CreateRoom, Outgoing, RoomError, RoomState, versions};
use crate::services::Services;

/// State copied to the new room (one state key, "", each).
const COPIED_STATE: [&str; 8] = [
    "m.room.join_rules",
    "m.room.name",
    "m.room.topic",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
];

/// The least level `events_default` and `invite` get in the old room.
const RESTRICTED_LEVEL: i64 = 50;

impl super::Rooms {
    /// Replaces `old_room` with a new room of `new_version`; returns its id.
    pub async fn upgrade(
        &self,
        services: &Services,
        user: &UserId,
        old_room: &RoomId,
        new_version: RoomVersionId,
        additional_creators: &[OwnedUserId],
    ) -> Result<OwnedRoomId, RoomError> {
        let Some(new_rules) = versions::rules(&new_version) else {
            return Err(RoomError::UnsupportedVersion(new_version.to_string()));
        };
        let additional_creators = if new_rules.authorization.additional_room_creators { additional_creators } else { &[] };
        let old = RoomState::load(services, old_room).await?;
        if old.membership_of(user).as_deref() != Some("join") {
            return Err(RoomError::Forbidden("You are not in the room".into()));
        }
        if old.power_level_of(user) < old.state_level_for("m.room.tombstone") {
            return Err(RoomError::Forbidden("You do not have permission to upgrade this room".into()));
        }

        let power_levels = old.content_of(&StateEventType::RoomPowerLevels, "").unwrap_or_else(|| json!({}));
        let (request, restore_levels) = replacement_request(services, &old, user, new_version, additional_creators, &power_levels).await?;
        let new_room = self.create_room(services, user, request).await?;
        if let Some(levels) = restore_levels {
            self.send_state(services, &new_room, user, "m.room.power_levels", levels).await?;
        }

        let tombstone = json!({"body": "This room has been replaced", "replacement_room": new_room});
        self.send_state(services, old_room, user, "m.room.tombstone", tombstone).await?;

        if let Err(error) = self.restrict(services, old_room, user, power_levels).await {
            tracing::warn!(%old_room, %error, "upgraded room: could not restrict the old room's power levels");
        }
        if let Err(error) = self.move_aliases(services, &old, &new_room, user).await {
            tracing::warn!(%old_room, %new_room, %error, "upgraded room: could not move the aliases");
        }
        if let Err(error) = transfer_user_data(services, &old, &new_room).await {
            tracing::warn!(%old_room, %new_room, %error, "upgraded room: could not copy the members' tags and direct chats");
        }
        if let Err(error) = transfer_push_rules(services, &old, &new_room).await {
            tracing::warn!(%old_room, %new_room, %error, "upgraded room: could not copy the members' push rules");
        }
        Ok(new_room)
    }

    async fn send_state(&self, services: &Services, room: &RoomId, user: &UserId, kind: &str, content: Value) -> Result<(), RoomError> {
        let outgoing = Outgoing { kind, state_key: Some(""), content, txn: None, redacts: None };
        self.send(services, room, user, outgoing).await.map(drop)
    }

    async fn restrict(&self, services: &Services, old_room: &RoomId, user: &UserId, mut levels: Value) -> Result<(), RoomError> {
        let restricted = RESTRICTED_LEVEL.max(levels.get("users_default").and_then(Value::as_i64).unwrap_or(0) + 1);
        let mut changed = false;
        for key in ["events_default", "invite"] {
            if levels.get(key).and_then(Value::as_i64).unwrap_or(0) < restricted {
                levels[key] = json!(restricted);
                changed = true;
            }
        }
        if changed {
            self.send_state(services, old_room, user, "m.room.power_levels", levels).await?;
        }
        Ok(())
    }

    async fn move_aliases(&self, services: &Services, old: &RoomState, new_room: &RoomId, user: &UserId) -> Result<(), RoomError> {
        services.storage.move_aliases(&old.room_id, new_room).await?;
        if services.storage.room_published(&old.room_id).await? == Some(true) {
            services.storage.set_room_published(new_room, true).await?;
            services.storage.set_room_published(&old.room_id, false).await?;
        }
        if let Some(canonical) = old.content_of(&StateEventType::RoomCanonicalAlias, "")
            && canonical.as_object().is_some_and(|content| !content.is_empty())
        {
            self.send_state(services, &old.room_id, user, "m.room.canonical_alias", json!({})).await?;
            self.send_state(services, new_room, user, "m.room.canonical_alias", canonical).await?;
        }
        Ok(())
    }
}

/// Step 5: the local members' tags and `m.direct` entries follow the room.
async fn transfer_user_data(services: &Services, old: &RoomState, new_room: &RoomId) -> Result<(), RoomError> {
    let writers = services.replication.writers();
    if writers.writer_of(Stream::AccountData) != writers.instance() {
        tracing::info!(old_room = %old.room_id, "upgraded room: tags and direct chats are copied only by the account_data writer");
        return Ok(());
    }
    let storage = &services.storage;
    let mut changed = false;
    let local_members = old.joined_members().into_iter().map(|(user_id, _)| user_id).filter(|user_id| user_id.server_name() == services.server_name);
    for user_id in local_members {
        if let Some(tags) = storage.account_data(&user_id, Some(&old.room_id), "m.tag").await? {
            storage.set_account_data(&user_id, Some(new_room), "m.tag", &tags).await?;
            changed = true;
        }
        if let Some(Value::Object(mut direct)) = storage.account_data(&user_id, None, "m.direct").await? {
            let mut touched = false;
            for rooms in direct.values_mut().filter_map(Value::as_array_mut) {
                if rooms.iter().any(|room| room.as_str() == Some(old.room_id.as_str())) && !rooms.iter().any(|room| room.as_str() == Some(new_room.as_str())) {
                    rooms.push(json!(new_room));
                    touched = true;
                }
            }
            if touched {
                storage.set_account_data(&user_id, None, "m.direct", &Value::Object(direct)).await?;
                changed = true;
            }
        }
    }
    if changed {
        services.stream_advanced(Stream::AccountData);
    }
    Ok(())
}

/// Step 6: each local member's enabled rules for the old room (a room rule,
/// or an override or underride rule matching `room_id`) are copied for the
/// new room, as Synapse does, so a muted room stays muted.
async fn transfer_push_rules(services: &Services, old: &RoomState, new_room: &RoomId) -> Result<(), RoomError> {
    let writers = services.replication.writers();
    if writers.writer_of(Stream::PushRules) != writers.instance() {
        tracing::info!(old_room = %old.room_id, "upgraded room: push rules are copied only by the push_rules writer");
        return Ok(());
    }
    let mut changed = false;
    let local_members = old.joined_members().into_iter().map(|(user_id, _)| user_id).filter(|user_id| user_id.server_name() == services.server_name);
    for user_id in local_members {
        let copied = services
            .storage
            .change_push_ruleset(&user_id, |rules| match copy_room_rules(rules, &old.room_id, new_room) {
                true => Ok(()),
                false => Err(()),
            })
            .await?;
        changed |= copied.is_ok();
    }
    if changed {
        services.stream_advanced(Stream::PushRules);
    }
    Ok(())
}

/// Adds to `rules` a copy for `new_room` of every enabled user rule about
/// `old_room`; whether any was added.
fn copy_room_rules(rules: &mut Ruleset, old_room: &RoomId, new_room: &RoomId) -> bool {
    let names_old_room =
        |condition: &PushCondition| matches!(condition, PushCondition::EventMatch(data) if data.key == "room_id" && data.pattern == old_room.as_str());
    let for_new_room = |conditions: &[PushCondition]| -> Vec<PushCondition> {
        conditions
            .iter()
            .map(|condition| match condition {
                PushCondition::EventMatch(data) if names_old_room(condition) => {
                    PushCondition::EventMatch(EventMatchConditionData::new(data.key.clone(), new_room.to_string()))
                }
                other => other.clone(),
            })
            .collect()
    };
    let mut copies = Vec::new();
    for (rules_of_kind, make) in
        [(&rules.override_, NewPushRule::Override as fn(NewConditionalPushRule) -> NewPushRule), (&rules.underride, NewPushRule::Underride)]
    {
        let taken = rules_of_kind.iter().any(|rule| rule.rule_id == new_room.as_str());
        if let Some(rule) = rules_of_kind.iter().find(|rule| !rule.default && rule.enabled && rule.conditions.iter().any(names_old_room))
            && !taken
        {
            copies.push(make(NewConditionalPushRule::new(new_room.to_string(), for_new_room(&rule.conditions), rule.actions.clone())));
        }
    }
    let room_rule = rules.room.iter().find(|rule| rule.enabled && rule.rule_id == old_room);
    if let Some(rule) = room_rule
        && !rules.room.iter().any(|rule| rule.rule_id == new_room)
    {
        copies.push(NewPushRule::Room(NewSimplePushRule::new(new_room.to_owned(), rule.actions.clone())));
    }
    let copied = !copies.is_empty();
    for copy in copies {
        if let Err(error) = rules.insert(copy, None, None) {
            tracing::warn!(%old_room, %new_room, %error, "upgraded room: a push rule could not be copied");
        }
    }
    copied
}

/// The `createRoom` request that makes the replacement, and the power
/// levels to restore once it exists when the upgrader's level had to be
/// raised to send the copied state.
async fn replacement_request(
    services: &Services,
    old: &RoomState,
    user: &UserId,
    new_version: RoomVersionId,
    additional_creators: &[OwnedUserId],
    power_levels: &Value,
) -> Result<(CreateRoom, Option<Value>), RoomError> {
    let old_room = &old.room_id;
    let new_rules = versions::rules(&new_version).ok_or_else(|| RoomError::UnsupportedVersion(new_version.to_string()))?;
    let creators_privileged = new_rules.authorization.explicitly_privilege_room_creators;
    let old_create = old.content_of(&StateEventType::RoomCreate, "").unwrap_or_default();
    let mut creation_content = Map::new();
    for key in ["type", "m.federate"] {
        if let Some(value) = old_create.get(key) {
            creation_content.insert(key.into(), value.clone());
        }
    }
    if versions::room_id_is_create_hash(&new_rules) {
        creation_content.insert("predecessor".into(), json!({"room_id": old_room}));
    } else {
        let last_event = services.storage.forward_extremities(old_room).await?.into_iter().max_by_key(|(_, depth)| *depth).map(|(id, _)| id);
        creation_content.insert("predecessor".into(), json!({"room_id": old_room, "event_id": last_event}));
    }
    if !additional_creators.is_empty() {
        creation_content.insert("additional_creators".into(), json!(additional_creators));
    }

    let mut initial_state = Vec::new();
    for kind in COPIED_STATE {
        if let Some(content) = old.content_of(&kind.into(), "") {
            initial_state.push((kind.to_owned(), String::new(), content));
        }
    }
    let is_space = old_create.get("type").and_then(Value::as_str) == Some("m.space");
    for event in services.storage.current_state(old_room).await? {
        let Some(state_key) = event.state_key.clone() else { continue };
        let content = || serde_json::from_str::<Value>(&event.json).ok().and_then(|pdu| pdu.get("content").cloned());
        if is_space && event.kind == "m.space.child" {
            initial_state.extend(content().map(|content| (event.kind.clone(), state_key, content)));
        } else if event.kind == "m.room.member" {
            let banned = content().filter(|content| content.get("membership").and_then(Value::as_str) == Some("ban"));
            if let Some(ban) = banned {
                let mut kept = json!({"membership": "ban"});
                if let Some(reason) = ban.get("reason") {
                    kept["reason"] = reason.clone();
                }
                initial_state.push((event.kind.clone(), state_key, kept));
            }
        }
    }

    let needed = initial_state
        .iter()
        .map(|(kind, _, _)| if kind == "m.room.member" { level(power_levels, "ban", 50) } else { event_level(power_levels, kind) })
        .chain([event_level(power_levels, "m.room.power_levels")])
        .max()
        .unwrap_or(0);
    let mut levels = power_levels.as_object().cloned().unwrap_or_default();
    if creators_privileged {
        // The new room's creators have unlimited power and may not be listed.
        if let Some(users) = levels.get_mut("users").and_then(Value::as_object_mut) {
            users.remove(user.as_str());
            for creator in additional_creators {
                users.remove(creator.as_str());
            }
        }
    }
    let listed = levels.get("users").and_then(|users| users.get(user.as_str())).or(levels.get("users_default"));
    let own_level = listed.and_then(Value::as_i64).unwrap_or(0);
    let restore = (!creators_privileged && own_level < needed).then(|| Value::Object(levels.clone()));
    if restore.is_some() {
        let users = levels.entry("users").or_insert_with(|| json!({}));
        if !users.is_object() {
            *users = json!({});
        }
        users[user.as_str()] = json!(needed);
    }

    let request = CreateRoom {
        room_version: Some(new_version),
        creation_content: Some(creation_content),
        power_level_content_override: Some(levels),
        initial_state,
        ..CreateRoom::default()
    };
    Ok((request, restore))
}

fn level(levels: &Value, key: &str, default: i64) -> i64 {
    levels.get(key).and_then(Value::as_i64).unwrap_or(default)
}

fn event_level(levels: &Value, kind: &str) -> i64 {
    levels["events"].get(kind).and_then(Value::as_i64).unwrap_or_else(|| level(levels, "state_default", 50))
}
