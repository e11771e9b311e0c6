//! Server-side key backup: `/room_keys/version[/{version}]` and
//! `/room_keys/keys[/{roomId}[/{sessionId}]]`. Versions are decimal numbers
//! counting up per user; any other version string names no version (404).
//! Keys are stored into the current version only; reading and deleting work
//! on any live version. The key data itself stays opaque: only the fields
//! that rank two copies of a session key are checked.
//!
//! As in Synapse, a key field of the wrong type is `M_INVALID_PARAM`. Unlike
//! Synapse, deleting keys moves the etag only when a key was deleted, and the
//! wrong-version error names the version that is current.

use std::collections::BTreeMap;

use ruma::{
    OwnedRoomId, RoomId, UInt, UserId,
    api::client::backup::{
        BackupAlgorithm, KeyBackupData, RoomKeyBackup, add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session, create_backup_version,
        delete_backup_keys, delete_backup_keys_for_room, delete_backup_keys_for_session, delete_backup_version, get_backup_info, get_backup_keys,
        get_backup_keys_for_room, get_backup_keys_for_session, get_latest_backup_info, update_backup_version,
    },
    serde::{JsonObject, Raw},
};
use serde::{Deserialize, Serialize};
use serde_json::{
    Value,
    value::{RawValue, to_raw_value},
};

use weft_services::services::AppState;
use weft_storage::{BackupCounts, BackupKey, BackupKeysWrite, BackupVersion, BackupVersionUpdate, StoredBackupKey};

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

/// The body of `POST /room_keys/version` and `PUT /room_keys/version/{version}`,
/// which ruma hands over unparsed.
#[derive(Deserialize)]
struct VersionBody {
    algorithm: String,
    auth_data: JsonObject,
    /// Only in updates, where it must repeat the path's version.
    #[serde(default)]
    version: Option<Value>,
}

/// An uploaded session key; `session_data` depends on the algorithm.
#[derive(Deserialize)]
struct UploadedKey {
    first_message_index: UInt,
    forwarded_count: UInt,
    is_verified: bool,
    session_data: JsonObject,
}

#[derive(Serialize)]
struct KeyJson<'a> {
    first_message_index: i64,
    forwarded_count: i64,
    is_verified: bool,
    session_data: &'a RawValue,
}

#[derive(Serialize)]
struct AlgorithmJson<'a> {
    algorithm: &'a str,
    auth_data: &'a RawValue,
}

fn unknown_version() -> ApiError {
    ApiError::not_found("Unknown backup version")
}

fn parse_version(version: &str) -> ApiResult<i64> {
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unknown_version());
    }
    version.parse().map_err(|_| unknown_version())
}

fn parse_version_body(raw: &Raw<BackupAlgorithm>) -> ApiResult<(VersionBody, String)> {
    let body: VersionBody = serde_json::from_str(raw.json().get()).map_err(|error| {
        let message = error.to_string();
        if message.starts_with("missing field") { ApiError::missing_param(message) } else { ApiError::bad_json(message) }
    })?;
    let auth_data = Value::Object(body.auth_data.clone()).to_string();
    Ok((body, auth_data))
}

fn parse_key(raw: &Raw<KeyBackupData>, room_id: &RoomId, session_id: &str) -> ApiResult<BackupKey> {
    let key: UploadedKey = serde_json::from_str(raw.json().get()).map_err(|error| {
        let message = format!("Key for session {session_id} in room {room_id}: {error}");
        if error.to_string().starts_with("missing field") { ApiError::missing_param(message) } else { ApiError::invalid_param(message) }
    })?;
    Ok(BackupKey {
        first_message_index: i64::from(key.first_message_index),
        forwarded_count: i64::from(key.forwarded_count),
        is_verified: key.is_verified,
        session_data: Value::Object(key.session_data).to_string(),
    })
}

fn key_json(key: &BackupKey) -> ApiResult<Raw<KeyBackupData>> {
    let session_data = RawValue::from_string(key.session_data.clone()).map_err(|_| ApiError::internal())?;
    let json = KeyJson {
        first_message_index: key.first_message_index,
        forwarded_count: key.forwarded_count,
        is_verified: key.is_verified,
        session_data: &session_data,
    };
    to_raw_value(&json).map(Raw::from_json).map_err(|_| ApiError::internal())
}

fn algorithm_json(version: &BackupVersion) -> ApiResult<Raw<BackupAlgorithm>> {
    let auth_data = RawValue::from_string(version.auth_data.clone()).map_err(|_| ApiError::internal())?;
    to_raw_value(&AlgorithmJson { algorithm: &version.algorithm, auth_data: &auth_data }).map(Raw::from_json).map_err(|_| ApiError::internal())
}

