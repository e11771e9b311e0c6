//! Creating rooms and changing membership: `createRoom`, `join` (by id and by
//! alias), `leave`, `invite`, `kick`, `ban`, `unban`, `forget`, `joined_rooms`.

use ruma::{
    OwnedUserId, RoomId, UserId,
    api::client::{
        membership::{ban_user, forget_room, invite_user, join_room_by_id, join_room_by_id_or_alias, joined_rooms, kick_user, leave_room, unban_user},
        room::{Visibility, create_room, upgrade_room},
    },
};
use serde_json::{Map, Value};

use weft_services::federation::at_persister;
use weft_services::rooms::{CreateRoom, Membership, RoomError, create::Preset};
use weft_services::services::AppState;

use super::spam_allows;
use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

fn object<T>(raw: &ruma::serde::Raw<T>, what: &str) -> ApiResult<Map<String, Value>> {
    weft_core::json::object_of(raw).ok_or_else(|| ApiError::bad_json(format!("{what} must be a JSON object")))
}

/// Refuses up front, as Synapse, a `power_level_content_override` whose
/// `users` leaves the creator out: the creator could not send the room's
/// initial state. With the spec's errcode for an invalid initial state.
/// Rooms whose creators need no power level entry (v12) are exempt.
fn creator_keeps_power(creator: &ruma::UserId, version: Option<&ruma::RoomVersionId>, levels: Option<&Map<String, Value>>) -> ApiResult<()> {
    let Some(users) = levels.and_then(|levels| levels.get("users")) else { return Ok(()) };
    let version = version.cloned().unwrap_or(weft_services::rooms::versions::DEFAULT);
    let exempt = weft_services::rooms::versions::rules(&version).is_some_and(|rules| rules.authorization.explicitly_privilege_room_creators);
    if exempt || users.as_object().is_some_and(|users| users.contains_key(creator.as_str())) {
        return Ok(());
    }
    Err(ApiError::new(
        http::StatusCode::BAD_REQUEST,
        ruma::api::error::ErrorKind::InvalidRoomState,
        format!("Not a valid power_level_content_override: 'users' did not contain {creator}"),
    ))
}

/// The local alias `room_alias_name` asks for. As Synapse, a name holding
/// whitespace or a ':' (a whole alias given where its localpart belongs) is
/// refused; so is one with a control character.
fn alias_from_name(state: &AppState, name: &str) -> ApiResult<ruma::OwnedRoomAliasId> {
    super::directory::check_alias_localpart(name)?;
    if name.contains(':') {
        return Err(ApiError::invalid_param(
            "':' is not permitted in the room alias name. Please note this expects a local part: 'wombat', not '#wombat:example.com'.",
        ));
    }
    ruma::OwnedRoomAliasId::try_from(format!("#{name}:{}", state.server_name))
        .map_err(|_| ApiError::invalid_param("room_alias_name does not make a valid alias"))
}

/// `rc_room_creation`, as Synapse applies it to `createRoom` and upgrades:
/// checked first, then the request counts against `rc_message` too, then
/// against `rc_room_creation`.
pub(super) fn limit_room_creation(state: &AppState, sender: &crate::auth::Sender) -> ApiResult<()> {
    if !sender.rate_limited {
        return Ok(());
    }
    let user_id = &sender.user_id;
    let limits = &state.rate_limits;
    limits.room_creation.peek(user_id.as_str()).map_err(ApiError::limit_exceeded)?;
    limits.message.acquire(user_id.as_str()).map_err(ApiError::limit_exceeded)?;
    limits.room_creation.acquire(user_id.as_str()).map_err(ApiError::limit_exceeded)
}

/// `rc_invites`, as Synapse applies it to one invite: by room, by invitee,
/// then by inviter, each counted as it passes.
fn limit_invite(state: &AppState, room_id: &RoomId, sender: &crate::auth::Sender, invitee: &UserId) -> ApiResult<()> {
    if !sender.rate_limited {
        return Ok(());
    }
    let inviter = &sender.user_id;
    let limits = &state.rate_limits;
    limits.invites_per_room.acquire(room_id.as_str()).map_err(ApiError::limit_exceeded)?;
    limits.invites_per_user.acquire(invitee.as_str()).map_err(ApiError::limit_exceeded)?;
    limits.invites_per_issuer.acquire(inviter.as_str()).map_err(ApiError::limit_exceeded)
}

