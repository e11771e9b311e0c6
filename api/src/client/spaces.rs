//! `GET /rooms/{roomId}/hierarchy`: a space's rooms, breadth first from the
//! space, as the spec describes. A room is listed (and its children
//! followed) when the user may see it: they are joined or invited, or it is
//! public or knockable, or world readable, or its restricted join rule
//! admits them. Only rooms this server holds are listed; the others would
//! need federation. Pages are offsets into the walk (`o{n}`).

use std::collections::{HashSet, VecDeque};

use ruma::{
    OwnedRoomId, RoomId, UserId,
    api::client::space::{SpaceHierarchyRoomsChunk, get_hierarchy},
    events::StateEventType,
};
use serde_json::{Value, json};

use weft_services::rooms::{RoomError, RoomState};
use weft_services::services::{AppState, Services};
use weft_storage::StoredEvent;

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 100;
/// Most rooms one walk visits, so a huge or adversarial space stays cheap.
const MAX_ROOMS_WALKED: usize = 1000;

pub async fn hierarchy(state: AppState, request: Ruma<get_hierarchy::v1::Request>) -> ApiResult<get_hierarchy::v1::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let offset = match &body.from {
        None => 0,
        Some(token) => token.strip_prefix('o').and_then(|n| n.parse::<usize>().ok()).ok_or_else(|| ApiError::invalid_param("Invalid from token"))?,
    };
    let limit = body.limit.map_or(DEFAULT_LIMIT, |limit| (u64::from(limit) as usize).clamp(1, MAX_LIMIT));
    let max_depth = body.max_depth.map_or(usize::MAX, |depth| u64::from(depth) as usize);

    let mut walked = Vec::new();
    let mut queue = VecDeque::from([(body.room_id.clone(), 0usize)]);
    let mut seen = HashSet::from([body.room_id.clone()]);
    while let Some((room_id, depth)) = queue.pop_front() {
        if walked.len() >= MAX_ROOMS_WALKED {
            break;
        }
        let room = match RoomState::load(&state, &room_id).await {
            Ok(room) => Some(room),
            Err(RoomError::UnknownRoom | RoomError::UnsupportedVersion(_)) => None,
            Err(other) => return Err(other.into()),
        };
        let room = match room {
            Some(room) if accessible(&state, &room, &sender.user_id).await? => room,
            _ if room_id == body.room_id => return Err(ApiError::forbidden("You may not see this space's hierarchy")),
            _ => continue,
        };
        let children = children_of(&state, &room_id, body.suggested_only).await?;
        if depth < max_depth {
            for child in &children {
                if let Some(child_id) = child.state_key.as_deref().and_then(|key| OwnedRoomId::try_from(key).ok())
                    && seen.insert(child_id.clone())
                {
                    queue.push_back((child_id, depth + 1));
                }
            }
        }
        walked.push((room, children));
    }

    let mut response = get_hierarchy::v1::Response::new();
    for (room, children) in walked.iter().skip(offset).take(limit) {
        let entry = room_entry(&state, room, children).await?;
        response.rooms.push(serde_json::from_value::<SpaceHierarchyRoomsChunk>(entry).map_err(|_| ApiError::internal())?);
    }
    if offset + limit < walked.len() {
        response.next_batch = Some(format!("o{}", offset + limit));
    }
    Ok(response)
}