fn count(count: i64) -> UInt {
    UInt::try_from(count).unwrap_or_default()
}

pub async fn create_version(state: AppState, request: Ruma<create_backup_version::v3::Request>) -> ApiResult<create_backup_version::v3::Response> {
    let sender = request.sender()?;
    let (body, auth_data) = parse_version_body(&request.body.algorithm)?;
    let version = state.storage.create_backup_version(&sender.user_id, &body.algorithm, &auth_data).await?;
    Ok(create_backup_version::v3::Response::new(version.to_string()))
}

pub async fn latest_version(state: AppState, request: Ruma<get_latest_backup_info::v3::Request>) -> ApiResult<get_latest_backup_info::v3::Response> {
    let sender = request.sender()?;
    let version = state.storage.backup_version(&sender.user_id, None).await?.ok_or_else(|| ApiError::not_found("No current backup version"))?;
    Ok(get_latest_backup_info::v3::Response::new(algorithm_json(&version)?, count(version.count), version.etag.to_string(), version.version.to_string()))
}

pub async fn get_version(state: AppState, request: Ruma<get_backup_info::v3::Request>) -> ApiResult<get_backup_info::v3::Response> {
    let sender = request.sender()?;
    let version = parse_version(&request.body.version)?;
    let version = state.storage.backup_version(&sender.user_id, Some(version)).await?.ok_or_else(unknown_version)?;
    Ok(get_backup_info::v3::Response::new(algorithm_json(&version)?, count(version.count), version.etag.to_string(), version.version.to_string()))
}

pub async fn update_version(state: AppState, request: Ruma<update_backup_version::v3::Request>) -> ApiResult<update_backup_version::v3::Response> {
    let sender = request.sender()?;
    let (body, auth_data) = parse_version_body(&request.body.algorithm)?;
    if body.version.is_some_and(|version| version != Value::String(request.body.version.clone())) {
        return Err(ApiError::invalid_param("Version in body does not match"));
    }
    let version = parse_version(&request.body.version)?;
    match state.storage.update_backup_version(&sender.user_id, version, &body.algorithm, &auth_data).await? {
        BackupVersionUpdate::Updated => Ok(update_backup_version::v3::Response::new()),
        BackupVersionUpdate::UnknownVersion => Err(unknown_version()),
        BackupVersionUpdate::AlgorithmMismatch => Err(ApiError::invalid_param("Algorithm does not match")),
    }
}

pub async fn delete_version(state: AppState, request: Ruma<delete_backup_version::v3::Request>) -> ApiResult<delete_backup_version::v3::Response> {
    let sender = request.sender()?;
    let version = parse_version(&request.body.version)?;
    if !state.storage.delete_backup_version(&sender.user_id, version).await? {
        return Err(unknown_version());
    }
    Ok(delete_backup_version::v3::Response::new())
}

async fn put_keys(state: &AppState, user_id: &UserId, version: &str, keys: &[(&RoomId, &str, BackupKey)]) -> ApiResult<BackupCounts> {
    let version = parse_version(version)?;
    match state.storage.put_backup_keys(user_id, version, keys).await? {
        BackupKeysWrite::Written(counts) => Ok(counts),
        BackupKeysWrite::UnknownVersion => Err(unknown_version()),
        BackupKeysWrite::WrongVersion { current } => Err(ApiError::wrong_room_keys_version(current.to_string())),
    }
}

pub async fn put_all(state: AppState, request: Ruma<add_backup_keys::v3::Request>) -> ApiResult<add_backup_keys::v3::Response> {
    let mut keys = Vec::new();
    for (room_id, room) in &request.body.rooms {
        for (session_id, key) in &room.sessions {
            keys.push((room_id.as_ref(), session_id.as_str(), parse_key(key, room_id, session_id)?));
        }
    }
    let counts = put_keys(&state, &request.sender()?.user_id, &request.body.version, &keys).await?;
    Ok(add_backup_keys::v3::Response::new(counts.etag.to_string(), count(counts.count)))
}

pub async fn put_room(state: AppState, request: Ruma<add_backup_keys_for_room::v3::Request>) -> ApiResult<add_backup_keys_for_room::v3::Response> {
    let room_id = &request.body.room_id;
    let mut keys = Vec::new();
    for (session_id, key) in &request.body.sessions {
        keys.push((room_id.as_ref(), session_id.as_str(), parse_key(key, room_id, session_id)?));
    }
    let counts = put_keys(&state, &request.sender()?.user_id, &request.body.version, &keys).await?;
    Ok(add_backup_keys_for_room::v3::Response::new(counts.etag.to_string(), count(counts.count)))
}

