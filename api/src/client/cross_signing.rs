//! Cross-signing: `/keys/device_signing/upload` (master, self-signing and
//! user-signing keys; user-interactive auth once a master key exists, as the
//! spec allows since v1.11) and `/keys/signatures/upload` (a user's
//! self-signing key signing their devices, a device signing their master
//! key, and their user-signing key signing other users' master keys).

use std::collections::BTreeMap;

use http::StatusCode;
use ruma::{
    OwnedUserId, UserId,
    api::client::keys::{upload_signatures, upload_signing_keys},
};
use serde_json::{Value, json};

use weft_core::crypto::key_signatures;
use weft_services::services::AppState;
use weft_storage::{KeySignature, Stream};

use super::keys::cross_signing_public;
use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
    uia,
};

fn invalid_signature(message: impl Into<String>) -> ApiError {
    ApiError::custom(StatusCode::BAD_REQUEST, "M_INVALID_SIGNATURE", message)
}

/// Checks a cross-signing key's shape: the sender's, with `usage` naming
/// `usage`, and exactly one ed25519 key whose id is its public part.
fn checked_key(user_id: &UserId, key: &Value, usage: &str) -> ApiResult<(String, String)> {
    if key.get("user_id").and_then(Value::as_str) != Some(user_id.as_str()) {
        return Err(ApiError::invalid_param(format!("The {usage} key must be for the uploading user")));
    }
    let usages = key.get("usage").and_then(Value::as_array).ok_or_else(|| ApiError::invalid_param(format!("The {usage} key needs a usage")))?;
    if !usages.iter().any(|entry| entry.as_str() == Some(usage)) {
        return Err(ApiError::invalid_param(format!("The {usage} key's usage must include {usage}")));
    }
    let keys = key.get("keys").and_then(Value::as_object).ok_or_else(|| ApiError::invalid_param(format!("The {usage} key needs keys")))?;
    match keys.iter().next() {
        Some((id, Value::String(public))) if keys.len() == 1 && id.strip_prefix("ed25519:") == Some(public.as_str()) => Ok((id.clone(), public.clone())),
        _ => Err(ApiError::invalid_param(format!("The {usage} key must hold one ed25519 key named by its public part"))),
    }
}

fn parse<T>(raw: &Option<ruma::serde::Raw<T>>) -> ApiResult<Option<Value>> {
    raw.as_ref().map(|raw| weft_core::json::value_of(raw).ok_or_else(|| ApiError::bad_json("Keys must be JSON"))).transpose()
}

pub async fn upload_keys(state: AppState, request: Ruma<upload_signing_keys::v3::Request>) -> ApiResult<upload_signing_keys::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let user_id = &sender.user_id;
    let storage = &state.storage;
    let (master, self_signing, user_signing) = (parse(&body.master_key)?, parse(&body.self_signing_key)?, parse(&body.user_signing_key)?);

    let stored_master = storage.cross_signing_key(user_id, "master").await?;
    let mut stored_all = true;
    for (key_type, key) in [("master", &master), ("self_signing", &self_signing), ("user_signing", &user_signing)] {
        if let Some(key) = key {
            stored_all &= storage.cross_signing_key(user_id, key_type).await?.as_ref() == Some(key);
        }
    }
    if stored_master.is_some() && !stored_all {
        uia::authenticate(&state, body.auth.as_ref(), &uia::Requirement::account(&state, &request.action, user_id).await?).await?;
    }

    let master_key = master.clone().or(stored_master).ok_or_else(|| ApiError::missing_param("A master key is needed first"))?;
    let (master_id, master_public) = checked_key(user_id, &master_key, "master")?;
    let mut writes = Vec::new();
    if let Some(key) = &master {
        writes.push(("master", key, master_public.clone()));
    }
    for (key_type, key) in [("self_signing", &self_signing), ("user_signing", &user_signing)] {
        let Some(key) = key else { continue };
        let (_, public) = checked_key(user_id, key, key_type)?;
        if !key_signatures::verify(key, user_id.as_str(), &master_id, &master_public) {
            return Err(invalid_signature(format!("The {key_type} key is not signed by the master key")));
        }
        writes.push((key_type, key, public));
    }
    let writes: Vec<(&str, &Value, &str)> = writes.iter().map(|(key_type, key, public)| (*key_type, *key, public.as_str())).collect();
    if !writes.is_empty() {
        storage.set_cross_signing_keys(user_id, &writes).await?;
        state.stream_advanced(Stream::DeviceLists);
    }
    Ok(upload_signing_keys::v3::Response::new())
}