/// Refuses an invite to a user of this server that has no account. Synapse
/// accepts such invites (they wait for someone to register the name); Weft
/// refuses them, as Dendrite does, so that a client cannot fill rooms with
/// invites nobody can answer.
/// A user an appservice claims is asked of it first (Synapse's user query):
/// the appservice registers its puppet and answers 200, and the invite goes on.
async fn invitee_exists(state: &AppState, invitee: &UserId) -> ApiResult<()> {
    if invitee.server_name() == state.server_name
        && state.storage.user(invitee).await?.is_none()
        && !(weft_services::appservices::query_user(state, invitee.as_str()).await && state.storage.user(invitee).await?.is_some())
    {
        return Err(ApiError::not_found(format!("Unknown user {invitee}")));
    }
    Ok(())
}

pub async fn create(state: AppState, request: Ruma<create_room::v3::Request>) -> ApiResult<create_room::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    limit_room_creation(&state, sender)?;
    if body.initial_state.len() > weft_services::rooms::create::MAX_INITIAL_STATE {
        return Err(ApiError::invalid_param(format!("initial_state has more than {} entries", weft_services::rooms::create::MAX_INITIAL_STATE)));
    }
    // As Synapse: more invites than `rc_invites.per_room` allows at once
    // are refused up front (none of them is counted).
    if body.invite.len() as f64 > state.rate_limits.invites_per_room.burst_count() {
        return Err(ApiError::unknown(http::StatusCode::BAD_REQUEST, "Cannot invite so many users at once"));
    }
    for invitee in &body.invite {
        invitee_exists(&state, invitee).await?;
    }
    if let Some(version) = &body.room_version
        && weft_services::rooms::versions::rules(version).is_none()
    {
        return Err(RoomError::UnsupportedVersion(version.to_string()).into());
    }
    let power_level_content_override = body.power_level_content_override.as_ref().map(|c| object(c, "power_level_content_override")).transpose()?;
    creator_keeps_power(&sender.user_id, body.room_version.as_ref(), power_level_content_override.as_ref())?;
    let preset = body.preset.as_ref().map(|preset| match preset.as_str() {
        "trusted_private_chat" => Ok(Preset::TrustedPrivateChat),
        "public_chat" => Ok(Preset::PublicChat),
        "private_chat" => Ok(Preset::PrivateChat),
        other => Err(ApiError::bad_json(format!("unknown preset `{other}`"))),
    });
    let mut initial_state = Vec::new();
    for event in &body.initial_state {
        let event = object(event, "an initial_state event")?;
        let kind = event.get("type").and_then(Value::as_str).ok_or_else(|| ApiError::bad_json("initial_state event without a type"))?;
        let state_key = match event.get("state_key") {
            None => "",
            Some(Value::String(state_key)) => state_key,
            Some(_) => return Err(ApiError::bad_json("An initial_state event's state_key must be a string")),
        };
        let content = event.get("content").cloned().unwrap_or_else(|| Value::Object(Map::new()));
        if matches!(kind, "m.room.create" | "m.room.member") {
            return Err(ApiError::bad_json(format!("{kind} cannot be set through initial_state")));
        }
        initial_state.push((kind.to_owned(), state_key.to_owned(), content));
    }
    let create = CreateRoom {
        room_version: body.room_version.clone(),
        preset: preset.transpose()?,
        public: body.visibility == Visibility::Public,
        creation_content: body.creation_content.as_ref().map(|c| object(c, "creation_content")).transpose()?,
        power_level_content_override,
        initial_state,
        name: body.name.clone(),
        topic: body.topic.clone(),
        invite: body.invite.clone(),
        is_direct: body.is_direct,
        alias: body.room_alias_name.as_deref().map(|name| alias_from_name(&state, name)).transpose()?,
        create_ts: None,
    };
    let checker = &state.spam_checker;
    // The request as the checker sees it (Synapse passes the request body).
    let config = serde_json::json!({
        "preset": body.preset.as_ref().map(|p| p.as_str()),
        "visibility": body.visibility.as_str(),
        "name": body.name,
        "topic": body.topic,
        "invite": body.invite,
        "is_direct": body.is_direct,
        "room_version": body.room_version.as_ref().map(|v| v.as_str()),
        "room_alias_name": body.room_alias_name,
    });
    spam_allows(checker.user_may_create_room(&sender.user_id, &config).await, "You are not permitted to create rooms")?;
    if let Some(alias) = &create.alias {
        super::appservice::may_modify_alias(&state, sender, alias)?;
        spam_allows(checker.user_may_create_room_alias(&sender.user_id, alias).await, "You are not permitted to create this alias")?;
    }
    let room_id = state.rooms.create_room(&state, &sender.user_id, create).await?;
    if body.visibility == Visibility::Public {
        // As Synapse: a refusal keeps the room but does not publish it.
        if !matches!(checker.user_may_publish_room(&sender.user_id, &room_id).await, weft_services::plugins::spam::SpamVerdict::Allow) {
            state.storage.set_room_published(&room_id, false).await?;
        }
    }
    Ok(create_room::v3::Response::new(room_id))
}

