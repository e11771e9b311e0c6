//! The plugin layer's errors: loading a plugin (`LoadError`) and one call
//! failing (`CallFailure`). A failing call is an expected condition with a
//! configured outcome, not a server error; the server's API layer never sees these.
//! A `CallFailure` crosses instances as JSON (`{"reason": .., "detail": ..}`)
//! when a call was forwarded to the instance hosting the plugin.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// Why a plugin could not be loaded; reported by `check-config` and at start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a WebAssembly component: {reason}")]
    NotAComponent { path: PathBuf, reason: String },
    #[error("{path} does not fit the `{role}` world of weft:plugin@{}: {reason}", super::version::WIT_VERSION)]
    WrongWorld { path: PathBuf, role: &'static str, reason: String },
    #[error("the plugin engine cannot start with these limits: {0}")]
    Engine(String),
    #[error("the plugin's smoke test (`describe`) failed: {0}")]
    SmokeTest(CallFailure),
}

/// Why one call did not produce a usable answer. Each variant is a metric
/// label (`reason`) and ends with the plugin's `on_error` outcome.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
pub enum CallFailure {
    #[error("trap: {0}")]
    Trap(String),
    #[error("timeout: no answer within {0:?}")]
    Timeout(Duration),
    #[error("over limit: {0}")]
    OverLimit(String),
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error("input too large: {size} bytes, the limit is {limit}")]
    InputTooLarge { size: usize, limit: u64 },
    #[error("switched off after repeated failures; retried in {0:?}")]
    Disabled(Duration),
    /// No instance hosting the plugin answered in time (it runs elsewhere).
    #[error("unreachable: {0}")]
    Unreachable(String),
}

impl CallFailure {
    /// The `reason` label of `weft_plugin_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Trap(_) => "trap",
            Self::Timeout(_) => "timeout",
            Self::OverLimit(_) => "over_limit",
            Self::Malformed(_) => "malformed",
            Self::InputTooLarge { .. } => "input_too_large",
            Self::Disabled(_) => "disabled",
            Self::Unreachable(_) => "unreachable",
        }
    }

    /// Whether the failure is the plugin's fault and counts towards switching
    /// it off (an oversized input or a switched-off plugin does not).
    pub fn counts_against_plugin(&self) -> bool {
        !matches!(self, Self::InputTooLarge { .. } | Self::Disabled(_))
    }
}
