//! `PUT /sendToDevice/{eventType}/{txnId}`: messages straight to devices,
//! queued in each device's inbox for `/sync`. `*` means every device of the
//! user; a repeated transaction id of the same device sends nothing again.
//! Messages for other servers' users are queued for each server as one
//! `m.direct_to_device` EDU (the federation sender delivers it).

use ruma::{api::client::to_device::send_event_to_device, to_device::DeviceIdOrAllDevices};
use serde_json::{Value, json};

use weft_services::services::AppState;
use weft_storage::{Delivery, Stream};

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

pub async fn send(state: AppState, request: Ruma<send_event_to_device::v3::Request>) -> ApiResult<send_event_to_device::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let event_type = body.event_type.to_string();
    let mut targets = Vec::new();
    let local: Vec<&ruma::UserId> = body.messages.keys().filter(|user_id| user_id.server_name() == state.server_name).map(|user_id| user_id.as_ref()).collect();
    let mut devices_of = state.storage.device_ids_of_users(&local).await?;
    for (user_id, devices) in &body.messages {
        if user_id.server_name() != state.server_name {
            continue;
        }
        let all_devices = devices_of.remove(user_id.as_str()).unwrap_or_default();
        let known: std::collections::HashSet<&str> = all_devices.iter().map(String::as_str).collect();
        for (device, content) in devices {
            let content: Value = serde_json::from_str(content.json().get()).map_err(|_| ApiError::bad_json("Message content must be JSON"))?;
            if !content.is_object() {
                return Err(ApiError::bad_json("Message content must be a JSON object"));
            }
            let message = json!({"type": event_type, "sender": sender.user_id, "content": content});
            match device {
                DeviceIdOrAllDevices::AllDevices => {
                    targets.extend(all_devices.iter().map(|device_id| (user_id, device_id.clone(), message.clone())));
                }
                DeviceIdOrAllDevices::DeviceId(device_id) => {
                    if known.contains(device_id.as_str()) {
                        targets.push((user_id, device_id.to_string(), message));
                    }
                }
            }
        }
    }
    let owned_devices: Vec<ruma::OwnedDeviceId> = targets.iter().map(|(_, device_id, _)| device_id.as_str().into()).collect();
    let deliveries = targets.into_iter().zip(&owned_devices).map(|((user_id, _, message), device_id)| Delivery { user_id, device_id, message }).collect();
    let txn = format!("{event_type}/{}", body.txn_id);
    if state.storage.send_to_devices(&sender.user_id, &sender.device_id, &txn, deliveries).await? {
        let mut remote: std::collections::BTreeMap<String, serde_json::Map<String, Value>> = std::collections::BTreeMap::new();
        for (user_id, devices) in &body.messages {
            if user_id.server_name() == state.server_name {
                continue;
            }
            let mut by_device = serde_json::Map::new();
            for (device, content) in devices {
                let content: Value = serde_json::from_str(content.json().get()).map_err(|_| ApiError::bad_json("Message content must be JSON"))?;
                let key = match device {
                    DeviceIdOrAllDevices::AllDevices => "*".to_owned(),
                    DeviceIdOrAllDevices::DeviceId(device_id) => device_id.to_string(),
                };
                by_device.insert(key, content);
            }
            remote.entry(user_id.server_name().to_string()).or_default().insert(user_id.to_string(), Value::Object(by_device));
        }
        if !remote.is_empty() {
            let message_id = format!("{}/{}/{txn}", sender.user_id, sender.device_id);
            let edus: Vec<(String, String)> = remote
                .into_iter()
                .map(|(server, messages)| {
                    let edu = json!({"edu_type": "m.direct_to_device", "content": {"sender": sender.user_id, "type": event_type, "message_id": message_id, "messages": messages}});
                    (server, edu.to_string())
                })
                .collect();
            weft_services::federation::sender::queue_edus(&state, &edus).await?;
        }
        state.stream_advanced(Stream::ToDevice);
    }
    Ok(send_event_to_device::v3::Response::new())
}
