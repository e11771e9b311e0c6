//! Application services from the server's side: what it asks of them
//! through the `appservice-notifier` plugin (`Services::appservices`, run on
//! the instance that hosts it, forwarded there from the others), and what an
//! answer means, as Synapse reads it:
//!
//! - a ping is answered when the appservice's status is 2xx;
//! - a user or alias exists when the appservice answers 200 to the query
//!   (it is expected to have registered the user or created the room);
//! - a third-party lookup answers the JSON list the appservice sent, each
//!   protocol's description with its instances' `instance_id` set to
//!   `{appservice_id}|{network_id}`.
//!
//! An appservice whose `url` is null is asked nothing and sent nothing.
//! Which events go to which appservice is `interest`'s; queueing them and
//! delivering transactions `queue`'s (the queued events handed to the
//! senders in memory: `handoff`); ephemeral events `ephemeral`'s;
//! to-device messages, device lists and key counts `encryption`'s; key
//! claims and queries (MSC3983, MSC3984) `keys`'s.
//!
//! May call: the plugin runtime's `appservice` module, storage.

mod encryption;
mod ephemeral;
mod handoff;
mod interest;
pub mod keys;
pub mod queue;

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use weft_core::appservice::AppService;
use weft_plugin_runtime::appservice::{AppserviceCall, Outcome, Registration, ThirdpartyKind};

use crate::services::Services;

/// What the plugin needs of `service`; `None` when its `url` is null.
pub fn registration(service: &AppService) -> Option<Registration> {
    let url = service.url.clone()?;
    Some(Registration { id: service.id.clone(), url, hs_token: service.hs_token.clone() })
}

/// Why a ping did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingFailure {
    /// The registration's `url` is null.
    NoUrl,
    /// The appservice answered with this status and body.
    BadStatus {
        status: u16,
        body: String,
    },
    Timeout,
    /// Not sent, no answer, or the notifier failed.
    ConnectionFailed(String),
}

/// `POST /_matrix/app/v1/ping`: how long the appservice took to answer 2xx.
pub async fn ping(services: &Services, service: &AppService, txn_id: Option<String>) -> Result<Duration, PingFailure> {
    let registration = registration(service).ok_or(PingFailure::NoUrl)?;
    let started = std::time::Instant::now();
    match services.appservices.call(AppserviceCall::Ping { registration, txn_id }).await {
        Outcome::Reply { status, .. } if (200..300).contains(&status) => Ok(started.elapsed()),
        Outcome::Reply { status, body } => Err(PingFailure::BadStatus { status, body }),
        Outcome::Timeout => Err(PingFailure::Timeout),
        Outcome::Unreachable { reason } | Outcome::Failed { reason } => Err(PingFailure::ConnectionFailed(reason)),
    }
}

/// Whether an appservice claiming `user_id` (in its users namespace) knows
/// it: the first that answers 200 to the user query. Asked only for a user
/// this server does not have.
pub async fn query_user(services: &Services, user_id: &str) -> bool {
    for service in interested(services, |service| service.is_user_in_namespace(user_id)) {
        let Some(registration) = registration(&service) else { continue };
        let outcome = services.appservices.call(AppserviceCall::QueryUser { registration, user_id: user_id.to_owned() }).await;
        if matches!(outcome, Outcome::Reply { status: 200, .. }) {
            return true;
        }
        log_refusal(&service, "user query", &outcome);
    }
    false
}

/// Whether an appservice claiming `alias` made it exist: the first that
/// answers 200 to the alias query (it creates the room and the alias
/// meanwhile, through its sender).
pub async fn query_alias(services: &Services, alias: &str) -> bool {
    for service in interested(services, |service| service.is_interested_in_alias(alias)) {
        let Some(registration) = registration(&service) else { continue };
        let outcome = services.appservices.call(AppserviceCall::QueryAlias { registration, alias: alias.to_owned() }).await;
        if matches!(outcome, Outcome::Reply { status: 200, .. }) {
            return true;
        }
        log_refusal(&service, "alias query", &outcome);
    }
    false
}

fn interested(services: &Services, wanted: impl Fn(&AppService) -> bool) -> Vec<Arc<AppService>> {
    services.config.app_services.all().iter().filter(|service| wanted(service)).cloned().collect()
}

fn log_refusal(service: &AppService, what: &str, outcome: &Outcome) {
    match outcome {
        Outcome::Reply { status: 404, .. } => {}
        other => tracing::info!(appservice = %service.id, ?other, "the appservice did not answer a {what}"),
    }
}

/// `/thirdparty/protocols` (`only` one protocol, or all): each protocol of
/// the registrations, described by the first appservice that answers for
/// it, with every answering appservice's instances (`instance_id` set).
/// A protocol no appservice describes is left out, as Synapse.
pub async fn protocols(services: &Services, only: Option<&str>) -> serde_json::Map<String, Value> {
    let mut found: serde_json::Map<String, Value> = serde_json::Map::new();
    for service in services.config.app_services.all() {
        let Some(registration) = registration(service) else { continue };
        for protocol in service.protocols.iter().filter(|protocol| only.is_none_or(|only| only == protocol.as_str())) {
            let call = AppserviceCall::GetProtocol { registration: registration.clone(), protocol: protocol.clone() };
            let Outcome::Reply { status: 200, body } = services.appservices.call(call).await else { continue };
            let Ok(Value::Object(mut described)) = serde_json::from_str::<Value>(&body) else { continue };
            let mut instances = match described.remove("instances") {
                Some(Value::Array(instances)) => instances,
                _ => Vec::new(),
            };
            for instance in &mut instances {
                if let Some(instance) = instance.as_object_mut() {
                    let network = instance.get("network_id").and_then(Value::as_str).unwrap_or_default().to_owned();
                    instance.insert("instance_id".into(), Value::String(format!("{}|{network}", service.id)));
                }
            }
            match found.get_mut(protocol).and_then(Value::as_object_mut) {
                Some(existing) => {
                    if let Some(Value::Array(all)) = existing.get_mut("instances") {
                        all.extend(instances);
                    }
                }
                None => {
                    described.insert("instances".into(), Value::Array(instances));
                    found.insert(protocol.clone(), Value::Object(described));
                }
            }
        }
    }
    found
}

/// `/thirdparty/{user|location}/{protocol}` (or, with no protocol, the
/// reverse lookups by `userid` or `alias`): the answers of every appservice
/// serving the protocol (every appservice for a reverse lookup), concatenated.
pub async fn lookup(services: &Services, kind: ThirdpartyKind, protocol: Option<&str>, fields: Vec<(String, String)>) -> Vec<Value> {
    let mut results = Vec::new();
    for service in services.config.app_services.all() {
        if protocol.is_some_and(|protocol| !service.protocols.iter().any(|p| p == protocol)) {
            continue;
        }
        let Some(registration) = registration(service) else { continue };
        let call = AppserviceCall::QueryThirdparty { registration, kind, protocol: protocol.unwrap_or_default().to_owned(), fields: fields.clone() };
        if let Outcome::Reply { status: 200, body } = services.appservices.call(call).await
            && let Ok(Value::Array(found)) = serde_json::from_str::<Value>(&body)
        {
            results.extend(found.into_iter().filter(Value::is_object));
        }
    }
    results
}
