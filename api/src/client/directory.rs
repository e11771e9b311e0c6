//! Room aliases (`/directory/room/{alias}`, `/rooms/{roomId}/aliases`) and
//! the public room directory (`/publicRooms`, `/directory/list/room/{roomId}`).
//!
//! Creating an alias needs membership of the room; deleting one needs to be
//! its creator, a server admin, or allowed to set the room's canonical alias
//! (as Synapse). Publishing needs the power to set the canonical alias.
//! Aliases in an appservice's exclusive namespace are its own (`M_EXCLUSIVE`
//! for others); an appservice manages those of its namespace without being
//! in the room (`appservice::may_modify_alias`).

use ruma::{
    RoomAliasId, RoomId, UInt, UserId,
    api::client::{
        alias::{create_alias, delete_alias, get_alias},
        directory::{get_public_rooms_filtered, get_room_visibility},
        room::{Visibility, aliases},
    },
    directory::PublicRoomsChunk,
    events::StateEventType,
};
use serde_json::Value;

use weft_services::rooms::{RoomError, RoomState, visibility::Visibility as History};
use weft_services::services::{AppState, Services};
use weft_storage::StorageError;

use crate::{
    auth::Sender,
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

/// The most rooms one page of the directory holds.
const MAX_PAGE: usize = 500;

fn local_alias(state: &Services, alias: &RoomAliasId) -> ApiResult<()> {
    if alias.server_name() != state.server_name {
        return Err(ApiError::invalid_param("Only aliases of this server can be managed here"));
    }
    Ok(())
}

/// Refuses an alias localpart holding whitespace or a control character:
/// Synapse refuses whitespace in `createRoom`'s `room_alias_name`, and Weft
/// holds `PUT /directory/room/{alias}` to the same rule.
pub(super) fn check_alias_localpart(localpart: &str) -> ApiResult<()> {
    if localpart.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::invalid_param("Invalid characters in room alias"));
    }
    Ok(())
}

async fn room_state(state: &Services, room_id: &RoomId) -> ApiResult<RoomState> {
    RoomState::load(state, room_id).await.map_err(|error| match error {
        RoomError::UnknownRoom => ApiError::not_found("Unknown room"),
        other => other.into(),
    })
}

fn may_set_canonical_alias(room: &RoomState, user_id: &UserId) -> bool {
    room.membership_of(user_id).as_deref() == Some("join") && room.power_level_of(user_id) >= room.state_level_for("m.room.canonical_alias")
}

pub async fn create(state: AppState, request: Ruma<create_alias::v3::Request>) -> ApiResult<create_alias::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    local_alias(&state, &body.room_alias)?;
    check_alias_localpart(body.room_alias.alias())?;
    super::appservice::may_modify_alias(&state, sender, &body.room_alias)?;
    let room = room_state(&state, &body.room_id).await?;
    // As Synapse, an appservice needs only the alias in its namespace.
    if sender.appservice.is_none() && room.membership_of(&sender.user_id).as_deref() != Some("join") {
        return Err(ApiError::forbidden("You must be in the room to give it an alias"));
    }
    super::spam_allows(state.spam_checker.user_may_create_room_alias(&sender.user_id, &body.room_alias).await, "You are not permitted to create this alias")?;
    state.storage.create_alias(&body.room_alias, &body.room_id, &sender.user_id).await.map_err(|error| match error {
        StorageError::Conflict => ApiError::new(http::StatusCode::CONFLICT, ruma::api::error::ErrorKind::RoomInUse, "Room alias already exists"),
        other => other.into(),
    })?;
    Ok(create_alias::v3::Response::new())
}

pub async fn get(state: AppState, request: Ruma<get_alias::v3::Request>) -> ApiResult<get_alias::v3::Response> {
    let alias = &request.body.room_alias;
    if alias.server_name() != state.server_name {
        let (room_id, servers) = super::federated::alias(&state, alias).await?;
        return Ok(get_alias::v3::Response::new(room_id, servers));
    }
    let room_id = resolve_alias(&state, alias).await?.ok_or_else(|| ApiError::not_found("Room alias not found"))?;
    Ok(get_alias::v3::Response::new(room_id, vec![state.server_name.clone()]))
}

