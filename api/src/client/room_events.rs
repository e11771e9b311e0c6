//! Reading and writing a room's events: `send`, state `PUT`/`GET`,
//! `event/{id}`, `messages`, `members`, `joined_members`. Reads obey history
//! visibility (`weft_services::rooms::visibility`).

use ruma::{
    OwnedUserId, RoomId, UserId,
    api::{
        Direction,
        client::{
            membership::{get_member_events, joined_members},
            message::{get_message_events, send_message_event},
            room::get_room_event,
            state::{get_state_event_for_key, get_state_events, send_state_event},
        },
    },
    serde::Raw,
};
use serde_json::{Value, value::to_raw_value};

use weft_core::json::raw;
use weft_services::federation;
use weft_services::plugins::spam::SpamEvent;
use weft_services::rooms::{Outgoing, RoomError, aggregations::Aggregations, pdu::client_event, txn_ids::TransactionIds, visibility::Visibility};
use weft_services::services::{AppState, Services};
use weft_services::sync::{StreamToken, filter as sync_filter};
use weft_storage::StoredEvent;

use super::spam_allows;
use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

/// Synapse's message when a spam checker refuses an event.
const SPAM_MESSAGE: &str = "This message had been rejected as probable spam";

/// The most events `/messages` returns at once.
const MAX_MESSAGES_LIMIT: u64 = 1000;
/// How many batches of history one `/messages` may fetch from other servers.
const BACKFILL_ROUNDS: usize = 3;

fn content_of<T>(body: &Raw<T>) -> ApiResult<Value> {
    match serde_json::from_str::<Value>(body.json().get()) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(ApiError::bad_json("Event content must be a JSON object")),
    }
}

/// Reads about a room the user cannot see are refused without saying
/// whether it exists; so are reads of a room the user left and forgot
/// (unless it is world readable). What ignored users sent stays hidden.
pub(super) async fn visibility(state: &Services, room_id: &RoomId, user_id: &UserId) -> ApiResult<Visibility> {
    readable(state, room_id, user_id).await?.ok_or_else(|| ApiError::forbidden("You are not in this room"))
}

/// `visibility`, with `None` where it refuses.
async fn readable(state: &Services, room_id: &RoomId, user_id: &UserId) -> ApiResult<Option<Visibility>> {
    let visibility = Visibility::load(&state.storage, room_id, user_id).await?;
    match visibility.current_membership() {
        None if !visibility.can_read_room_now() => return Ok(None),
        Some((_, "leave" | "ban")) if !visibility.can_read_room_now() && state.storage.room_forgotten(user_id, room_id).await? => {
            return Ok(None);
        }
        _ => {}
    }
    Ok(Some(visibility.ignoring(state.push_rulesets.ignored(state, user_id).await?)))
}

fn forbidden_if_unknown(error: RoomError) -> ApiError {
    match error {
        RoomError::UnknownRoom => ApiError::forbidden("You are not in this room"),
        other => other.into(),
    }
}

/// The event size rule (413 `M_TOO_LARGE`) before the spam checkers, as
/// Synapse orders them; else an event past a checker's input cap would be
/// refused as spam. `candidate` holds some of the event's fields, so past
/// the limit it makes an event past it; building the event checks the rest.
fn size_allows(candidate: &Value) -> ApiResult<()> {
    let size = serde_json::to_string(candidate).map_or(0, |json| json.len());
    if size > weft_services::rooms::MAX_EVENT_SIZE {
        return Err(RoomError::TooLarge(size).into());
    }
    Ok(())
}

/// `rc_message`, as Synapse applies it: to every non-membership event a user sends.
fn rate_limit(state: &Services, sender: &crate::auth::Sender) -> ApiResult<()> {
    if !sender.rate_limited {
        return Ok(());
    }
    state.rate_limits.message.acquire(sender.user_id.as_str()).map_err(ApiError::limit_exceeded)
}

pub async fn send(state: AppState, request: Ruma<send_message_event::v3::Request>) -> ApiResult<send_message_event::v3::Response> {
    let sender = request.sender()?;
    rate_limit(&state, sender)?;
    let body = &request.body;
    let kind = body.event_type.to_string();
    if kind == "m.room.redaction" || kind.is_empty() {
        return Err(ApiError::bad_json("Use /redact for redactions"));
    }
    let content = content_of(&body.body)?;
    // A retried transaction gets its first answer, whatever the checks say now.
    if content["m.relates_to"]["rel_type"].is_string() && state.storage.txn_event(&sender.user_id, &sender.device_id, &request.action).await?.is_none() {
        super::relation_checks::check(&state, &body.room_id, &sender.user_id, &kind, &content).await?;
    }
    let candidate = serde_json::json!({"room_id": body.room_id, "sender": sender.user_id, "type": kind, "content": content});
    size_allows(&candidate)?;
    if let Some(event) = SpamEvent::from_json(candidate) {
        spam_allows(state.spam_checker.check_event_for_spam(&event).await, SPAM_MESSAGE)?;
    }
    let outgoing = Outgoing {
        kind: &kind,
        state_key: None,
        content,
        // Scoped like Synapse: the same id on another path is another request.
        txn: Some((&sender.device_id, request.action.as_str())),
        redacts: None,
    };
    let event_id = state.rooms.send(&state, &body.room_id, &sender.user_id, outgoing).await.map_err(forbidden_if_unknown)?;
    Ok(send_message_event::v3::Response::new(event_id))
}