pub async fn join_by_id(state: AppState, request: Ruma<join_room_by_id::v3::Request>) -> ApiResult<join_room_by_id::v3::Response> {
    let sender = request.sender()?;
    let room_id = &request.body.room_id;
    may_join(&state, room_id, sender).await?;
    if join_remotely(&state, room_id, sender, &[], request.body.reason.as_deref()).await? {
        return Ok(join_room_by_id::v3::Response::new(room_id.clone()));
    }
    state.rooms.set_membership(&state, room_id, &sender.user_id, &sender.user_id, Membership::Join, request.body.reason.as_deref()).await?;
    Ok(join_room_by_id::v3::Response::new(room_id.clone()))
}

pub async fn join_by_id_or_alias(state: AppState, request: Ruma<join_room_by_id_or_alias::v3::Request>) -> ApiResult<join_room_by_id_or_alias::v3::Response> {
    let sender = request.sender()?;
    let (room_id, servers) = match ruma::OwnedRoomId::try_from(request.body.room_id_or_alias.clone()) {
        Ok(room_id) => (room_id, request.body.via.clone()),
        Err(alias) if alias.server_name() != state.server_name => super::federated::alias(&state, &alias).await?,
        Err(alias) => (super::directory::resolve_alias(&state, &alias).await?.ok_or_else(|| ApiError::not_found("Room alias not found"))?, Vec::new()),
    };
    may_join(&state, &room_id, sender).await?;
    if join_remotely(&state, &room_id, sender, &servers, request.body.reason.as_deref()).await? {
        return Ok(join_room_by_id_or_alias::v3::Response::new(room_id));
    }
    state.rooms.set_membership(&state, &room_id, &sender.user_id, &sender.user_id, Membership::Join, request.body.reason.as_deref()).await?;
    Ok(join_room_by_id_or_alias::v3::Response::new(room_id))
}

/// Joins a room this server is not in (unknown, known only from an
/// invite, or left by all its users) through other servers: those the
/// client named, the inviter's (or whoever last changed the user's
/// membership), the room id's, then those this server last knew in the
/// room. `false` when this server is in the room, or knows the room and
/// no other server to ask (a local room everyone left: its state here is
/// the room's).
async fn join_remotely(
    state: &AppState,
    room_id: &ruma::RoomId,
    sender: &crate::auth::Sender,
    servers: &[ruma::OwnedServerName],
    reason: Option<&str>,
) -> ApiResult<bool> {
    // A room known only from an invite has no create event here; the state
    // of a room all this server's users left is stale.
    let known = state.storage.room_version(room_id).await?.is_some() && state.storage.current_state_event(room_id, "m.room.create", "").await?.is_some();
    if known && state.storage.server_is_joined(room_id, &state.server_name).await? {
        return Ok(false);
    }
    let mut servers = servers.to_vec();
    if let Some(invite) = state.storage.current_state_event(room_id, "m.room.member", sender.user_id.as_str()).await? {
        servers.push(invite.sender.server_name().to_owned());
    }
    if let Some(server) = room_id.server_name() {
        servers.push(server.to_owned());
    }
    if known {
        servers.extend(weft_services::federation::inbound::servers_in_room(state, room_id).await?.iter().filter_map(|server| server.as_str().try_into().ok()));
        if servers.iter().all(|server| *server == state.server_name) {
            return Ok(false);
        }
    }
    weft_services::federation::at_persister::join_remote(state, room_id, &sender.user_id, &servers, reason).await?;
    Ok(true)
}