/// The room a local alias points at; an alias this server lacks is asked of
/// the appservices claiming it (Synapse's alias query: the appservice creates
/// the room and the alias before it answers 200).
pub(crate) async fn resolve_alias(state: &Services, alias: &RoomAliasId) -> ApiResult<Option<ruma::OwnedRoomId>> {
    if let Some((room_id, _)) = state.storage.alias(alias).await? {
        return Ok(Some(room_id));
    }
    if alias.server_name() != state.server_name || !weft_services::appservices::query_alias(state, alias.as_str()).await {
        return Ok(None);
    }
    Ok(state.storage.alias(alias).await?.map(|(room_id, _)| room_id))
}

pub async fn delete(state: AppState, request: Ruma<delete_alias::v3::Request>) -> ApiResult<delete_alias::v3::Response> {
    let sender = request.sender()?;
    let alias = &request.body.room_alias;
    local_alias(&state, alias)?;
    let (room_id, creator) = state.storage.alias(alias).await?.ok_or_else(|| ApiError::not_found("Room alias not found"))?;
    // As Synapse: an appservice deletes the aliases of its namespace.
    if sender.appservice.is_none() && !may_delete(&state, sender, &room_id, &creator).await? {
        return Err(ApiError::forbidden("You may not delete this alias"));
    }
    super::appservice::may_modify_alias(&state, sender, alias)?;
    state.storage.delete_alias(alias).await?;
    drop_from_canonical_alias(&state, &sender.user_id, &room_id, alias).await?;
    Ok(delete_alias::v3::Response::new())
}

/// As Synapse: a deleted alias leaves the room's canonical alias event too,
/// sent by whoever deleted it; without the power to, the event stays.
async fn drop_from_canonical_alias(state: &Services, user_id: &UserId, room_id: &RoomId, alias: &RoomAliasId) -> ApiResult<()> {
    let Some(event) = state.storage.current_state_event(room_id, "m.room.canonical_alias", "").await? else { return Ok(()) };
    let Ok(pdu) = serde_json::from_str::<Value>(&event.json) else { return Ok(()) };
    let Some(mut content) = pdu["content"].as_object().cloned() else { return Ok(()) };
    let listed = |value: &Value| value.as_str() == Some(alias.as_str());
    let mut changed = false;
    if content.get("alias").is_some_and(listed) {
        content.remove("alias");
        changed = true;
    }
    if let Some(Value::Array(alternatives)) = content.get_mut("alt_aliases")
        && alternatives.iter().any(listed)
    {
        alternatives.retain(|alternative| !listed(alternative));
        if alternatives.is_empty() {
            content.remove("alt_aliases");
        }
        changed = true;
    }
    if !changed {
        return Ok(());
    }
    let outgoing =
        weft_services::rooms::Outgoing { kind: "m.room.canonical_alias", state_key: Some(""), content: Value::Object(content), txn: None, redacts: None };
    match state.rooms.send(state, room_id, user_id, outgoing).await {
        Ok(_) => Ok(()),
        Err(RoomError::Forbidden(reason)) => {
            tracing::info!(%room_id, %reason, "alias deleted; the canonical alias event was left as it was");
            Ok(())
        }
        Err(other) => Err(other.into()),
    }
}

async fn may_delete(state: &Services, sender: &Sender, room_id: &RoomId, creator: &UserId) -> ApiResult<bool> {
    if sender.admin || sender.user_id == creator {
        return Ok(true);
    }
    Ok(RoomState::load(state, room_id).await.is_ok_and(|room| may_set_canonical_alias(&room, &sender.user_id)))
}

