//! The read-only `homeserver` view a plugin may be granted
//! (`capabilities.homeserver`, since WIT 0.1.2): the `HomeserverView` trait
//! the server implements over its storage (weft's
//! `plugins::homeserver_view`; the testkit's `FakeHomeserver`), the values
//! it answers, and the `homeserver` WIT interface as one call sees it: the
//! grant is checked first (`not-granted` is an answer, not a trap), then the
//! ids are parsed, then the view is asked.
//!
//! May call: the view the plugin's `HostServices::homeserver` hands out.
//! Must not: write anything, or reach storage itself.

use ruma::{OwnedUserId, RoomId, UserId};

use super::{
    bindings::{homeserver as wit, types},
    config::HomeserverScope,
    host_services::BoxFuture,
    state::CallState,
};

/// A local account, as `get-user-info` answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserInfo {
    /// When the account was created, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    pub admin: bool,
    pub deactivated: bool,
    pub is_guest: bool,
}

/// A local account's profile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// Why the view could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ViewError {
    /// The data behind the view cannot be reached (its database is down).
    #[error("{0}")]
    Unavailable(String),
}

/// What the server shows plugins of its users and rooms; read-only.
pub trait HomeserverView: Send + Sync + 'static {
    /// The local account `user`; `None` when there is none.
    fn user_info<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Option<UserInfo>, ViewError>>;
    /// The profile of the local account `user`; `None` when there is no such account.
    fn profile<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Option<Profile>, ViewError>>;
    /// `user`'s membership in the room's current state (`join`, `leave`, ...).
    fn membership<'a>(&'a self, room: &'a RoomId, user: &'a UserId) -> BoxFuture<'a, Result<Option<String>, ViewError>>;
    /// The room's current state event of this type and state key, in the client format.
    fn state_event<'a>(&'a self, room: &'a RoomId, event_type: &'a str, state_key: &'a str) -> BoxFuture<'a, Result<Option<serde_json::Value>, ViewError>>;
    /// The users whose current membership in the room is `join`.
    fn joined_members<'a>(&'a self, room: &'a RoomId) -> BoxFuture<'a, Result<Vec<OwnedUserId>, ViewError>>;
}

type Answer<T> = wasmtime::Result<Result<T, wit::ViewError>>;

impl wit::Host for CallState {
    async fn get_user_info(&mut self, user: String) -> Answer<Option<wit::UserInfo>> {
        let plugin = self.plugin.clone();
        Ok(async {
            let view = granted(&plugin, HomeserverScope::Users)?;
            let info = view.user_info(&user_id(&user)?).await.map_err(unavailable)?;
            Ok(info.map(|i| wit::UserInfo { created_ms: i.created_ms, admin: i.admin, deactivated: i.deactivated, is_guest: i.is_guest }))
        }
        .await)
    }

    async fn get_profile(&mut self, user: String) -> Answer<Option<types::UserProfile>> {
        let plugin = self.plugin.clone();
        Ok(async {
            let view = granted(&plugin, HomeserverScope::Users)?;
            let profile = view.profile(&user_id(&user)?).await.map_err(unavailable)?;
            Ok(profile.map(|p| types::UserProfile { user_id: user.clone(), display_name: p.displayname, avatar_url: p.avatar_url }))
        }
        .await)
    }

    async fn get_membership(&mut self, room: String, user: String) -> Answer<Option<String>> {
        let plugin = self.plugin.clone();
        Ok(async {
            let view = granted(&plugin, HomeserverScope::Rooms)?;
            view.membership(room_id(&room)?, &user_id(&user)?).await.map_err(unavailable)
        }
        .await)
    }

    async fn get_state_event(&mut self, room: String, event_type: String, state_key: String) -> Answer<Option<String>> {
        let plugin = self.plugin.clone();
        Ok(async {
            let view = granted(&plugin, HomeserverScope::Rooms)?;
            let event = view.state_event(room_id(&room)?, &event_type, &state_key).await.map_err(unavailable)?;
            Ok(event.map(|event| event.to_string()))
        }
        .await)
    }

    async fn get_joined_members(&mut self, room: String) -> Answer<Vec<String>> {
        let plugin = self.plugin.clone();
        Ok(async {
            let view = granted(&plugin, HomeserverScope::Rooms)?;
            let members = view.joined_members(room_id(&room)?).await.map_err(unavailable)?;
            Ok(members.into_iter().map(String::from).collect())
        }
        .await)
    }
}

/// The view, when the operator granted `scope` to the plugin and the host has one.
fn granted(plugin: &super::loaded::PluginContext, scope: HomeserverScope) -> Result<&dyn HomeserverView, wit::ViewError> {
    if !plugin.homeserver.contains(&scope) {
        let scope = scope.as_str();
        return Err(wit::ViewError::NotGranted(format!(
            "plugin `{}` may not read the homeserver's {scope}: the operator grants it with `capabilities.homeserver = [\"{scope}\"]`",
            plugin.name
        )));
    }
    plugin.services.homeserver().ok_or_else(|| wit::ViewError::Unavailable("this host has no homeserver view (as at `weft check-config`)".into()))
}

fn user_id(text: &str) -> Result<OwnedUserId, wit::ViewError> {
    UserId::parse(text).map_err(|e| wit::ViewError::InvalidArgument(format!("`{}` is not a user id: {e}", text.escape_debug())))
}

fn room_id(text: &str) -> Result<&RoomId, wit::ViewError> {
    <&RoomId>::try_from(text).map_err(|e| wit::ViewError::InvalidArgument(format!("`{}` is not a room id: {e}", text.escape_debug())))
}

fn unavailable(error: ViewError) -> wit::ViewError {
    match error {
        ViewError::Unavailable(reason) => wit::ViewError::Unavailable(reason),
    }
}