/// Whether `user_id` may see `room` in a hierarchy.
async fn accessible(state: &Services, room: &RoomState, user_id: &UserId) -> ApiResult<bool> {
    if matches!(room.membership_of(user_id).as_deref(), Some("join" | "invite")) {
        return Ok(true);
    }
    let text = |kind: StateEventType, field: &str| room.content_of(&kind, "").and_then(|c| c.get(field).and_then(Value::as_str).map(str::to_owned));
    if text(StateEventType::RoomHistoryVisibility, "history_visibility").as_deref() == Some("world_readable") {
        return Ok(true);
    }
    match text(StateEventType::RoomJoinRules, "join_rule").as_deref() {
        Some("public" | "knock") => Ok(true),
        Some("restricted" | "knock_restricted") => {
            let rules = room.content_of(&StateEventType::RoomJoinRules, "").unwrap_or_default();
            for allowed in rules.get("allow").and_then(Value::as_array).into_iter().flatten() {
                let Some(allowed_room) = allowed.get("room_id").and_then(Value::as_str).and_then(|id| RoomId::parse(id).ok()) else { continue };
                if state.storage.membership_at(&allowed_room, user_id, i64::MAX).await?.as_deref() == Some("join") {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// The room's `m.space.child` events that name a child (a non-empty `via`),
/// in the spec's order: by `order` (rooms with a valid one first), then by
/// when the child was added, then by room id.
pub(crate) async fn children_of(state: &Services, room_id: &RoomId, suggested_only: bool) -> ApiResult<Vec<StoredEvent>> {
    let mut children: Vec<(Option<String>, StoredEvent)> = Vec::new();
    for event in state.storage.current_state(room_id).await? {
        if event.kind != "m.space.child" {
            continue;
        }
        let content = content(&event);
        let has_via = content.get("via").and_then(Value::as_array).is_some_and(|via| !via.is_empty());
        let suggested = content.get("suggested").and_then(Value::as_bool) == Some(true);
        if !has_via || (suggested_only && !suggested) {
            continue;
        }
        let order = content.get("order").and_then(Value::as_str).filter(|order| valid_order(order)).map(str::to_owned);
        children.push((order, event));
    }
    children.sort_by(|(a_order, a), (b_order, b)| {
        let by_order = match (a_order, b_order) {
            (Some(a), Some(b)) => a.cmp(b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        by_order.then(a.origin_server_ts.cmp(&b.origin_server_ts)).then_with(|| a.state_key.cmp(&b.state_key))
    });
    Ok(children.into_iter().map(|(_, event)| event).collect())
}

/// The spec's `order`: at most 50 characters, each printable ASCII.
fn valid_order(order: &str) -> bool {
    order.len() <= 50 && order.chars().all(|c| ('\x20'..='\x7e').contains(&c))
}

fn content(event: &StoredEvent) -> Value {
    serde_json::from_str::<Value>(&event.json).ok().and_then(|pdu| pdu.get("content").cloned()).unwrap_or_default()
}

/// One room of the hierarchy, in the spec's format.
pub(crate) async fn room_entry(state: &Services, room: &RoomState, children: &[StoredEvent]) -> ApiResult<Value> {
    let field = |kind: StateEventType, name: &str| room.content_of(&kind, "").and_then(|c| c.get(name).cloned()).filter(|v| !v.is_null());
    let text = |kind: StateEventType, name: &str| field(kind, name).and_then(|v| v.as_str().map(str::to_owned));
    let join_rule = text(StateEventType::RoomJoinRules, "join_rule").unwrap_or_else(|| "invite".into());
    let joined = state.storage.members_with(&room.room_id, "join").await?.len();
    let mut entry = json!({
        "room_id": room.room_id,
        "num_joined_members": joined,
        "world_readable": text(StateEventType::RoomHistoryVisibility, "history_visibility").as_deref() == Some("world_readable"),
        "guest_can_join": text(StateEventType::RoomGuestAccess, "guest_access").as_deref() == Some("can_join"),
        "join_rule": join_rule,
        "room_version": room.version.as_str(),
        "children_state": children.iter().map(|child| json!({
            "type": child.kind,
            "state_key": child.state_key,
            "sender": child.sender,
            "content": content(child),
            "origin_server_ts": child.origin_server_ts,
        })).collect::<Vec<_>>(),
    });
    for (key, value) in [
        ("name", field(StateEventType::RoomName, "name")),
        ("topic", field(StateEventType::RoomTopic, "topic")),
        ("canonical_alias", field(StateEventType::RoomCanonicalAlias, "alias")),
        ("avatar_url", field(StateEventType::RoomAvatar, "url")),
        ("room_type", field(StateEventType::RoomCreate, "type")),
        ("encryption", field(StateEventType::RoomEncryption, "algorithm")),
    ] {
        if let Some(value) = value {
            entry[key] = value;
        }
    }
    if matches!(join_rule.as_str(), "restricted" | "knock_restricted") {
        let rules = room.content_of(&StateEventType::RoomJoinRules, "").unwrap_or_default();
        let allowed: Vec<&Value> = rules.get("allow").and_then(Value::as_array).into_iter().flatten().filter_map(|allow| allow.get("room_id")).collect();
        entry["allowed_room_ids"] = json!(allowed);
    }
    Ok(entry)
}