pub async fn put_state(state: AppState, request: Ruma<send_state_event::v3::Request>) -> ApiResult<send_state_event::v3::Response> {
    let sender = request.sender()?;
    rate_limit(&state, sender)?;
    let body = &request.body;
    let kind = body.event_type.to_string();
    if kind == "m.room.member" && UserId::parse(&body.state_key).is_err() {
        return Err(ApiError::bad_json("The state key of a member event must be a user id"));
    }
    let content = content_of(&body.body)?;
    if kind == "m.room.canonical_alias" {
        super::directory::check_canonical_alias(&state, &body.room_id, &content).await?;
    }
    let candidate = serde_json::json!({"room_id": body.room_id, "sender": sender.user_id, "type": kind, "state_key": body.state_key, "content": content});
    size_allows(&candidate)?;
    let checker = &state.spam_checker;
    spam_allows(
        checker.user_may_send_state_event(&sender.user_id, &body.room_id, &kind, &body.state_key, &content).await,
        "You may not send this state event",
    )?;
    if let Some(event) = SpamEvent::from_json(candidate) {
        spam_allows(checker.check_event_for_spam(&event).await, SPAM_MESSAGE)?;
    }
    let outgoing = Outgoing { kind: &kind, state_key: Some(&body.state_key), content, txn: None, redacts: None };
    let event_id = state.rooms.send(&state, &body.room_id, &sender.user_id, outgoing).await.map_err(forbidden_if_unknown)?;
    Ok(send_state_event::v3::Response::new(event_id))
}

/// The state the user may see: the current state while joined (or in a
/// world-readable room), else the state when they left.
async fn visible_state(state: &Services, room_id: &RoomId, user_id: &UserId) -> ApiResult<Vec<StoredEvent>> {
    let visibility = visibility(state, room_id, user_id).await?;
    match visibility.current_membership() {
        Some((_, "join")) | None => Ok(state.storage.current_state(room_id).await?),
        _ if visibility.can_read_room_now() => Ok(state.storage.current_state(room_id).await?),
        Some((at, "leave" | "ban")) => Ok(state.storage.state_at(room_id, at).await?),
        Some(_) => Err(ApiError::forbidden("You are not in this room")),
    }
}

pub async fn get_state(state: AppState, request: Ruma<get_state_events::v3::Request>) -> ApiResult<get_state_events::v3::Response> {
    let sender = request.sender()?;
    let events = visible_state(&state, &request.body.room_id, &sender.user_id).await?;
    Ok(get_state_events::v3::Response::new(events.iter().map(|event| raw(&client_event(event, true))).collect()))
}

pub async fn get_state_for_key(state: AppState, request: Ruma<get_state_event_for_key::v3::Request>) -> ApiResult<get_state_event_for_key::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let kind = body.event_type.to_string();
    let events = visible_state(&state, &body.room_id, &sender.user_id).await?;
    let event = events
        .iter()
        .find(|event| event.kind == kind && event.state_key.as_deref() == Some(body.state_key.as_str()))
        .ok_or_else(|| ApiError::not_found("Event not found"))?;
    let full = client_event(event, true);
    let wanted = if body.format == get_state_event_for_key::v3::StateEventFormat::Event { full } else { full["content"].clone() };
    Ok(get_state_event_for_key::v3::Response::new(to_raw_value(&wanted).map_err(|_| ApiError::internal())?))
}

pub async fn get_event(state: AppState, request: Ruma<get_room_event::v3::Request>) -> ApiResult<get_room_event::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    // The spec and Synapse: 404 also for an event of a room the user cannot read.
    let not_found = || ApiError::not_found("Event not found");
    let visibility = readable(&state, &body.room_id, &sender.user_id).await?.ok_or_else(not_found)?;
    let event = state.storage.event(&body.event_id).await?.filter(|event| event.room_id == body.room_id).ok_or_else(not_found)?;
    if !visibility.can_see(&event, &sender.user_id) {
        return Err(not_found());
    }
    let txn_ids = TransactionIds::load(&state.storage, &sender.user_id, &sender.device_id, [&event]).await?;
    let aggregations = Aggregations::load(&state.storage, &sender.user_id, [&event], true).await?;
    Ok(get_room_event::v3::Response::new(raw(&aggregations.bundle(&event, txn_ids.client_event(&event, true)))))
}

