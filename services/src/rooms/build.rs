//! Building one event on a room's current state: prev events and depth from
//! the forward extremities, auth events as the room version selects them,
//! content hash and signature, the event id, then ruma's authorization rules
//! (state-independent and state-dependent).
//!
//! What differs between room versions comes from the version's ruma rules
//! (`versions`): a made-up `$random:server` id carried in the event (v1, v2)
//! or the reference hash; `prev_events` and `auth_events` as ids or as
//! `[id, {"sha256": reference hash}]` pairs (v1, v2, so the state keeps the
//! reference hashes of its events and of the forward extremities); and from
//! v12 a create event without `room_id`, kept out of other events' `auth_events`.

use std::{collections::HashMap, sync::Arc};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, OwnedRoomId, RoomId, RoomVersionId, UserId,
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
    state_res,
};
use serde_json::{Value, value::to_raw_value};

use weft_storage::NewEvent;

use super::{MAX_EVENT_SIZE, Outgoing, RoomError, content_checks, pdu::Pdu, versions};
use crate::services::Services;

/// The most bytes of an event's `type` or `state_key`.
const MAX_FIELD_BYTES: usize = 255;

/// A room's current state and tip, enough to build the next event.
pub struct RoomState {
    pub room_id: OwnedRoomId,
    pub version: RoomVersionId,
    pub rules: RoomVersionRules,
    state: HashMap<(StateEventType, String), Arc<Pdu>>,
    prev_events: Vec<OwnedEventId>,
    depth: i64,
    /// Reference hashes of the state events and forward extremities, for
    /// versions whose references carry them (v1, v2); empty otherwise.
    reference_hashes: HashMap<OwnedEventId, String>,
}

/// A signed, authorised event not yet persisted.
#[derive(Debug, Clone)]
pub struct BuiltEvent {
    pub event_id: OwnedEventId,
    pub pdu: Arc<Pdu>,
    pub kind: String,
    pub state_key: Option<String>,
    pub membership: Option<String>,
    pub depth: i64,
    pub origin_server_ts: i64,
    pub prev_events: Vec<OwnedEventId>,
    pub json: String,
    /// `(parent, rel_type)` when the content relates to another event.
    pub relation: Option<(String, String)>,
    /// What full-text search indexes, as Synapse: `content.body` of
    /// messages, `content.name` and `content.topic` of those state events.
    pub search_text: Option<String>,
    /// The event's reference hash (its id from v3 on).
    pub reference_hash: String,
}

impl BuiltEvent {
    pub fn as_new_event(&self) -> NewEvent<'_> {
        NewEvent {
            event_id: &self.event_id,
            room_id: &self.pdu.room_id,
            sender: &self.pdu.sender,
            kind: &self.kind,
            state_key: self.state_key.as_deref(),
            depth: self.depth,
            origin_server_ts: self.origin_server_ts,
            json: &self.json,
            prev_events: &self.prev_events,
            membership: self.membership.as_deref(),
            txn: None,
            redaction: None,
            relation: self.relation.as_ref().map(|(parent, rel_type)| (parent.as_str(), rel_type.as_str())),
            search_text: self.search_text.as_deref(),
            push_actions: &[],
        }
    }
}

impl RoomState {
    /// A room that does not exist yet: its create event comes first.
    pub fn new_room(room_id: OwnedRoomId, version: RoomVersionId) -> Result<Self, RoomError> {
        let rules = versions::rules(&version).ok_or_else(|| RoomError::UnsupportedVersion(version.to_string()))?;
        Ok(Self { room_id, version, rules, state: HashMap::new(), prev_events: Vec::new(), depth: 1, reference_hashes: HashMap::new() })
    }

