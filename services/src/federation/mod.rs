//! Rooms across servers, the room side of the Server-Server API (the
//! transport is `weft_federation`, which knows nothing of rooms).
//!
//! The map: `pdus` (a PDU received from another server: its id, its
//! signatures and content hash, and the format this server sends its own
//! events in), `inbound` (transactions received: every check of a PDU, then
//! persisting it into the room's timeline, as an outlier, or not at all),
//! `resident` (this server as the room's resident server: `make_join`,
//! `send_join`, and the events and history other servers ask for),
//! `join_remote` (joining a room of another server), `invite` (invites in
//! both directions), `sender`
//! (outbound transactions: a durable queue per destination, one
//! transaction in flight each, retried with backoff, catch-up after an
//! outage), `edus` (EDUs received), `device_lists` and `presence` (those
//! two streams as EDUs, both ways; the cache of other servers' devices).
//!
//! The state model: a room's state stays linear in stream order (see
//! docs/federation.md): an incoming event whose prev events are the room's
//! forward extremities is checked against the current state; one that forks
//! is checked against the state after its newest known prev event.
//!
//! May call: `rooms` (the per-room write lock, the room's state), `push`,
//! `weft_storage`, `weft_federation` (requests and other servers' keys).

pub mod acl;
pub mod device_lists;
pub mod edus;
pub mod inbound;
pub mod invite;
pub mod join_remote;
pub mod pdus;
pub mod presence;
pub mod resident;
pub mod sender;

/// Why another server's request about a room failed.
#[derive(Debug, thiserror::Error)]
pub enum FederationRoomError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("room version {0} is not among the versions the server supports")]
    IncompatibleRoomVersion(String),
    #[error(transparent)]
    Room(#[from] crate::rooms::RoomError),
    #[error(transparent)]
    Storage(#[from] weft_storage::StorageError),
}
