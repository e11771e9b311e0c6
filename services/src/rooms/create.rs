//! `createRoom`: the initial events in the spec's order (create, the
//! creator's join, power levels (generated, or `initial_state`'s), preset
//! join rules / history visibility / guest access, `initial_state`, name,
//! topic, invites), each built on the
//! state the previous ones made, then persisted with the room in one
//! transaction, so a room is created whole or not at all.
//!
//! Room ids: `!random:server` up to room version 11; from 12 the room id is
//! `!` and the create event's reference hash, so the create event is built
//! first (by the instance that got the request, to find the room's
//! persister) and its timestamp travels with the request, so that the
//! persister builds the same event. From 12 the creators (the sender, and
//! `additional_creators`, which `trusted_private_chat` fills with the
//! invitees as Synapse does) have unlimited power and are not listed in the
//! power levels' `users`.

use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId, room_version_rules::RoomVersionRules};
use serde_json::{Map, Value, json};

use weft_storage::{NewEvent, NewRoom};

use super::{Outgoing, RoomError, RoomState, versions};
use crate::{
    replication::room_writes::{self, RoomWrite},
    services::Services,
};

/// The most `initial_state` entries a `createRoom` request may carry. Synapse
/// has no cap but its request body size (some 300,000 minimal entries);
/// each entry is an event, written in one transaction. Clients send a handful.
pub const MAX_INITIAL_STATE: usize = 1_000;

/// The spec's presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Preset {
    PrivateChat,
    TrustedPrivateChat,
    PublicChat,
}

/// A `createRoom` request, reduced to what the pipeline needs.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CreateRoom {
    pub room_version: Option<RoomVersionId>,
    pub preset: Option<Preset>,
    /// `visibility: public`: publish in the directory (and default to public_chat).
    pub public: bool,
    pub creation_content: Option<Map<String, Value>>,
    pub power_level_content_override: Option<Map<String, Value>>,
    /// `(type, state_key, content)`.
    pub initial_state: Vec<(String, String, Value)>,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub invite: Vec<OwnedUserId>,
    pub is_direct: bool,
    /// A local alias to create with the room, set as its canonical alias.
    pub alias: Option<OwnedRoomAliasId>,
    /// The create event's `origin_server_ts`, set where a v12 room id is
    /// chosen, so that the persister builds the same create event.
    #[serde(default)]
    pub create_ts: Option<i64>,
}

/// How many times a v12 room id taken already (identical create events in
/// one millisecond) is drawn again, each time a millisecond later.
const ROOM_ID_ATTEMPTS: usize = 100;

/// A v12 room id held for one `createRoom` (`Rooms::reserve`).
struct Reservation<'a> {
    rooms: &'a super::Rooms,
    room_id: OwnedRoomId,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.rooms.creating.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.room_id);
    }
}

impl super::Rooms {
    /// Creates a room with a new id, on the persister that id belongs to.
    pub async fn create_room(&self, services: &Services, creator: &UserId, request: CreateRoom) -> Result<OwnedRoomId, RoomError> {
        let mut request = request;
        let version = request.room_version.clone().unwrap_or(versions::DEFAULT);
        let rules = versions::rules(&version).ok_or_else(|| RoomError::UnsupportedVersion(version.to_string()))?;
        let mut reserved = None;
        let room_id = if versions::room_id_is_create_hash(&rules) {
            let mut attempt = 0;
            let now = weft_storage::now_ms();
            loop {
                let create_ts = now + attempt as i64;
                let room_id = create_hash_room_id(services, creator, &request, &version, create_ts)?;
                attempt += 1;
                // Reserved first: two requests of one creator in one millisecond
                // build the same create event, and neither room exists yet.
                let reservation = self.reserve(&room_id);
                let free = reservation.is_some() && services.storage.room_version(&room_id).await?.is_none();
                if free || attempt >= ROOM_ID_ATTEMPTS {
                    request.create_ts = Some(create_ts);
                    reserved = reservation;
                    break room_id;
                }
            }
        } else {
            RoomId::new_v1(&services.server_name)
        };
        let _reserved = reserved;
        // Not `at_remote_persister`: the request is needed here when this instance persists the room.
        if let Some(persister) = room_writes::remote_persister(services, &room_id) {
            let write = RoomWrite::Create { creator: creator.to_owned(), request };
            return room_writes::answer(room_writes::call(services, &persister, &room_id, write).await?);
        }
        self.create_room_with_id(services, creator, request, room_id).await
    }

