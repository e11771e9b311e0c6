//! What the client API asks other servers: remote users' keys (`/keys/query`,
//! `/keys/claim`, one request per server, all at once), remote profiles,
//! remote room aliases and remote public room directories. A server that fails is reported as Synapse reports
//! it: in `failures` for keys, as the remote error (or 502 when it cannot be
//! reached) otherwise.

use std::{collections::BTreeMap, time::Duration};

use http::StatusCode;
use ruma::{
    OneTimeKeyAlgorithm, OwnedDeviceId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomAliasId, ServerName, UInt, UserId,
    api::federation::{
        directory::{get_public_rooms, get_public_rooms_filtered},
        keys::{claim_keys, get_keys},
        query::{get_profile_information, get_room_information},
    },
    directory::{Filter, PublicRoomsChunk, RoomNetwork},
};
use serde_json::{Value, json};

use weft_federation::FederationError;
use weft_services::services::Services;

use crate::error::{ApiError, ApiResult};

/// How long `/keys/query` and `/keys/claim` wait for a remote server
/// (Synapse's default `timeout` of those endpoints).
const KEYS_TIMEOUT: Duration = Duration::from_secs(10);

/// A failure as `/keys/query` lists it per server.
fn failure(error: &FederationError) -> Value {
    match error {
        FederationError::Remote { status, body, .. } => {
            json!({"status": status.as_u16(), "errcode": error.errcode().unwrap_or("M_UNKNOWN"), "message": body.to_string()})
        }
        other => json!({"status": 503, "message": other.to_string()}),
    }
}

/// The wanted entries of other servers, per server.
fn by_server<V: Clone>(state: &Services, wanted: &BTreeMap<OwnedUserId, V>) -> BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, V>> {
    let mut servers: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, V>> = BTreeMap::new();
    for (user_id, value) in wanted {
        if user_id.server_name() != state.server_name {
            servers.entry(user_id.server_name().to_owned()).or_default().insert(user_id.clone(), value.clone());
        }
    }
    servers
}

pub(super) async fn query_keys(state: &Services, wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>) -> Vec<(String, Result<get_keys::v1::Response, Value>)> {
    let asks = by_server(state, wanted).into_iter().map(|(server, users)| async move {
        let sent = state.federation.client.send_request(&server, get_keys::v1::Request::new(users));
        let answer = match tokio::time::timeout(KEYS_TIMEOUT, sent).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(failure(&error)),
            Err(_) => Err(json!({"status": 503, "message": "Not ready for retry"})),
        };
        (server.to_string(), answer)
    });
    futures_util::future::join_all(asks).await
}

type Claimed = BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, BTreeMap<ruma::OwnedOneTimeKeyId, ruma::serde::Raw<ruma::encryption::OneTimeKey>>>>;

pub(super) async fn claim_keys(
    state: &Services,
    wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>>,
) -> Vec<(String, Result<Claimed, Value>)> {
    let asks = by_server(state, wanted).into_iter().map(|(server, claims)| async move {
        let sent = state.federation.client.send_request(&server, claim_keys::v1::Request::new(claims));
        let answer = match tokio::time::timeout(KEYS_TIMEOUT, sent).await {
            Ok(Ok(response)) => Ok(response.one_time_keys),
            Ok(Err(error)) => Err(failure(&error)),
            Err(_) => Err(json!({"status": 503, "message": "Not ready for retry"})),
        };
        (server.to_string(), answer)
    });
    futures_util::future::join_all(asks).await
}

/// Several keys a device (the unstable `/keys/claim`), as Synapse asks:
/// Synapse's `unstable/user/keys/claim` when a device wants more than one
/// key, and the stable endpoint, with the first algorithm of each device,
/// otherwise or when the server does not know the unstable one.
pub(super) async fn claim_keys_counted(
    state: &Services,
    wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Vec<OneTimeKeyAlgorithm>>>,
) -> Vec<(String, Result<Claimed, Value>)> {
    let asks = by_server(state, wanted).into_iter().map(|(server, claims)| async move {
        let answer = tokio::time::timeout(KEYS_TIMEOUT, claim_counted_from(state, &server, claims)).await;
        let answer = match answer {
            Ok(Ok(claimed)) => Ok(claimed),
            Ok(Err(error)) => Err(failure(&error)),
            Err(_) => Err(json!({"status": 503, "message": "Not ready for retry"})),
        };
        (server.to_string(), answer)
    });
    futures_util::future::join_all(asks).await
}

async fn claim_counted_from(
    state: &Services,
    server: &ServerName,
    claims: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Vec<OneTimeKeyAlgorithm>>>,
) -> Result<Claimed, FederationError> {
    let client = &state.federation.client;
    if claims.values().flat_map(BTreeMap::values).any(|algorithms| algorithms.len() > 1) {
        let request = weft_federation::unstable::claim_keys::Request::new(claims.clone());
        match client.send_request(server, request).await {
            Ok(response) => return Ok(response.one_time_keys),
            // Synapse's `is_unknown_endpoint`.
            Err(error)
                if matches!(error.status().map(|status| status.as_u16()), Some(404 | 405)) && error.errcode().is_none_or(|code| code == "M_UNRECOGNIZED") => {}
            Err(error) => return Err(error),
        }
    }
    let first: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>> = claims
        .into_iter()
        .map(|(user_id, devices)| {
            (user_id, devices.into_iter().filter_map(|(device_id, algorithms)| Some((device_id, algorithms.into_iter().next()?))).collect())
        })
        .collect();
    Ok(client.send_request(server, claim_keys::v1::Request::new(first)).await?.one_time_keys)
}