pub async fn put_session(state: AppState, request: Ruma<add_backup_keys_for_session::v3::Request>) -> ApiResult<add_backup_keys_for_session::v3::Response> {
    let body = &request.body;
    let key = parse_key(&body.session_data, &body.room_id, &body.session_id)?;
    let counts = put_keys(&state, &request.sender()?.user_id, &body.version, &[(&body.room_id, &body.session_id, key)]).await?;
    Ok(add_backup_keys_for_session::v3::Response::new(counts.etag.to_string(), count(counts.count)))
}

async fn stored_keys(state: &AppState, user_id: &UserId, version: &str, room_id: Option<&RoomId>, session_id: Option<&str>) -> ApiResult<Vec<StoredBackupKey>> {
    let version = parse_version(version)?;
    state.storage.backup_keys(user_id, version, room_id, session_id).await?.ok_or_else(unknown_version)
}

fn sessions(keys: &[StoredBackupKey]) -> ApiResult<BTreeMap<String, Raw<KeyBackupData>>> {
    keys.iter().map(|stored| Ok((stored.session_id.clone(), key_json(&stored.key)?))).collect()
}

pub async fn get_all(state: AppState, request: Ruma<get_backup_keys::v3::Request>) -> ApiResult<get_backup_keys::v3::Response> {
    let keys = stored_keys(&state, &request.sender()?.user_id, &request.body.version, None, None).await?;
    let mut by_room: BTreeMap<OwnedRoomId, BTreeMap<String, Raw<KeyBackupData>>> = BTreeMap::new();
    for stored in &keys {
        by_room.entry(stored.room_id.clone()).or_default().insert(stored.session_id.clone(), key_json(&stored.key)?);
    }
    let rooms = by_room.into_iter().map(|(room_id, sessions)| (room_id, RoomKeyBackup::new(sessions))).collect();
    Ok(get_backup_keys::v3::Response::new(rooms))
}

pub async fn get_room(state: AppState, request: Ruma<get_backup_keys_for_room::v3::Request>) -> ApiResult<get_backup_keys_for_room::v3::Response> {
    let body = &request.body;
    let keys = stored_keys(&state, &request.sender()?.user_id, &body.version, Some(&body.room_id), None).await?;
    Ok(get_backup_keys_for_room::v3::Response::new(sessions(&keys)?))
}

pub async fn get_session(state: AppState, request: Ruma<get_backup_keys_for_session::v3::Request>) -> ApiResult<get_backup_keys_for_session::v3::Response> {
    let body = &request.body;
    let keys = stored_keys(&state, &request.sender()?.user_id, &body.version, Some(&body.room_id), Some(&body.session_id)).await?;
    let stored = keys.first().ok_or_else(|| ApiError::not_found("No room_keys found"))?;
    Ok(get_backup_keys_for_session::v3::Response::new(key_json(&stored.key)?))
}

async fn delete_keys(state: &AppState, user_id: &UserId, version: &str, room_id: Option<&RoomId>, session_id: Option<&str>) -> ApiResult<(String, UInt)> {
    let version = parse_version(version)?;
    let counts = state.storage.delete_backup_keys(user_id, version, room_id, session_id).await?.ok_or_else(unknown_version)?;
    Ok((counts.etag.to_string(), count(counts.count)))
}

pub async fn delete_all(state: AppState, request: Ruma<delete_backup_keys::v3::Request>) -> ApiResult<delete_backup_keys::v3::Response> {
    let (etag, count) = delete_keys(&state, &request.sender()?.user_id, &request.body.version, None, None).await?;
    Ok(delete_backup_keys::v3::Response::new(etag, count))
}

pub async fn delete_room(state: AppState, request: Ruma<delete_backup_keys_for_room::v3::Request>) -> ApiResult<delete_backup_keys_for_room::v3::Response> {
    let body = &request.body;
    let (etag, count) = delete_keys(&state, &request.sender()?.user_id, &body.version, Some(&body.room_id), None).await?;
    Ok(delete_backup_keys_for_room::v3::Response::new(etag, count))
}

pub async fn delete_session(
    state: AppState,
    request: Ruma<delete_backup_keys_for_session::v3::Request>,
) -> ApiResult<delete_backup_keys_for_session::v3::Response> {
    let body = &request.body;
    let (etag, count) = delete_keys(&state, &request.sender()?.user_id, &body.version, Some(&body.room_id), Some(&body.session_id)).await?;
    Ok(delete_backup_keys_for_session::v3::Response::new(etag, count))
}