/// Counts the join against `rc_joins.local` unless the user is joined
/// already (as Synapse: a repeated join only refreshes the profile), then
/// asks the spam checkers whether the user may join, telling them whether
/// the user holds an invite.
async fn may_join(state: &AppState, room_id: &ruma::RoomId, sender: &crate::auth::Sender) -> ApiResult<()> {
    let user_id = &sender.user_id;
    let history = state.storage.membership_history(room_id, user_id).await?;
    let current = history.last().map(|(_, membership)| membership.as_str());
    if current != Some("join") && sender.rate_limited {
        state.rate_limits.joins_local.acquire(user_id.as_str()).map_err(ApiError::limit_exceeded)?;
    }
    let invited = current == Some("invite");
    spam_allows(state.spam_checker.user_may_join_room(user_id, room_id, invited).await, "You are not permitted to join this room")
}

/// Membership changes of a room the sender is not in read as "forbidden",
/// so that they reveal nothing about rooms the sender cannot see.
fn not_in_room(error: RoomError) -> ApiError {
    match error {
        RoomError::UnknownRoom => ApiError::forbidden("You are not in this room"),
        other => other.into(),
    }
}

pub async fn leave(state: AppState, request: Ruma<leave_room::v3::Request>) -> ApiResult<leave_room::v3::Response> {
    let sender = request.sender()?;
    let reason = request.body.reason.as_deref();
    // A room this server is not in, known from an invite or a knock: the leave goes through another server.
    if at_persister::leave_remote(&state, &request.body.room_id, &sender.user_id, reason).await?.is_some() {
        return Ok(leave_room::v3::Response::new());
    }
    state.rooms.set_membership(&state, &request.body.room_id, &sender.user_id, &sender.user_id, Membership::Leave, reason).await.map_err(not_in_room)?;
    Ok(leave_room::v3::Response::new())
}

pub async fn invite(state: AppState, request: Ruma<invite_user::v3::Request>) -> ApiResult<invite_user::v3::Response> {
    let sender = request.sender()?;
    let invite_user::v3::InvitationRecipient::UserId(recipient) = &request.body.recipient else {
        return Err(ApiError::unknown(http::StatusCode::BAD_REQUEST, "Third-party invites are not supported yet"));
    };
    limit_invite(&state, &request.body.room_id, sender, &recipient.user_id)?;
    invitee_exists(&state, &recipient.user_id).await?;
    let verdict = state.spam_checker.user_may_invite(&sender.user_id, &recipient.user_id, &request.body.room_id).await;
    spam_allows(verdict, "You are not permitted to invite this user")?;
    change(&state, &request.body.room_id, &sender.user_id, &recipient.user_id, Membership::Invite, recipient.reason.as_deref()).await?;
    Ok(invite_user::v3::Response::new())
}

pub async fn kick(state: AppState, request: Ruma<kick_user::v3::Request>) -> ApiResult<kick_user::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    change(&state, &body.room_id, &sender.user_id, &body.user_id, Membership::Leave, body.reason.as_deref()).await?;
    Ok(kick_user::v3::Response::new())
}

pub async fn ban(state: AppState, request: Ruma<ban_user::v3::Request>) -> ApiResult<ban_user::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    change(&state, &body.room_id, &sender.user_id, &body.user_id, Membership::Ban, body.reason.as_deref()).await?;
    Ok(ban_user::v3::Response::new())
}

