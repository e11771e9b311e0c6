//! What other servers send and ask about rooms: transactions
//! (`send/{txnId}`), `make_join`, `send_join` (v2), `make_leave`,
//! `send_leave` (v2), `make_knock`, `send_knock`, `invite` (v2), `get_missing_events`,
//! `event/{eventId}`, `state`, `state_ids`, `event_auth` and `backfill`.
//! The work is in `weft_services::federation`; what writes into a room
//! runs on the room's persister (`at_persister`).

use http::StatusCode;
use ruma::api::error::{ErrorKind, IncompatibleRoomVersionErrorData};
use ruma::{
    MilliSecondsSinceUnixEpoch,
    api::federation::{
        authorization::get_event_authorization,
        backfill::get_backfill,
        event::{get_event, get_missing_events, get_room_state, get_room_state_ids},
        membership::RawStrippedState,
        membership::{create_invite, create_join_event, create_knock_event, create_leave_event, prepare_join_event, prepare_knock_event, prepare_leave_event},
        transactions::send_transaction_message,
    },
};

use weft_services::{
    federation::{FederationRoomError, at_persister, edus, inbound, resident, sender::MAX_PDUS},
    services::AppState,
};

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

/// The most EDUs in one transaction (the specification's limit).
const MAX_EDUS: usize = 100;

fn api_error(error: FederationRoomError) -> ApiError {
    match error {
        FederationRoomError::Forbidden(reason) => ApiError::forbidden(reason),
        FederationRoomError::NotFound(reason) => ApiError::not_found(reason),
        FederationRoomError::BadRequest(reason) => ApiError::bad_json(reason),
        FederationRoomError::IncompatibleRoomVersion(version) => {
            let message = format!("Your homeserver does not support the features required to join this room (version {version})");
            match ruma::RoomVersionId::try_from(version.as_str()) {
                Ok(room_version) => {
                    ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::IncompatibleRoomVersion(IncompatibleRoomVersionErrorData::new(room_version)), message)
                }
                Err(_) => ApiError::custom(StatusCode::BAD_REQUEST, "M_INCOMPATIBLE_ROOM_VERSION", message),
            }
        }
        FederationRoomError::SpamRejected(rejection) => ApiError::spam_rejected(rejection, "This user is not permitted to send invites to this server/user"),
        FederationRoomError::Room(error) => error.into(),
        FederationRoomError::Storage(error) => error.into(),
    }
}