/// A token's position in `room_id`: that of the room's events persister.
pub(super) fn room_token_position(state: &Services, room_id: &RoomId, token: &str) -> ApiResult<i64> {
    let writer = state.notifier.writers().events_writer_index(room_id.as_str());
    StreamToken::parse(token).map(|token| token.events.of_writer(writer)).map_err(|e| ApiError::invalid_param(e.to_string()))
}

pub(super) fn token_at(position: i64) -> String {
    StreamToken::events_at(position).to_string()
}

pub async fn messages(state: AppState, request: Ruma<get_message_events::v3::Request>) -> ApiResult<get_message_events::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let now = state.notifier.room_position(body.room_id.as_str());
    let backwards = body.dir == Direction::Backward;
    let from = match &body.from {
        Some(token) => room_token_position(&state, &body.room_id, token)?,
        None if backwards => now,
        None => 0,
    };
    let to = body.to.as_deref().map(|token| room_token_position(&state, &body.room_id, token)).transpose()?;
    let filter = &body.filter;
    let limit = u64::from(body.limit).min(filter.limit.map_or(u64::MAX, u64::from)).min(MAX_MESSAGES_LIMIT) as usize;
    let mut visibility = visibility(&state, &body.room_id, &sender.user_id).await?;
    let wanted = |event: &StoredEvent| sync_filter::event_matches(filter, event);
    // Backwards without `to` reaches into history fetched from other servers (below 0).
    let end_bound = if backwards { to.unwrap_or(i64::MIN) } else { to.unwrap_or(now).min(now) };
    let (after, upto) = if backwards { (end_bound, from) } else { (from, end_bound) };
    let mut walk = visible_events(&state, &body.room_id, &sender.user_id, &visibility, after, upto, limit, backwards, wanted).await?;
    if backwards && to.is_none() && walk.exhausted && walk.events.len() < limit {
        // The earliest event this server has is reached: ask the room's
        // other servers for what came before, a few rounds at most.
        for _ in 0..BACKFILL_ROUNDS {
            if federation::backfill::backfill(&state, &body.room_id, limit).await? == 0 {
                break;
            }
            visibility = self::visibility(&state, &body.room_id, &sender.user_id).await?;
            let more = visible_events(&state, &body.room_id, &sender.user_id, &visibility, after, walk.cursor, limit - walk.events.len(), true, wanted).await?;
            walk.events.extend(more.events);
            (walk.cursor, walk.exhausted) = (more.cursor, more.exhausted);
            if walk.events.len() == limit || !walk.exhausted {
                break;
            }
        }
    }
    let (chunk, cursor, exhausted) = (walk.events, walk.cursor, walk.exhausted);
    let mut response = get_message_events::v3::Response::new();
    response.start = token_at(from);
    response.end = (!exhausted || chunk.len() == limit).then(|| token_at(cursor));
    if chunk.is_empty() {
        response.end = None;
    }
    let txn_ids = TransactionIds::load(&state.storage, &sender.user_id, &sender.device_id, &chunk).await?;
    let aggregations = Aggregations::load(&state.storage, &sender.user_id, &chunk, true).await?;
    response.chunk = chunk.iter().map(|event| raw(&aggregations.bundle(event, txn_ids.client_event(event, true)))).collect();
    if !filter.lazy_load_options.is_disabled() && !chunk.is_empty() {
        response.state = chunk_members(&state, &chunk, &visibility, &sender.user_id).await?;
    }
    Ok(response)
}

/// With lazy-loading: the member events of the chunk's senders, as of the
/// chunk's oldest event. Redundant members are always sent (Weft keeps no
/// record of which a client holds), which the spec allows.
async fn chunk_members<T>(state: &Services, chunk: &[StoredEvent], visibility: &Visibility, user_id: &UserId) -> ApiResult<Vec<Raw<T>>> {
    let senders: std::collections::HashSet<&str> = chunk.iter().map(|event| event.sender.as_str()).collect();
    let oldest = chunk.iter().map(|event| event.stream_ordering).min().unwrap_or_default();
    let room_state = state.storage.state_at(&chunk[0].room_id, oldest - 1).await?;
    Ok(room_state
        .iter()
        .filter(|event| event.kind == "m.room.member" && event.state_key.as_deref().is_some_and(|key| senders.contains(key)))
        .filter(|event| visibility.can_see(event, user_id))
        .map(|event| raw(&client_event(event, true)))
        .collect())
}

