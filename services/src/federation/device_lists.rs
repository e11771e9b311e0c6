//! Device lists across servers, as Synapse tracks them.
//!
//! Outbound: each change of a local user's devices on the `device_lists`
//! stream (a device added, renamed, deleted, keys uploaded, a signature) is
//! an `m.device_list_update` (`stream_id`, `prev_id` the user's previous
//! change, `deleted`, `keys`), and a new master or self-signing key an
//! `m.signing_key_update`, queued durably (with the position that covers
//! them) for every other server with a user sharing a room with them.
//!
//! Inbound: another server's updates keep a cache of its users' devices
//! (`weft_storage::remote_devices`) for users sharing a room with a local
//! user; an update whose `prev_id` is not the cached position has the list
//! fetched again (`GET /user/devices/{userId}`). Each change is a
//! `device_lists` row for that user, which local users' `/sync` name in
//! `device_lists.changed`. `/keys/query` answers cached users from the
//! cache (fetching the list of one not cached yet) and asks the other
//! server only about users no local user shares a room with.
//!
//! May call: `weft_storage`, `weft_federation` (the request).

use std::{collections::BTreeMap, time::Duration};

use ruma::{
    OwnedDeviceId, OwnedUserId, ServerName, UserId,
    api::federation::device::get_devices,
    encryption::{CrossSigningKey, DeviceKeys},
    serde::Raw,
};
use serde_json::{Value, json};

use weft_storage::{DeviceListChange, RemoteDevice, StorageError, Stream};

use super::sender::StreamCursor;
use crate::services::Services;

/// The sender's position name in `federation_stream_positions`.
const POSITION: &str = "device_lists";
/// Changes read from the stream at once.
const BATCH: i64 = 200;
/// How long fetching another server's device list may take.
const RESYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// Queues the EDUs for local users' device-list changes since the saved
/// position; returns the destinations given some.
pub(super) async fn dispatch(state: &Services, cursor: &mut StreamCursor) -> Result<Vec<String>, StorageError> {
    let storage = &state.storage;
    let mut position = match cursor.position {
        Some(position) => position,
        None => *cursor.position.insert(storage.federation_stream_position(&super::sender::stream_position_key(state, POSITION), POSITION).await?),
    };
    let upto = state.notifier.position(Stream::DeviceLists);
    let mut woken = Vec::new();
    while position < upto {
        let mut changes = storage.device_list_changes_since(position, BATCH).await?;
        let reached = match changes.last() {
            Some(last) if changes.len() as i64 == BATCH => last.stream_id.min(upto),
            _ => upto,
        };
        changes.retain(|change| change.stream_id <= reached);
        let mut edus = Vec::new();
        for change in changes.iter().filter(|change| change.user_id.server_name() == state.server_name) {
            let mut servers = servers_sharing_rooms_with(state, &change.user_id).await?;
            servers.retain(|server| super::sender::owns(state, server));
            if servers.is_empty() {
                continue;
            }
            let Some(edu) = edu_of(state, change).await? else { continue };
            let json = edu.to_string();
            edus.extend(servers.into_iter().map(|server| (server, json.clone())));
        }
        let write = !edus.is_empty() || cursor.due();
        if write {
            storage.enqueue_stream_edus(&super::sender::stream_position_key(state, POSITION), reached, &edus).await?;
        }
        cursor.reached(reached, write);
        woken.extend(edus.into_iter().map(|(destination, _)| destination));
        position = reached;
    }
    woken.sort();
    woken.dedup();
    Ok(woken)
}

/// The other servers with a user joined to a room `user_id` is joined to.
pub(super) async fn servers_sharing_rooms_with(state: &Services, user_id: &UserId) -> Result<Vec<String>, StorageError> {
    let mut servers: Vec<String> = state
        .storage
        .users_sharing_rooms_with(user_id)
        .await?
        .iter()
        .filter_map(|user| UserId::parse(user).ok())
        .map(|user| user.server_name().to_string())
        .filter(|server| server != state.server_name.as_str())
        .collect();
    servers.sort();
    servers.dedup();
    Ok(servers)
}

