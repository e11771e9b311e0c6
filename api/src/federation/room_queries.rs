//! What other servers ask about one room this server holds, without its
//! events: `hierarchy/{roomId}` (the room and its direct children, as the
//! client `/hierarchy` describes them: `client::spaces`) and
//! `timestamp_to_event/{roomId}` (the event nearest a time, the client
//! endpoint's look-up). Both refuse a server the room's ACL denies
//! (403 `M_FORBIDDEN`, `weft_services::rooms::server_acl`).
//!
//! Who may see what, as Synapse decides for a server: a room is shown when
//! its join rule is public, knock or knock_restricted, its history is world
//! readable, the origin has a user joined or invited, or (restricted rooms)
//! the origin has a user joined to one of the rooms the join rule names.
//! `timestamp_to_event` answers for rooms whose history is world readable
//! or where the origin has a joined user (Synapse checks only the ACL).

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedRoomId, RoomId, ServerName, UInt,
    api::{Direction, federation::event::get_event_by_timestamp},
    events::StateEventType,
};
use serde_json::Value;

use weft_services::rooms::{RoomError, RoomState, server_acl};
use weft_services::services::{AppState, Services};

use crate::{
    client::spaces::{children_of, room_entry},
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

pub mod get_hierarchy {
    //! `GET /_matrix/federation/v1/hierarchy/{roomId}`, declared here with
    //! the rooms as JSON: ruma's room summary leaves out a public
    //! `join_rule`, which Synapse needs to show the room.
    use ruma::{
        OwnedRoomId,
        api::{federation::authentication::ServerSignatures, metadata, request, response},
    };
    use serde_json::Value;

    metadata! {
        method: GET,
        rate_limited: false,
        authentication: ServerSignatures,
        path: "/_matrix/federation/v1/hierarchy/{room_id}",
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id: OwnedRoomId,
        #[ruma_api(query)]
        #[serde(default)]
        pub suggested_only: bool,
    }

    #[response]
    pub struct Response {
        /// The room, with its `children_state`.
        pub room: Value,
        /// The children the asking server may see, without their `children_state`.
        pub children: Vec<Value>,
        pub inaccessible_children: Vec<OwnedRoomId>,
    }
}

/// The most children one answer describes (Synapse's `MAX_ROOMS_PER_SPACE`).
const MAX_CHILDREN: usize = 50;

/// A room this server is in, or `None`.
async fn local_room(state: &Services, room_id: &RoomId) -> ApiResult<Option<RoomState>> {
    let room = match RoomState::load(state, room_id).await {
        Ok(room) => room,
        Err(RoomError::UnknownRoom | RoomError::UnsupportedVersion(_)) => return Ok(None),
        Err(other) => return Err(other.into()),
    };
    let joined_here = room.joined_members().iter().any(|(user_id, _)| user_id.server_name() == state.server_name);
    Ok(joined_here.then_some(room))
}

async fn check_acl(state: &Services, room_id: &RoomId, origin: &ServerName) -> ApiResult<()> {
    if !server_acl::room_allows(&state.storage, room_id, origin).await? {
        return Err(ApiError::forbidden("Server is banned from room"));
    }
    Ok(())
}

fn text_of(room: &RoomState, kind: StateEventType, field: &str) -> Option<String> {
    room.content_of(&kind, "").and_then(|content| content.get(field).and_then(Value::as_str).map(str::to_owned))
}

fn world_readable(room: &RoomState) -> bool {
    text_of(room, StateEventType::RoomHistoryVisibility, "history_visibility").as_deref() == Some("world_readable")
}

/// Whether `server` has a user with one of `memberships` in `room_id`.
async fn has_member(state: &Services, room_id: &RoomId, server: &ServerName, memberships: &[&str]) -> ApiResult<bool> {
    for membership in memberships {
        if state.storage.members_with(room_id, membership).await?.iter().any(|user_id| user_id.server_name() == server) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `origin` may see `room` in a hierarchy.
async fn server_may_see(state: &Services, room: &RoomState, origin: &ServerName) -> ApiResult<bool> {
    let join_rule = text_of(room, StateEventType::RoomJoinRules, "join_rule");
    if matches!(join_rule.as_deref(), Some("public" | "knock" | "knock_restricted")) || world_readable(room) {
        return Ok(true);
    }
    if has_member(state, &room.room_id, origin, &["join", "invite"]).await? {
        return Ok(true);
    }
    if matches!(join_rule.as_deref(), Some("restricted")) {
        let rules = room.content_of(&StateEventType::RoomJoinRules, "").unwrap_or_default();
        for allowed in rules.get("allow").and_then(Value::as_array).into_iter().flatten() {
            let Some(allowed_room) = allowed.get("room_id").and_then(Value::as_str).and_then(|id| RoomId::parse(id).ok()) else { continue };
            if has_member(state, &allowed_room, origin, &["join"]).await? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

pub async fn hierarchy(state: AppState, request: Ruma<get_hierarchy::Request>) -> ApiResult<get_hierarchy::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    let unknown = || ApiError::not_found(format!("Unknown room: {}", body.room_id));
    let room = local_room(&state, &body.room_id).await?.ok_or_else(unknown)?;
    check_acl(&state, &body.room_id, origin).await?;
    if !server_may_see(&state, &room, origin).await? {
        return Err(unknown());
    }
    let children = children_of(&state, &body.room_id, body.suggested_only).await?;
    let mut response = get_hierarchy::Response { room: room_entry(&state, &room, &children).await?, children: Vec::new(), inaccessible_children: Vec::new() };
    for child in children.iter().take(MAX_CHILDREN) {
        let Some(child_id) = child.state_key.as_deref().and_then(|key| OwnedRoomId::try_from(key).ok()) else { continue };
        // Rooms this server is not in are for the asking server to find elsewhere.
        let Some(child_room) = local_room(&state, &child_id).await? else { continue };
        let allowed = server_acl::room_allows(&state.storage, &child_id, origin).await?;
        if !allowed || !server_may_see(&state, &child_room, origin).await? {
            response.inaccessible_children.push(child_id);
            continue;
        }
        let mut entry = room_entry(&state, &child_room, &[]).await?;
        if let Some(object) = entry.as_object_mut() {
            object.remove("children_state");
        }
        response.children.push(entry);
    }
    Ok(response)
}

pub async fn timestamp_to_event(state: AppState, request: Ruma<get_event_by_timestamp::v1::Request>) -> ApiResult<get_event_by_timestamp::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    let room = local_room(&state, &body.room_id).await?.ok_or_else(|| ApiError::not_found(format!("Unknown room: {}", body.room_id)))?;
    check_acl(&state, &body.room_id, origin).await?;
    if !world_readable(&room) && !has_member(&state, &body.room_id, origin, &["join"]).await? {
        return Err(ApiError::forbidden("Server is not in the room"));
    }
    let forward = body.dir == Direction::Forward;
    let ts = i64::try_from(u64::from(body.ts.0)).unwrap_or(i64::MAX);
    let event = state.storage.event_near_timestamp(&body.room_id, ts, forward).await?.ok_or_else(|| {
        let direction = if forward { "f" } else { "b" };
        ApiError::not_found(format!("Unable to find event from {} in direction {direction}", u64::from(body.ts.0)))
    })?;
    let origin_server_ts = MilliSecondsSinceUnixEpoch(UInt::new_saturating(event.origin_server_ts.max(0) as u64));
    Ok(get_event_by_timestamp::v1::Response::new(event.event_id, origin_server_ts))
}