pub async fn room_aliases(state: AppState, request: Ruma<aliases::v3::Request>) -> ApiResult<aliases::v3::Response> {
    let sender = request.sender()?;
    let room_id = &request.body.room_id;
    let history = History::load(&state.storage, room_id, &sender.user_id).await?;
    if !history.can_read_room_now() {
        return Err(ApiError::forbidden("You are not in this room"));
    }
    Ok(aliases::v3::Response::new(state.storage.aliases_of(room_id).await?))
}

pub async fn get_visibility(state: AppState, request: Ruma<get_room_visibility::v3::Request>) -> ApiResult<get_room_visibility::v3::Response> {
    let published = state.storage.room_published(&request.body.room_id).await?.ok_or_else(|| ApiError::not_found("Unknown room"))?;
    Ok(get_room_visibility::v3::Response::new(if published { Visibility::Public } else { Visibility::Private }))
}

pub mod set_room_visibility {
    //! `PUT /directory/list/room/{roomId}`, declared here because ruma's
    //! request requires `visibility`, which the spec lets default to `public`.
    use ruma::{
        OwnedRoomId,
        api::{auth_scheme::AccessToken, client::room::Visibility, metadata, request, response},
    };

    metadata! {
        method: PUT,
        rate_limited: false,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/directory/list/room/{room_id}",
            1.1 => "/_matrix/client/v3/directory/list/room/{room_id}",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id: OwnedRoomId,
        pub visibility: Option<Visibility>,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

pub async fn set_visibility(state: AppState, request: Ruma<set_room_visibility::Request>) -> ApiResult<set_room_visibility::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let room = room_state(&state, &body.room_id).await?;
    if !sender.admin && !may_set_canonical_alias(&room, &sender.user_id) {
        return Err(ApiError::forbidden("You may not change this room's directory listing"));
    }
    let public = match body.visibility.as_ref().unwrap_or(&Visibility::Public) {
        Visibility::Public => true,
        Visibility::Private => false,
        other => return Err(ApiError::invalid_param(format!("unknown visibility `{}`", other.as_str()))),
    };
    if public {
        super::spam_allows(state.spam_checker.user_may_publish_room(&sender.user_id, &body.room_id).await, "You are not permitted to publish rooms")?;
    }
    state.storage.set_room_published(&body.room_id, public).await?;
    Ok(set_room_visibility::Response::default())
}

pub mod get_public_rooms {
    //! `GET /publicRooms`, declared here with an optional access token
    //! where ruma's takes none: listing another server's directory
    //! (`server`) asks it over federation, which needs a user, as in Synapse.
    use ruma::{
        OwnedServerName, UInt,
        api::{auth_scheme::AccessTokenOptional, metadata, request},
    };

    pub use ruma::api::client::directory::get_public_rooms::v3::Response;

    metadata! {
        method: GET,
        rate_limited: false,
        authentication: AccessTokenOptional,
        history: {
            1.0 => "/_matrix/client/r0/publicRooms",
            1.1 => "/_matrix/client/v3/publicRooms",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(query)]
        pub limit: Option<UInt>,
        #[ruma_api(query)]
        pub since: Option<String>,
        #[ruma_api(query)]
        pub server: Option<OwnedServerName>,
    }
}

/// The server whose directory is asked for, when it is another one.
fn remote_server<'a>(state: &Services, server: Option<&'a ruma::ServerName>) -> Option<&'a ruma::ServerName> {
    server.filter(|server| *server != state.server_name)
}

pub async fn public_rooms(state: AppState, request: Ruma<get_public_rooms::Request>) -> ApiResult<get_public_rooms::Response> {
    let body = &request.body;
    let network = ruma::directory::RoomNetwork::Matrix;
    let page = match remote_server(&state, body.server.as_deref()) {
        Some(server) => {
            request.sender()?;
            let remote = super::federated::RemoteDirectoryQuery { limit: body.limit, since: body.since.clone(), filter: None, network };
            super::federated::public_rooms(&state, server, remote).await?
        }
        None => directory_page(&state, body.limit, body.since.as_deref(), None, &[], &network, false).await?,
    };
    let mut response = get_public_rooms::Response::new(Vec::new());
    (response.chunk, response.next_batch, response.prev_batch, response.total_room_count_estimate) = page;
    Ok(response)
}

