//! Server ACLs (`m.room.server_acl`): whether a server may take part in a
//! room. `allows` is the pure decision on an event's content; `room_allows`
//! reads the room's current ACL and decides. Federation endpoints that act
//! for one room (hierarchy, timestamp_to_event, and the PDU paths) call it
//! with the request's origin.
//!
//! The matching itself is ruma's (`RoomServerAclEventContent::is_allowed`:
//! the port is ignored, IP literals are refused when `allow_ip_literals` is
//! false, `deny` then `allow` globs with `*` and `?`, case-insensitively).
//! What this module adds is Synapse's leniency in reading the content: an
//! `allow_ip_literals` that is not a boolean counts as `true`, an `allow` or
//! `deny` that is not a list as empty, and entries that are not strings are
//! skipped, where a strict parse would refuse the whole event.
//!
//! May call: `weft_storage` (the current state). Knows nothing of HTTP.

use ruma::{RoomId, ServerName, events::room::server_acl::RoomServerAclEventContent};
use serde_json::Value;

use weft_storage::{Storage, StorageError};

/// Whether the ACL `content` lets `server` take part in the room.
pub fn allows(content: &Value, server: &ServerName) -> bool {
    acl_of(content).is_allowed(server)
}

/// The ACL `content` says, read as Synapse reads it.
pub fn acl_of(content: &Value) -> RoomServerAclEventContent {
    let allow_ip_literals = content.get("allow_ip_literals").and_then(Value::as_bool).unwrap_or(true);
    let globs = |field: &str| -> Vec<String> {
        content.get(field).and_then(Value::as_array).map(|entries| entries.iter().filter_map(Value::as_str).map(str::to_owned).collect()).unwrap_or_default()
    };
    RoomServerAclEventContent::new(allow_ip_literals, globs("allow"), globs("deny"))
}

/// Whether the current ACL of `room_id` lets `server` take part; a room
/// without one allows every server.
pub async fn room_allows(storage: &Storage, room_id: &RoomId, server: &ServerName) -> Result<bool, StorageError> {
    let Some(event) = storage.current_state_event(room_id, "m.room.server_acl", "").await? else { return Ok(true) };
    let content = serde_json::from_str::<Value>(&event.json).ok().and_then(|pdu| pdu.get("content").cloned()).unwrap_or(Value::Null);
    Ok(allows(&content, server))
}

#[cfg(test)]
mod tests {
    use ruma::server_name;
    use serde_json::json;

    use super::allows;

    #[test]
    fn deny_wins_over_allow_and_the_port_is_ignored() {
        let acl = json!({"allow": ["*"], "deny": ["evil.example", "*.evil.example"]});
        assert!(allows(&acl, server_name!("good.example")));
        assert!(allows(&acl, server_name!("good.example:8448")));
        assert!(!allows(&acl, server_name!("evil.example")));
        assert!(!allows(&acl, server_name!("evil.example:1234")));
        assert!(!allows(&acl, server_name!("sub.evil.example")));
        assert!(allows(&acl, server_name!("notevil.example")), "a glob matches the whole name");
    }

    #[test]
    fn nothing_is_allowed_without_an_allow_list() {
        assert!(!allows(&json!({}), server_name!("example.org")));
        assert!(!allows(&json!({"deny": []}), server_name!("example.org")));
        assert!(!allows(&json!({"allow": []}), server_name!("example.org")));
    }

    #[test]
    fn globs_match_single_characters_and_ignore_case() {
        let acl = json!({"allow": ["matrix?.example.org", "*.Trusted.ORG"]});
        assert!(allows(&acl, server_name!("matrix1.example.org")));
        assert!(!allows(&acl, server_name!("matrix12.example.org")));
        assert!(!allows(&acl, server_name!("matrix.example.org")));
        assert!(allows(&acl, server_name!("a.trusted.org")));
        assert!(allows(&acl, server_name!("A.TRUSTED.ORG:443")));
        assert!(!allows(&acl, server_name!("trusted.org")), "`*.` needs a subdomain");
    }

    #[test]
    fn ip_literals_follow_allow_ip_literals() {
        let open = json!({"allow": ["*"]});
        assert!(allows(&open, server_name!("1.2.3.4")));
        assert!(allows(&open, server_name!("[::1]:8448")));
        let closed = json!({"allow": ["*"], "allow_ip_literals": false});
        assert!(!allows(&closed, server_name!("1.2.3.4")));
        assert!(!allows(&closed, server_name!("1.2.3.4:8448")));
        assert!(!allows(&closed, server_name!("[2001:db8::1]")));
        assert!(allows(&closed, server_name!("example.org")));
        // Denied by address even with IP literals allowed.
        assert!(!allows(&json!({"allow": ["*"], "deny": ["1.2.3.4"]}), server_name!("1.2.3.4:8000")));
    }

    #[test]
    fn malformed_fields_are_read_leniently() {
        // A non-boolean `allow_ip_literals` counts as true, as in Synapse.
        assert!(allows(&json!({"allow": ["*"], "allow_ip_literals": "no"}), server_name!("1.2.3.4")));
        // A non-list `deny` is empty; non-string entries are skipped.
        assert!(allows(&json!({"allow": ["*"], "deny": "example.org"}), server_name!("example.org")));
        assert!(allows(&json!({"allow": [1, null, "example.org"]}), server_name!("example.org")));
        assert!(!allows(&json!({"allow": "*"}), server_name!("example.org")));
    }
}