/// Whether a local user is joined to a room `user_id` is joined to.
pub(super) async fn shares_room_with_local_user(state: &Services, user_id: &UserId) -> Result<bool, StorageError> {
    Ok(state.storage.users_sharing_rooms_with_server(&[user_id], state.server_name.as_str()).await?.contains(user_id.as_str()))
}

/// The public part of a cross-signing key (its single key).
fn cross_signing_public(key: &Value) -> Option<&str> {
    key.get("keys")?.as_object()?.values().next()?.as_str()
}

/// Adds the user's own signatures of `target_key_id` to a key.
fn with_own_signatures(mut key: Value, target_key_id: &str, signatures: &[weft_storage::KeySignature]) -> Value {
    for signature in signatures.iter().filter(|signature| signature.target_key_id == target_key_id) {
        let object = key.as_object_mut().and_then(|key| key.entry("signatures").or_insert_with(|| json!({})).as_object_mut());
        if let Some(by_signer) = object.and_then(|object| object.entry(signature.signer_user_id.clone()).or_insert_with(|| json!({})).as_object_mut()) {
            by_signer.insert(signature.signer_key_id.clone(), Value::String(signature.signature.clone()));
        }
    }
    key
}

/// The EDU telling other servers of one change: a device-list update, a
/// signing-key update, or nothing (the user-signing key stays here).
async fn edu_of(state: &Services, change: &DeviceListChange) -> Result<Option<Value>, StorageError> {
    let storage = &state.storage;
    let user_id = change.user_id.as_ref();
    let users = [user_id];
    let mut signatures = storage.key_signatures_of_users(&users).await?.remove(user_id.as_str()).unwrap_or_default();
    // Others' signatures (their user-signing keys) never leave this server.
    signatures.retain(|signature| signature.signer_user_id == user_id.as_str());
    let cross_signing = storage.cross_signing_keys_of_users(&users).await?;
    let key_of = |key_type: &str| cross_signing.get(&(user_id.to_string(), key_type.to_owned()));
    let changed = change.device_id.as_str();
    let is_key = |key_type: &str| key_of(key_type).and_then(cross_signing_public) == Some(changed);
    if is_key("user_signing") {
        return Ok(None);
    }
    if is_key("master") || is_key("self_signing") {
        let mut content = json!({"user_id": user_id});
        for (key_type, field) in [("master", "master_key"), ("self_signing", "self_signing_key")] {
            if let Some(key) = key_of(key_type) {
                let public = cross_signing_public(key).unwrap_or_default().to_owned();
                content[field] = with_own_signatures(key.clone(), &public, &signatures);
            }
        }
        return Ok(Some(json!({"edu_type": "m.signing_key_update", "content": content})));
    }
    let prev_id: Vec<i64> = storage.device_change_before(user_id, change.stream_id).await?.into_iter().collect();
    let mut content = json!({
        "user_id": user_id,
        "device_id": changed,
        "stream_id": change.stream_id,
        "prev_id": prev_id,
        "deleted": false,
    });
    match storage.device(user_id, &change.device_id).await? {
        None => content["deleted"] = json!(true),
        Some(device) => {
            if let Some(name) = device.display_name {
                content["device_display_name"] = json!(name);
            }
            let keys = storage.device_keys_of_users(&users).await?.remove(user_id.as_str()).unwrap_or_default();
            if let Some((_, keys, _)) = keys.into_iter().find(|(device_id, _, _)| device_id == changed) {
                content["keys"] = with_own_signatures(keys, changed, &signatures);
            }
        }
    }
    Ok(Some(json!({"edu_type": "m.device_list_update", "content": content})))
}

