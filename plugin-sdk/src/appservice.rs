//! The appservice-notifier role: implement [`AppserviceNotifier`], export it
//! with [`export_appservice_notifier!`](crate::export_appservice_notifier).
//!
//! The server keeps the queue of what each application service is owed
//! (events, ephemeral events, to-device messages), numbers and batches the
//! transactions, retries them with backoff and asks the appservice about
//! users and aliases it does not know; the plugin speaks the Application
//! Service API to the registration's `url` with its `hs_token`, and answers
//! what came back: the status and body ([`Reply`]), or why nothing did
//! ([`NoReply`]). The server decides what a reply means (a transaction is
//! delivered on 2xx; a user exists on 200).
//!
//! The reference plugin `plugins/appservice-http` speaks the API as Synapse
//! does.

use crate::{PluginConfig, PluginError};

/// What the plugin needs of one registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The registration's `id`.
    pub id: String,
    /// The base URL, without a trailing `/`.
    pub url: String,
    /// Sent as `Authorization: Bearer <hs_token>`.
    pub hs_token: String,
}

/// The appservice's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Why there is no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoReply {
    /// Not sent, or no answer (refused, not resolved, the address policy, TLS).
    Unreachable(String),
    /// No answer within the call's deadline.
    Timeout,
}

/// `user` or `location` of `/thirdparty/...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThirdpartyKind {
    User,
    Location,
}

impl ThirdpartyKind {
    /// The path segment: `user` or `location`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Location => "location",
        }
    }
}

/// The answer of every export.
pub type Outcome = Result<Reply, NoReply>;

/// An appservice notifier plugin.
pub trait AppserviceNotifier: Sized + 'static {
    /// Builds the notifier from its configuration; an `Err` fails the call
    /// (a transaction is retried later).
    fn new(config: &PluginConfig) -> Result<Self, PluginError>;

    /// Checks a configuration before any call runs with it; every problem,
    /// one line each. The default answers `new`'s error.
    fn validate_config(config: &PluginConfig) -> Result<(), Vec<String>> {
        Self::new(config).map(drop).map_err(|error| vec![error.to_string()])
    }

    /// `PUT /_matrix/app/v1/transactions/{txn_id}` with `body` (JSON text).
    fn push_transaction(&self, registration: &Registration, txn_id: &str, body: &str) -> Outcome;
    /// `GET /_matrix/app/v1/users/{user_id}`.
    fn query_user(&self, registration: &Registration, user_id: &str) -> Outcome;
    /// `GET /_matrix/app/v1/rooms/{alias}`.
    fn query_alias(&self, registration: &Registration, alias: &str) -> Outcome;
    /// `GET /_matrix/app/v1/thirdparty/protocol/{protocol}`.
    fn get_protocol(&self, registration: &Registration, protocol: &str) -> Outcome;
    /// `GET /_matrix/app/v1/thirdparty/{kind}/{protocol}?{fields}` (an empty
    /// protocol: the reverse lookup, `/thirdparty/{kind}?{fields}`).
    fn query_thirdparty(&self, registration: &Registration, kind: ThirdpartyKind, protocol: &str, fields: &[(String, String)]) -> Outcome;
    /// `POST /_matrix/app/v1/ping`.
    fn ping(&self, registration: &Registration, txn_id: Option<&str>) -> Outcome;

    /// MSC3983 (since WIT 0.1.4): `POST /_matrix/app/unstable/org.matrix.msc3983/keys/claim`
    /// with `body` (`{user_id: {device_id: [algorithm, ...]}}`). The default
    /// asks nothing: the server then claims no keys from the appservice.
    fn claim_keys(&self, registration: &Registration, body: &str) -> Outcome {
        let _ = (registration, body);
        Err(NoReply::Unreachable(NOT_ASKED.into()))
    }

    /// MSC3984 (since WIT 0.1.4): `POST /_matrix/app/unstable/org.matrix.msc3984/keys/query`
    /// with `body` (`{user_id: [device_id, ...]}`). The default asks nothing.
    fn query_keys(&self, registration: &Registration, body: &str) -> Outcome {
        let _ = (registration, body);
        Err(NoReply::Unreachable(NOT_ASKED.into()))
    }
}

/// What the default `claim_keys` and `query_keys` answer.
pub const NOT_ASKED: &str = "this notifier does not ask appservices for keys";