    pub async fn load(services: &Services, room_id: &RoomId) -> Result<Self, RoomError> {
        let storage = &services.storage;
        let version = storage.room_version(room_id).await?.ok_or(RoomError::UnknownRoom)?;
        let version = RoomVersionId::try_from(version.as_str()).map_err(|_| RoomError::UnsupportedVersion(version.clone()))?;
        let mut room = Self::new_room(room_id.to_owned(), version)?;
        let with_hashes = versions::references_carry_hashes(&room.rules);
        for event in storage.current_state(room_id).await? {
            let pdu = Pdu::from_stored(&event).map_err(|e| RoomError::Invalid(format!("stored event {}: {e}", event.event_id)))?;
            let key = (StateEventType::from(event.kind.as_str()), event.state_key.clone().unwrap_or_default());
            if with_hashes {
                room.reference_hashes.insert(event.event_id.clone(), reference_hash_of(&event.json, &room.rules)?);
            }
            room.state.insert(key, Arc::new(pdu));
        }
        let extremities = storage.forward_extremities(room_id).await?;
        room.depth = extremities.iter().map(|(_, depth)| depth + 1).max().unwrap_or(1);
        room.prev_events = extremities.into_iter().map(|(id, _)| id).collect();
        if with_hashes {
            for id in room.prev_events.clone() {
                if !room.reference_hashes.contains_key(&id) {
                    let event = storage.event(&id).await?.ok_or_else(|| RoomError::Invalid(format!("forward extremity {id} is not stored")))?;
                    room.reference_hashes.insert(id, reference_hash_of(&event.json, &room.rules)?);
                }
            }
        }
        Ok(room)
    }

    /// The room's creators: the create event's sender (or its `creator`
    /// before v11) and, from v12, its `additional_creators`.
    pub fn creators(&self) -> Vec<ruma::OwnedUserId> {
        let Some(create) = self.get(&StateEventType::RoomCreate, "") else { return Vec::new() };
        state_res::events::RoomCreateEvent::new(create.as_ref()).creators(&self.rules.authorization).map(|set| set.into_iter().collect()).unwrap_or_default()
    }

    /// Whether `user_id` has the unlimited power room version 12 gives creators.
    pub fn is_privileged_creator(&self, user_id: &UserId) -> bool {
        self.rules.authorization.explicitly_privilege_room_creators && self.creators().iter().any(|creator| creator == user_id)
    }

    pub fn get(&self, kind: &StateEventType, state_key: &str) -> Option<&Arc<Pdu>> {
        self.state.get(&(kind.clone(), state_key.to_owned()))
    }

    /// The current state as event ids.
    pub fn state_ids(&self) -> HashMap<(StateEventType, String), OwnedEventId> {
        self.state.iter().map(|(key, pdu)| (key.clone(), pdu.event_id.clone())).collect()
    }

    /// A user's membership in the current state.
    pub fn membership_of(&self, user_id: &UserId) -> Option<String> {
        let event = self.get(&StateEventType::RoomMember, user_id.as_str())?;
        let content: Value = serde_json::from_str(event.content.get()).ok()?;
        content.get("membership")?.as_str().map(str::to_owned)
    }

    /// Users joined in the current state, with their display names.
    pub fn joined_members(&self) -> Vec<(ruma::OwnedUserId, Option<String>)> {
        self.state
            .iter()
            .filter(|((kind, _), _)| *kind == StateEventType::RoomMember)
            .filter_map(|((_, state_key), event)| {
                let content: Value = serde_json::from_str(event.content.get()).ok()?;
                if content.get("membership")?.as_str()? != "join" {
                    return None;
                }
                let user_id = ruma::OwnedUserId::try_from(state_key.as_str()).ok()?;
                Some((user_id, content.get("displayname").and_then(Value::as_str).map(str::to_owned)))
            })
            .collect()
    }

