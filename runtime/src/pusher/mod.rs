//! The pusher role: the calls (`serves`, `check-pusher`, `notify`, as one
//! serialisable enum), the answers, and the set of pusher plugins the
//! server's push sender and `/pushers/set` use
//! (`services.pushers.notify(&notification)`).
//!
//! Routing: a pusher is served by the first plugin, in configuration order,
//! whose `serves` lists its kind and an app id pattern matching its app id.
//! A plugin's `serves` is asked once (and again after a failed ask).
//!
//! A failed call answers the plugin's `on_error`, for a pusher always
//! `retry`: `notify` answers `Delivery::Retry` (the notification stays
//! queued), `check-pusher` answers `PusherCheck::Unavailable` (the client
//! is told to try again, its pusher is not refused), `serves` answers
//! nothing served. An answer of the wrong kind is malformed and treated the
//! same (`PluginBackend::answer`).
//!
//! A plugin is anything implementing `PluginBackend<Pusher>`: loaded here,
//! or a forwarder to the instances that host it (`remote`; `PushCall` is
//! the body it sends, `PushAnswer` the answer it reads back). How the
//! runtime runs the `pusher` world is in `role`.

mod role;

use std::sync::Arc;

use ruma::{OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

pub use self::role::Pusher;
use super::role::PluginBackend;

/// The Matrix id types the calls use (ruma's), for callers without ruma.
pub mod ids {
    pub use ruma::{EventId, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, UserId};
}

/// The errcode of a pusher no plugin serves.
pub const UNSERVED_ERRCODE: &str = "M_INVALID_PARAM";
/// The longest wait a `retry` answer may ask for; longer ones are cut to it.
pub const MAX_RETRY_AFTER_MS: u64 = 3_600_000;

/// A pusher as `/pushers/set` stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PusherInfo {
    pub user_id: OwnedUserId,
    pub kind: String,
    pub app_id: String,
    pub pushkey: String,
    /// When the pushkey was set, in milliseconds since the Unix epoch.
    pub pushkey_ts: u64,
    pub app_display_name: String,
    pub device_display_name: String,
    #[serde(default)]
    pub profile_tag: Option<String>,
    pub lang: String,
    /// The pusher's `data` object (`url`, `format`, ...).
    #[serde(default)]
    pub data: Map<String, Value>,
}

/// The pushers a plugin delivers for: kinds, exactly, and app id patterns
/// (`*` matches any run of characters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    pub kinds: Vec<String>,
    pub app_ids: Vec<String>,
}

impl Served {
    /// Whether a pusher of `kind` and `app_id` is one of these.
    pub fn serves(&self, kind: &str, app_id: &str) -> bool {
        self.kinds.iter().any(|k| k == kind) && self.app_ids.iter().any(|pattern| glob_matches(pattern, app_id))
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Why a plugin refuses a pusher: the errcode and message of the 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PusherError {
    pub errcode: String,
    pub message: String,
}

/// The answer to `check-pusher`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum PusherCheck {
    Valid,
    /// Refused: answer 400 with the plugin's errcode and message.
    Invalid(PusherError),
    /// The plugin could not say (it failed, or could not be reached): the
    /// pusher is neither stored nor refused; the client should try again
    /// (the server answers 503).
    Unavailable {
        reason: String,
    },
}

/// `prio` of the Push Gateway API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    Low,
}

impl Priority {
    /// Synapse's rule: `high` for an encrypted event or one whose push rule
    /// set a `highlight` or `sound` tweak (a true value), else `low`.
    pub fn for_event(event_type: &str, tweaks: &Map<String, Value>) -> Self {
        let set = |name: &str| match tweaks.get(name) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
            Some(Value::Bool(true)) => true,
        };
        if event_type == "m.room.encrypted" || set("highlight") || set("sound") { Self::High } else { Self::Low }
    }
}

