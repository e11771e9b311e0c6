//! The appservice-notifier role as the runtime sees it (`Role`): the
//! `appservice-notifier` world's bindings, how each `AppserviceCall` runs its
//! export, and the check on the guest's answer (a real HTTP status, a body
//! within `max_output_bytes`). Retries later by default.
//!
//! The optional `appservice-keys` export (since 0.1.4, MSC3983/MSC3984) is
//! bound when the component's type has it; a key call to a component
//! without it (built for 0.1.3) answers `Outcome::Failed` without running
//! anything: the server then claims and queries no keys from appservices.

use wasmtime::{Store, component::InstancePre};

use super::{AppserviceCall, Outcome, Registration, ThirdpartyKind};
use crate::{
    bindings::types,
    config::{OnError, PluginRole},
    host_services::BoxFuture,
    limits::Limits,
    role::Role,
    state::CallState,
};

mod bindings {
    wasmtime::component::bindgen!({
        world: "weft:plugin/appservice-notifier@0.1.4",
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

/// The optional exports of the role (`appservice-keys`).
mod extras {
    wasmtime::component::bindgen!({
        world: "weft:plugin/appservice-notifier-extras@0.1.4",
        path: "../wit",
        exports: { default: async },
    });
}

use bindings::{AppserviceNotifier as NotifierWorld, AppserviceNotifierIndices, exports::weft::plugin::appservice as wit};
use extras::{AppserviceNotifierExtras, AppserviceNotifierExtrasIndices, exports::weft::plugin::appservice_keys as keys};

/// The optional export's name without its version.
const KEYS_EXPORT: &str = "weft:plugin/appservice-keys@";

/// What a key call answers when the component does not export `appservice-keys`.
const NO_KEYS_EXPORT: &str = "the appservice-notifier plugin does not export appservice-keys (built before weft:plugin 0.1.4)";

/// The component pre-instantiated, with the role's exports and the optional ones it has.
pub struct NotifierPre {
    pre: InstancePre<CallState>,
    world: AppserviceNotifierIndices,
    keys: Option<AppserviceNotifierExtrasIndices>,
}

/// The exports bound to one instance.
pub struct NotifierGuest {
    world: NotifierWorld,
    keys: Option<AppserviceNotifierExtras>,
}

/// A raw answer; `None`: the component lacks the optional export the call needs.
type RawReply = Option<Result<wit::Reply, wit::NoReply>>;

/// The appservice-notifier role.
pub struct AppserviceNotifier;

impl Role for AppserviceNotifier {
    const ROLE: PluginRole = PluginRole::AppserviceNotifier;
    const DEFAULT_ON_ERROR: OnError = OnError::Retry;

    type Pre = NotifierPre;
    type Guest = NotifierGuest;
    type Call = AppserviceCall;
    type Answer = Outcome;
    type Raw = RawReply;

    fn pre(pre: InstancePre<CallState>) -> wasmtime::Result<Self::Pre> {
        let world = AppserviceNotifierIndices::new(&pre)?;
        let component = pre.component();
        let has_keys = component.component_type().exports(component.engine()).any(|(name, _)| name.starts_with(KEYS_EXPORT));
        let keys = if has_keys { Some(AppserviceNotifierExtrasIndices::new(&pre)?) } else { None };
        Ok(NotifierPre { pre, world, keys })
    }

    fn instantiate<'a>(pre: &'a Self::Pre, store: &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<Self::Guest>> {
        Box::pin(async move {
            let instance = pre.pre.instantiate_async(&mut *store).await?;
            let world = pre.world.load(&mut *store, &instance)?;
            let keys = match &pre.keys {
                Some(keys) => Some(keys.load(&mut *store, &instance)?),
                None => None,
            };
            Ok(NotifierGuest { world, keys })
        })
    }

    fn describe<'a>(guest: &'a Self::Guest, store: &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<types::PluginInfo>> {
        Box::pin(guest.world.weft_plugin_plugin().call_describe(store))
    }

    fn call_name(call: &AppserviceCall) -> &'static str {
        call.name()
    }

    fn input_size(call: &AppserviceCall) -> usize {
        call.input_size()
    }

    fn invoke<'a>(guest: &'a NotifierGuest, store: &'a mut Store<CallState>, call: &AppserviceCall) -> BoxFuture<'a, wasmtime::Result<Self::Raw>> {
        let g = guest.world.weft_plugin_appservice();
        let call = call.clone();
        Box::pin(async move {
            let raw = match call {
                AppserviceCall::PushTransaction { registration, txn_id, body } => g.call_push_transaction(store, &to_wit(&registration), &txn_id, &body).await,
                AppserviceCall::QueryUser { registration, user_id } => g.call_query_user(store, &to_wit(&registration), &user_id).await,
                AppserviceCall::QueryAlias { registration, alias } => g.call_query_alias(store, &to_wit(&registration), &alias).await,
                AppserviceCall::GetProtocol { registration, protocol } => g.call_get_protocol(store, &to_wit(&registration), &protocol).await,
                AppserviceCall::QueryThirdparty { registration, kind, protocol, fields } => {
                    let kind = match kind {
                        ThirdpartyKind::User => wit::ThirdpartyKind::User,
                        ThirdpartyKind::Location => wit::ThirdpartyKind::Location,
                    };
                    g.call_query_thirdparty(store, &to_wit(&registration), kind, &protocol, &fields).await
                }
                AppserviceCall::Ping { registration, txn_id } => g.call_ping(store, &to_wit(&registration), txn_id.as_deref()).await,
                AppserviceCall::ClaimKeys { registration, body } => {
                    let Some(extras) = &guest.keys else { return Ok(None) };
                    let reply = extras.weft_plugin_appservice_keys().call_claim_keys(store, &to_keys(&registration), &body).await?;
                    Ok(from_keys(reply))
                }
                AppserviceCall::QueryKeys { registration, body } => {
                    let Some(extras) = &guest.keys else { return Ok(None) };
                    let reply = extras.weft_plugin_appservice_keys().call_query_keys(store, &to_keys(&registration), &body).await?;
                    Ok(from_keys(reply))
                }
            };
            raw.map(Some)
        })
    }

    fn check(_call: &AppserviceCall, raw: Self::Raw, limits: &Limits) -> Result<Outcome, String> {
        let max = limits.max_output_bytes;
        let Some(raw) = raw else { return Ok(Outcome::Failed { reason: NO_KEYS_EXPORT.into() }) };
        Ok(match raw {
            Ok(reply) => {
                if !(100..=599).contains(&reply.status) {
                    return Err(format!("{} is not an HTTP status", reply.status));
                }
                if reply.body.len() as u64 > max {
                    return Err(format!("the reply's body is {} bytes, more than max_output_bytes ({max})", reply.body.len()));
                }
                Outcome::Reply { status: reply.status, body: reply.body }
            }
            Err(wit::NoReply::Timeout) => Outcome::Timeout,
            Err(wit::NoReply::Unreachable(reason)) => {
                let mut cut = (max.min(4096) as usize).min(reason.len());
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                Outcome::Unreachable { reason: reason[..cut].to_owned() }
            }
        })
    }

    fn answers(_call: &AppserviceCall, _answer: &Outcome) -> bool {
        true
    }

    /// Every policy retries: `verify` allows the role no other.
    fn failure_answer(_call: &AppserviceCall, _policy: OnError) -> Outcome {
        Outcome::Failed { reason: "the appservice-notifier plugin failed or could not be reached".into() }
    }
}

fn to_wit(registration: &Registration) -> wit::Registration {
    wit::Registration { id: registration.id.clone(), url: registration.url.clone(), hs_token: registration.hs_token.clone() }
}

fn to_keys(registration: &Registration) -> keys::KeyService {
    keys::KeyService { id: registration.id.clone(), url: registration.url.clone(), hs_token: registration.hs_token.clone() }
}

fn from_keys(reply: Result<keys::KeyReply, keys::KeyNoReply>) -> Result<wit::Reply, wit::NoReply> {
    match reply {
        Ok(reply) => Ok(wit::Reply { status: reply.status, body: reply.body }),
        Err(keys::KeyNoReply::Timeout) => Err(wit::NoReply::Timeout),
        Err(keys::KeyNoReply::Unreachable(reason)) => Err(wit::NoReply::Unreachable(reason)),
    }
}
