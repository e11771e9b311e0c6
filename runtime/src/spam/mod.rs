//! The spam-checker role: the calls (Synapse's callbacks, as one serialisable
//! enum), the answers, the chain of checkers, and the typed functions call
//! sites use (`services.spam_checker.user_may_create_room(..)`).
//!
//! Chain rule as Synapse: checkers run in configuration order and the first
//! that does not allow wins. A failed call answers the checker's `on_error`:
//! `fail-closed` refuses (a rejection, `true` for the flag callbacks, `deny`
//! for registration), `fail-open` allows.
//!
//! An answer of the wrong kind (a flag for a verdict callback) is treated as
//! malformed and answers the checker's `on_error` too (`PluginBackend::answer`).
//!
//! A checker is anything implementing `SpamCheckerBackend`: a plugin loaded
//! in this process, or a forwarder to the instances that host it
//! (`remote`; the `SpamCall` enum is the request body it sends). How the
//! runtime runs the `spam-checker` world is in `role`.

mod role;

use std::sync::Arc;

use ruma::{OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, UserId};
use serde::{Deserialize, Serialize};

pub use self::role::Spam;
use super::{bindings::types, role::PluginBackend};

/// The Matrix id types the calls use (ruma's), for callers without ruma.
pub mod ids {
    pub use ruma::{EventId, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, UserId};
}

/// An event as spam checkers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpamEvent {
    pub event_id: Option<OwnedEventId>,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    #[serde(rename = "type")]
    pub event_type: String,
    pub state_key: Option<String>,
    /// The whole event.
    pub json: serde_json::Value,
}

impl SpamEvent {
    /// From an event's JSON (a PDU or a client event); `None` when it lacks
    /// a valid `room_id`, `sender` or `type`.
    pub fn from_json(json: serde_json::Value) -> Option<Self> {
        let text = |key: &str| json.get(key).and_then(|v| v.as_str());
        Some(Self {
            event_id: text("event_id").and_then(|id| id.try_into().ok()),
            room_id: text("room_id")?.try_into().ok()?,
            sender: text("sender")?.try_into().ok()?,
            event_type: text("type")?.to_owned(),
            state_key: text("state_key").map(str::to_owned),
            json,
        })
    }

    pub(crate) fn to_wit(&self) -> types::Event {
        types::Event {
            event_id: self.event_id.as_ref().map(ToString::to_string),
            room_id: self.room_id.to_string(),
            sender: self.sender.to_string(),
            event_type: self.event_type.clone(),
            state_key: self.state_key.clone(),
            body: self.json.pointer("/content/body").and_then(|b| b.as_str()).map(str::to_owned),
            json: self.json.to_string(),
        }
    }
}

/// One client a request came through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestInfo {
    pub user_agent: Option<String>,
    pub ip: String,
}

/// A user-directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    pub user_id: OwnedUserId,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

/// A file being stored in the media repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaFile {
    /// `local` or `remote`.
    pub origin: String,
    pub uploader: Option<OwnedUserId>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub length: u64,
    /// The first bytes of the file (the caller cuts it to a few KiB).
    #[serde(default)]
    pub head: Vec<u8>,
}

/// Every callback of the spam-checker world, with its arguments. The JSON
/// form (`{"callback": "user-may-invite", ...}`) is what `weft plugin test`
/// fixtures use and what a call forwarded to another instance carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "callback", rename_all = "kebab-case")]
pub enum SpamCall {
    CheckEventForSpam {
        event: SpamEvent,
    },
    ShouldDropFederatedEvent {
        event: SpamEvent,
    },
    UserMayJoinRoom {
        user: OwnedUserId,
        room: OwnedRoomId,
        is_invited: bool,
    },
    UserMayInvite {
        inviter: OwnedUserId,
        invitee: OwnedUserId,
        room: OwnedRoomId,
    },
    FederatedUserMayInvite {
        event: SpamEvent,
    },
    #[serde(rename = "user-may-send-3pid-invite")]
    UserMaySend3pidInvite {
        inviter: OwnedUserId,
        medium: String,
        address: String,
        room: OwnedRoomId,
    },
    UserMayCreateRoom {
        user: OwnedUserId,
        room_config: serde_json::Value,
    },
    UserMayCreateRoomAlias {
        user: OwnedUserId,
        alias: OwnedRoomAliasId,
    },
    UserMayPublishRoom {
        user: OwnedUserId,
        room: OwnedRoomId,
    },
    UserMaySendStateEvent {
        user: OwnedUserId,
        room: OwnedRoomId,
        event_type: String,
        state_key: String,
        content: serde_json::Value,
    },
    CheckUsernameForSpam {
        profile: UserProfile,
        requester: OwnedUserId,
    },
    CheckRegistrationForSpam {
        email: Option<String>,
        username: Option<String>,
        request_info: Vec<RequestInfo>,
        auth_provider_id: Option<String>,
    },
    CheckMediaFileForSpam {
        file: MediaFile,
    },
    CheckLoginForSpam {
        user: OwnedUserId,
        device_id: Option<String>,
        initial_display_name: Option<String>,
        request_info: Vec<RequestInfo>,
        auth_provider_id: Option<String>,
    },
}

