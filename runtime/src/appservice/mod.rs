//! The appservice-notifier role: the calls (one serialisable enum, one
//! variant per export of `appservice`), the answer (the appservice's status
//! and body, or why there is none), and `AppserviceNotifiers`, what the
//! server's appservice code calls (`services.appservices.push_transaction(...)`).
//!
//! The plugin only speaks HTTP to the registration's `url`; what an answer
//! means (a transaction is delivered on 2xx, a user exists on 200, ...) is
//! the server's to decide, so every export answers the same `Outcome`.
//!
//! A failed call (trap, timeout, malformed answer, no plugin configured)
//! answers `Outcome::Failed`: the server treats it as an appservice that did
//! not answer (the transaction stays queued; the user is unknown).
//! How the runtime runs the `appservice-notifier` world is in `role`.

mod role;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use self::role::AppserviceNotifier;
use super::role::PluginBackend;

/// What the plugin needs of a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub id: String,
    /// The base URL, without a trailing `/`.
    pub url: String,
    pub hs_token: String,
}

/// `users` or `locations` of the third-party lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThirdpartyKind {
    User,
    Location,
}

/// Every export of the world, with its arguments. The JSON form
/// (`{"callback": "push-transaction", ...}`) is what a call forwarded to the
/// notifier's instance carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "callback", rename_all = "kebab-case")]
pub enum AppserviceCall {
    PushTransaction {
        registration: Registration,
        txn_id: String,
        body: String,
    },
    QueryUser {
        registration: Registration,
        user_id: String,
    },
    QueryAlias {
        registration: Registration,
        alias: String,
    },
    GetProtocol {
        registration: Registration,
        protocol: String,
    },
    QueryThirdparty {
        registration: Registration,
        kind: ThirdpartyKind,
        protocol: String,
        fields: Vec<(String, String)>,
    },
    Ping {
        registration: Registration,
        txn_id: Option<String>,
    },
    /// MSC3983 (the optional `appservice-keys` export, since 0.1.4): `body`
    /// is `{user_id: {device_id: [algorithm, ...]}}`.
    ClaimKeys {
        registration: Registration,
        body: String,
    },
    /// MSC3984 (the optional `appservice-keys` export): `body` is
    /// `{user_id: [device_id, ...]}`.
    QueryKeys {
        registration: Registration,
        body: String,
    },
}

impl AppserviceCall {
    /// The WIT name of the export.
    pub fn name(&self) -> &'static str {
        match self {
            Self::PushTransaction { .. } => "push-transaction",
            Self::QueryUser { .. } => "query-user",
            Self::QueryAlias { .. } => "query-alias",
            Self::GetProtocol { .. } => "get-protocol",
            Self::QueryThirdparty { .. } => "query-thirdparty",
            Self::Ping { .. } => "ping",
            Self::ClaimKeys { .. } => "claim-keys",
            Self::QueryKeys { .. } => "query-keys",
        }
    }

    fn registration(&self) -> &Registration {
        match self {
            Self::PushTransaction { registration, .. }
            | Self::QueryUser { registration, .. }
            | Self::QueryAlias { registration, .. }
            | Self::GetProtocol { registration, .. }
            | Self::QueryThirdparty { registration, .. }
            | Self::Ping { registration, .. }
            | Self::ClaimKeys { registration, .. }
            | Self::QueryKeys { registration, .. } => registration,
        }
    }

    /// About the bytes handed to the plugin, for `max_input_bytes`.
    pub(crate) fn input_size(&self) -> usize {
        let r = self.registration();
        let base = r.id.len() + r.url.len() + r.hs_token.len();
        base + match self {
            Self::PushTransaction { txn_id, body, .. } => txn_id.len() + body.len(),
            Self::QueryUser { user_id, .. } => user_id.len(),
            Self::QueryAlias { alias, .. } => alias.len(),
            Self::GetProtocol { protocol, .. } => protocol.len(),
            Self::QueryThirdparty { protocol, fields, .. } => protocol.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
            Self::Ping { txn_id, .. } => txn_id.as_ref().map_or(0, String::len),
            Self::ClaimKeys { body, .. } | Self::QueryKeys { body, .. } => body.len(),
        }
    }
}

/// What came of a call: the appservice's reply, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    Reply {
        status: u16,
        body: String,
    },
    /// The request could not be sent, or no answer came.
    Unreachable {
        reason: String,
    },
    /// No answer within the deadline.
    Timeout,
    /// The plugin failed (or there is none): nothing is known of the appservice.
    Failed {
        reason: String,
    },
}

impl Outcome {
    /// A 2xx reply.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Reply { status, .. } if (200..300).contains(status))
    }
}

/// The checked answer (JSON: `{"outcome": "reply", "status": 200, "body": "{}"}`).
pub type AppserviceAnswer = Outcome;

/// The appservice notifier of this server: the first `appservice-notifier`
/// plugin configured (later ones are not used; `verify` warns of none).
#[derive(Clone, Default)]
pub struct AppserviceNotifiers {
    plugin: Option<Arc<dyn PluginBackend<AppserviceNotifier>>>,
}

impl std::fmt::Debug for AppserviceNotifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppserviceNotifiers").field("plugin", &self.plugin.as_ref().map(|p| p.name().to_owned())).finish()
    }
}

impl AppserviceNotifiers {
    pub fn new(plugins: Vec<Arc<dyn PluginBackend<AppserviceNotifier>>>) -> Self {
        Self { plugin: plugins.into_iter().next() }
    }

    pub fn is_empty(&self) -> bool {
        self.plugin.is_none()
    }

    /// Runs `call` through the plugin; `Failed` when there is none or it failed.
    pub async fn call(&self, call: AppserviceCall) -> Outcome {
        match &self.plugin {
            None => Outcome::Failed { reason: "no appservice-notifier plugin is configured".into() },
            Some(plugin) => plugin.answer(&call).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn calls_and_answers_cross_instances_as_json() {
        let registration = Registration { id: "irc".into(), url: "http://127.0.0.1:9000".into(), hs_token: "hs".into() };
        let call = AppserviceCall::PushTransaction { registration, txn_id: "7".into(), body: "{\"events\":[]}".into() };
        let text = serde_json::to_value(&call).unwrap();
        assert_eq!(text["callback"], "push-transaction");
        assert_eq!(text["registration"]["hs_token"], "hs");
        assert_eq!(serde_json::from_value::<AppserviceCall>(text).unwrap(), call);
        let answer = Outcome::Reply { status: 200, body: "{}".into() };
        assert_eq!(serde_json::to_value(&answer).unwrap(), json!({"outcome": "reply", "status": 200, "body": "{}"}));
        assert!(answer.is_success() && !Outcome::Timeout.is_success() && !Outcome::Reply { status: 404, body: String::new() }.is_success());
    }
}
