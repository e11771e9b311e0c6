//! The read-only view of this homeserver that plugins granted
//! `capabilities.homeserver` read (the runtime's `HomeserverView`), over the
//! database: local accounts and their profiles, and rooms' current state.
//! Every answer is what the database holds at the call; a database error is
//! `unavailable` to the plugin.
//!
//! May call: `weft_storage` (reads only), `rooms::pdu` (the client format
//! of state events).

use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::Value;
use weft_plugin_runtime::{
    homeserver::{HomeserverView, Profile, UserInfo, ViewError},
    host_services::BoxFuture,
};
use weft_storage::{Storage, StorageError};

use crate::rooms::pdu::client_event;

pub struct StorageView {
    storage: Storage,
}

impl StorageView {
    pub fn new(storage: Storage) -> Self {
        Self { storage }
    }
}

fn unavailable(error: StorageError) -> ViewError {
    ViewError::Unavailable(error.to_string())
}

impl HomeserverView for StorageView {
    fn user_info<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Option<UserInfo>, ViewError>> {
        Box::pin(async move {
            let account = self.storage.user(user).await.map_err(unavailable)?;
            // Weft registers no guest accounts.
            Ok(account.map(|a| UserInfo { created_ms: u64::try_from(a.created_ts).unwrap_or(0), admin: a.admin, deactivated: a.deactivated, is_guest: false }))
        })
    }

    fn profile<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Option<Profile>, ViewError>> {
        Box::pin(async move {
            if self.storage.user(user).await.map_err(unavailable)?.is_none() {
                return Ok(None);
            }
            let fields = self.storage.profile(user).await.map_err(unavailable)?;
            let text = |key: &str| fields.get(key).and_then(Value::as_str).map(str::to_owned);
            Ok(Some(Profile { displayname: text("displayname"), avatar_url: text("avatar_url") }))
        })
    }

    fn membership<'a>(&'a self, room: &'a RoomId, user: &'a UserId) -> BoxFuture<'a, Result<Option<String>, ViewError>> {
        Box::pin(async move {
            let event = self.storage.current_state_event(room, "m.room.member", user.as_str()).await.map_err(unavailable)?;
            Ok(event.and_then(|event| {
                let pdu: Value = serde_json::from_str(&event.json).ok()?;
                pdu.pointer("/content/membership")?.as_str().map(str::to_owned)
            }))
        })
    }

    fn state_event<'a>(&'a self, room: &'a RoomId, event_type: &'a str, state_key: &'a str) -> BoxFuture<'a, Result<Option<Value>, ViewError>> {
        Box::pin(async move {
            let event = self.storage.current_state_event(room, event_type, state_key).await.map_err(unavailable)?;
            Ok(event.map(|event| client_event(&event, true)))
        })
    }

    fn joined_members<'a>(&'a self, room: &'a RoomId) -> BoxFuture<'a, Result<Vec<OwnedUserId>, ViewError>> {
        Box::pin(async move { self.storage.members_with(room, "join").await.map_err(unavailable) })
    }
}
