//! Rooms across servers, the room side of the Server-Server API (the
//! transport is `weft_federation`, which knows nothing of rooms).
//!
//! The map: `pdus` (a PDU received from another server: its id, its
//! signatures and content hash, and the format this server sends its own
//! events in), `inbound` (transactions received: every check of a PDU, then
//! persisting it into the room's timeline, as an outlier, or not at all),
//! `resident` (this server as the room's resident server: `make_join`,
//! `send_join`, and the events and history other servers ask for), `state`
//! (the state at events, state resolution), `auth_events` (fetching missing
//! auth events), `join_remote` (joining a room of another server),
//! `backfill` (history from before the join, fetched from the room's
//! servers for `/messages`), `server_visibility` (which events another
//! server may see), `invite` (invites in both directions),
//! `remote_membership` (a local user rejecting an invite, withdrawing a
//! knock or knocking in a room this server is not in), `at_persister` (all
//! of these that write into a room run on the room's events persister),
//! `sender`
//! (outbound transactions: a durable queue per destination, one
//! transaction in flight each, retried with backoff, catch-up after an
//! outage), `edus` (EDUs received), `device_lists` and `presence` (those
//! two streams as EDUs, both ways; the cache of other servers' devices).
//!
//! The state model (see docs/federation.md and `state`): a room's state
//! stays linear in stream order; an incoming event whose prev events are the
//! room's forward extremities is checked against the current state; one that
//! forks against the resolution of the states after its prev events, and the
//! room's current state becomes the resolution of its forward extremities'.
//! Auth events an incoming event names that this server lacks are asked of
//! the origin (`auth_events`).
//!
//! May call: `rooms` (the per-room write lock, the room's state), `push`,
//! `replication` (the internal API, to reach a room's persister),
//! `weft_storage`, `weft_federation` (requests and other servers' keys).

pub mod acl;
pub mod at_persister;
pub mod auth_events;
pub mod backfill;
pub mod device_lists;
pub mod edus;
pub mod inbound;
pub mod invite;
pub mod join_remote;
pub mod pdus;
pub mod presence;
pub mod remote_membership;
pub mod resident;
pub mod sender;
pub mod server_visibility;
pub mod state;

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
    /// A spam checker refused (`federated-user-may-invite`, `user-may-invite`).
    #[error("refused by the spam checker: {0:?}")]
    SpamRejected(crate::plugins::spam::Rejection),
    #[error(transparent)]
    Room(#[from] crate::rooms::RoomError),
    #[error(transparent)]
    Storage(#[from] weft_storage::StorageError),
}