fn edu_error(error: edus::EduError) -> ApiError {
    match error {
        edus::EduError::Storage(error) => error.into(),
        writer @ edus::EduError::Writer { .. } => ApiError::custom(StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN", writer.to_string()),
    }
}

pub async fn send_transaction(state: AppState, request: Ruma<send_transaction_message::v1::Request>) -> ApiResult<send_transaction_message::v1::Response> {
    let origin = request.origin()?.to_owned();
    let body = &request.body;
    if body.origin != origin {
        return Err(ApiError::forbidden("The transaction's origin is not the server that signed the request"));
    }
    if body.pdus.len() as i64 > MAX_PDUS || body.edus.len() > MAX_EDUS {
        return Err(ApiError::bad_json("A transaction holds at most 50 PDUs and 100 EDUs"));
    }
    let answer = inbound::transaction(&state, &origin, body.transaction_id.as_str(), &body.pdus).await?;
    edus::handle(&state, &origin, &body.edus).await.map_err(edu_error)?;
    Ok(send_transaction_message::v1::Response::new(answer))
}

pub async fn make_join(state: AppState, request: Ruma<prepare_join_event::v1::Request>) -> ApiResult<prepare_join_event::v1::Response> {
    let origin = request.origin()?.to_owned();
    let body = &request.body;
    let (version, event) = at_persister::make_membership(&state, &origin, &body.room_id, &body.user_id, "join", Some(&body.ver)).await.map_err(api_error)?;
    let mut response = prepare_join_event::v1::Response::new(event);
    response.room_version = Some(version);
    Ok(response)
}

pub async fn send_join(state: AppState, request: Ruma<create_join_event::v2::Request>) -> ApiResult<create_join_event::v2::Response> {
    let origin = request.origin()?.to_owned();
    let body = &request.body;
    let answer = at_persister::send_join(&state, &origin, &body.room_id, &body.event_id, &body.pdu).await.map_err(api_error)?;
    let mut room_state = create_join_event::v2::RoomState::new();
    room_state.state = answer.state;
    room_state.auth_chain = answer.auth_chain;
    room_state.servers_in_room = Some(answer.servers_in_room);
    Ok(create_join_event::v2::Response::new(room_state))
}

pub async fn make_leave(state: AppState, request: Ruma<prepare_leave_event::v1::Request>) -> ApiResult<prepare_leave_event::v1::Response> {
    let origin = request.origin()?.to_owned();
    let body = &request.body;
    let (version, event) = at_persister::make_membership(&state, &origin, &body.room_id, &body.user_id, "leave", None).await.map_err(api_error)?;
    Ok(prepare_leave_event::v1::Response::new(Some(version), event))
}

pub async fn send_leave(state: AppState, request: Ruma<create_leave_event::v2::Request>) -> ApiResult<create_leave_event::v2::Response> {
    let origin = request.origin()?.to_owned();
    let body = &request.body;
    at_persister::send_leave(&state, &origin, &body.room_id, &body.event_id, &body.pdu).await.map_err(api_error)?;
    Ok(create_leave_event::v2::Response::new())
}

pub async fn make_knock(state: AppState, request: Ruma<prepare_knock_event::v1::Request>) -> ApiResult<prepare_knock_event::v1::Response> {
    let origin = request.origin()?.to_owned();
    let body = &request.body;
    let (version, event) = resident::make_knock(&state, &origin, &body.room_id, &body.user_id, &body.ver).await.map_err(api_error)?;
    Ok(prepare_knock_event::v1::Response::new(version, event))
}

pub async fn send_knock(state: AppState, request: Ruma<create_knock_event::v1::Request>) -> ApiResult<create_knock_event::v1::Response> {
    let origin = request.origin()?.to_owned();
    let body = &request.body;
    let stripped = resident::send_knock(&state, &origin, &body.room_id, &body.event_id, &body.pdu).await.map_err(api_error)?;
    Ok(create_knock_event::v1::Response::new(stripped.into_iter().map(RawStrippedState::Pdu).collect()))
}

pub async fn missing_events(state: AppState, request: Ruma<get_missing_events::v1::Request>) -> ApiResult<get_missing_events::v1::Response> {
    let origin = request.origin()?.to_owned();
    let body = &request.body;
    let limit = u64::from(body.limit) as usize;
    let min_depth = i64::try_from(u64::from(body.min_depth)).unwrap_or(i64::MAX);
    let events =
        resident::missing_events(&state, &origin, &body.room_id, &body.earliest_events, &body.latest_events, limit, min_depth).await.map_err(api_error)?;
    Ok(get_missing_events::v1::Response::new(events))
}

pub async fn event(state: AppState, request: Ruma<get_event::v1::Request>) -> ApiResult<get_event::v1::Response> {
    let origin = request.origin()?.to_owned();
    let pdu = resident::event(&state, &origin, &request.body.event_id).await.map_err(api_error)?;
    Ok(get_event::v1::Response::new(state.server_name.clone(), MilliSecondsSinceUnixEpoch::now(), pdu))
}

pub async fn state(state: AppState, request: Ruma<get_room_state::v1::Request>) -> ApiResult<get_room_state::v1::Response> {
    let origin = request.origin()?.to_owned();
    let body = &request.body;
    let (pdus, chain) = resident::state_before(&state, &origin, &body.room_id, &body.event_id).await.map_err(api_error)?;
    let outgoing = |events: &[(ruma::OwnedEventId, String)]| events.iter().filter_map(|(_, json)| weft_services::federation::pdus::outgoing(json)).collect();
    Ok(get_room_state::v1::Response::new(outgoing(&chain), outgoing(&pdus)))
}

pub async fn state_ids(state: AppState, request: Ruma<get_room_state_ids::v1::Request>) -> ApiResult<get_room_state_ids::v1::Response> {
    let origin = request.origin()?.to_owned();
    let body = &request.body;
    let (pdus, chain) = resident::state_before(&state, &origin, &body.room_id, &body.event_id).await.map_err(api_error)?;
    Ok(get_room_state_ids::v1::Response::new(chain.into_iter().map(|(id, _)| id).collect(), pdus.into_iter().map(|(id, _)| id).collect()))
}

pub async fn event_auth(state: AppState, request: Ruma<get_event_authorization::v1::Request>) -> ApiResult<get_event_authorization::v1::Response> {
    let origin = request.origin()?.to_owned();
    let body = &request.body;
    let chain = resident::event_auth(&state, &origin, &body.room_id, &body.event_id).await.map_err(api_error)?;
    Ok(get_event_authorization::v1::Response::new(chain))
}

pub async fn backfill(state: AppState, request: Ruma<get_backfill::v1::Request>) -> ApiResult<get_backfill::v1::Response> {
    let origin = request.origin()?.to_owned();
    let body = &request.body;
    let limit = u64::from(body.limit) as usize;
    let pdus = resident::backfill(&state, &origin, &body.room_id, &body.v, limit).await.map_err(api_error)?;
    Ok(get_backfill::v1::Response::new(state.server_name.clone(), MilliSecondsSinceUnixEpoch::now(), pdus))
}

pub async fn invite(state: AppState, request: Ruma<create_invite::v2::Request>) -> ApiResult<create_invite::v2::Response> {
    let origin = request.origin()?.to_owned();
    let body = &request.body;
    let event = at_persister::receive_invite(&state, &origin, &body.room_id, &body.event_id, &body.room_version, &body.event, &body.invite_room_state)
        .await
        .map_err(api_error)?;
    Ok(create_invite::v2::Response::new(event))
}
