//! The testkit's homeserver view: accounts, profiles and rooms' current
//! state as the test seeds them, answered the way the server's view
//! answers (a membership is the `m.room.member` state event's
//! `content.membership`; the joined members are those whose membership is
//! `join`). Clones share one view, so a test changes it after load.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::{Value, json};

use crate::{
    homeserver::{HomeserverView, Profile, UserInfo, ViewError},
    host_services::BoxFuture,
};

/// A seedable, read-only homeserver for plugins granted `homeserver`.
#[derive(Debug, Clone, Default)]
pub struct FakeHomeserver(Arc<Mutex<Data>>);

#[derive(Debug, Default)]
struct Data {
    users: HashMap<String, (UserInfo, Profile)>,
    /// Current state by room, then (type, state key): the event in the client format.
    rooms: HashMap<String, BTreeMap<(String, String), Value>>,
    /// When set, every answer is `unavailable` with this reason.
    down: Option<String>,
}

impl FakeHomeserver {
    /// Adds (or replaces) a local account; its display name is its local
    /// part, as at registration.
    pub fn add_user(&self, user: &str, info: UserInfo) -> &Self {
        let localpart = user.trim_start_matches('@').split(':').next().unwrap_or_default();
        let profile = Profile { displayname: Some(localpart.to_owned()), avatar_url: None };
        self.data().users.insert(user.to_owned(), (info, profile));
        self
    }

    /// Sets the profile of an account added with `add_user`.
    pub fn set_profile(&self, user: &str, profile: Profile) -> &Self {
        if let Some((_, current)) = self.data().users.get_mut(user) {
            *current = profile;
        }
        self
    }

    /// Sets a state event of the room's current state: `content` under
    /// `event_type` and `state_key`, sent by `sender`.
    pub fn set_state(&self, room: &str, sender: &str, event_type: &str, state_key: &str, content: Value) -> &Self {
        let mut data = self.data();
        let state = data.rooms.entry(room.to_owned()).or_default();
        let event_id = format!("$fake{}", state.len());
        let event = json!({
            "type": event_type, "state_key": state_key, "sender": sender, "content": content,
            "event_id": event_id, "origin_server_ts": 0, "room_id": room,
        });
        state.insert((event_type.to_owned(), state_key.to_owned()), event);
        self
    }

    /// Sets `user`'s membership of the room (`join`, `invite`, `leave`, ...),
    /// as an `m.room.member` event the user sent.
    pub fn set_membership(&self, room: &str, user: &str, membership: &str) -> &Self {
        self.set_state(room, user, "m.room.member", user, json!({"membership": membership}))
    }

    /// Makes every answer `unavailable` with `reason` (`None`: answers again),
    /// as the server's view when its database is down.
    pub fn set_unavailable(&self, reason: Option<&str>) -> &Self {
        self.data().down = reason.map(str::to_owned);
        self
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `f` over the data, or `unavailable`.
    fn answer<T: Send + 'static>(&self, f: impl FnOnce(&Data) -> T) -> BoxFuture<'static, Result<T, ViewError>> {
        let data = self.data();
        let answer = match &data.down {
            Some(reason) => Err(ViewError::Unavailable(reason.clone())),
            None => Ok(f(&data)),
        };
        Box::pin(std::future::ready(answer))
    }
}

fn membership_of(event: &Value) -> Option<String> {
    event.pointer("/content/membership").and_then(Value::as_str).map(str::to_owned)
}

impl HomeserverView for FakeHomeserver {
    fn user_info<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Option<UserInfo>, ViewError>> {
        self.answer(|data| data.users.get(user.as_str()).map(|(info, _)| *info))
    }

    fn profile<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Option<Profile>, ViewError>> {
        self.answer(|data| data.users.get(user.as_str()).map(|(_, profile)| profile.clone()))
    }

    fn membership<'a>(&'a self, room: &'a RoomId, user: &'a UserId) -> BoxFuture<'a, Result<Option<String>, ViewError>> {
        let key = ("m.room.member".to_owned(), user.to_string());
        self.answer(move |data| data.rooms.get(room.as_str()).and_then(|state| state.get(&key)).and_then(membership_of))
    }

    fn state_event<'a>(&'a self, room: &'a RoomId, event_type: &'a str, state_key: &'a str) -> BoxFuture<'a, Result<Option<Value>, ViewError>> {
        let key = (event_type.to_owned(), state_key.to_owned());
        self.answer(move |data| data.rooms.get(room.as_str()).and_then(|state| state.get(&key)).cloned())
    }

    fn joined_members<'a>(&'a self, room: &'a RoomId) -> BoxFuture<'a, Result<Vec<OwnedUserId>, ViewError>> {
        self.answer(|data| {
            let Some(state) = data.rooms.get(room.as_str()) else { return Vec::new() };
            state
                .iter()
                .filter(|((kind, _), event)| kind == "m.room.member" && membership_of(event).as_deref() == Some("join"))
                .filter_map(|((_, user), _)| OwnedUserId::try_from(user.as_str()).ok())
                .collect()
        })
    }
}