    /// Reserves `room_id` for a creation of this instance until the
    /// reservation is dropped; `None` when another one holds it.
    fn reserve(&self, room_id: &RoomId) -> Option<Reservation<'_>> {
        let mut creating = self.creating.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        creating.insert(room_id.to_owned()).then(|| Reservation { rooms: self, room_id: room_id.to_owned() })
    }

    /// Creates the room `room_id` here (this instance persists it).
    pub async fn create_room_with_id(
        &self,
        services: &Services,
        creator: &UserId,
        request: CreateRoom,
        room_id: OwnedRoomId,
    ) -> Result<OwnedRoomId, RoomError> {
        let mut request = request;
        request.initial_state = last_per_key(std::mem::take(&mut request.initial_state));
        let version = request.room_version.clone().unwrap_or(versions::DEFAULT);
        if let Some(alias) = &request.alias
            && services.storage.alias(alias).await?.is_some()
        {
            return Err(RoomError::AliasTaken);
        }
        let mut room = RoomState::new_room(room_id.clone(), version.clone())?;
        let preset = preset_of(&request);
        let create = create_content(&request, creator, &version, &room.rules);
        let creators_privileged = room.rules.authorization.explicitly_privilege_room_creators;

        let mut users = Map::new();
        if !creators_privileged {
            users.insert(creator.to_string(), json!(100));
            if preset == Preset::TrustedPrivateChat {
                for invitee in &request.invite {
                    users.insert(invitee.to_string(), json!(100));
                }
            }
        }
        // Synapse: from v12 only a creator may upgrade (tombstone) by default.
        let tombstone_level = if creators_privileged { 150 } else { 100 };
        let mut power_levels = json!({
            "users": users,
            "users_default": 0,
            "events": {
                "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": tombstone_level,
                "m.room.server_acl": 100, "m.room.encryption": 100,
            },
            "events_default": 0,
            "state_default": 50,
            "ban": 50,
            "kick": 50,
            "redact": 50,
            "invite": 0,
            "notifications": { "room": 50 },
        });
        let is_power_levels = |(kind, key, _): &&(String, String, Value)| kind == "m.room.power_levels" && key.is_empty();
        let given_levels = request.initial_state.iter().find(is_power_levels).map(|(_, _, content)| content.clone());
        if let Some(given) = given_levels {
            // As Synapse: power levels in `initial_state` replace the generated ones whole.
            power_levels = given;
        } else if let (Some(overrides), Some(levels)) = (&request.power_level_content_override, power_levels.as_object_mut()) {
            for (key, value) in overrides {
                levels.insert(key.clone(), value.clone());
            }
        }

        let (join_rule, guest_access) = match preset {
            Preset::PrivateChat | Preset::TrustedPrivateChat => ("invite", "can_join"),
            Preset::PublicChat => ("public", "forbidden"),
        };
        let given = |kind: &str| request.initial_state.iter().any(|(k, key, _)| k == kind && key.is_empty());

        let mut creator_member = json!({"membership": "join"});
        super::membership::add_profile(services, creator, &mut creator_member).await?;
        let mut plan: Vec<(String, Option<String>, Value)> = vec![
            ("m.room.create".into(), Some(String::new()), Value::Object(create)),
            ("m.room.member".into(), Some(creator.to_string()), creator_member),
            ("m.room.power_levels".into(), Some(String::new()), power_levels),
        ];
        if let Some(alias) = &request.alias {
            plan.push(("m.room.canonical_alias".into(), Some(String::new()), json!({"alias": alias})));
        }
        for (kind, content) in [
            ("m.room.join_rules", json!({"join_rule": join_rule})),
            ("m.room.history_visibility", json!({"history_visibility": "shared"})),
            ("m.room.guest_access", json!({"guest_access": guest_access})),
        ] {
            if !given(kind) {
                plan.push((kind.into(), Some(String::new()), content));
            }
        }
        for (kind, state_key, content) in request.initial_state.iter().filter(|entry| !is_power_levels(entry)) {
            plan.push((kind.clone(), Some(state_key.clone()), content.clone()));
        }
        if let Some(name) = &request.name {
            plan.push(("m.room.name".into(), Some(String::new()), json!({"name": name})));
        }
        if let Some(topic) = &request.topic {
            plan.push(("m.room.topic".into(), Some(String::new()), json!({"topic": topic})));
        }
        let (local_invitees, remote_invitees): (Vec<&OwnedUserId>, Vec<&OwnedUserId>) =
            request.invite.iter().partition(|invitee| invitee.server_name() == services.server_name);
        for invitee in local_invitees {
            plan.push(("m.room.member".into(), Some(invitee.to_string()), invite_content(services, invitee, request.is_direct).await?));
        }

        let mut built = Vec::with_capacity(plan.len());
        let mut push_actions = Vec::with_capacity(plan.len());
        for (kind, state_key, content) in &plan {
            let outgoing = Outgoing { kind, state_key: state_key.as_deref(), content: content.clone(), txn: None, redacts: None };
            let event = match (kind.as_str(), request.create_ts) {
                ("m.room.create", Some(create_ts)) => room.build_at(services, creator, &outgoing, create_ts)?,
                _ => room.build(services, creator, &outgoing)?,
            };
            if kind == "m.room.create" && versions::room_id_is_create_hash(&room.rules) && room_id.as_str() != format!("!{}", event.reference_hash) {
                return Err(RoomError::Invalid(format!("room id {room_id} is not its create event's reference hash")));
            }
            // The creator is the only member: of these events only the invites notify anyone.
            push_actions.push(crate::push::evaluate(services, &room, &event).await?);
            room.apply(&event);
            built.push(event);
        }
        let events: Vec<_> = built.iter().zip(&push_actions).map(|(event, push_actions)| NewEvent { push_actions, ..event.as_new_event() }).collect();
        let new_room = NewRoom {
            room_id: &room_id,
            room_version: version.as_str(),
            creator,
            published: request.public,
            alias: request.alias.as_ref().map(|alias| alias.as_str()),
        };
        services.storage.persist_events(Some(new_room), &events).await.map_err(|error| match error {
            weft_storage::StorageError::Conflict if request.alias.is_some() => RoomError::AliasTaken,
            other => other.into(),
        })?;
        let event_ids: Vec<&str> = built.iter().map(|event| event.event_id.as_str()).collect();
        services.events_persisted(room_id.as_str(), &event_ids);
        drop(events);
        self.remember(room).await;
        // Users of other servers are invited through their servers (the
        // federation `invite`) once the room exists, as Synapse does; one
        // that cannot be reached does not undo the room.
        for invitee in remote_invitees {
            let content = invite_content(services, invitee, request.is_direct).await?;
            let outgoing = Outgoing { kind: "m.room.member", state_key: Some(invitee.as_str()), content, txn: None, redacts: None };
            let invited = self
                .with_room(services, &room_id, async |state: &RoomState| {
                    crate::federation::invite::invite_remote(services, state, creator, invitee, &outgoing).await
                })
                .await;
            if let Err(error) = invited {
                tracing::warn!(%room_id, %invitee, %error, "createRoom could not invite a user of another server");
            }
        }
        Ok(room_id)
    }
}

