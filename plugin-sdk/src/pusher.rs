//! The pusher role: implement [`Pusher`], export it with
//! [`export_pusher!`](crate::export_pusher).
//!
//! The server keeps the queue: for each pusher (a phone's registration, set
//! by a client with `/pushers/set`) it hands the plugin one [`Notification`]
//! at a time, in order, and acts on the answer: [`Delivery::Delivered`]
//! moves on, [`Delivery::Rejected`] deletes the pusher when its own pushkey
//! is listed, [`Delivery::Retry`] sends the same notification again later
//! (after the server's backoff, 1 s doubling up to an hour, or the wait the
//! plugin asks for). A notification failing for more than a day is skipped.
//! A plugin call that fails (a trap, the deadline) is a retry too.
//!
//! Which pushers: [`Pusher::serves`] names the pusher kinds and app id
//! patterns the plugin delivers for; `/pushers/set` asks the serving
//! plugin's [`Pusher::check_pusher`] first, and a pusher no plugin serves is
//! refused.
//!
//! The server decides what a notification shows: for a pusher whose
//! `data.format` is `event_id_only` only the ids leave the server
//! ([`Subject::EventIdOnly`]), `content` is left out when the operator turns
//! `push.include_content` off, and the priority follows Synapse's rule. The
//! reference plugin `plugins/http-pusher` speaks the Push Gateway API.
//!
//! As for every role, a fresh instance answers each call by default (`new`
//! runs per call).

use serde_json::{Map, Value};

use crate::{PluginConfig, PluginError};

/// Errcodes `check_pusher` commonly refuses with.
pub mod errcode {
    pub const MISSING_PARAM: &str = "M_MISSING_PARAM";
    pub const INVALID_PARAM: &str = "M_INVALID_PARAM";
}

/// A pusher, as the client set it.
#[derive(Debug, Clone, PartialEq)]
pub struct PusherInfo {
    /// The user whose notifications these are.
    pub user_id: String,
    /// `http`, or a kind of the plugin's own.
    pub kind: String,
    pub app_id: String,
    pub pushkey: String,
    /// When the pushkey was set, in milliseconds since the Unix epoch (the
    /// Push Gateway API wants seconds: [`PusherInfo::pushkey_ts_secs`]).
    pub pushkey_ts: u64,
    pub app_display_name: String,
    pub device_display_name: String,
    pub profile_tag: Option<String>,
    pub lang: String,
    /// The pusher's `data` object (`url`, `format`, ...); an empty object
    /// when the client sent none.
    pub data: Map<String, Value>,
}

impl PusherInfo {
    /// `data[key]` when it is a string.
    pub fn data_str(&self, key: &str) -> Option<&str> {
        self.data.get(key).and_then(Value::as_str)
    }

    pub fn pushkey_ts_secs(&self) -> u64 {
        self.pushkey_ts / 1000
    }
}

/// The pushers a plugin delivers for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served {
    /// Pusher kinds, matched exactly.
    pub kinds: Vec<String>,
    /// App id patterns: `*` matches any run of characters (`*` alone: any app).
    pub app_ids: Vec<String>,
}

impl Served {
    pub fn new(kinds: &[&str], app_ids: &[&str]) -> Self {
        Self { kinds: kinds.iter().map(|k| (*k).to_owned()).collect(), app_ids: app_ids.iter().map(|a| (*a).to_owned()).collect() }
    }
}

/// Why a pusher is refused at `/pushers/set`: the client gets 400 with this
/// errcode and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherError {
    pub errcode: String,
    pub message: String,
}

impl PusherError {
    pub fn new(errcode: &str, message: impl Into<String>) -> Self {
        Self { errcode: errcode.into(), message: message.into() }
    }

    /// `M_MISSING_PARAM`: what Synapse answers for a bad `data.url`.
    pub fn missing_param(message: impl Into<String>) -> Self {
        Self::new(errcode::MISSING_PARAM, message)
    }

    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(errcode::INVALID_PARAM, message)
    }
}

