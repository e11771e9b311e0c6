//! The checks on the content of an event this server creates, made before
//! the authorization rules, as Synapse's event validator makes them: an event
//! of a known type whose content is malformed is refused with 400
//! `M_BAD_JSON`, where the authorization rules would give a misleading 403 or
//! let it through.
//!
//! Unlike Synapse, an `m.room.message` without a string `body` and `msgtype`
//! is accepted: it corrupts no state, clients must cope with malformed
//! events anyway, and bots and scripts send such messages.

use ruma::{ServerName, UserId, events::room::server_acl::RoomServerAclEventContent};
use serde_json::{Map, Value};

use super::RoomError;

/// Longest alias an `m.room.aliases` event may list (Synapse's limit).
const MAX_ALIAS_LENGTH: usize = 255;

/// The power-level fields that hold one level.
const LEVEL_FIELDS: [&str; 7] = ["ban", "events_default", "invite", "kick", "redact", "state_default", "users_default"];

/// The power-level fields that map names to levels.
const LEVEL_MAP_FIELDS: [&str; 3] = ["events", "notifications", "users"];

const MEMBERSHIPS: [&str; 5] = ["invite", "join", "knock", "leave", "ban"];

/// Checks `content` of an event of type `kind` about to be created in `room_id` on `local_server`.
pub fn check(kind: &str, state_key: Option<&str>, content: &Value, room_id: &str, local_server: &ServerName) -> Result<(), RoomError> {
    let Some(content) = content.as_object() else {
        return Err(invalid("content must be a JSON object"));
    };
    let must_be_state = || match state_key {
        Some(_) => Ok(()),
        None => Err(invalid(format!("'{kind}' must be a state event"))),
    };
    match kind {
        "m.room.topic" => {
            must_be_state()?;
            require_strings(content, &["topic"])
        }
        "m.room.name" => {
            must_be_state()?;
            require_strings(content, &["name"])
        }
        "m.room.member" => {
            must_be_state()?;
            match content.get("membership").and_then(Value::as_str) {
                Some(membership) if MEMBERSHIPS.contains(&membership) => Ok(()),
                Some(_) => Err(invalid("invalid 'membership'")),
                None => Err(invalid("'membership' not in content")),
            }
        }
        "m.room.tombstone" => {
            must_be_state()?;
            match content.get("replacement_room") {
                None => Err(invalid("'replacement_room' not in content")),
                Some(replacement) if replacement.as_str() == Some(room_id) => Err(invalid("a tombstone cannot point at the room it is sent in")),
                Some(_) => Ok(()),
            }
        }
        "m.room.power_levels" => check_power_levels(content),
        "m.room.server_acl" => check_server_acl(content, local_server),
        "m.room.aliases" => check_aliases(content),
        "m.room.retention" => {
            must_be_state()?;
            check_retention(content)
        }
        _ => Ok(()),
    }
}

fn invalid(reason: impl Into<String>) -> RoomError {
    RoomError::Invalid(reason.into())
}

fn require_strings(content: &Map<String, Value>, fields: &[&str]) -> Result<(), RoomError> {
    for field in fields {
        match content.get(*field) {
            None => return Err(invalid(format!("'{field}' not in content"))),
            Some(Value::String(_)) => {}
            Some(_) => return Err(invalid(format!("'{field}' not a string"))),
        }
    }
    Ok(())
}

/// Levels are integers whatever the room version: the older versions'
/// stringified levels are accepted over federation, never created here.
fn check_power_levels(content: &Map<String, Value>) -> Result<(), RoomError> {
    for field in LEVEL_FIELDS {
        if let Some(level) = content.get(field) {
            require_level(field, level)?;
        }
    }
    for field in LEVEL_MAP_FIELDS {
        let Some(map) = content.get(field) else { continue };
        let Some(map) = map.as_object() else {
            return Err(invalid(format!("\"{field}\": {map} is not of type 'object'")));
        };
        for (key, level) in map {
            require_level(field, level)?;
            if field == "users" && UserId::parse(key.as_str()).is_err() {
                return Err(invalid(format!("not a valid user ID: {key}")));
            }
        }
    }
    Ok(())
}