/// The event a notification is about, with what the server knows of its
/// room and sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushEvent {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    #[serde(rename = "type")]
    pub event_type: String,
    pub sender: OwnedUserId,
    #[serde(default)]
    pub state_key: Option<String>,
    /// The event's `content`; none when `push.include_content` is off.
    #[serde(default)]
    pub content: Option<Value>,
    /// For an `m.room.member` state event: its membership, and whether the
    /// pusher's user is the member.
    #[serde(default)]
    pub membership: Option<String>,
    #[serde(default)]
    pub user_is_target: Option<bool>,
    #[serde(default)]
    pub sender_display_name: Option<String>,
    /// The room's name as clients show it (name, else alias or members).
    #[serde(default)]
    pub room_name: Option<String>,
    #[serde(default)]
    pub room_alias: Option<OwnedRoomAliasId>,
}

/// What a notification is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Subject {
    Event(Box<PushEvent>),
    /// For a pusher whose `data.format` is `event_id_only`.
    EventIdOnly {
        event_id: OwnedEventId,
        room_id: OwnedRoomId,
    },
    /// The unread count changed (a receipt): a badge-only update.
    Badge,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    #[serde(default)]
    pub unread: Option<u64>,
    #[serde(default)]
    pub missed_calls: Option<u64>,
}

/// One notification for one pusher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub pusher: PusherInfo,
    pub subject: Subject,
    #[serde(default)]
    pub counts: Counts,
    /// The matched rule's `set_tweak` actions (`{"sound": "default"}`).
    #[serde(default)]
    pub tweaks: Map<String, Value>,
    pub priority: Priority,
}

/// The answer to `notify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Delivery {
    Delivered,
    /// The far end refused these pushkeys (never empty: an empty list is
    /// `Delivered`).
    Rejected {
        pushkeys: Vec<String>,
    },
    /// Try the same notification again, not before `after_ms` when given
    /// (at most `MAX_RETRY_AFTER_MS`).
    Retry {
        after_ms: Option<u64>,
        reason: String,
    },
}

impl Delivery {
    /// Whether the far end refused `pushkey` (the pusher is then deleted).
    pub fn rejects(&self, pushkey: &str) -> bool {
        matches!(self, Self::Rejected { pushkeys } if pushkeys.iter().any(|key| key == pushkey))
    }
}

/// Every export of the pusher world, with its arguments. The JSON form
/// (`{"callback": "notify", "notification": {...}}`) is what a call
/// forwarded to another instance carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "callback", rename_all = "kebab-case")]
pub enum PushCall {
    Serves,
    CheckPusher { pusher: Box<PusherInfo> },
    Notify { notification: Box<Notification> },
}

impl PushCall {
    /// The WIT name of the export.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Serves => "serves",
            Self::CheckPusher { .. } => "check-pusher",
            Self::Notify { .. } => "notify",
        }
    }

    /// About the bytes handed to the plugin, for `max_input_bytes`.
    pub(crate) fn input_size(&self) -> usize {
        match self {
            Self::Serves => 0,
            Self::CheckPusher { pusher } => pusher_size(pusher),
            Self::Notify { notification } => {
                let n = notification;
                let subject = match &n.subject {
                    Subject::Event(e) => {
                        let opt = |o: &Option<String>| o.as_ref().map_or(0, String::len);
                        e.event_id.as_str().len()
                            + e.room_id.as_str().len()
                            + e.event_type.len()
                            + e.sender.as_str().len()
                            + opt(&e.state_key)
                            + e.content.as_ref().map_or(0, json_size)
                            + opt(&e.membership)
                            + opt(&e.sender_display_name)
                            + opt(&e.room_name)
                            + e.room_alias.as_ref().map_or(0, |a| a.as_str().len())
                    }
                    Subject::EventIdOnly { event_id, room_id } => event_id.as_str().len() + room_id.as_str().len(),
                    Subject::Badge => 0,
                };
                pusher_size(&n.pusher) + subject + map_size(&n.tweaks) + 32
            }
        }
    }

    /// The answer of a failed call (every policy of the role retries).
    pub fn failure_answer(&self) -> PushAnswer {
        match self {
            Self::Serves => PushAnswer::Serves(Served::default()),
            Self::CheckPusher { .. } => PushAnswer::Check(PusherCheck::Unavailable { reason: "the pusher plugin failed or could not be reached".into() }),
            Self::Notify { .. } => PushAnswer::Delivery(Delivery::Retry { after_ms: None, reason: "the pusher plugin failed or could not be reached".into() }),
        }
    }

    /// Whether `answer` is of the kind this export answers.
    pub fn answered_by(&self, answer: &PushAnswer) -> bool {
        std::mem::discriminant(&self.failure_answer()) == std::mem::discriminant(answer)
    }
}

