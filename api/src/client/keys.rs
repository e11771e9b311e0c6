//! Device keys: `/keys/upload` (device, one-time and fallback keys),
//! `/keys/query` and `/keys/changes` (`/keys/claim`: `key_claims`). Uploaded keys must be
//! the sender's own and carry a valid self-signature; signed one-time keys
//! must be signed by the device. Local users only until federation. With
//! MSC3984 switched on, appservices' exclusive users' devices are also
//! asked of the appservice (`weft_services::appservices::keys`).

use std::collections::BTreeMap;

use ruma::{
    OneTimeKeyAlgorithm, OwnedDeviceId, OwnedOneTimeKeyId, OwnedUserId, UInt,
    api::client::keys::{get_key_changes, get_keys, upload_keys},
    serde::Raw,
};
use serde_json::{Value, json};

use weft_core::crypto::key_signatures;
use weft_core::json::raw;
use weft_services::appservices::keys as appservice_keys;
use weft_services::services::{AppState, Services};
use weft_services::sync::{StreamToken, device_lists};
use weft_storage::{NewKey, StorageError, Stream};

use crate::{
    auth::Sender,
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

fn json_of<T>(raw: &Raw<T>) -> ApiResult<Value> {
    weft_core::json::value_of(raw).ok_or_else(|| ApiError::bad_json("Keys must be JSON"))
}

/// The device's own ed25519 key from its device keys.
fn ed25519_of(device_keys: &Value, device_id: &str) -> Option<String> {
    device_keys.get("keys")?.get(format!("ed25519:{device_id}"))?.as_str().map(str::to_owned)
}

fn check_device_keys(sender: &Sender, keys: &Value) -> ApiResult<()> {
    if keys.get("user_id").and_then(Value::as_str) != Some(sender.user_id.as_str())
        || keys.get("device_id").and_then(Value::as_str) != Some(sender.device_id.as_str())
    {
        return Err(ApiError::invalid_param("device_keys must be for the requesting user and device"));
    }
    if !keys.get("algorithms").is_some_and(Value::is_array) || !keys.get("keys").is_some_and(Value::is_object) {
        return Err(ApiError::bad_json("device_keys needs algorithms and keys"));
    }
    let key_id = format!("ed25519:{}", sender.device_id);
    let public = ed25519_of(keys, sender.device_id.as_str()).ok_or_else(|| ApiError::invalid_param("device_keys lacks the device's ed25519 key"))?;
    if !key_signatures::verify(keys, sender.user_id.as_str(), &key_id, &public) {
        return Err(ApiError::invalid_param("device_keys has no valid signature by the device"));
    }
    Ok(())
}

/// Splits `algorithm:key_id` and checks a signed key's signature by the device.
fn checked_key(sender: &Sender, id: &OwnedOneTimeKeyId, key: &Value, ed25519: Option<&str>) -> ApiResult<NewKey> {
    let algorithm = id.algorithm().to_string();
    let key_id = id.key_name().to_string();
    match key {
        Value::String(_) => {}
        Value::Object(object) => {
            if !object.get("key").is_some_and(Value::is_string) {
                return Err(ApiError::bad_json(format!("Key {id} has no key")));
            }
            if object.contains_key("signatures") {
                let Some(public) = ed25519 else {
                    return Err(ApiError::invalid_param("Upload device keys before signed one-time keys"));
                };
                let signer_key = format!("ed25519:{}", sender.device_id);
                if !key_signatures::verify(key, sender.user_id.as_str(), &signer_key, public) {
                    return Err(ApiError::invalid_param(format!("Key {id} has no valid signature by the device")));
                }
            }
        }
        _ => return Err(ApiError::bad_json(format!("Key {id} must be a string or an object"))),
    }
    Ok((algorithm, key_id, key.clone()))
}

pub async fn upload(state: AppState, request: Ruma<upload_keys::v3::Request>) -> ApiResult<upload_keys::v3::Response> {
    let sender = request.sender()?;
    if !sender.has_device {
        return Err(ApiError::unknown(http::StatusCode::BAD_REQUEST, "To upload keys, you must pass device_id when authenticating"));
    }
    let body = &request.body;
    let storage = &state.storage;
    let device_keys = body.device_keys.as_ref().map(json_of).transpose()?;
    if let Some(keys) = &device_keys {
        check_device_keys(sender, keys)?;
    }
    // Signed keys are checked against the device's ed25519 key: uploaded now, or before.
    let ed25519 = match &device_keys {
        Some(keys) => ed25519_of(keys, sender.device_id.as_str()),
        None => stored_ed25519(&state, sender).await?,
    };
    let one_time =
        body.one_time_keys.iter().map(|(id, key)| checked_key(sender, id, &json_of(key)?, ed25519.as_deref())).collect::<ApiResult<Vec<NewKey>>>()?;
    let fallback =
        body.fallback_keys.iter().map(|(id, key)| checked_key(sender, id, &json_of(key)?, ed25519.as_deref())).collect::<ApiResult<Vec<NewKey>>>()?;

    if let Some(keys) = &device_keys
        && storage.set_device_keys(&sender.user_id, &sender.device_id, keys).await?
    {
        state.stream_advanced(Stream::DeviceLists);
    }
    match storage.add_one_time_keys(&sender.user_id, &sender.device_id, &one_time).await {
        Err(StorageError::Conflict) => return Err(ApiError::invalid_param("A one-time key with this id was already uploaded with other content")),
        other => other?,
    }
    for key in &fallback {
        storage.set_fallback_key(&sender.user_id, &sender.device_id, key).await?;
    }
    Ok(upload_keys::v3::Response::new(counts(&state, sender).await?))
}

async fn stored_ed25519(state: &Services, sender: &Sender) -> ApiResult<Option<String>> {
    let devices = state.storage.device_keys_of(&sender.user_id).await?;
    Ok(devices.iter().find(|(device_id, _, _)| device_id == sender.device_id.as_str()).and_then(|(_, keys, _)| ed25519_of(keys, sender.device_id.as_str())))
}

async fn counts(state: &Services, sender: &Sender) -> ApiResult<BTreeMap<OneTimeKeyAlgorithm, UInt>> {
    let (counts, _) = state.storage.key_counts(&sender.user_id, &sender.device_id).await?;
    Ok(counts.into_iter().map(|(algorithm, count)| (algorithm.as_str().into(), UInt::try_from(count.max(0)).unwrap_or_default())).collect())
}

/// Adds stored signatures by others (or by the user's cross-signing keys) to a key object.
fn with_signatures(mut key: Value, target_key_id: &str, signatures: &[weft_storage::KeySignature]) -> Value {
    for signature in signatures.iter().filter(|signature| signature.target_key_id == target_key_id) {
        let map = key.as_object_mut().and_then(|object| object.entry("signatures").or_insert_with(|| json!({})).as_object_mut());
        if let Some(map) = map {
            let signer = map.entry(signature.signer_user_id.clone()).or_insert_with(|| json!({}));
            if let Some(signer) = signer.as_object_mut() {
                signer.insert(signature.signer_key_id.clone(), Value::String(signature.signature.clone()));
            }
        }
    }
    key
}

/// The public part of a cross-signing key (its single key).
pub(super) fn cross_signing_public(key: &Value) -> Option<(String, String)> {
    let keys = key.get("keys")?.as_object()?;
    let (id, public) = keys.iter().next()?;
    Some((id.clone(), public.as_str()?.to_owned()))
}

/// The most users one `/keys/query` may name, and the most devices one
/// `/keys/claim` may. Neither the specification nor Synapse caps them (only
/// the request body size does); clients ask for the members of their rooms,
/// and each request is a few statements per 500 users below these caps.
pub const MAX_QUERY_USERS: usize = 10_000;
pub const MAX_CLAIM_DEVICES: usize = 10_000;

/// The keys of local users: what `/keys/query` and the federation
/// `user/keys/query` answer for this server's users. `requester`: the local
/// user asking (who alone sees their own user-signing key and the
/// signatures they made of others); `None` for another server.
pub(crate) struct LocalKeys {
    pub device_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Raw<ruma::encryption::DeviceKeys>>>,
    pub master_keys: BTreeMap<OwnedUserId, Raw<ruma::encryption::CrossSigningKey>>,
    pub self_signing_keys: BTreeMap<OwnedUserId, Raw<ruma::encryption::CrossSigningKey>>,
    pub user_signing_keys: BTreeMap<OwnedUserId, Raw<ruma::encryption::CrossSigningKey>>,
}

pub(crate) async fn local_keys(state: &Services, wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>, requester: Option<&ruma::UserId>) -> ApiResult<LocalKeys> {
    let storage = &state.storage;
    let local: Vec<&ruma::UserId> = wanted.keys().filter(|user_id| user_id.server_name() == state.server_name).map(|user_id| user_id.as_ref()).collect();
    let mut keys =
        LocalKeys { device_keys: BTreeMap::new(), master_keys: BTreeMap::new(), self_signing_keys: BTreeMap::new(), user_signing_keys: BTreeMap::new() };
    let mut all_devices = storage.device_keys_of_users(&local).await?;
    let mut all_signatures = storage.key_signatures_of_users(&local).await?;
    let mut cross_signing = storage.cross_signing_keys_of_users(&local).await?;
    for user_id in local {
        let wanted = &wanted[user_id];
        // As Synapse: another user's signature (made with their user-signing
        // key) says they verified this user, which only they may learn.
        let mut signatures = all_signatures.remove(user_id.as_str()).unwrap_or_default();
        signatures.retain(|signature| signature.signer_user_id == user_id.as_str() || requester.is_some_and(|r| signature.signer_user_id == r.as_str()));
        let mut devices = BTreeMap::new();
        for (device_id, device_keys, display_name) in all_devices.remove(user_id.as_str()).unwrap_or_default() {
            if !wanted.is_empty() && !wanted.iter().any(|wanted| wanted.as_str() == device_id) {
                continue;
            }
            let mut device_keys = with_signatures(device_keys, &device_id, &signatures);
            if let Some(object) = device_keys.as_object_mut() {
                // As Synapse: the name only when the device has one.
                let unsigned = match display_name {
                    Some(name) => json!({"device_display_name": name}),
                    None => json!({}),
                };
                object.insert("unsigned".to_owned(), unsigned);
            }
            devices.insert(OwnedDeviceId::from(device_id), raw(&device_keys));
        }
        keys.device_keys.insert(user_id.to_owned(), devices);
        for (key_type, target) in [("master", 0), ("self_signing", 1), ("user_signing", 2)] {
            if key_type == "user_signing" && requester != Some(user_id) {
                continue;
            }
            let Some(key) = cross_signing.remove(&(user_id.to_string(), key_type.to_owned())) else { continue };
            let public = cross_signing_public(&key).map(|(_, public)| public).unwrap_or_default();
            let key = raw(&with_signatures(key, &public, &signatures));
            let map = match target {
                0 => &mut keys.master_keys,
                1 => &mut keys.self_signing_keys,
                _ => &mut keys.user_signing_keys,
            };
            map.insert(user_id.to_owned(), key);
        }
    }
    if appservice_keys::queries_enabled(state) {
        merge_appservice_devices(state, wanted, &mut keys.device_keys).await;
    }
    Ok(keys)
}

/// MSC3984: the devices appservices answer for their exclusive users,
/// over the server's (as Synapse's `query_local_devices`).
async fn merge_appservice_devices(
    state: &Services,
    wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    device_keys: &mut BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Raw<ruma::encryption::DeviceKeys>>>,
) {
    let asked: BTreeMap<String, Vec<String>> = wanted
        .iter()
        .filter(|(user_id, _)| user_id.server_name() == state.server_name && appservice_keys::is_proxied_user(state, user_id.as_str()))
        .map(|(user_id, devices)| (user_id.to_string(), devices.iter().map(ToString::to_string).collect()))
        .collect();
    if asked.is_empty() {
        return;
    }
    for (user_id, devices) in appservice_keys::query(state, &asked).await {
        let Ok(user_id) = OwnedUserId::try_from(user_id) else { continue };
        let into = device_keys.entry(user_id).or_default();
        for (device_id, keys) in devices {
            into.insert(OwnedDeviceId::from(device_id), raw(&keys));
        }
    }
}

pub async fn query(state: AppState, request: Ruma<get_keys::v3::Request>) -> ApiResult<get_keys::v3::Response> {
    let sender = request.sender()?;
    if request.body.device_keys.len() > MAX_QUERY_USERS {
        return Err(ApiError::invalid_param(format!("device_keys names more than {MAX_QUERY_USERS} users")));
    }
    let wanted = &request.body.device_keys;
    // Users sharing a room with a local user: from the device lists kept here.
    let (cached, uncached) = weft_services::federation::device_lists::cached_keys(&state, wanted).await?;
    let remote = super::federated::query_keys(&state, &uncached);
    let local = local_keys(&state, wanted, Some(&sender.user_id));
    let (remote, local) = futures_util::future::join(remote, local).await;
    let local = local?;
    let mut response = get_keys::v3::Response::new();
    response.device_keys = local.device_keys;
    response.master_keys = local.master_keys;
    response.self_signing_keys = local.self_signing_keys;
    response.user_signing_keys = local.user_signing_keys;
    response.device_keys.extend(cached.device_keys);
    response.master_keys.extend(cached.master_keys);
    response.self_signing_keys.extend(cached.self_signing_keys);
    for (server, answer) in remote {
        match answer {
            Ok(answer) => {
                response.device_keys.extend(answer.device_keys);
                response.master_keys.extend(answer.master_keys);
                response.self_signing_keys.extend(answer.self_signing_keys);
            }
            Err(failure) => {
                response.failures.insert(server, failure);
            }
        }
    }
    Ok(response)
}

pub async fn changes(state: AppState, request: Ruma<get_key_changes::v3::Request>) -> ApiResult<get_key_changes::v3::Response> {
    let sender = request.sender()?;
    let parse = |text: &str| StreamToken::parse(text).map_err(|e| ApiError::invalid_param(e.to_string()));
    let (from, to) = (parse(&request.body.from)?, parse(&request.body.to)?);
    let changes = device_lists::changes(&state, &sender.user_id, &from, &to).await?;
    Ok(get_key_changes::v3::Response::new(changes.changed, changes.left))
}
