//! The spam-checker role: implement [`SpamChecker`] (every callback defaults
//! to allowing), export it with [`export_spam_checker!`](crate::export_spam_checker).
//!
//! Chain rule (as Synapse): the server asks each spam checker in turn and
//! the first that does not allow wins, so answer [`Verdict::Allow`] for
//! anything you have no opinion on.
//!
//! By default a fresh instance of the plugin runs every call, so `new` runs
//! once per call: keep it cheap, and keep state across calls in
//! [`crate::kv`]. An operator may let instances answer several calls
//! (`max_calls_per_instance`); `new` then runs once per instance and the
//! checker is shared by that instance's calls, but never rely on it.

use serde_json::Value;

use crate::{PluginConfig, PluginError};

/// Matrix errcodes a spam checker commonly answers with.
pub mod errcode {
    pub const FORBIDDEN: &str = "M_FORBIDDEN";
    pub const LIMIT_EXCEEDED: &str = "M_LIMIT_EXCEEDED";
    pub const TOO_LARGE: &str = "M_TOO_LARGE";
}

/// A room event: the usual fields typed, the whole event as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: Option<String>,
    pub room_id: String,
    pub sender: String,
    pub event_type: String,
    pub state_key: Option<String>,
    body: Option<String>,
    json: String,
}

impl Event {
    pub fn new(room_id: &str, sender: &str, event_type: &str, json: Value) -> Self {
        Self {
            event_id: json.get("event_id").and_then(Value::as_str).map(str::to_owned),
            room_id: room_id.into(),
            sender: sender.into(),
            event_type: event_type.into(),
            state_key: json.get("state_key").and_then(Value::as_str).map(str::to_owned),
            body: json.pointer("/content/body").and_then(Value::as_str).map(str::to_owned),
            json: json.to_string(),
        }
    }

    #[doc(hidden)]
    pub fn from_parts(
        event_id: Option<String>,
        room_id: String,
        sender: String,
        event_type: String,
        state_key: Option<String>,
        body: Option<String>,
        json: String,
    ) -> Self {
        Self { event_id, room_id, sender, event_type, state_key, body, json }
    }

    /// `content.body` when it is a string (messages).
    pub fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }

    /// The server part of the sender (`example.org` in `@a:example.org`).
    pub fn sender_server(&self) -> &str {
        server_of(&self.sender)
    }

    /// The whole event, parsed (`Value::Null` if the host sent no JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }

    pub fn content(&self) -> Value {
        self.json().get("content").cloned().unwrap_or(Value::Null)
    }
}

/// The server part of a Matrix id (`@user:server`, `!room:server`, ...).
pub fn server_of(id: &str) -> &str {
    id.split_once(':').map_or("", |(_, server)| server)
}

/// The answer of every `check_*` and `user_may_*` callback.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Verdict {
    /// No objection: the next checker decides.
    #[default]
    Allow,
    Reject(Rejection),
}

impl Verdict {
    /// Refuses with `errcode` and a message shown to the client.
    pub fn reject(errcode: &str, message: impl Into<String>) -> Self {
        Self::Reject(Rejection { errcode: errcode.into(), message: Some(message.into()), fields: Vec::new() })
    }

    /// Refuses with `M_FORBIDDEN`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::reject(errcode::FORBIDDEN, message)
    }

    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow)
    }
}

/// A refusal: errcode, message (else the server's own for that action), and
/// extra fields merged into the error response (Synapse's `(Codes, dict)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub errcode: String,
    pub message: Option<String>,
    pub fields: Vec<(String, Value)>,
}

impl Rejection {
    pub fn with_field(mut self, key: impl Into<String>, value: Value) -> Self {
        self.fields.push((key.into(), value));
        self
    }
}

impl Verdict {
    /// Adds an extra field to a rejection (no effect on `Allow`).
    pub fn with_field(self, key: impl Into<String>, value: Value) -> Self {
        match self {
            Self::Reject(rejection) => Self::Reject(rejection.with_field(key, value)),
            allow => allow,
        }
    }
}