/// The glue the export macro calls: WIT values in, trait call, WIT values out.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod glue {
    use super::*;
    use crate::bindings::appservice_notifier::exports::weft::plugin::{appservice as wit, appservice_keys as keys};

    pub fn build<T: AppserviceNotifier>() -> T {
        match T::new(&PluginConfig::from_host()) {
            Ok(notifier) => notifier,
            Err(error) => panic!("the plugin cannot start: {error}"),
        }
    }

    pub fn registration(r: wit::Registration) -> Registration {
        Registration { id: r.id, url: r.url, hs_token: r.hs_token }
    }

    pub fn kind(kind: wit::ThirdpartyKind) -> ThirdpartyKind {
        match kind {
            wit::ThirdpartyKind::User => ThirdpartyKind::User,
            wit::ThirdpartyKind::Location => ThirdpartyKind::Location,
        }
    }

    pub fn outcome(outcome: Outcome) -> Result<wit::Reply, wit::NoReply> {
        match outcome {
            Ok(reply) => Ok(wit::Reply { status: reply.status, body: reply.body }),
            Err(NoReply::Timeout) => Err(wit::NoReply::Timeout),
            Err(NoReply::Unreachable(reason)) => Err(wit::NoReply::Unreachable(reason)),
        }
    }

    pub fn key_service(r: keys::KeyService) -> Registration {
        Registration { id: r.id, url: r.url, hs_token: r.hs_token }
    }

    pub fn key_outcome(outcome: Outcome) -> Result<keys::KeyReply, keys::KeyNoReply> {
        match outcome {
            Ok(reply) => Ok(keys::KeyReply { status: reply.status, body: reply.body }),
            Err(NoReply::Timeout) => Err(keys::KeyNoReply::Timeout),
            Err(NoReply::Unreachable(reason)) => Err(keys::KeyNoReply::Unreachable(reason)),
        }
    }
}

/// Exports an [`AppserviceNotifier`] implementation as the component's
/// `appservice-notifier` world (`describe` answers the crate's name and
/// version), with the optional `configuration` export (`validate_config`)
/// and, since WIT 0.1.4, the optional `appservice-keys` export (`claim_keys`,
/// `query_keys`).
#[macro_export]
macro_rules! export_appservice_notifier {
    ($notifier:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::appservice::{AppserviceNotifier as _, glue};
            use $crate::bindings::appservice_notifier::exports::weft::plugin::{appservice, appservice_keys, configuration, plugin};
            use $crate::bindings::appservice_notifier::weft::plugin::types as wit_types;

            struct Export;

            /// The instance's notifier, built by its first call.
            fn notifier() -> &'static $notifier {
                ::std::thread_local! {
                    static NOTIFIER: ::std::cell::OnceCell<&'static $notifier> = const { ::std::cell::OnceCell::new() };
                }
                NOTIFIER.with(|cell| *cell.get_or_init(|| ::std::boxed::Box::leak(::std::boxed::Box::new(glue::build::<$notifier>()))))
            }

            impl plugin::Guest for Export {
                fn describe() -> wit_types::PluginInfo {
                    wit_types::PluginInfo { name: env!("CARGO_PKG_NAME").into(), version: env!("CARGO_PKG_VERSION").into() }
                }
            }

            impl configuration::Guest for Export {
                fn validate_config(config: String) -> Result<(), Vec<String>> {
                    $crate::__private::validate_config(&config, <$notifier as $crate::appservice::AppserviceNotifier>::validate_config)
                }
            }

            impl appservice::Guest for Export {
                fn push_transaction(r: appservice::Registration, txn_id: String, body: String) -> Result<appservice::Reply, appservice::NoReply> {
                    glue::outcome(notifier().push_transaction(&glue::registration(r), &txn_id, &body))
                }
                fn query_user(r: appservice::Registration, user_id: String) -> Result<appservice::Reply, appservice::NoReply> {
                    glue::outcome(notifier().query_user(&glue::registration(r), &user_id))
                }
                fn query_alias(r: appservice::Registration, alias: String) -> Result<appservice::Reply, appservice::NoReply> {
                    glue::outcome(notifier().query_alias(&glue::registration(r), &alias))
                }
                fn get_protocol(r: appservice::Registration, protocol: String) -> Result<appservice::Reply, appservice::NoReply> {
                    glue::outcome(notifier().get_protocol(&glue::registration(r), &protocol))
                }
                fn query_thirdparty(
                    r: appservice::Registration,
                    kind: appservice::ThirdpartyKind,
                    protocol: String,
                    fields: ::std::vec::Vec<(String, String)>,
                ) -> Result<appservice::Reply, appservice::NoReply> {
                    glue::outcome(notifier().query_thirdparty(&glue::registration(r), glue::kind(kind), &protocol, &fields))
                }
                fn ping(r: appservice::Registration, txn_id: Option<String>) -> Result<appservice::Reply, appservice::NoReply> {
                    glue::outcome(notifier().ping(&glue::registration(r), txn_id.as_deref()))
                }
            }

            impl appservice_keys::Guest for Export {
                fn claim_keys(r: appservice_keys::KeyService, body: String) -> Result<appservice_keys::KeyReply, appservice_keys::KeyNoReply> {
                    glue::key_outcome(notifier().claim_keys(&glue::key_service(r), &body))
                }
                fn query_keys(r: appservice_keys::KeyService, body: String) -> Result<appservice_keys::KeyReply, appservice_keys::KeyNoReply> {
                    glue::key_outcome(notifier().query_keys(&glue::key_service(r), &body))
                }
            }

    $crate::bindings::appservice_notifier::export_world!(Export with_types_in $crate::bindings::appservice_notifier);
        };
    };
}
