//! A read-only view of the homeserver's local users and rooms (WIT
//! `homeserver`, since 0.1.2), for a plugin the operator granted it in its
//! `[[plugins]]` entry:
//!
//! ```toml
//! [plugins.capabilities]
//! homeserver = ["users", "rooms"]   # users: user_info, profile; rooms: membership, state_event, joined_members
//! ```
//!
//! Without the grant a function answers `Err(ViewError::NotGranted(..))`,
//! checked before anything else (so `validate_config` can ask whether the
//! grant is there: at `weft check-config` a granted call answers
//! `Unavailable`, since no server is running). Decide what a missing answer
//! means for your plugin rather than taking it for "no". Outside wasm32
//! every function answers `Unavailable`; the testkit has a seedable fake.

use std::fmt;

use serde_json::Value;

/// A local account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserInfo {
    /// When the account was created, in milliseconds since the Unix epoch
    /// (compare with [`crate::now_ms`]).
    pub created_ms: u64,
    pub admin: bool,
    pub deactivated: bool,
    /// A guest account (Weft registers none yet: always false).
    pub is_guest: bool,
}

/// A local account's profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// Why the view did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewError {
    /// The operator did not grant this part (`users` or `rooms`).
    NotGranted(String),
    /// An argument is not a valid user or room id.
    InvalidArgument(String),
    /// The view cannot answer now (database down; no server, as at `weft check-config`).
    Unavailable(String),
}

impl fmt::Display for ViewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotGranted(reason) => write!(f, "not granted: {reason}"),
            Self::InvalidArgument(reason) => write!(f, "invalid argument: {reason}"),
            Self::Unavailable(reason) => write!(f, "unavailable: {reason}"),
        }
    }
}

impl std::error::Error for ViewError {}

/// The local account `user` (needs `users`); `None` for a remote user or
/// one that does not exist.
pub fn user_info(user: &str) -> Result<Option<UserInfo>, ViewError> {
    imp::user_info(user)
}

/// The profile of the local account `user` (needs `users`); `None` when
/// there is no such account.
pub fn profile(user: &str) -> Result<Option<Profile>, ViewError> {
    imp::profile(user)
}

/// `user`'s membership in the room's current state (`join`, `invite`,
/// `leave`, `ban`, `knock`; needs `rooms`); `None` when it has none.
pub fn membership(room: &str, user: &str) -> Result<Option<String>, ViewError> {
    imp::membership(room, user)
}

/// The room's current state event of this type and state key, in the
/// client format (`type`, `state_key`, `sender`, `content`, `event_id`,
/// `origin_server_ts`, `room_id`; needs `rooms`); `None` when there is none.
pub fn state_event(room: &str, event_type: &str, state_key: &str) -> Result<Option<Value>, ViewError> {
    imp::state_event(room, event_type, state_key).map(|event| event.map(|text| serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// The users whose current membership in the room is `join` (needs `rooms`).
pub fn joined_members(room: &str) -> Result<Vec<String>, ViewError> {
    imp::joined_members(room)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{Profile, UserInfo, ViewError};
    use crate::bindings::weft::plugin::homeserver as wit;

    fn error(e: wit::ViewError) -> ViewError {
        match e {
            wit::ViewError::NotGranted(reason) => ViewError::NotGranted(reason),
            wit::ViewError::InvalidArgument(reason) => ViewError::InvalidArgument(reason),
            wit::ViewError::Unavailable(reason) => ViewError::Unavailable(reason),
        }
    }

    pub fn user_info(user: &str) -> Result<Option<UserInfo>, ViewError> {
        wit::get_user_info(user)
            .map(|info| info.map(|i| UserInfo { created_ms: i.created_ms, admin: i.admin, deactivated: i.deactivated, is_guest: i.is_guest }))
            .map_err(error)
    }
    pub fn profile(user: &str) -> Result<Option<Profile>, ViewError> {
        wit::get_profile(user).map(|profile| profile.map(|p| Profile { displayname: p.display_name, avatar_url: p.avatar_url })).map_err(error)
    }
    pub fn membership(room: &str, user: &str) -> Result<Option<String>, ViewError> {
        wit::get_membership(room, user).map_err(error)
    }
    pub fn state_event(room: &str, event_type: &str, state_key: &str) -> Result<Option<String>, ViewError> {
        wit::get_state_event(room, event_type, state_key).map_err(error)
    }
    pub fn joined_members(room: &str) -> Result<Vec<String>, ViewError> {
        wit::get_joined_members(room).map_err(error)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{Profile, UserInfo, ViewError};

    fn none<T>() -> Result<T, ViewError> {
        Err(ViewError::Unavailable("no homeserver outside WebAssembly: use the testkit".into()))
    }

    pub fn user_info(_user: &str) -> Result<Option<UserInfo>, ViewError> {
        none()
    }
    pub fn profile(_user: &str) -> Result<Option<Profile>, ViewError> {
        none()
    }
    pub fn membership(_room: &str, _user: &str) -> Result<Option<String>, ViewError> {
        none()
    }
    pub fn state_event(_room: &str, _event_type: &str, _state_key: &str) -> Result<Option<String>, ViewError> {
        none()
    }
    pub fn joined_members(_room: &str) -> Result<Vec<String>, ViewError> {
        none()
    }
}