/// A remote user's profile (one field when `field` is set).
pub(crate) async fn profile(state: &Services, user_id: &UserId, field: Option<&str>) -> ApiResult<BTreeMap<String, Value>> {
    let mut request = get_profile_information::v1::Request::new(user_id.to_owned());
    request.field = field.map(Into::into);
    let response = state.federation.client.send_request(user_id.server_name(), request).await.map_err(remote_error)?;
    Ok(response.data.iter().map(|(key, value)| (key.clone(), value.clone())).collect())
}

/// The room a remote alias points at and the servers to join it through.
pub(crate) async fn alias(state: &Services, alias: &RoomAliasId) -> ApiResult<(OwnedRoomId, Vec<OwnedServerName>)> {
    let request = get_room_information::v1::Request::new(alias.to_owned());
    let response = state.federation.client.send_request(alias.server_name(), request).await.map_err(remote_error)?;
    Ok((response.room_id, response.servers))
}

/// A remote server's error as the client's answer (Synapse passes 4xx
/// answers on); a server that cannot be reached or refused is a 502.
pub(crate) fn remote_error(error: FederationError) -> ApiError {
    match &error {
        // Only refusals about the thing asked for pass through: a remote 401
        // or 429 would read as this server's (a client logs out on 401).
        FederationError::Remote { status, body, .. } if matches!(status.as_u16(), 400 | 403 | 404) => {
            let message = body.get("error").and_then(Value::as_str).unwrap_or("The remote server refused the request").to_owned();
            ApiError::custom(*status, error.errcode().unwrap_or("M_UNKNOWN"), message)
        }
        FederationError::NotWhitelisted(_) => ApiError::forbidden(error.to_string()),
        _ => {
            tracing::info!(%error, "a request to another server failed");
            ApiError::custom(StatusCode::BAD_GATEWAY, "M_UNKNOWN", format!("Failed to reach the remote server: {error}"))
        }
    }
}

/// What a client asks of another server's public room directory.
pub(crate) struct RemoteDirectoryQuery {
    pub limit: Option<UInt>,
    pub since: Option<String>,
    /// A search: sent with `POST` (MSC2197), as Synapse does.
    pub filter: Option<Filter>,
    pub network: RoomNetwork,
}

/// A page of `server`'s public room directory. A filtered search a server
/// does not support (404, 405, `M_UNRECOGNIZED`) is done here on its whole
/// list, as Synapse falls back.
pub(crate) async fn public_rooms(state: &Services, server: &ServerName, query: RemoteDirectoryQuery) -> ApiResult<super::directory::Page> {
    let refused = |error: FederationError| match error.status() {
        Some(StatusCode::FORBIDDEN) => ApiError::forbidden(format!("You are not allowed to view the public rooms list of {server}")),
        _ => remote_error(error),
    };
    let client = &state.federation.client;
    let Some(filter) = query.filter else {
        let mut request = get_public_rooms::v1::Request::new();
        (request.limit, request.since, request.room_network) = (query.limit, query.since, query.network);
        let response = client.send_request(server, request).await.map_err(refused)?;
        return Ok((response.chunk, response.next_batch, response.prev_batch, response.total_room_count_estimate));
    };
    let mut request = get_public_rooms_filtered::v1::Request::new();
    (request.limit, request.since, request.filter, request.room_network) = (query.limit, query.since, filter.clone(), query.network.clone());
    match client.send_request(server, request).await {
        Ok(response) => return Ok((response.chunk, response.next_batch, response.prev_batch, response.total_room_count_estimate)),
        Err(error) if !search_unsupported(&error) => return Err(refused(error)),
        Err(_) => tracing::debug!(%server, "no filtered /publicRooms: filtering its whole list here"),
    }
    let mut request = get_public_rooms::v1::Request::new();
    request.room_network = query.network;
    let response = client.send_request(server, request).await.map_err(refused)?;
    let chunk: Vec<PublicRoomsChunk> = response.chunk.into_iter().filter(|room| room_matches(room, &filter)).collect();
    Ok((chunk, None, None, None))
}

fn search_unsupported(error: &FederationError) -> bool {
    matches!(error.status(), Some(StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED)) || error.errcode() == Some("M_UNRECOGNIZED")
}

/// Whether a listed room matches a search: the term in its name, topic or
/// canonical alias (case-insensitively), and one of the room types if any.
fn room_matches(room: &PublicRoomsChunk, filter: &Filter) -> bool {
    let typed = filter.room_types.is_empty() || filter.room_types.iter().any(|wanted| wanted.as_str() == room.room_type.as_ref().map(|kind| kind.as_str()));
    let term = filter.generic_search_term.as_deref().map(str::to_lowercase).filter(|term| !term.is_empty());
    let found = term.is_none_or(|term| {
        [room.name.as_deref(), room.topic.as_deref(), room.canonical_alias.as_ref().map(|alias| alias.as_str())]
            .into_iter()
            .flatten()
            .any(|text| text.to_lowercase().contains(&term))
    });
    typed && found
}
