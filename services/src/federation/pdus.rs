//! One PDU received from another server, before it is trusted: its event id
//! (the reference hash from room version 3, the `event_id` field before),
//! its signatures (the sender's server, and the event id's server in room
//! versions 1 and 2, with keys from `weft_federation::keys`) and its content
//! hash (a mismatch redacts the event, as the specification says). Also the
//! format this server sends a stored event in.

use std::collections::BTreeMap;

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, OwnedRoomId, RoomId, UserId,
    canonical_json::redact,
    room_version_rules::RoomVersionRules,
    signatures::{PublicKeyMap, Verified},
};
use serde_json::value::RawValue;

use crate::{rooms::versions, services::Services};

/// A PDU parsed as canonical JSON, with its room and id.
#[derive(Debug, Clone)]
pub struct ReceivedPdu {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub object: CanonicalJsonObject,
}

/// The room a raw PDU names (the create event of a v12 room names none).
pub fn room_of(object: &CanonicalJsonObject) -> Option<OwnedRoomId> {
    match object.get("room_id") {
        Some(CanonicalJsonValue::String(room_id)) => OwnedRoomId::try_from(room_id.as_str()).ok(),
        _ => None,
    }
}

/// Parses a PDU's JSON into a canonical object; anything else is refused.
pub fn parse_object(raw: &RawValue) -> Result<CanonicalJsonObject, String> {
    serde_json::from_str::<CanonicalJsonObject>(raw.get()).map_err(|e| format!("not a canonical JSON object: {e}"))
}

