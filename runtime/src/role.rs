//! What makes a plugin role: the one trait the rest of the runtime is
//! generic over. A role names its WIT world's generated types (the
//! pre-instantiated component and the bound exports), its calls and answers
//! (serialisable: a call crosses instances and `weft plugin test` fixtures),
//! how a call runs an export and how its raw answer is checked, and its
//! default failure policy. Engine, compile cache, pooling and warm
//! instances, limits, capabilities, egress, key-value store, health,
//! metrics, logging, remote calls and the testkit are written once, over
//! `Role`.
//!
//! Adding a role: a world in `wit/` (including `base`), a module in this
//! crate implementing `Role` (see `spam` and `pusher`), a `PluginRole`
//! variant (`config`, with its default and allowed failure policies) and its
//! arm in `load_all` (`lib.rs`) and `verify`, and a trait in the SDK. The
//! recipe is in `docs/plugins.md`.
//!
//! May call: wasmtime (the generated bindings). Must not: know any role.

use std::fmt::Debug;

use serde::{Serialize, de::DeserializeOwned};
use wasmtime::{
    Store,
    component::{Component, InstancePre, Linker},
};

use super::{bindings::types::PluginInfo, error::CallFailure, host_services::BoxFuture, limits::Limits, loaded::CallStats, state::CallState};
use crate::config::{OnError, PluginRole};

pub trait Role: Sized + Send + Sync + 'static {
    /// The `role` of the `[[plugins]]` entries this role loads.
    const ROLE: PluginRole;
    /// What a failed call answers when the plugin sets no `on_error`.
    const DEFAULT_ON_ERROR: OnError;

    /// The world's pre-instantiated component (wasmtime's `…Pre`).
    type Pre: Send + Sync + 'static;
    /// The world's exports bound to one instance (wasmtime's world type).
    type Guest: Send + Sync + 'static;
    /// One call: which export, with its arguments. Its JSON form carries the
    /// callback name (`{"callback": "user-may-invite", ...}`).
    type Call: Debug + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// A checked answer.
    type Answer: Debug + Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The answer as the guest returned it, before `check`.
    type Raw: Send + 'static;

    /// Binds the role's exports; `Err` when the component does not export its world.
    fn pre(pre: InstancePre<CallState>) -> wasmtime::Result<Self::Pre>;
    fn instantiate<'a>(pre: &'a Self::Pre, store: &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<Self::Guest>>;
    /// The `describe` export every world has (the load's smoke test).
    fn describe<'a>(guest: &'a Self::Guest, store: &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<PluginInfo>>;

    /// The WIT name of the callback (a metric label and a path segment).
    fn call_name(call: &Self::Call) -> &'static str;
    /// About the bytes handed in, for `max_input_bytes`.
    fn input_size(call: &Self::Call) -> usize;
    /// Runs the call's export. The future owns what it hands the guest.
    fn invoke<'a>(guest: &'a Self::Guest, store: &'a mut Store<CallState>, call: &Self::Call) -> BoxFuture<'a, wasmtime::Result<Self::Raw>>;
    /// Checks a raw answer under the plugin's limits; `Err` is malformed.
    fn check(call: &Self::Call, raw: Self::Raw, limits: &Limits) -> Result<Self::Answer, String>;
    /// Whether `answer` is of the kind `call` expects.
    fn answers(call: &Self::Call, answer: &Self::Answer) -> bool;
    /// What a call that failed answers under `policy`.
    fn failure_answer(call: &Self::Call, policy: OnError) -> Self::Answer;
}

/// Whether `component` exports `R`'s world with the imports `linker` offers.
pub fn fits<R: Role>(linker: &Linker<CallState>, component: &Component) -> Result<R::Pre, String> {
    linker.instantiate_pre(component).and_then(R::pre).map_err(|e| format!("{e:#}"))
}

/// One plugin of role `R` as call sites see it: loaded here, or on other
/// instances (`remote`).
pub trait PluginBackend<R: Role>: Send + Sync {
    fn name(&self) -> &str;
    fn on_error(&self) -> OnError;
    /// The plugin's answer, or why it gave none.
    fn call<'a>(&'a self, call: &'a R::Call) -> BoxFuture<'a, Result<(R::Answer, CallStats), CallFailure>>;

    /// The answer call sites act on: the plugin's when it gave one of the
    /// right kind, else the answer of its `on_error` (never a silent
    /// default). A mismatched answer is logged as malformed.
    fn answer<'a>(&'a self, call: &'a R::Call) -> BoxFuture<'a, R::Answer> {
        Box::pin(async move {
            match self.call(call).await {
                Ok((answer, _)) if R::answers(call, &answer) => answer,
                Ok((answer, _)) => {
                    let failure = CallFailure::Malformed(format!("{answer:?} does not answer {}", R::call_name(call)));
                    super::metrics::failure(self.name(), R::call_name(call), failure.reason());
                    tracing::warn!(plugin = %self.name(), role = R::ROLE.as_str(), call = R::call_name(call), reason = failure.reason(),
                        outcome = self.on_error().as_str(), "plugin call failed: {failure}");
                    R::failure_answer(call, self.on_error())
                }
                Err(_) => R::failure_answer(call, self.on_error()),
            }
        })
    }
}

/// Whether `code` looks like a Matrix errcode (`M_FORBIDDEN`,
/// `ORG.EXAMPLE_CODE`): what a role checks in a guest's refusal.
pub(crate) fn is_errcode(code: &str) -> bool {
    (3..=128).contains(&code.len())
        && code.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && code.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '_' | '.'))
        && code.contains('_')
}
