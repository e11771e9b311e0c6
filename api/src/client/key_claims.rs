//! One-time key claims: `/keys/claim`, one key of one algorithm a device,
//! and Synapse's `/_matrix/client/unstable/org.matrix.msc3983/keys/claim`
//! (served when `experimental_features.msc3983_appservice_otk_claims` is
//! on), a list of algorithms a device, one key for each entry (at most 5
//! of an algorithm), with the device's fallback key always included.
//! `claim_local` also answers the federation's `user/keys/claim` (and its
//! unstable twin); remote users are asked through `federated`.
//!
//! As Synapse's `claim_local_one_time_keys`: a device's one-time keys
//! first; for an appservice's exclusive user (MSC3983 on), what is still
//! wanted is asked of the appservice; then the fallback key, for the
//! claims left unfilled, or, when it is always included, for every claim
//! the appservice gave no fallback key for, marked used only when no
//! one-time key was found.

use std::collections::BTreeMap;

use ruma::{
    DeviceId, OneTimeKeyAlgorithm, OwnedDeviceId, OwnedOneTimeKeyId, OwnedUserId, UserId,
    api::client::keys::claim_keys::{v3, v4},
    serde::Raw,
};
use serde_json::Value;

use weft_core::json::raw;
use weft_services::appservices::keys::{self as appservice_keys, Claim};
use weft_services::services::{AppState, Services};
use weft_storage::{KeyClaim, KeySources};

use super::keys::MAX_CLAIM_DEVICES;
use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

/// Claimed one-time keys by user, device and key id.
pub(crate) type ClaimedKeys = BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, BTreeMap<OwnedOneTimeKeyId, Raw<ruma::encryption::OneTimeKey>>>>;

/// Keys wanted of each device: how many of each algorithm.
pub(crate) type Wanted = BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, BTreeMap<String, usize>>>;

/// The most keys of one algorithm one claim takes from a device (Synapse's cap).
const MAX_KEYS_PER_ALGORITHM: usize = 5;

/// One key of one algorithm a device (`/keys/claim`, `user/keys/claim`).
pub(crate) fn one_each(wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>>) -> Wanted {
    wanted
        .iter()
        .map(|(user_id, devices)| {
            let devices = devices.iter().map(|(device_id, algorithm)| (device_id.clone(), BTreeMap::from([(algorithm.to_string(), 1)]))).collect();
            (user_id.clone(), devices)
        })
        .collect()
}

/// One key for each entry of a device's list (the unstable endpoints).
pub(crate) fn counted(wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Vec<OneTimeKeyAlgorithm>>>) -> Wanted {
    wanted
        .iter()
        .map(|(user_id, devices)| {
            let devices = devices
                .iter()
                .map(|(device_id, algorithms)| {
                    let mut counts = BTreeMap::new();
                    for algorithm in algorithms {
                        *counts.entry(algorithm.to_string()).or_insert(0) += 1;
                    }
                    (device_id.clone(), counts)
                })
                .collect();
            (user_id.clone(), devices)
        })
        .collect()
}

/// The devices a claim names, refused past `MAX_CLAIM_DEVICES`.
pub(crate) fn check_size<V>(wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, V>>) -> ApiResult<()> {
    if wanted.values().map(BTreeMap::len).sum::<usize>() > MAX_CLAIM_DEVICES {
        return Err(ApiError::invalid_param(format!("one_time_keys names more than {MAX_CLAIM_DEVICES} devices")));
    }
    Ok(())
}

/// One claim of `count` keys.
type Counted<'a> = (&'a UserId, &'a DeviceId, &'a str, usize);

/// Each claim repeated once for each key it wants.
fn expand<'a>(claims: &[Counted<'a>]) -> Vec<KeyClaim<'a>> {
    claims.iter().flat_map(|&(user_id, device_id, algorithm, count)| std::iter::repeat_n((user_id, device_id, algorithm), count)).collect()
}

