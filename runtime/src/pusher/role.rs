//! The pusher role as the runtime sees it (`Role`): the `pusher` world's
//! bindings, how each `PushCall` runs its export, and the checks on the
//! guest's answer (sizes within `max_output_bytes`, a real errcode, a
//! `retry` wait of at most an hour). Retries later by default.

use serde_json::{Map, Value};
use wasmtime::{Store, component::InstancePre};

use super::{Delivery, MAX_RETRY_AFTER_MS, Notification, PushAnswer, PushCall, PusherCheck, PusherError, PusherInfo, Served, Subject};
use crate::{
    bindings::types,
    config::{OnError, PluginRole},
    host_services::BoxFuture,
    limits::Limits,
    role::{Role, is_errcode},
    state::CallState,
};

mod bindings {
    wasmtime::component::bindgen!({
        world: "weft:plugin/pusher@0.1.4",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "weft:plugin/types": crate::bindings::types,
            "weft:plugin/host": crate::bindings::host,
            "weft:plugin/homeserver": crate::bindings::homeserver,
        },
    });
}

use bindings::{Pusher as PusherWorld, PusherPre, exports::weft::plugin::push as wit};

/// The pusher role.
pub struct Pusher;

/// The raw answer of the guest, before it is checked.
pub enum Raw {
    Served(wit::Served),
    Check(Result<(), wit::PusherError>),
    Delivery(wit::Delivery),
}

impl Role for Pusher {
    const ROLE: PluginRole = PluginRole::Pusher;
    const DEFAULT_ON_ERROR: OnError = OnError::Retry;

    type Pre = PusherPre<CallState>;
    type Guest = PusherWorld;
    type Call = PushCall;
    type Answer = PushAnswer;
    type Raw = Raw;

    fn pre(pre: InstancePre<CallState>) -> wasmtime::Result<Self::Pre> {
        PusherPre::new(pre)
    }

    fn instantiate<'a>(pre: &'a Self::Pre, store: &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<Self::Guest>> {
        Box::pin(pre.instantiate_async(store))
    }

    fn describe<'a>(guest: &'a Self::Guest, store: &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<types::PluginInfo>> {
        Box::pin(guest.weft_plugin_plugin().call_describe(store))
    }

    fn call_name(call: &PushCall) -> &'static str {
        call.name()
    }

    fn input_size(call: &PushCall) -> usize {
        call.input_size()
    }

    fn invoke<'a>(guest: &'a PusherWorld, store: &'a mut Store<CallState>, call: &PushCall) -> BoxFuture<'a, wasmtime::Result<Raw>> {
        let g = guest.weft_plugin_push();
        match call {
            PushCall::Serves => Box::pin(async move { g.call_serves(store).await.map(Raw::Served) }),
            PushCall::CheckPusher { pusher } => {
                let pusher = to_wit_pusher(pusher);
                Box::pin(async move { g.call_check_pusher(store, &pusher).await.map(Raw::Check) })
            }
            PushCall::Notify { notification } => {
                let notification = to_wit_notification(notification);
                Box::pin(async move { g.call_notify(store, &notification).await.map(Raw::Delivery) })
            }
        }
    }

    fn check(_call: &PushCall, raw: Raw, limits: &Limits) -> Result<PushAnswer, String> {
        let max = limits.max_output_bytes;
        let within = |what: &str, size: usize| {
            if size as u64 > max { Err(format!("{what} is {size} bytes, more than max_output_bytes ({max})")) } else { Ok(()) }
        };
        Ok(match raw {
            Raw::Served(served) => {
                within("the served list", served.kinds.iter().chain(&served.app_ids).map(String::len).sum())?;
                if let Some(bad) = served.kinds.iter().chain(&served.app_ids).find(|s| s.is_empty() || s.len() > 255) {
                    return Err(format!("`{}` is not a pusher kind or app id pattern (1 to 255 bytes)", bad.escape_debug()));
                }
                PushAnswer::Serves(Served { kinds: served.kinds, app_ids: served.app_ids })
            }
            Raw::Check(Ok(())) => PushAnswer::Check(PusherCheck::Valid),
            Raw::Check(Err(error)) => {
                within("the refusal", error.errcode.len() + error.message.len())?;
                if !is_errcode(&error.errcode) {
                    return Err(format!("`{}` is not an errcode (such as M_INVALID_PARAM)", error.errcode.escape_debug()));
                }
                PushAnswer::Check(PusherCheck::Invalid(PusherError { errcode: error.errcode, message: error.message }))
            }
            Raw::Delivery(wit::Delivery::Delivered) => PushAnswer::Delivery(Delivery::Delivered),
            Raw::Delivery(wit::Delivery::Rejected(pushkeys)) => {
                within("the rejected pushkeys", pushkeys.iter().map(String::len).sum())?;
                PushAnswer::Delivery(if pushkeys.is_empty() { Delivery::Delivered } else { Delivery::Rejected { pushkeys } })
            }
            Raw::Delivery(wit::Delivery::Retry(retry)) => {
                within("the retry reason", retry.reason.len())?;
                PushAnswer::Delivery(Delivery::Retry { after_ms: retry.after_ms.map(|ms| ms.min(MAX_RETRY_AFTER_MS)), reason: retry.reason })
            }
        })
    }

    fn answers(call: &PushCall, answer: &PushAnswer) -> bool {
        call.answered_by(answer)
    }

    /// Every policy retries: `verify` allows the pusher no other.
    fn failure_answer(call: &PushCall, _policy: OnError) -> PushAnswer {
        call.failure_answer()
    }
}

fn json_text(map: &Map<String, Value>) -> String {
    // A map of JSON values always serialises.
    serde_json::to_string(map).unwrap_or_else(|_| "{}".into())
}

fn to_wit_pusher(p: &PusherInfo) -> wit::Pusher {
    wit::Pusher {
        user_id: p.user_id.to_string(),
        kind: p.kind.clone(),
        app_id: p.app_id.clone(),
        pushkey: p.pushkey.clone(),
        pushkey_ts: p.pushkey_ts,
        app_display_name: p.app_display_name.clone(),
        device_display_name: p.device_display_name.clone(),
        profile_tag: p.profile_tag.clone(),
        lang: p.lang.clone(),
        data: json_text(&p.data),
    }
}

fn to_wit_notification(n: &Notification) -> wit::Notification {
    let subject = match &n.subject {
        Subject::Event(e) => wit::Subject::Event(wit::PushEvent {
            event_id: e.event_id.to_string(),
            room_id: e.room_id.to_string(),
            event_type: e.event_type.clone(),
            sender: e.sender.to_string(),
            state_key: e.state_key.clone(),
            content: e.content.as_ref().map(Value::to_string),
            membership: e.membership.clone(),
            user_is_target: e.user_is_target,
            sender_display_name: e.sender_display_name.clone(),
            room_name: e.room_name.clone(),
            room_alias: e.room_alias.as_ref().map(ToString::to_string),
        }),
        Subject::EventIdOnly { event_id, room_id } => wit::Subject::EventIdOnly(wit::EventIds { event_id: event_id.to_string(), room_id: room_id.to_string() }),
        Subject::Badge => wit::Subject::Badge,
    };
    wit::Notification {
        pusher: to_wit_pusher(&n.pusher),
        subject,
        counts: wit::Counts { unread: n.counts.unread, missed_calls: n.counts.missed_calls },
        tweaks: json_text(&n.tweaks),
        priority: match n.priority {
            super::Priority::High => wit::Priority::High,
            super::Priority::Low => wit::Priority::Low,
        },
    }
}