    /// A user's power level, from `m.room.power_levels` (creator 100 without
    /// one); a creator's is unlimited (`i64::MAX`) from room version 12.
    pub fn power_level_of(&self, user_id: &UserId) -> i64 {
        if self.is_privileged_creator(user_id) {
            return i64::MAX;
        }
        let Some(levels) = self.content_of(&StateEventType::RoomPowerLevels, "") else {
            let creator = self.get(&StateEventType::RoomCreate, "").map(|create| create.sender.clone());
            return if creator.as_deref() == Some(user_id) { 100 } else { 0 };
        };
        levels["users"].get(user_id.as_str()).or(levels.get("users_default")).and_then(Value::as_i64).unwrap_or(0)
    }

    /// The power level needed to send a state event of this type.
    pub fn state_level_for(&self, kind: &str) -> i64 {
        let levels = self.content_of(&StateEventType::RoomPowerLevels, "").unwrap_or_default();
        levels["events"].get(kind).or(levels.get("state_default")).and_then(Value::as_i64).unwrap_or(50)
    }

    /// The content of a current state event, parsed.
    pub fn content_of(&self, kind: &StateEventType, state_key: &str) -> Option<Value> {
        serde_json::from_str(self.get(kind, state_key)?.content.get()).ok()
    }

    /// Takes a built event into this state, for building several in a row.
    pub fn apply(&mut self, event: &BuiltEvent) {
        if let Some(state_key) = &event.state_key {
            self.state.insert((StateEventType::from(event.kind.as_str()), state_key.clone()), event.pdu.clone());
        }
        self.prev_events = vec![event.event_id.clone()];
        self.depth = event.depth + 1;
        if versions::references_carry_hashes(&self.rules) {
            self.reference_hashes.insert(event.event_id.clone(), event.reference_hash.clone());
            if self.reference_hashes.len() > 2 * (self.state.len() + self.prev_events.len()) + 64 {
                let kept: std::collections::HashSet<&OwnedEventId> = self.state.values().map(|pdu| &pdu.event_id).chain(&self.prev_events).collect();
                let kept: std::collections::HashSet<OwnedEventId> = kept.into_iter().cloned().collect();
                self.reference_hashes.retain(|id, _| kept.contains(id));
            }
        }
    }