/// The answer of `check_registration_for_spam`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegistrationVerdict {
    #[default]
    Allow,
    /// Register the user shadow-banned: its events reach no one else.
    ShadowBan,
    /// Refuse; the client sees a rate limit, not the reason.
    Deny,
}

/// One client a request came through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub user_agent: Option<String>,
    pub ip: String,
}

/// A user as the user directory shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProfile {
    pub user_id: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

/// A file being stored in the media repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// `local` or `remote`.
    pub origin: String,
    pub uploader: Option<String>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    /// The whole file's size in bytes.
    pub length: u64,
    /// The file's first bytes.
    pub head: Vec<u8>,
}

/// A spam-checking plugin. Only `new` is required; every callback allows by
/// default. Names and meanings are Synapse's spam-checker callbacks.
#[allow(unused_variables)]
pub trait SpamChecker: Sized + 'static {
    /// Builds the checker from its configuration, once per instance; an `Err`
    /// fails the call (the host logs the message and applies `on_error`).
    ///
    /// By default every call gets a fresh instance, so `new` runs for every
    /// call. When the operator sets `max_calls_per_instance` above 1, an
    /// instance answers several calls with the same checker: work done in
    /// `new`, or cached in the checker (say in a `OnceCell`), is then paid
    /// once per instance.
    fn new(config: &PluginConfig) -> Result<Self, PluginError>;

    /// Checks a configuration before any call runs with it: `weft
    /// check-config` and every server start ask (the optional
    /// `validate-config` export) and refuse the configuration with these
    /// errors, each shown with the plugin's name. Answer every problem, one
    /// line each, written for the operator.
    ///
    /// The default builds the checker with `new` and answers its error, so
    /// what `new` refuses is refused at check time; override it to report
    /// every problem at once, or to check more than `new` does. Keep it to
    /// the configuration: no server runs at check time (the key-value store
    /// is empty and [`crate::homeserver`] answers `Unavailable` when
    /// granted, `NotGranted` when not).
    fn validate_config(config: &PluginConfig) -> Result<(), Vec<String>> {
        Self::new(config).map(drop).map_err(|error| vec![error.to_string()])
    }

    /// A local non-membership event being created, or a federated one arriving.
    fn check_event_for_spam(&self, event: &Event) -> Verdict {
        Verdict::Allow
    }
    /// A federated event: `true` drops it silently.
    fn should_drop_federated_event(&self, event: &Event) -> bool {
        false
    }
    fn user_may_join_room(&self, user: &str, room: &str, is_invited: bool) -> Verdict {
        Verdict::Allow
    }
    fn user_may_invite(&self, inviter: &str, invitee: &str, room: &str) -> Verdict {
        Verdict::Allow
    }
    /// An invite arriving over federation (the whole invite event).
    fn federated_user_may_invite(&self, event: &Event) -> Verdict {
        Verdict::Allow
    }
    fn user_may_send_3pid_invite(&self, inviter: &str, medium: &str, address: &str, room: &str) -> Verdict {
        Verdict::Allow
    }
    /// `room_config` is the `/createRoom` request body.
    fn user_may_create_room(&self, user: &str, room_config: &Value) -> Verdict {
        Verdict::Allow
    }
    fn user_may_create_room_alias(&self, user: &str, alias: &str) -> Verdict {
        Verdict::Allow
    }
    fn user_may_publish_room(&self, user: &str, room: &str) -> Verdict {
        Verdict::Allow
    }
    fn user_may_send_state_event(&self, user: &str, room: &str, event_type: &str, state_key: &str, content: &Value) -> Verdict {
        Verdict::Allow
    }
    /// A user-directory result: `true` hides `profile` from `requester`.
    fn check_username_for_spam(&self, profile: &UserProfile, requester: &str) -> bool {
        false
    }
    fn check_registration_for_spam(
        &self,
        email: Option<&str>,
        username: Option<&str>,
        request_info: &[RequestInfo],
        auth_provider_id: Option<&str>,
    ) -> RegistrationVerdict {
        RegistrationVerdict::Allow
    }
    fn check_media_file_for_spam(&self, file: &MediaInfo) -> Verdict {
        Verdict::Allow
    }
    /// A login, before its device is created.
    fn check_login_for_spam(
        &self,
        user: &str,
        device_id: Option<&str>,
        initial_display_name: Option<&str>,
        request_info: &[RequestInfo],
        auth_provider_id: Option<&str>,
    ) -> Verdict {
        Verdict::Allow
    }
}