pub async fn unban(state: AppState, request: Ruma<unban_user::v3::Request>) -> ApiResult<unban_user::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let room = weft_services::rooms::RoomState::load(&state, &body.room_id).await.map_err(not_in_room)?;
    if room.membership_of(&body.user_id).as_deref() != Some("ban") {
        return Err(ApiError::forbidden("The user is not banned"));
    }
    change(&state, &body.room_id, &sender.user_id, &body.user_id, Membership::Leave, body.reason.as_deref()).await?;
    Ok(unban_user::v3::Response::new())
}

async fn change(
    state: &AppState,
    room_id: &ruma::RoomId,
    sender: &ruma::UserId,
    target: &OwnedUserId,
    membership: Membership,
    reason: Option<&str>,
) -> ApiResult<()> {
    state.rooms.set_membership(state, room_id, sender, target, membership, reason).await.map_err(not_in_room)?;
    Ok(())
}

pub async fn forget(state: AppState, request: Ruma<forget_room::v3::Request>) -> ApiResult<forget_room::v3::Response> {
    let sender = request.sender()?;
    let room = weft_services::rooms::RoomState::load(&state, &request.body.room_id).await.map_err(not_in_room)?;
    if matches!(room.membership_of(&sender.user_id).as_deref(), Some("join" | "invite" | "knock")) {
        return Err(ApiError::unknown(http::StatusCode::BAD_REQUEST, "Leave the room before forgetting it"));
    }
    state.storage.forget_room(&sender.user_id, &request.body.room_id).await?;
    Ok(forget_room::v3::Response::new())
}

pub async fn joined(state: AppState, request: Ruma<joined_rooms::v3::Request>) -> ApiResult<joined_rooms::v3::Response> {
    let sender = request.sender()?;
    let rooms = state.storage.memberships_of(&sender.user_id).await?;
    Ok(joined_rooms::v3::Response::new(rooms.into_iter().filter(|(_, m, _)| m == "join").map(|(room, _, _)| room).collect()))
}

pub async fn knock(
    state: AppState,
    request: Ruma<ruma::api::client::knock::knock_room::v3::Request>,
) -> ApiResult<ruma::api::client::knock::knock_room::v3::Response> {
    let sender = request.sender()?;
    let (room_id, mut servers) = match ruma::OwnedRoomId::try_from(request.body.room_id_or_alias.clone()) {
        Ok(room_id) => (room_id, request.body.via.clone()),
        Err(alias) if alias.server_name() != state.server_name => super::federated::alias(&state, &alias).await?,
        Err(alias) => (super::directory::resolve_alias(&state, &alias).await?.ok_or_else(|| ApiError::not_found("Room alias not found"))?, Vec::new()),
    };
    let reason = request.body.reason.as_deref();
    // A room this server is not in (unknown, or known from an invite or an earlier knock): through another server.
    if state.storage.current_state_event(&room_id, "m.room.create", "").await?.is_none() {
        if let Some(server) = room_id.server_name() {
            servers.push(server.to_owned());
        }
        at_persister::knock_remote(&state, &room_id, &sender.user_id, &servers, reason).await?;
        return Ok(ruma::api::client::knock::knock_room::v3::Response::new(room_id));
    }
    state.rooms.set_membership(&state, &room_id, &sender.user_id, &sender.user_id, Membership::Knock, reason).await.map_err(|error| match error {
        RoomError::UnknownRoom => ApiError::not_found("Unknown room"),
        other => other.into(),
    })?;
    Ok(ruma::api::client::knock::knock_room::v3::Response::new(room_id))
}

pub async fn upgrade(state: AppState, request: Ruma<upgrade_room::v3::Request>) -> ApiResult<upgrade_room::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    limit_room_creation(&state, sender)?;
    let new_room = state.rooms.upgrade(&state, &sender.user_id, &body.room_id, body.new_version.clone(), &body.additional_creators).await?;
    Ok(upgrade_room::v3::Response::new(new_room))
}