/// `prio` of the Push Gateway API: `High` for an encrypted event or one
/// whose push rule set `highlight` or `sound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    High,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Low => "low",
        }
    }
}

/// The event a notification is about, with what the server knows of its
/// room and sender.
#[derive(Debug, Clone, PartialEq)]
pub struct PushEvent {
    pub event_id: String,
    pub room_id: String,
    pub event_type: String,
    pub sender: String,
    pub state_key: Option<String>,
    /// The event's content; `None` when the server's `push.include_content`
    /// is off.
    pub content: Option<Value>,
    /// For an `m.room.member` state event: its membership, and whether the
    /// pusher's user is the member (an invite for them).
    pub membership: Option<String>,
    pub user_is_target: Option<bool>,
    pub sender_display_name: Option<String>,
    /// The room's name as clients show it (its name, else alias or members).
    pub room_name: Option<String>,
    pub room_alias: Option<String>,
}

/// What a notification is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    Event(Box<PushEvent>),
    /// An event, for a pusher whose `data.format` is `event_id_only`.
    EventIdOnly {
        event_id: String,
        room_id: String,
    },
    /// No event: the user's unread count changed, update the badge.
    Badge,
}

/// The user's counts; `None` is not sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub unread: Option<u64>,
    pub missed_calls: Option<u64>,
}

/// One notification for one pusher.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub pusher: PusherInfo,
    pub subject: Subject,
    pub counts: Counts,
    /// The matched push rule's tweaks (`{"sound": "default", "highlight": true}`).
    pub tweaks: Map<String, Value>,
    pub priority: Priority,
}

/// The answer to [`Pusher::notify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// The far end refused these pushkeys (the pusher is deleted when its
    /// own is among them; an empty list is `Delivered`).
    Rejected(Vec<String>),
    /// Send the same notification again later: after `after_ms` when given
    /// (at most an hour), else the server's backoff. `reason` goes to the log.
    Retry {
        after_ms: Option<u64>,
        reason: String,
    },
}

impl Delivery {
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::Retry { after_ms: None, reason: reason.into() }
    }
}

/// A pusher plugin.
#[allow(unused_variables)]
pub trait Pusher: Sized + 'static {
    /// Builds the pusher from its configuration; an `Err` fails the call
    /// (which the server retries later).
    fn new(config: &PluginConfig) -> Result<Self, PluginError>;

    /// Checks a configuration before any call runs with it (`weft
    /// check-config` and every start), as
    /// [`SpamChecker::validate_config`](crate::spam::SpamChecker::validate_config):
    /// every problem, one line each. The default answers `new`'s error.
    fn validate_config(config: &PluginConfig) -> Result<(), Vec<String>> {
        Self::new(config).map(drop).map_err(|error| vec![error.to_string()])
    }

    /// The pusher kinds and app ids this plugin delivers for.
    fn serves(&self) -> Served;

    /// A pusher being set: `Err` refuses it (400 with your errcode and
    /// message). Accepts everything by default.
    fn check_pusher(&self, pusher: &PusherInfo) -> Result<(), PusherError> {
        Ok(())
    }

    /// Delivers one notification (or badge update) for one pusher.
    fn notify(&self, notification: &Notification) -> Delivery;
}