/// The glue the export macro calls: WIT values in, trait call, WIT values out.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod glue {
    use super::*;
    use crate::bindings::spam_checker::weft::plugin::types as wit;

    /// Builds the instance's checker (the export macro keeps it for the
    /// instance's further calls).
    pub fn build<T: SpamChecker>() -> T {
        match T::new(&PluginConfig::from_host()) {
            Ok(checker) => checker,
            Err(error) => panic!("the plugin cannot start: {error}"),
        }
    }

    pub fn event(e: wit::Event) -> Event {
        Event::from_parts(e.event_id, e.room_id, e.sender, e.event_type, e.state_key, e.body, e.json)
    }

    pub fn verdict(v: Verdict) -> wit::Verdict {
        match v {
            Verdict::Allow => wit::Verdict::Allow,
            Verdict::Reject(r) => wit::Verdict::Reject(wit::Rejection {
                errcode: r.errcode,
                message: r.message,
                fields: r.fields.into_iter().map(|(key, value)| wit::ErrorField { key, json_value: value.to_string() }).collect(),
            }),
        }
    }

    pub fn registration(v: RegistrationVerdict) -> wit::RegistrationVerdict {
        match v {
            RegistrationVerdict::Allow => wit::RegistrationVerdict::Allow,
            RegistrationVerdict::ShadowBan => wit::RegistrationVerdict::ShadowBan,
            RegistrationVerdict::Deny => wit::RegistrationVerdict::Deny,
        }
    }

    pub fn request_info(infos: Vec<wit::RequestInfo>) -> Vec<RequestInfo> {
        infos.into_iter().map(|i| RequestInfo { user_agent: i.user_agent, ip: i.ip }).collect()
    }

    pub fn profile(p: wit::UserProfile) -> UserProfile {
        UserProfile { user_id: p.user_id, display_name: p.display_name, avatar_url: p.avatar_url }
    }

    pub fn media(m: wit::MediaInfo) -> MediaInfo {
        MediaInfo { origin: m.origin, uploader: m.uploader, content_type: m.content_type, filename: m.filename, length: m.length, head: m.head }
    }

    pub fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or(Value::Null)
    }
}