fn require_level(field: &str, level: &Value) -> Result<(), RoomError> {
    if level.is_i64() { Ok(()) } else { Err(invalid(format!("\"{field}\": {level} is not of type 'integer'"))) }
}

fn check_server_acl(content: &Map<String, Value>, local_server: &ServerName) -> Result<(), RoomError> {
    let acl: RoomServerAclEventContent = serde_json::from_value(Value::Object(content.clone())).map_err(|e| invalid(format!("malformed server ACL: {e}")))?;
    if acl.is_allowed(local_server) { Ok(()) } else { Err(invalid("a server ACL may not deny this server")) }
}

fn check_aliases(content: &Map<String, Value>) -> Result<(), RoomError> {
    let too_long = content
        .get("aliases")
        .and_then(Value::as_array)
        .is_some_and(|aliases| aliases.iter().any(|alias| alias.as_str().is_some_and(|alias| alias.len() > MAX_ALIAS_LENGTH)));
    if too_long {
        return Err(RoomError::InvalidParam(format!("aliases may not be longer than {MAX_ALIAS_LENGTH} characters")));
    }
    Ok(())
}

fn check_retention(content: &Map<String, Value>) -> Result<(), RoomError> {
    let lifetime = |field: &str| match content.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_i64().map(Some).ok_or_else(|| invalid(format!("'{field}' must be an integer"))),
    };
    let (min, max) = (lifetime("min_lifetime")?, lifetime("max_lifetime")?);
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        return Err(invalid("'min_lifetime' can't be greater than 'max_lifetime'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn checked(kind: &str, state_key: Option<&str>, content: Value) -> Result<(), String> {
        let server = ServerName::parse("here.test").unwrap();
        check(kind, state_key, &content, "!room:here.test", &server).map_err(|e| e.to_string())
    }

    #[test]
    fn messages_are_not_checked() {
        assert!(checked("m.room.message", None, json!({"body": "no msgtype"})).is_ok());
    }

    #[test]
    fn names_and_topics_are_strings_in_state_events() {
        assert!(checked("m.room.name", Some(""), json!({"name": "Lounge"})).is_ok());
        assert!(checked("m.room.name", Some(""), json!({"name": 12})).is_err());
        assert!(checked("m.room.name", None, json!({"name": "Lounge"})).unwrap_err().contains("state event"));
        assert!(checked("m.room.topic", Some(""), json!({"topic": ["a"]})).is_err());
    }

    #[test]
    fn power_levels_are_integers_and_users_are_user_ids() {
        assert!(checked("m.room.power_levels", Some(""), json!({"ban": 50, "users": {"@a:here.test": 100}, "events": {}})).is_ok());
        assert!(checked("m.room.power_levels", Some(""), json!({"ban": "50"})).unwrap_err().contains("\"ban\""));
        assert!(checked("m.room.power_levels", Some(""), json!({"users": {"@a:here.test": 1.5}})).is_err());
        assert!(checked("m.room.power_levels", Some(""), json!({"users": {"not-a-user": 10}})).is_err());
        assert!(checked("m.room.power_levels", Some(""), json!({"events": []})).is_err());
    }

    #[test]
    fn memberships_tombstones_and_acls() {
        assert!(checked("m.room.member", Some("@a:here.test"), json!({"membership": "dance"})).is_err());
        assert!(checked("m.room.tombstone", Some(""), json!({"replacement_room": "!room:here.test"})).is_err());
        assert!(checked("m.room.tombstone", Some(""), json!({"replacement_room": "!new:here.test"})).is_ok());
        assert!(checked("m.room.server_acl", Some(""), json!({"allow": ["*"], "deny": ["here.test"]})).is_err());
        assert!(checked("m.room.server_acl", Some(""), json!({"allow": ["*"], "deny": ["evil.test"]})).is_ok());
    }

    #[test]
    fn retention_lifetimes_are_ordered_integers() {
        assert!(checked("m.room.retention", Some(""), json!({"min_lifetime": 10, "max_lifetime": 5})).is_err());
        assert!(checked("m.room.retention", Some(""), json!({"max_lifetime": "5"})).is_err());
        assert!(checked("m.room.retention", Some(""), json!({"max_lifetime": 5})).is_ok());
    }
}