/// An `m.device_list_update` from `origin`: applied to the cached list when
/// it follows on from it, else the list is fetched again.
pub async fn device_list_update(state: &Services, origin: &ServerName, content: &Value) -> Result<(), StorageError> {
    let Some(user_id) = content["user_id"].as_str().and_then(|id| OwnedUserId::try_from(id).ok()) else { return Ok(()) };
    let (Some(device_id), Some(stream_id)) = (content["device_id"].as_str(), content["stream_id"].as_i64()) else { return Ok(()) };
    if user_id.server_name() != origin {
        return Ok(());
    }
    if !shares_room_with_local_user(state, &user_id).await? {
        // No one here follows them: their server stops sending, so a cached list would go stale.
        state.storage.forget_remote_devices(&user_id).await?;
        return Ok(());
    }
    let prev_ids: Vec<i64> = content["prev_id"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect();
    let cached = state.storage.remote_device_list_position(&user_id).await?;
    match cached {
        Some(known) if stream_id <= known => {}
        Some(known) if !prev_ids.is_empty() && prev_ids.iter().all(|prev| *prev == known) => {
            let device = (content["deleted"].as_bool() != Some(true)).then(|| RemoteDevice {
                device_id: device_id.to_owned(),
                display_name: content["device_display_name"].as_str().map(str::to_owned),
                keys: content.get("keys").filter(|keys| keys_belong(keys, &user_id, Some(device_id))).cloned(),
            });
            state.storage.update_remote_device(&user_id, stream_id, device_id, device.as_ref()).await?;
            state.stream_advanced(Stream::DeviceLists);
        }
        _ => {
            resync(state, &user_id).await?;
        }
    }
    Ok(())
}

/// An `m.signing_key_update` from `origin`: the user's new master and/or
/// self-signing key.
pub async fn signing_key_update(state: &Services, origin: &ServerName, content: &Value) -> Result<(), StorageError> {
    let Some(user_id) = content["user_id"].as_str().and_then(|id| OwnedUserId::try_from(id).ok()) else { return Ok(()) };
    if user_id.server_name() != origin || !shares_room_with_local_user(state, &user_id).await? {
        return Ok(());
    }
    let keys: Vec<(&str, &Value)> = [("master", "master_key"), ("self_signing", "self_signing_key")]
        .into_iter()
        .filter_map(|(key_type, field)| content.get(field).filter(|key| keys_belong(key, &user_id, None)).map(|key| (key_type, key)))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    if state.storage.remote_device_list_position(&user_id).await?.is_none() {
        resync(state, &user_id).await?;
        return Ok(());
    }
    state.storage.set_remote_cross_signing_keys(&user_id, &keys).await?;
    state.stream_advanced(Stream::DeviceLists);
    Ok(())
}

/// Whether a key object names the user (and the device, for device keys).
fn keys_belong(keys: &Value, user_id: &UserId, device_id: Option<&str>) -> bool {
    keys.is_object() && keys["user_id"].as_str() == Some(user_id.as_str()) && device_id.is_none_or(|device_id| keys["device_id"].as_str() == Some(device_id))
}

/// Fetches a remote user's whole device list and replaces the cached one;
/// `false` (and the cache dropped) when their server did not answer.
pub async fn resync(state: &Services, user_id: &UserId) -> Result<bool, StorageError> {
    let request = get_devices::v1::Request::new(user_id.to_owned());
    let sent = state.federation.client.send_request(user_id.server_name(), request);
    let response = match tokio::time::timeout(RESYNC_TIMEOUT, sent).await {
        Ok(Ok(response)) if response.user_id.as_str() == user_id.as_str() => response,
        Ok(Ok(_)) => {
            tracing::info!(%user_id, "a device list answered for another user");
            state.storage.forget_remote_devices(user_id).await?;
            return Ok(false);
        }
        Ok(Err(error)) => {
            tracing::info!(%user_id, %error, "cannot fetch a remote user's device list");
            state.storage.forget_remote_devices(user_id).await?;
            return Ok(false);
        }
        Err(_) => {
            tracing::info!(%user_id, "fetching a remote user's device list timed out");
            state.storage.forget_remote_devices(user_id).await?;
            return Ok(false);
        }
    };
    let devices: Vec<RemoteDevice> = response
        .devices
        .iter()
        .filter_map(|device| {
            let keys: Value = serde_json::from_str(device.keys.json().get()).ok()?;
            keys_belong(&keys, user_id, Some(device.device_id.as_str())).then(|| RemoteDevice {
                device_id: device.device_id.to_string(),
                display_name: device.device_display_name.clone(),
                keys: Some(keys),
            })
        })
        .collect();
    let parse = |key: &Option<Raw<CrossSigningKey>>| key.as_ref().and_then(|key| serde_json::from_str::<Value>(key.json().get()).ok());
    let (master, self_signing) = (parse(&response.master_key), parse(&response.self_signing_key));
    let cross_signing: Vec<(&str, &Value)> = [("master", master.as_ref()), ("self_signing", self_signing.as_ref())]
        .into_iter()
        .filter_map(|(key_type, key)| key.filter(|key| keys_belong(key, user_id, None)).map(|key| (key_type, key)))
        .collect();
    let stream_id = i64::try_from(u64::from(response.stream_id)).unwrap_or(i64::MAX);
    state.storage.replace_remote_devices(user_id, stream_id, &devices, &cross_signing).await?;
    state.stream_advanced(Stream::DeviceLists);
    Ok(true)
}

/// Keys of remote users as `/keys/query` lists them.
#[derive(Debug, Default)]
pub struct RemoteKeys {
    pub device_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Raw<DeviceKeys>>>,
    pub master_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
    pub self_signing_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
}

fn raw<T>(value: &Value) -> Option<Raw<T>> {
    serde_json::value::to_raw_value(value).ok().map(Raw::from_json)
}

/// The remote users of `wanted` whose device lists are kept here (or are
/// fetched now, being shared with a local user), answered from the cache;
/// and the remote users left to ask their servers.
pub async fn cached_keys(
    state: &Services,
    wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
) -> Result<(RemoteKeys, BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>), StorageError> {
    let mut keys = RemoteKeys::default();
    let mut rest = BTreeMap::new();
    let remote: Vec<&UserId> = wanted.keys().filter(|user_id| user_id.server_name() != state.server_name).map(|user_id| user_id.as_ref()).collect();
    if remote.is_empty() {
        return Ok((keys, rest));
    }
    let sharing = state.storage.users_sharing_rooms_with_server(&remote, state.server_name.as_str()).await?;
    let cached = state.storage.remote_device_list_positions(&remote).await?;
    let mut followed = Vec::new();
    for (user_id, devices) in wanted.iter().filter(|(user_id, _)| user_id.server_name() != state.server_name) {
        if sharing.contains(user_id.as_str()) {
            followed.push((user_id, devices));
        } else {
            if cached.contains_key(user_id.as_str()) {
                state.storage.forget_remote_devices(user_id).await?;
            }
            rest.insert(user_id.clone(), devices.clone());
        }
    }
    let lists = futures_util::future::join_all(followed.iter().map(|(user_id, _)| async move {
        match state.storage.remote_device_list(user_id).await? {
            Some(list) => Ok(Some(list)),
            None if resync(state, user_id).await? => state.storage.remote_device_list(user_id).await,
            None => Ok(None),
        }
    }))
    .await;
    for ((user_id, devices), list) in followed.into_iter().zip(lists) {
        let Some((cached_devices, cross_signing)) = list? else {
            rest.insert(user_id.clone(), devices.clone());
            continue;
        };
        let mut listed = BTreeMap::new();
        for device in cached_devices {
            if !devices.is_empty() && !devices.iter().any(|wanted| wanted.as_str() == device.device_id) {
                continue;
            }
            let Some(mut device_keys) = device.keys else { continue };
            if let Some(object) = device_keys.as_object_mut() {
                let unsigned = match device.display_name {
                    Some(name) => json!({"device_display_name": name}),
                    None => json!({}),
                };
                object.insert("unsigned".to_owned(), unsigned);
            }
            listed.extend(raw(&device_keys).map(|keys| (OwnedDeviceId::from(device.device_id), keys)));
        }
        keys.device_keys.insert(user_id.clone(), listed);
        for (key_type, key) in cross_signing {
            let map = match key_type.as_str() {
                "master" => &mut keys.master_keys,
                "self_signing" => &mut keys.self_signing_keys,
                _ => continue,
            };
            map.extend(raw(&key).map(|key| (user_id.clone(), key)));
        }
    }
    Ok((keys, rest))
}