impl SpamCall {
    /// The WIT name of the callback.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CheckEventForSpam { .. } => "check-event-for-spam",
            Self::ShouldDropFederatedEvent { .. } => "should-drop-federated-event",
            Self::UserMayJoinRoom { .. } => "user-may-join-room",
            Self::UserMayInvite { .. } => "user-may-invite",
            Self::FederatedUserMayInvite { .. } => "federated-user-may-invite",
            Self::UserMaySend3pidInvite { .. } => "user-may-send-3pid-invite",
            Self::UserMayCreateRoom { .. } => "user-may-create-room",
            Self::UserMayCreateRoomAlias { .. } => "user-may-create-room-alias",
            Self::UserMayPublishRoom { .. } => "user-may-publish-room",
            Self::UserMaySendStateEvent { .. } => "user-may-send-state-event",
            Self::CheckUsernameForSpam { .. } => "check-username-for-spam",
            Self::CheckRegistrationForSpam { .. } => "check-registration-for-spam",
            Self::CheckMediaFileForSpam { .. } => "check-media-file-for-spam",
            Self::CheckLoginForSpam { .. } => "check-login-for-spam",
        }
    }

    /// The answer of a checker that allows (and of `fail-open`).
    pub fn allowing_answer(&self) -> SpamAnswer {
        match self {
            Self::ShouldDropFederatedEvent { .. } | Self::CheckUsernameForSpam { .. } => SpamAnswer::Flag(false),
            Self::CheckRegistrationForSpam { .. } => SpamAnswer::Registration(RegistrationVerdict::Allow),
            _ => SpamAnswer::Verdict(SpamVerdict::Allow),
        }
    }

    /// The answer of `fail-closed`.
    pub fn refusing_answer(&self) -> SpamAnswer {
        match self {
            Self::ShouldDropFederatedEvent { .. } | Self::CheckUsernameForSpam { .. } => SpamAnswer::Flag(true),
            Self::CheckRegistrationForSpam { .. } => SpamAnswer::Registration(RegistrationVerdict::Deny),
            _ => SpamAnswer::Verdict(SpamVerdict::Reject(Rejection::unavailable())),
        }
    }

    /// Whether `answer` is of the kind this callback answers (a verdict, a
    /// flag or a registration verdict).
    pub fn answered_by(&self, answer: &SpamAnswer) -> bool {
        std::mem::discriminant(&self.allowing_answer()) == std::mem::discriminant(answer)
    }

    /// About the bytes handed to the plugin, for `max_input_bytes`: strings
    /// and JSON are counted without serialising anything (this runs on every
    /// checked event).
    pub(crate) fn input_size(&self) -> usize {
        let ids = |ids: &[&str]| ids.iter().map(|id| id.len()).sum::<usize>();
        let infos = |infos: &[RequestInfo]| infos.iter().map(|i| i.ip.len() + i.user_agent.as_ref().map_or(0, String::len)).sum::<usize>();
        let opt = |o: &Option<String>| o.as_ref().map_or(0, String::len);
        match self {
            Self::CheckEventForSpam { event } | Self::ShouldDropFederatedEvent { event } | Self::FederatedUserMayInvite { event } => {
                json_size(&event.json) + event.json.pointer("/content/body").and_then(|b| b.as_str()).map_or(0, str::len)
            }
            Self::UserMayJoinRoom { user, room, .. } | Self::UserMayPublishRoom { user, room } => ids(&[user.as_str(), room.as_str()]),
            Self::UserMayInvite { inviter, invitee, room } => ids(&[inviter.as_str(), invitee.as_str(), room.as_str()]),
            Self::UserMaySend3pidInvite { inviter, medium, address, room } => ids(&[inviter.as_str(), medium, address, room.as_str()]),
            Self::UserMayCreateRoom { user, room_config } => user.as_str().len() + json_size(room_config),
            Self::UserMayCreateRoomAlias { user, alias } => ids(&[user.as_str(), alias.as_str()]),
            Self::UserMaySendStateEvent { user, room, event_type, state_key, content } => {
                ids(&[user.as_str(), room.as_str(), event_type, state_key]) + json_size(content)
            }
            Self::CheckUsernameForSpam { profile, requester } => {
                profile.user_id.as_str().len() + opt(&profile.display_name) + opt(&profile.avatar_url) + requester.as_str().len()
            }
            Self::CheckRegistrationForSpam { email, username, request_info, auth_provider_id } => {
                opt(email) + opt(username) + infos(request_info) + opt(auth_provider_id)
            }
            Self::CheckMediaFileForSpam { file } => {
                file.origin.len() + opt(&file.content_type) + opt(&file.filename) + file.head.len() + file.uploader.as_ref().map_or(0, |u| u.as_str().len())
            }
            Self::CheckLoginForSpam { user, device_id, initial_display_name, request_info, auth_provider_id } => {
                user.as_str().len() + opt(device_id) + opt(initial_display_name) + infos(request_info) + opt(auth_provider_id)
            }
        }
    }
}

