//! Server ACLs (`m.room.server_acl`) on other servers' requests about a
//! room: the decision is `crate::rooms::server_acl`'s; this server itself is
//! never refused (it could not leave a room it denied itself).
//!
//! May call: `crate::rooms::server_acl`.

use ruma::{RoomId, ServerName};

use weft_storage::StorageError;

use super::FederationRoomError;
use crate::services::Services;

/// Whether the room's ACL lets `server` take part.
pub async fn allows(services: &Services, room_id: &RoomId, server: &ServerName) -> Result<bool, StorageError> {
    if server == services.server_name {
        return Ok(true);
    }
    crate::rooms::server_acl::room_allows(&services.storage, room_id, server).await
}

/// `Forbidden` when the room's ACL denies `origin`.
pub async fn check(services: &Services, room_id: &RoomId, origin: &ServerName) -> Result<(), FederationRoomError> {
    if allows(services, room_id, origin).await? { Ok(()) } else { Err(FederationRoomError::Forbidden("Server is banned from room".into())) }
}