/// Keys of this server's devices (the local users of `wanted`).
pub(crate) async fn claim_local(state: &Services, wanted: &Wanted, always_include_fallback: bool) -> ApiResult<ClaimedKeys> {
    let mut claims: Vec<Counted<'_>> = Vec::new();
    for (user_id, devices) in wanted.iter().filter(|(user_id, _)| user_id.server_name() == state.server_name) {
        for (device_id, algorithms) in devices {
            for (algorithm, &count) in algorithms {
                claims.push((user_id, device_id, algorithm, count.min(MAX_KEYS_PER_ALGORITHM)));
            }
        }
    }
    let appservices_on = appservice_keys::claims_enabled(state);
    let through_appservice = |user_id: &UserId| appservices_on && appservice_keys::is_proxied_user(state, user_id.as_str());
    let mut claimed = ClaimedKeys::new();

    // The common case, in one transaction: a one-time key, else the fallback key.
    let (staged, simple): (Vec<Counted<'_>>, Vec<Counted<'_>>) = claims.into_iter().partition(|claim| always_include_fallback || through_appservice(claim.0));
    if !simple.is_empty() {
        let expanded = expand(&simple);
        for (&(user_id, device_id, _), key) in expanded.iter().zip(state.storage.claim_keys(&expanded).await?) {
            if let Some((key_id, key)) = key {
                insert_claimed(&mut claimed, user_id.as_str(), device_id.as_str(), &key_id, &key);
            }
        }
    }
    if staged.is_empty() {
        return Ok(claimed);
    }

    let expanded = expand(&staged);
    let mut found: BTreeMap<KeyClaim<'_>, usize> = BTreeMap::new();
    for (&claim, key) in expanded.iter().zip(state.storage.claim_keys_from(&expanded, KeySources::OneTimeOnly).await?) {
        if let Some((key_id, key)) = key {
            insert_claimed(&mut claimed, claim.0.as_str(), claim.1.as_str(), &key_id, &key);
            *found.entry(claim).or_insert(0) += 1;
        }
    }
    let found_of = |(user_id, device_id, algorithm, _): &Counted<'_>| found.get(&(*user_id, *device_id, *algorithm)).copied().unwrap_or(0);
    let unfilled: Vec<Claim> = staged
        .iter()
        .filter(|claim| found_of(claim) < claim.3)
        .map(|claim| (claim.0.to_string(), claim.1.to_string(), claim.2.to_owned(), claim.3 - found_of(claim)))
        .collect();
    let (asked, mut missing): (Vec<Claim>, Vec<Claim>) =
        unfilled.into_iter().partition(|(user_id, _, _, _)| UserId::parse(user_id.as_str()).is_ok_and(|user_id| through_appservice(&user_id)));
    let given = if asked.is_empty() {
        appservice_keys::ClaimedKeys::new()
    } else {
        let (given, still) = appservice_keys::claim(state, asked).await;
        missing.extend(still);
        given
    };
    for (user_id, devices) in &given {
        for (device_id, keys) in devices {
            for (key_id, key) in keys {
                insert_claimed(&mut claimed, user_id, device_id, key_id, key);
            }
        }
    }

    // The fallback keys: used up when nothing else was found, else only shown.
    let (mut used, mut shown): (Vec<KeyClaim<'_>>, Vec<KeyClaim<'_>>) = (Vec::new(), Vec::new());
    if always_include_fallback {
        for claim in &staged {
            let prefix = format!("{}:", claim.2);
            let from_appservice: Vec<&Value> = given
                .get(claim.0.as_str())
                .and_then(|devices| devices.get(claim.1.as_str()))
                .into_iter()
                .flatten()
                .filter(|(key_id, _)| key_id.starts_with(&prefix))
                .map(|(_, key)| key)
                .collect();
            if from_appservice.iter().any(|key| key.get("fallback").and_then(Value::as_bool) == Some(true)) {
                continue;
            }
            let target = if from_appservice.is_empty() && found_of(claim) == 0 { &mut used } else { &mut shown };
            target.push((claim.0, claim.1, claim.2));
        }
    } else {
        used = staged
            .iter()
            .filter(|claim| missing.iter().any(|m| m.0 == claim.0.as_str() && m.1 == claim.1.as_str() && m.2 == claim.2))
            .map(|claim| (claim.0, claim.1, claim.2))
            .collect();
    }
    for (claims, sources) in [(used, KeySources::FallbackOnly), (shown, KeySources::FallbackKept)] {
        if claims.is_empty() {
            continue;
        }
        for ((user_id, device_id, _), key) in claims.iter().zip(state.storage.claim_keys_from(&claims, sources).await?) {
            if let Some((key_id, key)) = key {
                insert_claimed(&mut claimed, user_id.as_str(), device_id.as_str(), &key_id, &key);
            }
        }
    }
    Ok(claimed)
}

fn insert_claimed(claimed: &mut ClaimedKeys, user_id: &str, device_id: &str, key_id: &str, key: &Value) {
    let (Ok(user_id), Ok(key_id)) = (OwnedUserId::try_from(user_id), OwnedOneTimeKeyId::try_from(key_id)) else { return };
    claimed.entry(user_id).or_default().entry(OwnedDeviceId::from(device_id)).or_default().insert(key_id, raw(key));
}

/// Remote answers into the response: keys, or the server's failure.
fn with_remote(mut keys: ClaimedKeys, failures: &mut BTreeMap<String, Value>, remote: Vec<(String, Result<ClaimedKeys, Value>)>) -> ClaimedKeys {
    for (server, answer) in remote {
        match answer {
            Ok(claimed) => keys.extend(claimed),
            Err(failure) => {
                failures.insert(server, failure);
            }
        }
    }
    keys
}

pub async fn claim(state: AppState, request: Ruma<v3::Request>) -> ApiResult<v3::Response> {
    request.sender()?;
    let wanted = &request.body.one_time_keys;
    check_size(wanted)?;
    let (remote, local) = futures_util::future::join(super::federated::claim_keys(&state, wanted), claim_local(&state, &one_each(wanted), false)).await;
    let mut failures = BTreeMap::new();
    let keys = with_remote(local?, &mut failures, remote);
    let mut response = v3::Response::new(keys);
    response.failures = failures;
    Ok(response)
}

/// `POST /_matrix/client/unstable/org.matrix.msc3983/keys/claim`.
pub async fn claim_unstable(state: AppState, request: Ruma<v4::Request>) -> ApiResult<v4::Response> {
    if !state.config.experimental_features.msc3983_appservice_otk_claims {
        return Err(ApiError::unrecognized(http::StatusCode::NOT_FOUND));
    }
    request.sender()?;
    let wanted = &request.body.one_time_keys;
    check_size(wanted)?;
    let counted = counted(wanted);
    let (remote, local) = futures_util::future::join(super::federated::claim_keys_counted(&state, wanted), claim_local(&state, &counted, true)).await;
    let mut failures = BTreeMap::new();
    let mut response = v4::Response::new(with_remote(local?, &mut failures, remote));
    response.failures = failures;
    Ok(response)
}
