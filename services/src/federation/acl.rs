//! Server ACLs (`m.room.server_acl`) on other servers' requests about a
//! room: the room's current ACL, judged by ruma's
//! `RoomServerAclEventContent::is_allowed` (the host, ports ignored, `*` and
//! `?` globs, `allow_ip_literals`). A room without one, or with one that is
//! not a valid ACL, allows every server. A small local function: the
//! ACL-evaluation work of the fed-edges branch may replace it.

use ruma::{RoomId, ServerName, events::room::server_acl::RoomServerAclEventContent};
use serde_json::Value;

use weft_storage::StorageError;

use super::FederationRoomError;
use crate::services::Services;

/// Whether the room's ACL lets `server` take part.
pub async fn allows(services: &Services, room_id: &RoomId, server: &ServerName) -> Result<bool, StorageError> {
    if server == services.server_name {
        return Ok(true);
    }
    let Some(event) = services.storage.current_state_event(room_id, "m.room.server_acl", "").await? else { return Ok(true) };
    let pdu: Value = serde_json::from_str(&event.json).unwrap_or_default();
    Ok(judge(&pdu["content"], server))
}

/// What an ACL's content says of `server`; content that is not an ACL allows.
fn judge(content: &Value, server: &ServerName) -> bool {
    match serde_json::from_value::<RoomServerAclEventContent>(content.clone()) {
        Ok(acl) => acl.is_allowed(server),
        Err(_) => true,
    }
}

/// `Forbidden` when the room's ACL denies `origin`.
pub async fn check(services: &Services, room_id: &RoomId, origin: &ServerName) -> Result<(), FederationRoomError> {
    if allows(services, room_id, origin).await? { Ok(()) } else { Err(FederationRoomError::Forbidden("Server is banned from room".into())) }
}

#[cfg(test)]
mod tests {
    use ruma::server_name;
    use serde_json::json;

    use super::judge;

    #[test]
    fn the_acl_judges_hosts_with_globs_and_ip_literals() {
        let acl = json!({"allow": ["*"], "deny": ["*.evil.example", "bad.example"], "allow_ip_literals": false});
        assert!(judge(&acl, server_name!("good.example")));
        assert!(judge(&acl, server_name!("good.example:8448")), "ports are ignored");
        assert!(!judge(&acl, server_name!("bad.example:8448")));
        assert!(!judge(&acl, server_name!("a.evil.example")));
        assert!(!judge(&acl, server_name!("127.0.0.1:8448")), "IP literals are denied when not allowed");
        let only = json!({"allow": ["trusted.example"]});
        assert!(judge(&only, server_name!("trusted.example")) && !judge(&only, server_name!("other.example")));
        assert!(judge(&json!({"allow": "not a list"}), server_name!("any.example")), "an invalid ACL allows");
    }
}