/// Exports a [`SpamChecker`] implementation as the component's
/// `spam-checker` world (`describe` answers the crate's name and version),
/// with the optional `configuration` export (`validate_config`).
#[macro_export]
macro_rules! export_spam_checker {
    ($checker:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::spam_checker::exports::weft::plugin::{configuration, plugin, spam_checks};
            use $crate::bindings::spam_checker::weft::plugin::types as wit;
            use $crate::spam::{SpamChecker as _, glue};

            struct Export;

            /// The instance's checker, built by its first call.
            fn checker() -> &'static $checker {
                ::std::thread_local! {
                    static CHECKER: ::std::cell::OnceCell<&'static $checker> = const { ::std::cell::OnceCell::new() };
                }
                CHECKER.with(|cell| *cell.get_or_init(|| ::std::boxed::Box::leak(::std::boxed::Box::new(glue::build::<$checker>()))))
            }

            impl plugin::Guest for Export {
                fn describe() -> wit::PluginInfo {
                    wit::PluginInfo { name: env!("CARGO_PKG_NAME").into(), version: env!("CARGO_PKG_VERSION").into() }
                }
            }

            impl configuration::Guest for Export {
                fn validate_config(config: String) -> Result<(), Vec<String>> {
                    $crate::__private::validate_config(&config, <$checker as $crate::spam::SpamChecker>::validate_config)
                }
            }

            impl spam_checks::Guest for Export {
                fn check_event_for_spam(event: wit::Event) -> wit::Verdict {
                    glue::verdict(checker().check_event_for_spam(&glue::event(event)))
                }
                fn should_drop_federated_event(event: wit::Event) -> bool {
                    checker().should_drop_federated_event(&glue::event(event))
                }
                fn user_may_join_room(user: String, room: String, is_invited: bool) -> wit::Verdict {
                    glue::verdict(checker().user_may_join_room(&user, &room, is_invited))
                }
                fn user_may_invite(inviter: String, invitee: String, room: String) -> wit::Verdict {
                    glue::verdict(checker().user_may_invite(&inviter, &invitee, &room))
                }
                fn federated_user_may_invite(event: wit::Event) -> wit::Verdict {
                    glue::verdict(checker().federated_user_may_invite(&glue::event(event)))
                }
                fn user_may_send_3pid_invite(inviter: String, medium: String, address: String, room: String) -> wit::Verdict {
                    glue::verdict(checker().user_may_send_3pid_invite(&inviter, &medium, &address, &room))
                }
                fn user_may_create_room(user: String, room_config: String) -> wit::Verdict {
                    glue::verdict(checker().user_may_create_room(&user, &glue::json(&room_config)))
                }
                fn user_may_create_room_alias(user: String, alias: String) -> wit::Verdict {
                    glue::verdict(checker().user_may_create_room_alias(&user, &alias))
                }
                fn user_may_publish_room(user: String, room: String) -> wit::Verdict {
                    glue::verdict(checker().user_may_publish_room(&user, &room))
                }
                fn user_may_send_state_event(user: String, room: String, event_type: String, state_key: String, content: String) -> wit::Verdict {
                    glue::verdict(checker().user_may_send_state_event(&user, &room, &event_type, &state_key, &glue::json(&content)))
                }
                fn check_username_for_spam(profile: wit::UserProfile, requester: String) -> bool {
                    checker().check_username_for_spam(&glue::profile(profile), &requester)
                }
                fn check_registration_for_spam(
                    email: Option<String>,
                    username: Option<String>,
                    request_info: Vec<wit::RequestInfo>,
                    auth_provider_id: Option<String>,
                ) -> wit::RegistrationVerdict {
                    glue::registration(checker().check_registration_for_spam(
                        email.as_deref(),
                        username.as_deref(),
                        &glue::request_info(request_info),
                        auth_provider_id.as_deref(),
                    ))
                }
                fn check_media_file_for_spam(file: wit::MediaInfo) -> wit::Verdict {
                    glue::verdict(checker().check_media_file_for_spam(&glue::media(file)))
                }
                fn check_login_for_spam(
                    user: String,
                    device_id: Option<String>,
                    initial_display_name: Option<String>,
                    request_info: Vec<wit::RequestInfo>,
                    auth_provider_id: Option<String>,
                ) -> wit::Verdict {
                    glue::verdict(checker().check_login_for_spam(
                        &user,
                        device_id.as_deref(),
                        initial_display_name.as_deref(),
                        &glue::request_info(request_info),
                        auth_provider_id.as_deref(),
                    ))
                }
            }

    $crate::bindings::spam_checker::export_world!(Export with_types_in $crate::bindings::spam_checker);
        };
        // Outside wasm32 nothing is exported: this keeps the checker "used"
        // for the native build that `cargo test` makes of a plugin crate.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn(&$crate::PluginConfig) -> ::std::result::Result<$checker, $crate::PluginError> = <$checker as $crate::spam::SpamChecker>::new;
    };
}