/// About the length of `value` as JSON text (strings, keys and punctuation),
/// without writing it out.
fn json_size(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 20,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|v| json_size(v) + 1).sum::<usize>(),
        Value::Object(map) => 2 + map.iter().map(|(k, v)| k.len() + 4 + json_size(v)).sum::<usize>(),
    }
}

/// The answer to a `check-*` or `user-may-*` callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum SpamVerdict {
    Allow,
    Reject(Rejection),
}

/// A refusal: errcode, optional message (else the call site's), and extra
/// fields for the error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub errcode: String,
    pub message: Option<String>,
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl Rejection {
    /// The refusal of `fail-closed`.
    pub fn unavailable() -> Self {
        Self { errcode: "M_FORBIDDEN".into(), message: Some("The server's spam checker is unavailable".into()), fields: serde_json::Map::new() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegistrationVerdict {
    Allow,
    ShadowBan,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SpamAnswer {
    Verdict(SpamVerdict),
    Flag(bool),
    Registration(RegistrationVerdict),
}

impl SpamAnswer {
    pub fn allows(&self) -> bool {
        matches!(self, Self::Verdict(SpamVerdict::Allow) | Self::Flag(false) | Self::Registration(RegistrationVerdict::Allow))
    }
}

/// One spam checker in the chain: a plugin here, or one on other instances.
pub trait SpamCheckerBackend: PluginBackend<Spam> {}

impl<T: PluginBackend<Spam> + ?Sized> SpamCheckerBackend for T {}

/// The configured spam checkers of this instance, in order.
#[derive(Clone, Default)]
pub struct SpamCheckers {
    chain: Vec<Arc<dyn PluginBackend<Spam>>>,
}

impl std::fmt::Debug for SpamCheckers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.chain.iter().map(|c| c.name())).finish()
    }
}

impl SpamCheckers {
    pub fn new(chain: Vec<Arc<dyn SpamCheckerBackend>>) -> Self {
        Self { chain: chain.into_iter().map(|checker| checker as Arc<dyn PluginBackend<Spam>>).collect() }
    }

    pub(crate) fn from_backends(chain: Vec<Arc<dyn PluginBackend<Spam>>>) -> Self {
        Self { chain }
    }

    pub fn is_empty(&self) -> bool {
        self.chain.is_empty()
    }

    /// Runs the chain: the first answer that does not allow wins. Every
    /// answer is of `call`'s kind (a failed or mismatched one is replaced by
    /// the checker's `on_error` answer).
    pub async fn check(&self, call: SpamCall) -> SpamAnswer {
        for checker in &self.chain {
            let answer = checker.answer(&call).await;
            if !answer.allows() {
                return answer;
            }
        }
        call.allowing_answer()
    }

    // The kind checks below cannot fail (`check` answers in the call's kind);
    // were they to, they refuse, as the role's default policy does.

    async fn verdict(&self, call: SpamCall) -> SpamVerdict {
        if self.chain.is_empty() {
            return SpamVerdict::Allow;
        }
        match self.check(call).await {
            SpamAnswer::Verdict(verdict) => verdict,
            _ => SpamVerdict::Reject(Rejection::unavailable()),
        }
    }

    async fn flag(&self, call: SpamCall) -> bool {
        if self.chain.is_empty() {
            return false;
        }
        !matches!(self.check(call).await, SpamAnswer::Flag(false))
    }

    /// A local non-membership event being created (403 on reject), or an
    /// inbound federated event (soft-failed on reject).
    pub async fn check_event_for_spam(&self, event: &SpamEvent) -> SpamVerdict {
        self.verdict(SpamCall::CheckEventForSpam { event: event.clone() }).await
    }

    /// An inbound federated event: `true` drops it silently.
    pub async fn should_drop_federated_event(&self, event: &SpamEvent) -> bool {
        self.flag(SpamCall::ShouldDropFederatedEvent { event: event.clone() }).await
    }

    pub async fn user_may_join_room(&self, user: &UserId, room: &RoomId, is_invited: bool) -> SpamVerdict {
        self.verdict(SpamCall::UserMayJoinRoom { user: user.to_owned(), room: room.to_owned(), is_invited }).await
    }

    pub async fn user_may_invite(&self, inviter: &UserId, invitee: &UserId, room: &RoomId) -> SpamVerdict {
        self.verdict(SpamCall::UserMayInvite { inviter: inviter.to_owned(), invitee: invitee.to_owned(), room: room.to_owned() }).await
    }

    /// An invite received over federation; when every checker allows, call
    /// `user_may_invite` with its sender and state key next (as Synapse).
    pub async fn federated_user_may_invite(&self, event: &SpamEvent) -> SpamVerdict {
        self.verdict(SpamCall::FederatedUserMayInvite { event: event.clone() }).await
    }

    pub async fn user_may_send_3pid_invite(&self, inviter: &UserId, medium: &str, address: &str, room: &RoomId) -> SpamVerdict {
        self.verdict(SpamCall::UserMaySend3pidInvite {
            inviter: inviter.to_owned(),
            medium: medium.to_owned(),
            address: address.to_owned(),
            room: room.to_owned(),
        })
        .await
    }

    /// `/createRoom` (and room upgrades): `room_config` is the request body.
    pub async fn user_may_create_room(&self, user: &UserId, room_config: &serde_json::Value) -> SpamVerdict {
        self.verdict(SpamCall::UserMayCreateRoom { user: user.to_owned(), room_config: room_config.clone() }).await
    }

    pub async fn user_may_create_room_alias(&self, user: &UserId, alias: &RoomAliasId) -> SpamVerdict {
        self.verdict(SpamCall::UserMayCreateRoomAlias { user: user.to_owned(), alias: alias.to_owned() }).await
    }

    pub async fn user_may_publish_room(&self, user: &UserId, room: &RoomId) -> SpamVerdict {
        self.verdict(SpamCall::UserMayPublishRoom { user: user.to_owned(), room: room.to_owned() }).await
    }

    pub async fn user_may_send_state_event(&self, user: &UserId, room: &RoomId, event_type: &str, state_key: &str, content: &serde_json::Value) -> SpamVerdict {
        self.verdict(SpamCall::UserMaySendStateEvent {
            user: user.to_owned(),
            room: room.to_owned(),
            event_type: event_type.to_owned(),
            state_key: state_key.to_owned(),
            content: content.clone(),
        })
        .await
    }

    /// A user-directory result: `true` hides the user from `requester`.
    pub async fn check_username_for_spam(&self, profile: &UserProfile, requester: &UserId) -> bool {
        self.flag(SpamCall::CheckUsernameForSpam { profile: profile.clone(), requester: requester.to_owned() }).await
    }

    pub async fn check_registration_for_spam(
        &self,
        email: Option<&str>,
        username: Option<&str>,
        request_info: &[RequestInfo],
        auth_provider_id: Option<&str>,
    ) -> RegistrationVerdict {
        if self.chain.is_empty() {
            return RegistrationVerdict::Allow;
        }
        let call = SpamCall::CheckRegistrationForSpam {
            email: email.map(str::to_owned),
            username: username.map(str::to_owned),
            request_info: request_info.to_vec(),
            auth_provider_id: auth_provider_id.map(str::to_owned),
        };
        match self.check(call).await {
            SpamAnswer::Registration(verdict) => verdict,
            _ => RegistrationVerdict::Deny,
        }
    }

    pub async fn check_media_file_for_spam(&self, file: &MediaFile) -> SpamVerdict {
        self.verdict(SpamCall::CheckMediaFileForSpam { file: file.clone() }).await
    }

    /// `/login`, before the device is created.
    pub async fn check_login_for_spam(
        &self,
        user: &UserId,
        device_id: Option<&str>,
        initial_display_name: Option<&str>,
        request_info: &[RequestInfo],
        auth_provider_id: Option<&str>,
    ) -> SpamVerdict {
        self.verdict(SpamCall::CheckLoginForSpam {
            user: user.to_owned(),
            device_id: device_id.map(str::to_owned),
            initial_display_name: initial_display_name.map(str::to_owned),
            request_info: request_info.to_vec(),
            auth_provider_id: auth_provider_id.map(str::to_owned),
        })
        .await
    }
}