    /// `prev_events` or `auth_events` as the room version lists them: ids,
    /// or `[id, {"sha256": reference hash}]` pairs.
    fn references(&self, ids: &[OwnedEventId]) -> Result<CanonicalJsonValue, RoomError> {
        let with_hashes = versions::references_carry_hashes(&self.rules);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let id_value = CanonicalJsonValue::String(id.to_string());
            if !with_hashes {
                out.push(id_value);
                continue;
            }
            let hash = self.reference_hashes.get(id).ok_or_else(|| RoomError::Invalid(format!("no reference hash known for {id}")))?;
            let mut hashes = CanonicalJsonObject::new();
            hashes.insert("sha256".into(), CanonicalJsonValue::String(hash.clone()));
            out.push(CanonicalJsonValue::Array(vec![id_value, CanonicalJsonValue::Object(hashes)]));
        }
        Ok(CanonicalJsonValue::Array(out))
    }

    /// The forward extremities this state builds on.
    pub fn prev_events(&self) -> &[OwnedEventId] {
        &self.prev_events
    }

    /// Every current state event.
    pub fn events(&self) -> impl Iterator<Item = &Arc<Pdu>> {
        self.state.values()
    }

    /// An unsigned event on this state, as `make_join` and `make_leave`
    /// offer it to another server, which signs it: prev and auth events,
    /// depth, and no hashes, signatures or id. Checked against the
    /// authorization rules with a placeholder id.
    pub fn template(&self, sender: &UserId, kind: &str, state_key: &str, content: &Value, origin_server_ts: i64) -> Result<CanonicalJsonObject, RoomError> {
        let content_value = CanonicalJsonValue::try_from(content.clone()).map_err(|e| RoomError::Invalid(e.to_string()))?;
        let content_raw = to_raw_value(content).map_err(|e| RoomError::Invalid(e.to_string()))?;
        let event_type = TimelineEventType::from(kind);
        let auth_types =
            state_res::auth_types_for_event(&event_type, sender, Some(state_key), &content_raw, &self.rules.authorization).map_err(RoomError::Invalid)?;
        let mut auth_pdus: Vec<Arc<Pdu>> = auth_types.iter().filter_map(|(kind, key)| self.get(kind, key)).cloned().collect();
        auth_pdus.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        auth_pdus.dedup_by(|a, b| a.event_id == b.event_id);
        let auth_events: Vec<OwnedEventId> = auth_pdus.iter().map(|pdu| pdu.event_id.clone()).collect();
        let mut object = CanonicalJsonObject::new();
        object.insert("auth_events".into(), self.references(&auth_events)?);
        object.insert("content".into(), content_value);
        object.insert("depth".into(), CanonicalJsonValue::Integer(ruma::Int::new_saturating(self.depth)));
        object.insert("origin_server_ts".into(), CanonicalJsonValue::Integer(ruma::Int::new_saturating(origin_server_ts)));
        object.insert("prev_events".into(), self.references(&self.prev_events)?);
        object.insert("room_id".into(), CanonicalJsonValue::String(self.room_id.to_string()));
        object.insert("sender".into(), CanonicalJsonValue::String(sender.to_string()));
        object.insert("state_key".into(), CanonicalJsonValue::String(state_key.to_owned()));
        object.insert("type".into(), CanonicalJsonValue::String(kind.to_owned()));
        let placeholder = OwnedEventId::try_from(format!("$template:{}", sender.server_name())).map_err(|e| RoomError::Invalid(e.to_string()))?;
        let pdu = Pdu::parse(placeholder, &CanonicalJsonValue::Object(object.clone()).to_string()).map_err(|e| RoomError::Invalid(e.to_string()))?;
        self.authorise(&pdu, &auth_pdus)?;
        Ok(object)
    }

    /// Builds, signs and authorises the next event on this state.
    pub fn build(&self, services: &Services, sender: &UserId, outgoing: &Outgoing<'_>) -> Result<BuiltEvent, RoomError> {
        self.build_at(services, sender, outgoing, weft_storage::now_ms())
    }

    /// `build` with a given `origin_server_ts`: a v12 room's id is its
    /// create event's hash, so the instance that picks the id and the
    /// persister that writes the room must build the same create event.
    pub fn build_at(&self, services: &Services, sender: &UserId, outgoing: &Outgoing<'_>, origin_server_ts: i64) -> Result<BuiltEvent, RoomError> {
        let content = CanonicalJsonValue::try_from(outgoing.content.clone()).map_err(|e| RoomError::Invalid(format!("content is not canonical JSON: {e}")))?;
        content_checks::check(outgoing.kind, outgoing.state_key, &outgoing.content, self.room_id.as_str(), &services.server_name)?;
        let content_raw = to_raw_value(&outgoing.content).map_err(|e| RoomError::Invalid(e.to_string()))?;
        let kind = TimelineEventType::from(outgoing.kind);
        let auth_types =
            state_res::auth_types_for_event(&kind, sender, outgoing.state_key, &content_raw, &self.rules.authorization).map_err(RoomError::Invalid)?;
        let mut auth_pdus: Vec<Arc<Pdu>> = auth_types.iter().filter_map(|(kind, key)| self.get(kind, key)).cloned().collect();
        auth_pdus.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        auth_pdus.dedup_by(|a, b| a.event_id == b.event_id);
        let auth_events: Vec<OwnedEventId> = auth_pdus.iter().map(|pdu| pdu.event_id.clone()).collect();

        if outgoing.kind == "m.room.power_levels" {
            self.check_creators_not_listed(&outgoing.content)?;
        }
        let mut object = CanonicalJsonObject::new();
        object.insert("auth_events".into(), self.references(&auth_events)?);
        object.insert("content".into(), content);
        object.insert("depth".into(), CanonicalJsonValue::Integer(ruma::Int::new_saturating(self.depth)));
        object.insert("origin_server_ts".into(), CanonicalJsonValue::Integer(ruma::Int::new_saturating(origin_server_ts)));
        object.insert("prev_events".into(), self.references(&self.prev_events)?);
        let is_create = outgoing.kind == "m.room.create";
        if !is_create || self.rules.event_format.require_room_create_room_id {
            object.insert("room_id".into(), CanonicalJsonValue::String(self.room_id.to_string()));
        }
        object.insert("sender".into(), CanonicalJsonValue::String(sender.to_string()));
        // The spec's size limits on fields (Synapse's 413 M_TOO_LARGE).
        if outgoing.kind.len() > MAX_FIELD_BYTES {
            return Err(RoomError::FieldTooLarge("type"));
        }
        if outgoing.state_key.is_some_and(|key| key.len() > MAX_FIELD_BYTES) {
            return Err(RoomError::FieldTooLarge("state_key"));
        }
        object.insert("type".into(), CanonicalJsonValue::String(outgoing.kind.to_owned()));
        if let Some(state_key) = outgoing.state_key {
            object.insert("state_key".into(), CanonicalJsonValue::String(state_key.to_owned()));
        }
        if let Some(redacts) = &outgoing.redacts {
            object.insert("redacts".into(), CanonicalJsonValue::String(redacts.to_string()));
        }
        let random_id = versions::event_ids_are_random(&self.rules).then(|| random_event_id(&services.server_name)).transpose()?;
        if let Some(event_id) = &random_id {
            object.insert("event_id".into(), CanonicalJsonValue::String(event_id.to_string()));
        }
        let unsigned_size = CanonicalJsonValue::Object(object.clone()).to_string().len();
        if unsigned_size > MAX_EVENT_SIZE {
            return Err(RoomError::TooLarge(unsigned_size));
        }

        let key = &services.signing_key;
        ruma::signatures::hash_and_sign_event(services.server_name.as_str(), &key.pair, &mut object, &self.rules.redaction)
            .map_err(|e| RoomError::Invalid(format!("cannot sign the event: {e}")))?;
        let json = CanonicalJsonValue::Object(object.clone()).to_string();
        if json.len() > MAX_EVENT_SIZE {
            return Err(RoomError::TooLarge(json.len()));
        }
        let reference_hash = ruma::signatures::reference_hash(&object, &self.rules).map_err(|e| RoomError::Invalid(e.to_string()))?;
        let event_id = match random_id {
            Some(event_id) => event_id,
            None => OwnedEventId::try_from(format!("${reference_hash}")).map_err(|e| RoomError::Invalid(e.to_string()))?,
        };
        let pdu = Pdu::parse(event_id.clone(), &json).map_err(|e| RoomError::Invalid(e.to_string()))?;

        self.authorise(&pdu, &auth_pdus)?;
        // Unsigned, so outside the hashes and the id: what this state event
        // replaces, as Synapse records it when it creates one. Clients read
        // `prev_content` to tell a display name change from a join.
        let json = match self.replaced_state(outgoing) {
            Some(unsigned) => {
                object.insert("unsigned".into(), unsigned);
                CanonicalJsonValue::Object(object).to_string()
            }
            None => json,
        };
        let membership = (outgoing.kind == "m.room.member").then(|| outgoing.content.get("membership").and_then(Value::as_str).map(str::to_owned)).flatten();
        Ok(BuiltEvent {
            event_id,
            pdu: Arc::new(pdu),
            kind: outgoing.kind.to_owned(),
            state_key: outgoing.state_key.map(str::to_owned),
            membership,
            depth: self.depth,
            origin_server_ts,
            prev_events: self.prev_events.clone(),
            json,
            relation: relation_of(&outgoing.content),
            search_text: search_text_of(outgoing.kind, &outgoing.content),
            reference_hash,
        })
    }

    /// From room version 12 the creators have unlimited power and must not
    /// be listed in `users`; refused before the authorization rules (which
    /// would say 403) with Synapse's 400.
    fn check_creators_not_listed(&self, content: &Value) -> Result<(), RoomError> {
        if !self.rules.authorization.explicitly_privilege_room_creators {
            return Ok(());
        }
        let Some(users) = content.get("users").and_then(Value::as_object) else { return Ok(()) };
        match self.creators().into_iter().find(|creator| users.contains_key(creator.as_str())) {
            Some(creator) => Err(RoomError::CreatorInPowerLevels(creator.to_string())),
            None => Ok(()),
        }
    }

    /// `replaces_state`, `prev_content` and `prev_sender` of the state event
    /// `outgoing` would replace, if it is a state event and one is there.
    fn replaced_state(&self, outgoing: &Outgoing<'_>) -> Option<CanonicalJsonValue> {
        let previous = self.get(&StateEventType::from(outgoing.kind), outgoing.state_key?)?;
        let content = serde_json::from_str::<CanonicalJsonValue>(previous.content.get()).ok()?;
        let mut unsigned = CanonicalJsonObject::new();
        unsigned.insert("replaces_state".into(), CanonicalJsonValue::String(previous.event_id.to_string()));
        unsigned.insert("prev_content".into(), content);
        unsigned.insert("prev_sender".into(), CanonicalJsonValue::String(previous.sender.to_string()));
        Some(CanonicalJsonValue::Object(unsigned))
    }

    /// Checks `pdu` against the room version's rules. `auth` are its auth
    /// events: the state-independent rules look up only those by id, and the
    /// create event (from room version 12 it is not among them). Indexing the
    /// whole state by id here made building N events in a row O(N²).
    fn authorise(&self, pdu: &Pdu, auth: &[Arc<Pdu>]) -> Result<(), RoomError> {
        let rules = &self.rules.authorization;
        let create = self.get(&StateEventType::RoomCreate, "");
        let by_id = |id: &ruma::EventId| auth.iter().chain(create).find(|event| *event.event_id == *id).cloned();
        state_res::check_state_independent_auth_rules(rules, pdu, by_id).map_err(RoomError::Forbidden)?;
        state_res::check_state_dependent_auth_rules(rules, pdu, |kind, key| self.get(kind, key).cloned()).map_err(RoomError::Forbidden)?;
        Ok(())
    }
}