/// The event id of `object` in a room with `rules`.
pub fn event_id_of(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<OwnedEventId, String> {
    if versions::event_ids_are_random(rules) {
        return match object.get("event_id") {
            Some(CanonicalJsonValue::String(id)) => OwnedEventId::try_from(id.as_str()).map_err(|e| format!("bad event_id: {e}")),
            _ => Err("no event_id".into()),
        };
    }
    let hash = ruma::signatures::reference_hash(object, rules).map_err(|e| format!("cannot hash the event: {e}"))?;
    OwnedEventId::try_from(format!("${hash}")).map_err(|e| e.to_string())
}

/// Checks the signatures the room version requires, fetching the signing
/// servers' keys as valid at the event's `origin_server_ts`. A bad content
/// hash with good signatures gives the redacted event (`Ok`, and `true`).
pub async fn verify(services: &Services, object: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<(CanonicalJsonObject, bool), String> {
    let servers = ruma::signatures::required_server_signatures_to_verify_event(object, &rules.signatures).map_err(|e| e.to_string())?;
    let at_ms = match object.get("origin_server_ts") {
        Some(CanonicalJsonValue::Integer(ts)) => i64::from(*ts),
        _ => return Err("no origin_server_ts".into()),
    };
    let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else { return Err("no signatures".into()) };
    let mut keys: PublicKeyMap = BTreeMap::new();
    for server in &servers {
        let Some(CanonicalJsonValue::Object(by_key)) = signatures.get(server.as_str()) else {
            return Err(format!("not signed by {server}"));
        };
        let mut set = BTreeMap::new();
        for key_id in by_key.keys() {
            match services.federation.keys.key(server, key_id, at_ms).await {
                Ok(Some(key)) => {
                    set.insert(key_id.clone(), key);
                }
                Ok(None) => {}
                Err(error) => return Err(format!("cannot fetch the keys of {server}: {error}")),
            }
        }
        if set.is_empty() {
            return Err(format!("no known key of {server} signed the event"));
        }
        keys.insert(server.to_string(), set);
    }
    match ruma::signatures::verify_event(&keys, object, rules) {
        Ok(Verified::All) => Ok((object.clone(), false)),
        Ok(Verified::Signatures) => {
            let redacted = redact(object.clone(), &rules.redaction, None).map_err(|e| format!("cannot redact: {e}"))?;
            Ok((redacted, true))
        }
        Err(error) => Err(format!("signature check failed: {error}")),
    }
}

/// A stored event as this server sends it to others: the PDU without
/// `unsigned` (which holds only this server's own annotations).
pub fn outgoing(json: &str) -> Option<Box<RawValue>> {
    let mut object: CanonicalJsonObject = serde_json::from_str(json).ok()?;
    object.remove("unsigned");
    serde_json::value::to_raw_value(&object).ok()
}

/// `ours` with the signatures another server added to its copy (`returned`,
/// a countersigned join or invite) and nothing else of that copy: only the
/// event this server built and signed is kept, whatever else the copy says.
/// Signatures of this server in the copy are ignored.
pub fn with_countersignatures(mut ours: CanonicalJsonObject, returned: &CanonicalJsonObject, own_server: &str) -> CanonicalJsonObject {
    let Some(CanonicalJsonValue::Object(theirs)) = returned.get("signatures") else { return ours };
    let mut merged = match ours.remove("signatures") {
        Some(CanonicalJsonValue::Object(signatures)) => signatures,
        _ => CanonicalJsonObject::new(),
    };
    for (server, keys) in theirs {
        if server != own_server {
            merged.insert(server.clone(), keys.clone());
        }
    }
    ours.insert("signatures".into(), CanonicalJsonValue::Object(merged));
    ours
}

/// A top-level string field of a PDU (`type`, `sender`, `state_key`, ...).
pub fn string_field(object: &CanonicalJsonObject, name: &str) -> Option<String> {
    match object.get(name) {
        Some(CanonicalJsonValue::String(value)) => Some(value.clone()),
        _ => None,
    }
}

/// `content.membership` of a PDU, when it is a string.
pub fn membership_of(object: &CanonicalJsonObject) -> Option<String> {
    match object.get("content") {
        Some(CanonicalJsonValue::Object(content)) => match content.get("membership") {
            Some(CanonicalJsonValue::String(membership)) => Some(membership.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// A membership template another server made (`make_join`, `make_leave`,
/// `make_knock`), checked to be about `user_id` in `room_id`.
pub fn membership_template(template: &RawValue, room_id: &RoomId, user_id: &UserId) -> Result<CanonicalJsonObject, String> {
    let object = parse_object(template)?;
    let field = |name: &str| string_field(&object, name);
    if field("type").as_deref() != Some("m.room.member")
        || field("state_key").as_deref() != Some(user_id.as_str())
        || field("sender").as_deref() != Some(user_id.as_str())
        || field("room_id").as_deref() != Some(room_id.as_str())
    {
        return Err("the template is not a membership event of this user in this room".into());
    }
    Ok(object)
}

/// `template` completed by this server: `content`, its time, its name as
/// `origin` where the template has one, an event id in room versions 1 and
/// 2; then hashed and signed.
pub fn sign_template(
    services: &Services,
    mut template: CanonicalJsonObject,
    content: serde_json::Value,
    rules: &RoomVersionRules,
) -> Result<CanonicalJsonObject, String> {
    for unsigned_field in ["signatures", "hashes", "unsigned", "event_id"] {
        template.remove(unsigned_field);
    }
    template.insert("content".into(), CanonicalJsonValue::try_from(content).map_err(|e| e.to_string())?);
    template.insert("origin_server_ts".into(), CanonicalJsonValue::Integer(ruma::Int::new_saturating(weft_storage::now_ms())));
    if template.contains_key("origin") {
        template.insert("origin".into(), CanonicalJsonValue::String(services.server_name.to_string()));
    }
    if versions::event_ids_are_random(rules) {
        let id = format!("${}:{}", crate::replication::room_writes::new_txn_id(), services.server_name);
        template.insert("event_id".into(), CanonicalJsonValue::String(id));
    }
    ruma::signatures::hash_and_sign_event(services.server_name.as_str(), &services.signing_key.pair, &mut template, &rules.redaction)
        .map_err(|e| format!("cannot sign: {e}"))?;
    Ok(template)
}