pub async fn public_rooms_filtered(
    state: AppState,
    request: Ruma<get_public_rooms_filtered::v3::Request>,
) -> ApiResult<get_public_rooms_filtered::v3::Response> {
    let body = &request.body;
    let term = body.filter.generic_search_term.as_deref();
    let page = match remote_server(&state, body.server.as_deref()) {
        Some(server) => {
            let filter = (term.is_some_and(|term| !term.is_empty()) || !body.filter.room_types.is_empty()).then(|| body.filter.clone());
            let remote = super::federated::RemoteDirectoryQuery { limit: body.limit, since: body.since.clone(), filter, network: body.room_network.clone() };
            super::federated::public_rooms(&state, server, remote).await?
        }
        None => directory_page(&state, body.limit, body.since.as_deref(), term, &body.filter.room_types, &body.room_network, false).await?,
    };
    let mut response = get_public_rooms_filtered::v3::Response::new();
    (response.chunk, response.next_batch, response.prev_batch, response.total_room_count_estimate) = page;
    Ok(response)
}

pub(crate) type Page = (Vec<PublicRoomsChunk>, Option<String>, Option<String>, Option<UInt>);

/// Published rooms, most members first, matched against the search term on
/// name, topic and alias, and of one of `room_types` when any is given
/// (`null` among them meaning rooms without a type); `since` tokens are
/// offsets (`o{n}`). `network`: the Matrix directory, an appservice's
/// network (`{appservice_id}|{network_id}`, as `/thirdparty/protocols`
/// names its instances), or all of them. For another server
/// (`for_federation`), rooms created with `m.federate: false` are left out.
pub(crate) async fn directory_page(
    state: &Services,
    limit: Option<UInt>,
    since: Option<&str>,
    term: Option<&str>,
    room_types: &[ruma::directory::RoomTypeFilter],
    network: &ruma::directory::RoomNetwork,
    for_federation: bool,
) -> ApiResult<Page> {
    let offset = match since {
        None => 0,
        Some(token) => token.strip_prefix('o').and_then(|n| n.parse::<usize>().ok()).ok_or_else(|| ApiError::invalid_param("Invalid since token"))?,
    };
    let limit = limit.map_or(MAX_PAGE, |limit| (u64::from(limit) as usize).clamp(1, MAX_PAGE));
    let term = term.map(str::to_lowercase).filter(|term| !term.is_empty());

    use ruma::directory::RoomNetwork;
    let mut published = match network {
        RoomNetwork::Matrix => state.storage.published_rooms().await?,
        RoomNetwork::All => {
            let mut all = state.storage.published_rooms().await?;
            all.extend(state.storage.appservice_listed_rooms(None).await?);
            all.sort();
            all.dedup_by(|a, b| a.0 == b.0);
            all
        }
        RoomNetwork::ThirdParty(instance) => match instance.split_once('|') {
            Some((appservice_id, network_id)) => state.storage.appservice_listed_rooms(Some((appservice_id, network_id))).await?,
            None => return Err(ApiError::invalid_param(format!("Unknown third_party_instance_id `{instance}`"))),
        },
        _ => Vec::new(),
    };
    published.sort_by(|(a_id, a_n), (b_id, b_n)| b_n.cmp(a_n).then_with(|| a_id.cmp(b_id)));
    let mut rooms = Vec::new();
    for (room_id, joined) in published {
        let Ok(room) = RoomState::load(state, &room_id).await else { continue };
        let text = |kind: StateEventType, field: &str| room.content_of(&kind, "").and_then(|c| c.get(field).and_then(Value::as_str).map(str::to_owned));
        let name = text(StateEventType::RoomName, "name");
        let topic = text(StateEventType::RoomTopic, "topic");
        let alias = text(StateEventType::RoomCanonicalAlias, "alias");
        let room_type = text(StateEventType::RoomCreate, "type");
        let federates = room.content_of(&StateEventType::RoomCreate, "").and_then(|c| c.get("m.federate").and_then(Value::as_bool)).unwrap_or(true);
        if for_federation && !federates {
            continue;
        }
        if !room_types.is_empty() && !room_types.iter().any(|wanted| wanted.as_str() == room_type.as_deref()) {
            continue;
        }
        if let Some(term) = &term {
            let matches = [&name, &topic, &alias].iter().any(|field| field.as_deref().is_some_and(|f| f.to_lowercase().contains(term)));
            if !matches {
                continue;
            }
        }
        let mut chunk = PublicRoomsChunk::from(ruma::directory::PublicRoomsChunkInit {
            room_id: room_id.clone(),
            num_joined_members: UInt::new_saturating(joined.max(0) as u64),
            world_readable: text(StateEventType::RoomHistoryVisibility, "history_visibility").as_deref() == Some("world_readable"),
            guest_can_join: text(StateEventType::RoomGuestAccess, "guest_access").as_deref() == Some("can_join"),
        });
        chunk.name = name;
        chunk.topic = topic;
        chunk.canonical_alias = alias.and_then(|a| ruma::OwnedRoomAliasId::try_from(a).ok());
        chunk.avatar_url = text(StateEventType::RoomAvatar, "url").map(ruma::OwnedMxcUri::from);
        chunk.room_type = room_type.map(|kind| kind.as_str().into());
        chunk.join_rule = text(StateEventType::RoomJoinRules, "join_rule").map(|rule| rule.as_str().into()).unwrap_or_default();
        rooms.push(chunk);
    }
    let total = rooms.len();
    let chunk: Vec<PublicRoomsChunk> = rooms.into_iter().skip(offset).take(limit).collect();
    let next = (offset + chunk.len() < total).then(|| format!("o{}", offset + chunk.len()));
    let prev = (offset > 0).then(|| format!("o{}", offset.saturating_sub(limit)));
    Ok((chunk, next, prev, Some(UInt::new_saturating(total as u64))))
}