/// A room version 1 or 2 event id: `$`, random letters, `:` and this server.
fn random_event_id(server_name: &ruma::ServerName) -> Result<OwnedEventId, RoomError> {
    use rand::Rng;
    let random: String = rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(18).map(char::from).collect();
    OwnedEventId::try_from(format!("${random}:{server_name}")).map_err(|e| RoomError::Invalid(e.to_string()))
}

/// The reference hash of a stored event (its JSON, `unsigned` included).
fn reference_hash_of(json: &str, rules: &RoomVersionRules) -> Result<String, RoomError> {
    let object: CanonicalJsonObject = serde_json::from_str(json).map_err(|e| RoomError::Invalid(format!("stored event: {e}")))?;
    ruma::signatures::reference_hash(&object, rules).map_err(|e| RoomError::Invalid(e.to_string()))
}

/// The parent and type of a relation (`m.relates_to` with both `event_id` and `rel_type`).
pub fn relation_of(content: &Value) -> Option<(String, String)> {
    let relates_to = content.get("m.relates_to")?;
    let parent = relates_to.get("event_id")?.as_str()?;
    let rel_type = relates_to.get("rel_type")?.as_str()?;
    Some((parent.to_owned(), rel_type.to_owned()))
}

pub fn search_text_of(kind: &str, content: &Value) -> Option<String> {
    let field = match kind {
        "m.room.message" => "body",
        "m.room.name" => "name",
        "m.room.topic" => "topic",
        _ => return None,
    };
    content.get(field)?.as_str().filter(|text| !text.trim().is_empty()).map(str::to_owned)
}