/// The glue the export macro calls: WIT values in, trait call, WIT values out.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod glue {
    use super::*;
    use crate::bindings::pusher::exports::weft::plugin::push as wit;

    pub fn build<T: Pusher>() -> T {
        match T::new(&PluginConfig::from_host()) {
            Ok(pusher) => pusher,
            Err(error) => panic!("the plugin cannot start: {error}"),
        }
    }

    fn object(text: &str) -> Map<String, Value> {
        match serde_json::from_str(text) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    pub fn pusher(p: wit::Pusher) -> PusherInfo {
        PusherInfo {
            user_id: p.user_id,
            kind: p.kind,
            app_id: p.app_id,
            pushkey: p.pushkey,
            pushkey_ts: p.pushkey_ts,
            app_display_name: p.app_display_name,
            device_display_name: p.device_display_name,
            profile_tag: p.profile_tag,
            lang: p.lang,
            data: object(&p.data),
        }
    }

    pub fn notification(n: wit::Notification) -> Notification {
        let subject = match n.subject {
            wit::Subject::Event(e) => Subject::Event(Box::new(PushEvent {
                event_id: e.event_id,
                room_id: e.room_id,
                event_type: e.event_type,
                sender: e.sender,
                state_key: e.state_key,
                content: e.content.and_then(|text| serde_json::from_str(&text).ok()),
                membership: e.membership,
                user_is_target: e.user_is_target,
                sender_display_name: e.sender_display_name,
                room_name: e.room_name,
                room_alias: e.room_alias,
            })),
            wit::Subject::EventIdOnly(ids) => Subject::EventIdOnly { event_id: ids.event_id, room_id: ids.room_id },
            wit::Subject::Badge => Subject::Badge,
        };
        Notification {
            pusher: pusher(n.pusher),
            subject,
            counts: Counts { unread: n.counts.unread, missed_calls: n.counts.missed_calls },
            tweaks: object(&n.tweaks),
            priority: match n.priority {
                wit::Priority::High => Priority::High,
                wit::Priority::Low => Priority::Low,
            },
        }
    }

    pub fn served(s: Served) -> wit::Served {
        wit::Served { kinds: s.kinds, app_ids: s.app_ids }
    }

    pub fn checked(result: Result<(), PusherError>) -> Result<(), wit::PusherError> {
        result.map_err(|e| wit::PusherError { errcode: e.errcode, message: e.message })
    }

    pub fn delivery(d: Delivery) -> wit::Delivery {
        match d {
            Delivery::Delivered => wit::Delivery::Delivered,
            Delivery::Rejected(pushkeys) => wit::Delivery::Rejected(pushkeys),
            Delivery::Retry { after_ms, reason } => wit::Delivery::Retry(wit::RetryLater { after_ms, reason }),
        }
    }
}

/// Exports a [`Pusher`] implementation as the component's `pusher` world
/// (`describe` answers the crate's name and version), with the optional
/// `configuration` export (`validate_config`).
#[macro_export]
macro_rules! export_pusher {
    ($pusher:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::pusher::exports::weft::plugin::{configuration, plugin, push};
            use $crate::bindings::pusher::weft::plugin::types as wit_types;
            use $crate::pusher::{Pusher as _, glue};

            struct Export;

            /// The instance's pusher, built by its first call.
            fn pusher() -> &'static $pusher {
                ::std::thread_local! {
                    static PUSHER: ::std::cell::OnceCell<&'static $pusher> = const { ::std::cell::OnceCell::new() };
                }
                PUSHER.with(|cell| *cell.get_or_init(|| ::std::boxed::Box::leak(::std::boxed::Box::new(glue::build::<$pusher>()))))
            }

            impl plugin::Guest for Export {
                fn describe() -> wit_types::PluginInfo {
                    wit_types::PluginInfo { name: env!("CARGO_PKG_NAME").into(), version: env!("CARGO_PKG_VERSION").into() }
                }
            }

            impl configuration::Guest for Export {
                fn validate_config(config: String) -> Result<(), Vec<String>> {
                    $crate::__private::validate_config(&config, <$pusher as $crate::pusher::Pusher>::validate_config)
                }
            }

            impl push::Guest for Export {
                fn serves() -> push::Served {
                    glue::served(pusher().serves())
                }
                fn check_pusher(info: push::Pusher) -> Result<(), push::PusherError> {
                    glue::checked(pusher().check_pusher(&glue::pusher(info)))
                }
                fn notify(notification: push::Notification) -> push::Delivery {
                    glue::delivery(pusher().notify(&glue::notification(notification)))
                }
            }

    $crate::bindings::pusher::export_world!(Export with_types_in $crate::bindings::pusher);
        };
    };
}