/// The content of an invite made by `createRoom`.
async fn invite_content(services: &Services, invitee: &UserId, is_direct: bool) -> Result<serde_json::Value, RoomError> {
    let mut content = json!({"membership": "invite"});
    super::membership::add_profile(services, invitee, &mut content).await?;
    if is_direct {
        content["is_direct"] = json!(true);
    }
    Ok(content)
}

fn preset_of(request: &CreateRoom) -> Preset {
    request.preset.unwrap_or(if request.public { Preset::PublicChat } else { Preset::PrivateChat })
}

/// The create event's content: the client's `creation_content` with the
/// room version, `creator` before v11, and from v12 the invitees of a
/// `trusted_private_chat` added to `additional_creators` (as Synapse).
fn create_content(request: &CreateRoom, creator: &UserId, version: &RoomVersionId, rules: &RoomVersionRules) -> Map<String, Value> {
    let mut create = request.creation_content.clone().unwrap_or_default();
    create.insert("room_version".into(), json!(version.as_str()));
    if !rules.authorization.use_room_create_sender {
        create.insert("creator".into(), json!(creator));
    } else {
        create.remove("creator");
    }
    if rules.authorization.additional_room_creators && preset_of(request) == Preset::TrustedPrivateChat && !request.invite.is_empty() {
        let mut creators: Vec<Value> = create.get("additional_creators").and_then(Value::as_array).cloned().unwrap_or_default();
        for invitee in &request.invite {
            if !creators.iter().any(|known| known.as_str() == Some(invitee.as_str())) {
                creators.push(json!(invitee));
            }
        }
        create.insert("additional_creators".into(), Value::Array(creators));
    }
    create
}

/// The id of a v12 room: `!` and the reference hash of the create event
/// `creator` sends at `create_ts` (a create event carries no room id).
fn create_hash_room_id(services: &Services, creator: &UserId, request: &CreateRoom, version: &RoomVersionId, create_ts: i64) -> Result<OwnedRoomId, RoomError> {
    let placeholder = OwnedRoomId::try_from("!unknown").map_err(|e| RoomError::Invalid(e.to_string()))?;
    let room = RoomState::new_room(placeholder, version.clone())?;
    let content = Value::Object(create_content(request, creator, version, &room.rules));
    let outgoing = Outgoing { kind: "m.room.create", state_key: Some(""), content, txn: None, redacts: None };
    let event = room.build_at(services, creator, &outgoing, create_ts)?;
    RoomId::new_v2(&event.reference_hash).map_err(|e| RoomError::Invalid(e.to_string()))
}

/// One entry per `(type, state_key)`, as Synapse reads `initial_state`: the
/// last content given, at the place the key first appeared.
fn last_per_key(entries: Vec<(String, String, Value)>) -> Vec<(String, String, Value)> {
    let mut first_at: std::collections::HashMap<(String, String), usize> = std::collections::HashMap::with_capacity(entries.len());
    let mut kept: Vec<(String, String, Value)> = Vec::with_capacity(entries.len());
    for (kind, state_key, content) in entries {
        match first_at.entry((kind.clone(), state_key.clone())) {
            std::collections::hash_map::Entry::Occupied(at) => kept[*at.get()].2 = content,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(kept.len());
                kept.push((kind, state_key, content));
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn initial_state_keeps_the_last_content_at_the_first_place() {
        let entry = |kind: &str, key: &str, n: i32| (kind.to_owned(), key.to_owned(), json!({"n": n}));
        let kept = super::last_per_key(vec![entry("a", "", 1), entry("b", "", 2), entry("a", "", 3), entry("a", "x", 4)]);
        assert_eq!(kept, vec![entry("a", "", 3), entry("b", "", 2), entry("a", "x", 4)]);
    }
}
