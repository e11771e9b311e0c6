//! Push rule evaluation at persistence: for each local user joined to the
//! room (the sender aside), their push rules (ruma's evaluator over the
//! rules stored by `storage::push_rules`) decide whether the event notifies
//! and highlights. The results are written with the event and become unread
//! counts, `/notifications` and, later, a pusher's work.

use ruma::{
    events::{
        StateEventType,
        room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource},
    },
    push::{Action, PushConditionRoomCtx},
    serde::Raw,
};
use serde_json::Value;

use crate::{
    rooms::{BuiltEvent, RoomState},
    services::Services,
    storage::{PushAction, StorageError},
};

/// The push actions the event gets for each local member it notifies.
pub async fn evaluate(services: &Services, state: &RoomState, event: &BuiltEvent) -> Result<Vec<PushAction>, StorageError> {
    let members = state.joined_members();
    let local: Vec<_> = members
        .iter()
        .filter(|(user_id, _)| user_id.server_name() == services.server_name && *user_id != event.pdu.sender)
        .collect();
    if local.is_empty() {
        return Ok(Vec::new());
    }
    let Ok(raw) = serde_json::value::to_raw_value(&client_view(event)) else { return Ok(Vec::new()) };
    let raw: Raw<ruma::events::AnySyncTimelineEvent> = Raw::from_json(raw);
    let member_count = ruma::UInt::try_from(members.len() as u64).unwrap_or_default();
    let power_levels = power_levels(state);
    let thread_id = thread_of(event);
    let mut actions = Vec::new();
    for (user_id, display_name) in local {
        let ruleset = services.storage.push_ruleset(user_id).await?;
        let display_name = display_name.clone().unwrap_or_else(|| user_id.localpart().to_owned());
        let mut context = PushConditionRoomCtx::new(state.room_id.clone(), member_count, user_id.clone(), display_name);
        if let Some(levels) = &power_levels {
            context = context.with_power_levels(levels.clone().into());
        }
        let decided = ruleset.get_actions(&raw, &context).await;
        if decided.iter().any(Action::should_notify) {
            actions.push(PushAction {
                user_id: user_id.to_string(),
                thread_id: thread_id.clone(),
                actions: serde_json::to_value(decided).unwrap_or_default(),
                highlight: decided.iter().any(Action::is_highlight),
            });
        }
    }
    Ok(actions)
}

/// The event as rules see it: the PDU's fields that conditions name.
fn client_view(event: &BuiltEvent) -> Value {
    let pdu = &event.pdu;
    let content: Value = serde_json::from_str(pdu.content.get()).unwrap_or_default();
    let mut view = serde_json::json!({
        "event_id": event.event_id,
        "room_id": pdu.room_id,
        "sender": pdu.sender,
        "type": event.kind,
        "content": content,
        "origin_server_ts": event.origin_server_ts,
    });
    if let Some(state_key) = &event.state_key {
        view["state_key"] = Value::String(state_key.clone());
    }
    view
}

/// The thread root of an event in a thread, `main` otherwise.
fn thread_of(event: &BuiltEvent) -> String {
    match &event.relation {
        Some((parent, rel_type)) if rel_type == "m.thread" => parent.clone(),
        _ => "main".to_owned(),
    }
}

fn power_levels(state: &RoomState) -> Option<RoomPowerLevels> {
    let creators: Vec<_> = state.get(&StateEventType::RoomCreate, "").map(|create| create.sender.clone()).into_iter().collect();
    let source = match state.get(&StateEventType::RoomPowerLevels, "") {
        Some(event) => RoomPowerLevelsSource::Original(serde_json::from_str::<RoomPowerLevelsEventContent>(event.content.get()).ok()?),
        None => RoomPowerLevelsSource::default(),
    };
    Some(RoomPowerLevels::new(source, &state.rules.authorization, creators))
}
