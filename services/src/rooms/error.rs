//! Why a room operation failed.

use weft_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error("unknown room")]
    UnknownRoom,
    #[error("unknown event")]
    UnknownEvent,
    #[error("{0}")]
    Forbidden(String),
    #[error("event too large: {0} bytes")]
    TooLarge(usize),
    /// A field past the spec's 255 bytes (`type`, `state_key`).
    #[error("'{0}' too large")]
    FieldTooLarge(&'static str),
    #[error("invalid event: {0}")]
    Invalid(String),
    /// A parameter out of its allowed range (`M_INVALID_PARAM`).
    #[error("invalid parameter: {0}")]
    InvalidParam(String),
    #[error("the alias is taken")]
    AliasTaken,
    #[error("no local member may authorise this join")]
    UnableToGrantJoin,
    /// A v12 power levels event listing a creator in `users` (Synapse: 400 `M_UNKNOWN`).
    #[error("Creator user {0} must not appear in content.users")]
    CreatorInPowerLevels(String),
    #[error("unsupported room version `{0}`")]
    UnsupportedVersion(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The room's persister (another instance) refused or could not be
    /// reached: its Matrix error, relayed as it is.
    #[error("the room's persister answered {status}: {body}")]
    Remote { status: u16, body: serde_json::Value },
}
