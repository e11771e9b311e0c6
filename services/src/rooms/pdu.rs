//! A persisted event as the authorization rules see it (ruma's `Event`
//! trait), and as clients see it (the client-server event format).

use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId, events::TimelineEventType};
use serde::Deserialize;
use serde_json::{Map, Value, value::RawValue as RawJsonValue};

use weft_storage::StoredEvent;

/// The fields of a PDU the authorization rules read, in any room version:
/// `prev_events` and `auth_events` are read as ids whether the PDU lists ids
/// (v3 on) or `[id, hashes]` pairs (v1, v2).
#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    /// The room the event is in. A v12 create event carries no `room_id`:
    /// its room is `!` and its event id's hash (`room_id_in_pdu` is then false).
    pub room_id: OwnedRoomId,
    pub room_id_in_pdu: bool,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub kind: TimelineEventType,
    pub content: Box<RawJsonValue>,
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
}

#[derive(Deserialize)]
struct PduFields {
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: UInt,
    #[serde(rename = "type")]
    kind: TimelineEventType,
    content: Box<RawJsonValue>,
    state_key: Option<String>,
    #[serde(default)]
    prev_events: Vec<EventReference>,
    #[serde(default)]
    auth_events: Vec<EventReference>,
    redacts: Option<OwnedEventId>,
}

/// An entry of `prev_events` or `auth_events`: an id (v3 on), or an id and
/// the referenced event's hashes (v1, v2).
#[derive(Deserialize)]
#[serde(untagged)]
enum EventReference {
    Id(OwnedEventId),
    WithHashes(OwnedEventId, serde::de::IgnoredAny),
}

impl EventReference {
    fn into_id(self) -> OwnedEventId {
        match self {
            Self::Id(id) | Self::WithHashes(id, _) => id,
        }
    }
}

impl Pdu {
    /// Parses a PDU's JSON; the event id is given, as it is not part of
    /// the PDU from room version 3.
    pub fn parse(event_id: OwnedEventId, json: &str) -> Result<Self, serde_json::Error> {
        let fields: PduFields = serde_json::from_str(json)?;
        let room_id_in_pdu = fields.room_id.is_some();
        let room_id = match fields.room_id {
            Some(room_id) => room_id,
            None if fields.kind == TimelineEventType::RoomCreate => {
                let hash = event_id.as_str().trim_start_matches('$');
                OwnedRoomId::try_from(format!("!{hash}")).map_err(serde::de::Error::custom)?
            }
            None => return Err(serde::de::Error::missing_field("room_id")),
        };
        Ok(Self {
            event_id,
            room_id,
            room_id_in_pdu,
            sender: fields.sender,
            origin_server_ts: MilliSecondsSinceUnixEpoch(fields.origin_server_ts),
            kind: fields.kind,
            content: fields.content,
            state_key: fields.state_key,
            prev_events: fields.prev_events.into_iter().map(EventReference::into_id).collect(),
            auth_events: fields.auth_events.into_iter().map(EventReference::into_id).collect(),
            redacts: fields.redacts,
        })
    }

    pub fn from_stored(event: &StoredEvent) -> Result<Self, serde_json::Error> {
        Self::parse(event.event_id.clone(), &event.json)
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.room_id_in_pdu.then_some(&*self.room_id)
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawJsonValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        false
    }
}

/// The event in the client-server format: the PDU's client-visible fields
/// plus `event_id` (and `room_id` unless the context gives it, as in /sync).
pub fn client_event(event: &StoredEvent, with_room_id: bool) -> Value {
    let pdu: Map<String, Value> = serde_json::from_str(&event.json).unwrap_or_default();
    let mut out = client_fields(&pdu);
    if let Some(Value::Object(stored)) = pdu.get("unsigned") {
        let mut unsigned = Map::new();
        for key in ["prev_content", "prev_sender", "replaces_state"] {
            if let Some(value) = stored.get(key) {
                unsigned.insert(key.to_owned(), value.clone());
            }
        }
        // Stored as the redaction's PDU; clients get it as a client event.
        if let Some(Value::Object(because)) = stored.get("redacted_because") {
            let mut redaction = client_fields(because);
            for key in ["event_id", "room_id"] {
                if let Some(value) = because.get(key) {
                    redaction.insert(key.to_owned(), value.clone());
                }
            }
            unsigned.insert("redacted_because".into(), Value::Object(redaction));
        }
        if !unsigned.is_empty() {
            out.insert("unsigned".into(), Value::Object(unsigned));
        }
    }
    out.insert("event_id".into(), Value::String(event.event_id.to_string()));
    if with_room_id {
        out.insert("room_id".into(), Value::String(event.room_id.to_string()));
    }
    let age = weft_storage::now_ms().saturating_sub(event.origin_server_ts).max(0);
    match out.get_mut("unsigned") {
        Some(Value::Object(unsigned)) => {
            unsigned.insert("age".into(), age.into());
        }
        _ => {
            out.insert("unsigned".into(), serde_json::json!({ "age": age }));
        }
    }
    Value::Object(out)
}

/// The fields of a PDU that the client-server format keeps, with `redacts`
/// copied to the top level where room version 11 moved it into the content
/// (clients of older versions read it there, as the spec asks).
fn client_fields(pdu: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for key in ["content", "origin_server_ts", "sender", "type", "state_key", "redacts"] {
        if let Some(value) = pdu.get(key) {
            out.insert(key.to_owned(), value.clone());
        }
    }
    if pdu.get("type").and_then(Value::as_str) == Some("m.room.redaction")
        && !out.contains_key("redacts")
        && let Some(redacts) = pdu.get("content").and_then(|c| c.get("redacts"))
    {
        out.insert("redacts".into(), redacts.clone());
    }
    out
}

/// The event as a stripped state event (for invites): type, state key, sender, content.
pub fn stripped_event(event: &StoredEvent) -> Value {
    let pdu: Map<String, Value> = serde_json::from_str(&event.json).unwrap_or_default();
    let mut out = Map::new();
    for key in ["content", "sender", "type", "state_key"] {
        if let Some(value) = pdu.get(key) {
            out.insert(key.to_owned(), value.clone());
        }
    }
    Value::Object(out)
}