fn pusher_size(p: &PusherInfo) -> usize {
    p.user_id.as_str().len()
        + p.kind.len()
        + p.app_id.len()
        + p.pushkey.len()
        + p.app_display_name.len()
        + p.device_display_name.len()
        + p.profile_tag.as_ref().map_or(0, String::len)
        + p.lang.len()
        + map_size(&p.data)
        + 8
}

/// About the length of `value` as JSON text, without writing it out.
fn json_size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 20,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|v| json_size(v) + 1).sum::<usize>(),
        Value::Object(map) => map_size(map),
    }
}

fn map_size(map: &Map<String, Value>) -> usize {
    2 + map.iter().map(|(k, v)| k.len() + 4 + json_size(v)).sum::<usize>()
}

/// A checked answer of the pusher world (JSON: `{"delivery": {...}}`,
/// `{"check": {...}}`, `{"serves": {...}}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PushAnswer {
    Serves(Served),
    Check(PusherCheck),
    Delivery(Delivery),
}

/// One pusher plugin and what it serves (asked once it answers).
struct Entry {
    backend: Arc<dyn PluginBackend<Pusher>>,
    served: OnceCell<Served>,
}

/// The pusher plugins of this instance, in configuration order.
#[derive(Clone, Default)]
pub struct PusherPlugins {
    plugins: Arc<Vec<Entry>>,
}

impl std::fmt::Debug for PusherPlugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.plugins.iter().map(|p| p.backend.name())).finish()
    }
}

impl PusherPlugins {
    pub fn new(plugins: Vec<Arc<dyn PluginBackend<Pusher>>>) -> Self {
        Self { plugins: Arc::new(plugins.into_iter().map(|backend| Entry { backend, served: OnceCell::new() }).collect()) }
    }

    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// The plugin delivering for pushers of `kind` and `app_id`: the first
    /// that serves them. A plugin whose `serves` failed is skipped this time
    /// and asked again next time.
    pub async fn serving(&self, kind: &str, app_id: &str) -> Option<Arc<dyn PluginBackend<Pusher>>> {
        for entry in self.plugins.iter() {
            let served = entry
                .served
                .get_or_try_init(|| async {
                    match entry.backend.call(&PushCall::Serves).await {
                        Ok((PushAnswer::Serves(served), _)) => Ok(served),
                        _ => Err(()),
                    }
                })
                .await;
            if served.is_ok_and(|served| served.serves(kind, app_id)) {
                return Some(entry.backend.clone());
            }
        }
        None
    }

    /// `/pushers/set`: whether the plugin serving the pusher accepts it
    /// (`Invalid` with `UNSERVED_ERRCODE` when no plugin serves it).
    pub async fn check_pusher(&self, pusher: &PusherInfo) -> PusherCheck {
        let Some(plugin) = self.serving(&pusher.kind, &pusher.app_id).await else {
            return PusherCheck::Invalid(unserved(&pusher.kind, &pusher.app_id));
        };
        match plugin.answer(&PushCall::CheckPusher { pusher: Box::new(pusher.clone()) }).await {
            PushAnswer::Check(check) => check,
            _ => PusherCheck::Unavailable { reason: "the pusher plugin answered out of kind".into() },
        }
    }

    /// Sends one notification through the plugin serving its pusher (`Retry`
    /// when none does: the configuration may serve it again later).
    pub async fn notify(&self, notification: Notification) -> Delivery {
        let pusher = &notification.pusher;
        let Some(plugin) = self.serving(&pusher.kind, &pusher.app_id).await else {
            return Delivery::Retry { after_ms: None, reason: unserved(&pusher.kind, &pusher.app_id).message };
        };
        match plugin.answer(&PushCall::Notify { notification: Box::new(notification) }).await {
            PushAnswer::Delivery(delivery) => delivery,
            _ => Delivery::Retry { after_ms: None, reason: "the pusher plugin answered out of kind".into() },
        }
    }
}