pub async fn members(state: AppState, request: Ruma<get_member_events::v3::Request>) -> ApiResult<get_member_events::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    for filter in [&body.membership, &body.not_membership].into_iter().flatten() {
        if !matches!(filter.as_str(), "join" | "invite" | "knock" | "leave" | "ban") {
            return Err(ApiError::invalid_param(format!("Unknown membership `{}`", filter.as_str())));
        }
    }
    let mut events = match &body.at {
        Some(at) => {
            // As Synapse: the state at a token is shown only to who may see
            // the room's last event at that point.
            let visibility = visibility(&state, &body.room_id, &sender.user_id).await?;
            let position = room_token_position(&state, &body.room_id, at)?;
            let last = state.storage.room_events(&body.room_id, 0, position, 1, true).await?;
            if !last.first().is_some_and(|event| visibility.can_see(event, &sender.user_id)) {
                return Err(ApiError::forbidden("You may not see the room at that point"));
            }
            state.storage.state_at(&body.room_id, position).await?
        }
        None => visible_state(&state, &body.room_id, &sender.user_id).await?,
    };
    events.retain(|event| event.kind == "m.room.member");
    let membership_of =
        |event: &StoredEvent| -> Option<String> { serde_json::from_str::<Value>(&event.json).ok()?["content"]["membership"].as_str().map(str::to_owned) };
    if let Some(wanted) = &body.membership {
        events.retain(|event| membership_of(event).as_deref() == Some(wanted.as_str()));
    }
    if let Some(unwanted) = &body.not_membership {
        events.retain(|event| membership_of(event).as_deref() != Some(unwanted.as_str()));
    }
    Ok(get_member_events::v3::Response::new(events.iter().map(|event| raw(&client_event(event, true))).collect()))
}

pub async fn joined_members(state: AppState, request: Ruma<joined_members::v3::Request>) -> ApiResult<joined_members::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let visibility = visibility(&state, &body.room_id, &sender.user_id).await?;
    if visibility.current_membership().map(|(_, m)| m) != Some("join") && !visibility.can_read_room_now() {
        return Err(ApiError::forbidden("You are not in this room"));
    }
    let mut joined = std::collections::BTreeMap::new();
    for event in state.storage.current_state(&body.room_id).await? {
        if event.kind != "m.room.member" {
            continue;
        }
        let pdu: Value = serde_json::from_str(&event.json).unwrap_or_default();
        if pdu["content"]["membership"] != "join" {
            continue;
        }
        let Some(user_id) = event.state_key.as_deref().and_then(|key| OwnedUserId::try_from(key).ok()) else { continue };
        let mut member = joined_members::v3::RoomMember::new();
        member.display_name = pdu["content"]["displayname"].as_str().map(str::to_owned);
        member.avatar_url = pdu["content"]["avatar_url"].as_str().map(ruma::OwnedMxcUri::from);
        joined.insert(user_id, member);
    }
    Ok(joined_members::v3::Response::new(joined))
}

pub async fn redact(
    state: AppState,
    request: Ruma<ruma::api::client::redact::redact_event::v3::Request>,
) -> ApiResult<ruma::api::client::redact::redact_event::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    rate_limit(&state, sender)?;
    let event_id = state
        .rooms
        .redact(&state, &body.room_id, &sender.user_id, &body.event_id, body.reason.as_deref(), (&sender.device_id, request.action.as_str()))
        .await
        .map_err(forbidden_if_unknown)?;
    Ok(ruma::api::client::redact::redact_event::v3::Response::new(event_id))
}

/// Events a user may see in `(after, upto]`, walked newest first when
/// `newest_first`, until `limit` pass `wanted`.
pub(super) struct Walk {
    pub events: Vec<StoredEvent>,
    /// Where a further walk in the same direction would continue.
    pub cursor: i64,
    /// The range holds nothing more.
    pub exhausted: bool,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn visible_events(
    state: &Services,
    room_id: &RoomId,
    user_id: &UserId,
    visibility: &Visibility,
    after: i64,
    upto: i64,
    limit: usize,
    newest_first: bool,
    wanted: impl Fn(&StoredEvent) -> bool,
) -> ApiResult<Walk> {
    let mut events = Vec::new();
    let mut cursor = if newest_first { upto } else { after };
    let mut exhausted = false;
    while events.len() < limit && !exhausted {
        let page = (limit - events.len()).max(20) as i64;
        let batch = if newest_first {
            state.storage.room_events(room_id, after, cursor, page, true).await?
        } else {
            state.storage.room_events(room_id, cursor, upto, page, false).await?
        };
        exhausted = (batch.len() as i64) < page;
        for event in batch {
            cursor = if newest_first { event.stream_ordering - 1 } else { event.stream_ordering };
            if wanted(&event) && visibility.can_see(&event, user_id) {
                events.push(event);
                if events.len() == limit {
                    break;
                }
            }
        }
    }
    Ok(Walk { events, cursor, exhausted })
}
