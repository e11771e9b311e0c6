//! `/devices` and `/delete_devices`. Deleting needs the account's password
//! through user-interactive auth; deleting a device that does not exist
//! succeeds, as in Synapse.

use ruma::{
    DeviceId, MilliSecondsSinceUnixEpoch, UInt,
    api::client::device::{self, delete_device, delete_devices, get_device, get_devices, update_device},
};

use weft_services::services::AppState;
use weft_storage::Device;

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
    uia,
};

fn to_api(device: Device) -> device::Device {
    let mut out = device::Device::new(device.device_id);
    out.display_name = device.display_name;
    out.last_seen_ip = device.last_seen_ip;
    out.last_seen_ts = device.last_seen_ts.and_then(|ts| UInt::try_from(ts).ok()).map(MilliSecondsSinceUnixEpoch);
    out
}

pub async fn list(state: AppState, request: Ruma<get_devices::v3::Request>) -> ApiResult<get_devices::v3::Response> {
    let sender = request.sender()?;
    let devices = state.storage.devices(&sender.user_id).await?;
    Ok(get_devices::v3::Response::new(devices.into_iter().map(to_api).collect()))
}

pub async fn get(state: AppState, request: Ruma<get_device::v3::Request>) -> ApiResult<get_device::v3::Response> {
    let sender = request.sender()?;
    let device = state.storage.device(&sender.user_id, &request.body.device_id).await?.ok_or_else(|| ApiError::not_found("Device not found"))?;
    Ok(get_device::v3::Response::new(to_api(device)))
}

/// Synapse's limit on device names.
const MAX_DISPLAY_NAME_CHARS: usize = 100;

pub async fn update(state: AppState, request: Ruma<update_device::v3::Request>) -> ApiResult<update_device::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    if body.display_name.as_ref().is_some_and(|name| name.chars().count() > MAX_DISPLAY_NAME_CHARS) {
        return Err(ApiError::new(
            http::StatusCode::BAD_REQUEST,
            ruma::api::error::ErrorKind::TooLarge,
            format!("Device display name is too long (max {MAX_DISPLAY_NAME_CHARS})"),
        ));
    }
    let found = match &body.display_name {
        Some(name) => state.storage.set_device_display_name(&sender.user_id, &body.device_id, Some(name)).await?,
        None => state.storage.device(&sender.user_id, &body.device_id).await?.is_some(),
    };
    if !found {
        return Err(ApiError::not_found("Device not found"));
    }
    state.stream_advanced(weft_storage::Stream::DeviceLists);
    Ok(update_device::v3::Response::new())
}

pub async fn delete(state: AppState, request: Ruma<delete_device::v3::Request>) -> ApiResult<delete_device::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    uia::authenticate(&state, body.auth.as_ref(), &uia::Requirement::account(&state, &request.action, &sender.user_id).await?).await?;
    state.storage.delete_devices(&sender.user_id, &[&body.device_id]).await?;
    state.stream_advanced(weft_storage::Stream::DeviceLists);
    Ok(delete_device::v3::Response::new())
}

pub async fn delete_many(state: AppState, request: Ruma<delete_devices::v3::Request>) -> ApiResult<delete_devices::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    uia::authenticate(&state, body.auth.as_ref(), &uia::Requirement::account(&state, &request.action, &sender.user_id).await?).await?;
    let device_ids: Vec<&DeviceId> = body.devices.iter().map(|id| id.as_ref()).collect();
    state.storage.delete_devices(&sender.user_id, &device_ids).await?;
    state.stream_advanced(weft_storage::Stream::DeviceLists);
    Ok(delete_devices::v3::Response::new())
}
