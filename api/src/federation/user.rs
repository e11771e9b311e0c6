//! What other servers ask about this server's users' devices and keys:
//! `user/devices/{userId}`, `user/keys/query`, `user/keys/claim` (and
//! Synapse's `unstable/user/keys/claim`, several keys a device, served with
//! MSC3983 switched on). Only local users are answered; the user-signing key and the signatures users made of
//! others never leave this server.

use std::collections::BTreeMap;

use ruma::{
    OwnedDeviceId, UInt,
    api::federation::{
        device::get_devices,
        keys::{claim_keys, get_keys},
    },
};

use weft_federation::unstable::claim_keys as claim_keys_unstable;
use weft_services::services::AppState;

use crate::{
    client::{
        key_claims::{check_size, claim_local, counted, one_each},
        keys::{MAX_QUERY_USERS, local_keys},
    },
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

pub async fn devices(state: AppState, request: Ruma<get_devices::v1::Request>) -> ApiResult<get_devices::v1::Response> {
    request.origin()?;
    let user_id = request.body.user_id;
    if user_id.server_name() != state.server_name {
        return Err(ApiError::invalid_param("User is not hosted on this homeserver"));
    }
    let wanted = BTreeMap::from([(user_id.clone(), Vec::<OwnedDeviceId>::new())]);
    let mut keys = local_keys(&state, &wanted, None).await?;
    // The user's latest change: the `prev_id` of the next `m.device_list_update` names it.
    let latest = state.storage.device_change_before(&user_id, i64::MAX).await?.unwrap_or(0);
    let stream_id = UInt::try_from(latest.max(0) as u64).unwrap_or_default();
    let mut response = get_devices::v1::Response::new(user_id.clone(), stream_id);
    for (device_id, device_keys) in keys.device_keys.remove(&user_id).unwrap_or_default() {
        let name = device_keys
            .get_field::<serde_json::Value>("unsigned")
            .ok()
            .flatten()
            .and_then(|unsigned| unsigned.get("device_display_name").and_then(|name| name.as_str()).map(str::to_owned));
        let mut device = get_devices::v1::UserDevice::new(device_id, device_keys);
        device.device_display_name = name;
        response.devices.push(device);
    }
    response.master_key = keys.master_keys.remove(&user_id);
    response.self_signing_key = keys.self_signing_keys.remove(&user_id);
    Ok(response)
}

pub async fn query(state: AppState, request: Ruma<get_keys::v1::Request>) -> ApiResult<get_keys::v1::Response> {
    request.origin()?;
    let wanted = &request.body.device_keys;
    if wanted.len() > MAX_QUERY_USERS {
        return Err(ApiError::invalid_param(format!("device_keys names more than {MAX_QUERY_USERS} users")));
    }
    let keys = local_keys(&state, wanted, None).await?;
    let mut response = get_keys::v1::Response::new(keys.device_keys);
    response.master_keys = keys.master_keys;
    response.self_signing_keys = keys.self_signing_keys;
    Ok(response)
}

pub async fn claim(state: AppState, request: Ruma<claim_keys::v1::Request>) -> ApiResult<claim_keys::v1::Response> {
    request.origin()?;
    let wanted = &request.body.one_time_keys;
    check_size(wanted)?;
    Ok(claim_keys::v1::Response::new(claim_local(&state, &one_each(wanted), false).await?))
}

/// As Synapse's `FederationUnstableClientKeysClaimServlet`: one key for each
/// algorithm listed, the fallback key always included.
pub async fn claim_unstable(state: AppState, request: Ruma<claim_keys_unstable::Request>) -> ApiResult<claim_keys::v1::Response> {
    if !state.config.experimental_features.msc3983_appservice_otk_claims {
        return Err(ApiError::unrecognized(http::StatusCode::NOT_FOUND));
    }
    request.origin()?;
    let wanted = &request.body.one_time_keys;
    check_size(wanted)?;
    Ok(claim_keys::v1::Response::new(claim_local(&state, &counted(wanted), true).await?))
}
