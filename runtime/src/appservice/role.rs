//! The appservice-notifier role as the runtime sees it (`Role`): the
//! `appservice-notifier` world's bindings, how each `AppserviceCall` runs its
//! export, and the check on the guest's answer (a real HTTP status, a body
//! within `max_output_bytes`). Retries later by default.

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
        world: "weft:plugin/appservice-notifier@0.1.3",
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

use bindings::{AppserviceNotifier as NotifierWorld, AppserviceNotifierPre, exports::weft::plugin::appservice as wit};

/// The appservice-notifier role.
pub struct AppserviceNotifier;

impl Role for AppserviceNotifier {
    const ROLE: PluginRole = PluginRole::AppserviceNotifier;
    const DEFAULT_ON_ERROR: OnError = OnError::Retry;

    type Pre = AppserviceNotifierPre<CallState>;
    type Guest = NotifierWorld;
    type Call = AppserviceCall;
    type Answer = Outcome;
    type Raw = Result<wit::Reply, wit::NoReply>;

    fn pre(pre: InstancePre<CallState>) -> wasmtime::Result<Self::Pre> {
        AppserviceNotifierPre::new(pre)
    }

    fn instantiate<'a>(pre: &'a Self::Pre, store: &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<Self::Guest>> {
        Box::pin(pre.instantiate_async(store))
    }

    fn describe<'a>(guest: &'a Self::Guest, store: &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<types::PluginInfo>> {
        Box::pin(guest.weft_plugin_plugin().call_describe(store))
    }

    fn call_name(call: &AppserviceCall) -> &'static str {
        call.name()
    }

    fn input_size(call: &AppserviceCall) -> usize {
        call.input_size()
    }

    fn invoke<'a>(guest: &'a NotifierWorld, store: &'a mut Store<CallState>, call: &AppserviceCall) -> BoxFuture<'a, wasmtime::Result<Self::Raw>> {
        let g = guest.weft_plugin_appservice();
        let call = call.clone();
        Box::pin(async move {
            match call {
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
            }
        })
    }

    fn check(_call: &AppserviceCall, raw: Self::Raw, limits: &Limits) -> Result<Outcome, String> {
        let max = limits.max_output_bytes;
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