/// Checks a new `m.room.canonical_alias` content for `room_id`, as the spec
/// asks: each alias it adds (to those already in the current event) must be
/// an alias, and one of this server's must point at the room. Aliases of
/// other servers cannot be resolved without federation and are let through.
pub(super) async fn check_canonical_alias(state: &Services, room_id: &RoomId, content: &Value) -> ApiResult<()> {
    let aliases_in = |content: &Value| -> Vec<Value> {
        let alt = content.get("alt_aliases").and_then(Value::as_array).cloned().unwrap_or_default();
        content.get("alias").into_iter().filter(|alias| !alias.is_null()).cloned().chain(alt).collect()
    };
    if content.get("alt_aliases").is_some_and(|alt| !alt.is_array()) {
        return Err(ApiError::invalid_param("alt_aliases must be a list of aliases"));
    }
    let current = state.storage.current_state_event(room_id, "m.room.canonical_alias", "").await?;
    let current: Vec<Value> =
        current.and_then(|event| serde_json::from_str::<Value>(&event.json).ok()).map(|pdu| aliases_in(&pdu["content"])).unwrap_or_default();
    for alias in aliases_in(content).iter().filter(|alias| !current.contains(alias)) {
        let alias =
            alias.as_str().and_then(|alias| RoomAliasId::parse(alias).ok()).ok_or_else(|| ApiError::invalid_param(format!("{alias} is not a room alias")))?;
        if alias.server_name() != state.server_name {
            continue;
        }
        if state.storage.alias(&alias).await?.is_none_or(|(target, _)| target != room_id) {
            return Err(ApiError::new(http::StatusCode::BAD_REQUEST, ruma::api::error::ErrorKind::BadAlias, format!("{alias} does not point to this room")));
        }
    }
    Ok(())
}