fn unserved(kind: &str, app_id: &str) -> PusherError {
    PusherError { errcode: UNSERVED_ERRCODE.into(), message: format!("No pusher plugin on this server delivers pushers of kind `{kind}` for app `{app_id}`") }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn app_id_patterns_are_globs() {
        let served = Served { kinds: vec!["http".into()], app_ids: vec!["im.vector.*".into(), "exact.app".into(), "*.ios.*.prod".into()] };
        assert!(served.serves("http", "im.vector.app.android"));
        assert!(served.serves("http", "exact.app"));
        assert!(served.serves("http", "org.ios.x.prod"));
        assert!(!served.serves("http", "exact.app2"));
        assert!(!served.serves("email", "exact.app"));
        assert!(!served.serves("http", "org.ios.prod"));
        assert!(Served { kinds: vec!["http".into()], app_ids: vec!["*".into()] }.serves("http", ""));
        assert!(glob_matches("a*a", "aa") && !glob_matches("a*a", "a") && glob_matches("*b*", "abc"));
    }

    #[test]
    fn priority_is_synapses() {
        let tweaks = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(Priority::for_event("m.room.encrypted", &Map::new()), Priority::High);
        assert_eq!(Priority::for_event("m.room.message", &tweaks(json!({"highlight": true}))), Priority::High);
        assert_eq!(Priority::for_event("m.room.message", &tweaks(json!({"sound": "default"}))), Priority::High);
        assert_eq!(Priority::for_event("m.room.message", &tweaks(json!({"highlight": false, "sound": ""}))), Priority::Low);
        assert_eq!(Priority::for_event("m.room.message", &Map::new()), Priority::Low);
    }

    #[test]
    fn calls_and_answers_cross_instances_as_json() {
        let call = PushCall::Notify {
            notification: Box::new(Notification {
                pusher: PusherInfo {
                    user_id: "@a:example.org".try_into().unwrap(),
                    kind: "http".into(),
                    app_id: "app".into(),
                    pushkey: "key".into(),
                    pushkey_ts: 1_000,
                    app_display_name: "App".into(),
                    device_display_name: "Phone".into(),
                    profile_tag: None,
                    lang: "en".into(),
                    data: json!({"url": "https://gw.example/_matrix/push/v1/notify"}).as_object().unwrap().clone(),
                },
                subject: Subject::EventIdOnly { event_id: "$e".try_into().unwrap(), room_id: "!r:example.org".try_into().unwrap() },
                counts: Counts { unread: Some(2), missed_calls: None },
                tweaks: Map::new(),
                priority: Priority::Low,
            }),
        };
        let text = serde_json::to_value(&call).unwrap();
        assert_eq!(text["callback"], "notify");
        assert_eq!(text["notification"]["subject"], json!({"kind": "event-id-only", "event_id": "$e", "room_id": "!r:example.org"}));
        assert_eq!(serde_json::from_value::<PushCall>(text).unwrap(), call);
        let answer = PushAnswer::Delivery(Delivery::Rejected { pushkeys: vec!["key".into()] });
        let text = serde_json::to_value(&answer).unwrap();
        assert_eq!(text, json!({"delivery": {"outcome": "rejected", "pushkeys": ["key"]}}));
        assert_eq!(serde_json::from_value::<PushAnswer>(text).unwrap(), answer);
        assert!(call.answered_by(&answer) && !PushCall::Serves.answered_by(&answer));
        let check = PushAnswer::Check(PusherCheck::Invalid(PusherError { errcode: "M_MISSING_PARAM".into(), message: "m".into() }));
        assert_eq!(serde_json::to_value(&check).unwrap(), json!({"check": {"verdict": "invalid", "errcode": "M_MISSING_PARAM", "message": "m"}}));
    }
}