/// The ed25519 key that must have signed `object` for a signature upload,
/// as `(signer key id, public key, target key id)`, or the failure's message.
async fn expected_signer(state: &AppState, sender: &UserId, target_user: &UserId, key_id: &str) -> ApiResult<Result<(String, String), String>> {
    let storage = &state.storage;
    let public_of = |key: Option<Value>| key.as_ref().and_then(cross_signing_public);
    if target_user == sender {
        let devices = storage.device_keys_of(sender).await?;
        if devices.iter().any(|(device_id, _, _)| device_id == key_id) {
            return Ok(public_of(storage.cross_signing_key(sender, "self_signing").await?).ok_or_else(|| "No self-signing key".to_owned()));
        }
        return Ok(Err("A user's own keys are signed by a device only for the master key".to_owned()));
    }
    Ok(public_of(storage.cross_signing_key(sender, "user_signing").await?).ok_or_else(|| "No user-signing key".to_owned()))
}

pub async fn upload_signatures(state: AppState, request: Ruma<upload_signatures::v3::Request>) -> ApiResult<upload_signatures::v3::Response> {
    let sender = request.sender()?;
    let storage = &state.storage;
    let mut failures: BTreeMap<OwnedUserId, BTreeMap<String, upload_signatures::v3::Failure>> = BTreeMap::new();
    let mut fail = |user: &UserId, key_id: &str, errcode: &str, message: &str| {
        if let Ok(failure) = serde_json::from_value(json!({"errcode": errcode, "error": message})) {
            failures.entry(user.to_owned()).or_default().insert(key_id.to_owned(), failure);
        }
    };
    let mut changed = false;
    for (target_user, signed) in &request.body.signed_keys {
        let mut accepted = Vec::new();
        for (key_id, object) in signed.iter() {
            let Ok(object) = serde_json::from_str::<Value>(object.get()) else {
                fail(target_user, key_id, "M_BAD_JSON", "Not JSON");
                continue;
            };
            let target_master = storage.cross_signing_key(target_user, "master").await?;
            let is_master = target_master.as_ref().and_then(cross_signing_public).is_some_and(|(_, public)| public == key_id);
            let signer = if is_master && target_user == &sender.user_id {
                // A device of the user signs their own master key.
                own_device_signer(&state, &sender.user_id, &object).await?
            } else if !is_master && target_user != &sender.user_id {
                Err("Only other users' master keys can be signed".to_owned())
            } else {
                expected_signer(&state, &sender.user_id, target_user, key_id).await?
            };
            let (signer_key_id, signer_public) = match signer {
                Ok(signer) => signer,
                Err(message) => {
                    fail(target_user, key_id, "M_INVALID_SIGNATURE", &message);
                    continue;
                }
            };
            match key_signatures::signature_of(&object, sender.user_id.as_str(), &signer_key_id) {
                Some(signature) if key_signatures::verify_signature(&object, signature, &signer_public) => {
                    accepted.push(KeySignature {
                        signer_user_id: sender.user_id.to_string(),
                        signer_key_id: signer_key_id.clone(),
                        target_key_id: key_id.to_string(),
                        signature: signature.to_owned(),
                    });
                }
                _ => fail(target_user, key_id, "M_INVALID_SIGNATURE", "Invalid signature"),
            }
        }
        if !accepted.is_empty() {
            storage.add_key_signatures(target_user, &accepted).await?;
            changed = true;
        }
    }
    if changed {
        state.stream_advanced(Stream::DeviceLists);
    }
    let mut response = upload_signatures::v3::Response::new();
    response.failures = failures;
    Ok(response)
}

/// For a user's own master key: the device among theirs whose signature it carries.
async fn own_device_signer(state: &AppState, user_id: &UserId, object: &Value) -> ApiResult<Result<(String, String), String>> {
    let devices = state.storage.device_keys_of(user_id).await?;
    for (device_id, keys, _) in devices {
        let key_id = format!("ed25519:{device_id}");
        if key_signatures::signature_of(object, user_id.as_str(), &key_id).is_some()
            && let Some(public) = keys.get("keys").and_then(|keys| keys.get(&key_id)).and_then(Value::as_str)
        {
            return Ok(Ok((key_id, public.to_owned())));
        }
    }
    Ok(Err("Not signed by any of the user's devices".to_owned()))
}
