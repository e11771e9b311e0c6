//! Push rule evaluation at persistence: for each local user joined to the
//! room (the sender aside), and a local user invited by the event, their push rules (ruma's evaluator over the
//! rules stored by `weft_storage`'s `push_rules`) decide whether the event notifies
//! and highlights. The results are written with the event and become unread
//! counts, `/notifications` and, later, a pusher's work.
//!
//! A member who ignores the sender (`m.ignored_user_list`) is not notified,
//! as the spec's "Ignoring Users" asks; state events still count.
//!
//! Rulesets and ignore lists are cached in memory, since every event needs
//! every member's: each cache empties whenever its stream (`push_rules`,
//! `account_data`) moves, here or, with workers, replicated from its writer.
//!
//! Sending what was decided is the pusher instances' work: `pusher_pool`
//! (which pushers have work), `sender` (one pusher's deliveries),
//! `notification` (what a notification carries).

pub mod client_format;
mod inbox;
pub mod notification;
pub mod pusher_pool;
pub mod sender;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use ruma::{
    OwnedUserId, UserId,
    events::{
        StateEventType,
        room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource},
    },
    push::{Action, FlattenedJson, PushConditionRoomCtx, Ruleset},
    serde::Raw,
};
use serde_json::Value;

use weft_storage::{PushAction, StorageError, Stream};

use crate::{
    rooms::{BuiltEvent, RoomState},
    services::Services,
};

/// One value per user as of one position of a stream; emptied when the
/// stream moves.
#[derive(Debug)]
pub struct PerUserCache<T> {
    state: Mutex<(i64, HashMap<OwnedUserId, Arc<T>>)>,
}

impl<T> Default for PerUserCache<T> {
    fn default() -> Self {
        Self { state: Mutex::new((0, HashMap::new())) }
    }
}

impl<T> PerUserCache<T> {
    async fn get(&self, position: i64, user_id: &UserId, load: impl AsyncFnOnce() -> Result<T, StorageError>) -> Result<Arc<T>, StorageError> {
        {
            let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if state.0 != position {
                *state = (position, HashMap::new());
            }
            if let Some(value) = state.1.get(user_id) {
                return Ok(value.clone());
            }
        }
        let value = Arc::new(load().await?);
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.0 == position {
            state.1.insert(user_id.to_owned(), value.clone());
        }
        Ok(value)
    }
}

/// Users' rulesets and ignore lists, as of their streams' positions.
#[derive(Debug, Default)]
pub struct RulesetCache {
    rulesets: PerUserCache<Ruleset>,
    ignored: PerUserCache<HashSet<OwnedUserId>>,
}

impl RulesetCache {
    pub async fn get(&self, services: &Services, user_id: &UserId) -> Result<Arc<Ruleset>, StorageError> {
        let position = services.notifier.position(Stream::PushRules);
        self.rulesets.get(position, user_id, async || services.storage.push_ruleset(user_id).await).await
    }

    /// The users `user_id` ignores, for push and for what reads show them.
    pub async fn ignored(&self, services: &Services, user_id: &UserId) -> Result<Arc<HashSet<OwnedUserId>>, StorageError> {
        let position = services.notifier.position(Stream::AccountData);
        self.ignored.get(position, user_id, async || services.storage.ignored_users(user_id).await).await
    }
}

/// The push actions the event gets for each local member it notifies.
pub async fn evaluate(services: &Services, state: &RoomState, event: &BuiltEvent) -> Result<Vec<PushAction>, StorageError> {
    let members = state.joined_members();
    let mut local: Vec<_> =
        members.iter().filter(|(user_id, _)| user_id.server_name() == services.server_name && *user_id != event.pdu.sender).cloned().collect();
    if let Some(invitee) = local_invitee(services, event)
        && !local.iter().any(|(user_id, _)| *user_id == invitee)
    {
        local.push((invitee, None));
    }
    if local.is_empty() {
        return Ok(Vec::new());
    }
    let Ok(raw) = serde_json::value::to_raw_value(&client_view(event)) else { return Ok(Vec::new()) };
    let raw: Raw<ruma::events::AnySyncTimelineEvent> = Raw::from_json(raw);
    // Flattened once for every member: ruma's `get_actions` would flatten it per member.
    let flattened = FlattenedJson::from_raw(&raw);
    let member_count = ruma::UInt::try_from(members.len() as u64).unwrap_or_default();
    let power_levels = power_levels(state);
    let thread_id = thread_of(event);
    let mut actions = Vec::new();
    let is_state = event.state_key.is_some();
    for (user_id, display_name) in &local {
        if !is_state && services.push_rulesets.ignored(services, user_id).await?.contains(&event.pdu.sender) {
            continue;
        }
        let ruleset = services.push_rulesets.get(services, user_id).await?;
        let display_name = display_name.clone().unwrap_or_else(|| user_id.localpart().to_owned());
        let mut context = PushConditionRoomCtx::new(state.room_id.clone(), member_count, user_id.clone(), display_name);
        if let Some(levels) = &power_levels {
            context = context.with_power_levels(levels.clone().into());
        }
        let decided = first_match(&ruleset, &flattened, &context).await;
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

/// The actions of the first of the user's rules that applies to the event,
/// as `Ruleset::get_actions` (the sender is never among those evaluated).
async fn first_match<'a>(ruleset: &'a Ruleset, event: &FlattenedJson, context: &PushConditionRoomCtx) -> &'a [Action] {
    for rule in ruleset {
        if rule.applies(event, context).await {
            return rule.actions();
        }
    }
    &[]
}

/// The local user an `m.room.member` invite is for (they are not a member
/// yet, and the rules decide whether the invite notifies them).
fn local_invitee(services: &Services, event: &BuiltEvent) -> Option<OwnedUserId> {
    if event.kind != "m.room.member" || event.membership.as_deref() != Some("invite") {
        return None;
    }
    let invitee = OwnedUserId::try_from(event.state_key.as_deref()?).ok()?;
    (invitee.server_name() == services.server_name && invitee != event.pdu.sender).then_some(invitee)
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
