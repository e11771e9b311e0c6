//! MSC3983 and MSC3984, as Synapse 1.163: end-to-end keys of the users of
//! appservices' exclusive namespaces, asked of the appservice when the
//! server switches it on (`experimental_features.msc3983_appservice_otk_claims`,
//! `msc3984_appservice_key_query`).
//!
//! - A one-time key claim the server cannot fill from its own one-time keys
//!   is asked of every appservice with a `url` whose exclusive namespace
//!   holds the user (`POST /_matrix/app/unstable/org.matrix.msc3983/keys/claim`,
//!   `{user: {device: [algorithm]}}`); what the appservice did not give is
//!   then taken from the device's fallback key.
//! - A device key query for such users is asked too
//!   (`POST /_matrix/app/unstable/org.matrix.msc3984/keys/query`,
//!   `{user: [device]}`, an empty list for every device); the devices in
//!   its `device_keys` answer replace or join the server's.
//!
//! Appservices are asked at once, each for its own users; an answer that is
//! not 200 with a JSON object, or keys for users or devices it was not asked
//! about, counts for nothing (Synapse keeps those; Weft keeps only what was
//! asked of that appservice).
//!
//! May call: the appservice-notifier plugin (`super`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use weft_core::appservice::AppService;
use weft_plugin_runtime::appservice::{AppserviceCall, Outcome};

use crate::services::Services;

/// Wanted one-time keys: user, device, algorithm, how many.
pub type Claim = (String, String, String, usize);

/// Users with the devices asked about (empty: every device).
pub type WantedDevices = BTreeMap<String, Vec<String>>;

/// Keys by user, device and key id (`algorithm:key_id`).
pub type ClaimedKeys = BTreeMap<String, BTreeMap<String, Map<String, Value>>>;

/// Whether key claims go to appservices.
pub fn claims_enabled(services: &Services) -> bool {
    services.config.experimental_features.msc3983_appservice_otk_claims && !services.config.app_services.is_empty()
}

/// Whether key queries go to appservices.
pub fn queries_enabled(services: &Services) -> bool {
    services.config.experimental_features.msc3984_appservice_key_query && !services.config.app_services.is_empty()
}

/// Whether `user_id` is in an exclusive namespace of an appservice with a `url`.
pub fn is_proxied_user(services: &Services, user_id: &str) -> bool {
    services.config.app_services.all().iter().any(|service| service.url.is_some() && service.is_exclusive_user(user_id))
}

fn owners(services: &Services, user_id: &str) -> Vec<std::sync::Arc<AppService>> {
    services.config.app_services.all().iter().filter(|service| service.url.is_some() && service.is_exclusive_user(user_id)).cloned().collect()
}

/// MSC3983: asks the appservices for `claims`; the keys they gave, and the
/// claims they did not fill, with the count still wanted.
pub async fn claim(services: &Services, claims: Vec<Claim>) -> (ClaimedKeys, Vec<Claim>) {
    let mut by_service: BTreeMap<String, (std::sync::Arc<AppService>, Vec<&Claim>)> = BTreeMap::new();
    for claim in &claims {
        for owner in owners(services, &claim.0) {
            by_service.entry(owner.id.clone()).or_insert_with(|| (owner.clone(), Vec::new())).1.push(claim);
        }
    }
    let asks = by_service.into_values().map(|(service, claims)| async move {
        // As Synapse: the algorithm once for each key wanted.
        let mut body: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
        for (user, device, algorithm, count) in &claims {
            body.entry(user.as_str()).or_default().entry(device.as_str()).or_default().extend(std::iter::repeat_n(algorithm.as_str(), *count));
        }
        let answer = ask(services, &service, "claim", json!(body).to_string(), |registration, body| AppserviceCall::ClaimKeys { registration, body }).await;
        (claims, answer)
    });
    let mut claimed = ClaimedKeys::new();
    for (asked, answer) in futures_util::future::join_all(asks).await {
        let answer = answer.unwrap_or_default();
        for (user, device, algorithm, _) in asked {
            let given = answer.get(user).and_then(|devices| devices.get(device)).and_then(Value::as_object);
            let prefix = format!("{algorithm}:");
            let keys = given.into_iter().flatten().filter(|(key_id, _)| key_id.starts_with(&prefix));
            let into = claimed.entry(user.clone()).or_default().entry(device.clone()).or_default();
            into.extend(keys.map(|(id, key)| (id.clone(), key.clone())));
        }
    }
    claimed.retain(|_, devices| {
        devices.retain(|_, keys| !keys.is_empty());
        !devices.is_empty()
    });
    // A claim that more than one appservice was asked about counts what all of them gave.
    let mut missing: Vec<Claim> = claims
        .into_iter()
        .filter_map(|(user, device, algorithm, count)| {
            let prefix = format!("{algorithm}:");
            let given = claimed.get(&user).and_then(|devices| devices.get(&device)).map_or(0, |keys| keys.keys().filter(|id| id.starts_with(&prefix)).count());
            (given < count).then(|| (user, device, algorithm, count - given))
        })
        .collect();
    missing.sort();
    missing.dedup();
    (claimed, missing)
}

/// MSC3984: asks the appservices for the device keys of `wanted` (users with
/// the devices asked, empty for all); the devices they answered, by user.
pub async fn query(services: &Services, wanted: &WantedDevices) -> BTreeMap<String, Map<String, Value>> {
    let mut by_service: BTreeMap<String, (std::sync::Arc<AppService>, WantedDevices)> = BTreeMap::new();
    for (user, devices) in wanted {
        for owner in owners(services, user) {
            by_service.entry(owner.id.clone()).or_insert_with(|| (owner.clone(), BTreeMap::new())).1.insert(user.clone(), devices.clone());
        }
    }
    let asks = by_service.into_values().map(|(service, asked)| async move {
        let answer = ask(services, &service, "query", json!(asked).to_string(), |registration, body| AppserviceCall::QueryKeys { registration, body }).await;
        (asked, answer)
    });
    let mut found: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (asked, answer) in futures_util::future::join_all(asks).await {
        let Some(Value::Object(mut answer)) = answer.and_then(|mut answer| answer.remove("device_keys")) else { continue };
        for (user, devices) in asked {
            let Some(Value::Object(given)) = answer.remove(&user) else { continue };
            let into = found.entry(user).or_default();
            for (device, keys) in given {
                if keys.is_object() && (devices.is_empty() || devices.contains(&device)) {
                    into.insert(device, keys);
                }
            }
        }
    }
    found
}

/// One call; the JSON object the appservice answered with 200, else `None`.
async fn ask(
    services: &Services,
    service: &AppService,
    what: &str,
    body: String,
    call: impl FnOnce(weft_plugin_runtime::appservice::Registration, String) -> AppserviceCall,
) -> Option<Map<String, Value>> {
    let registration = super::registration(service)?;
    match services.appservices.call(call(registration, body)).await {
        Outcome::Reply { status: 200, body } => match serde_json::from_str(&body) {
            Ok(Value::Object(answer)) => Some(answer),
            _ => {
                tracing::info!(appservice = %service.id, "the appservice answered a key {what} with something other than a JSON object");
                None
            }
        },
        // An appservice that does not know the endpoint holds no keys (Synapse's `is_unknown_endpoint`).
        Outcome::Reply { status: 404 | 405, .. } => None,
        other => {
            tracing::info!(appservice = %service.id, outcome = ?other, "the appservice did not answer a key {what}");
            None
        }
    }
}
