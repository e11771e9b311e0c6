//! Matching events against the client's filters (`RoomEventFilter` for
//! room events, `Filter` for account data and presence, `RoomFilter` for
//! which rooms), as `/sync` and `/messages` apply them.
//!
//! A `*` in `types` and `not_types` matches any run of characters, as the
//! spec words it (Synapse only honours a trailing `*`; that is a subset).
//! `event_fields` and `event_format` shape events rather than pick them
//! (`event_shape`). `include_redundant_members` is always in effect,
//! because no record of which members a client holds is kept.

use ruma::{
    RoomId, UserId,
    api::client::filter::{Filter, RoomEventFilter, RoomFilter, UrlFilter},
};
use serde_json::Value;

use weft_storage::StoredEvent;

/// Whether `pattern`, in which `*` matches any run of characters, matches `value` whole.
pub fn glob_matches(pattern: &str, value: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = value.strip_prefix(first) else { return false };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else { return rest.is_empty() };
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

fn types_allow(types: Option<&[String]>, not_types: &[String], kind: &str) -> bool {
    types.is_none_or(|types| types.iter().any(|pattern| glob_matches(pattern, kind))) && !not_types.iter().any(|pattern| glob_matches(pattern, kind))
}

fn listed_allow<T: AsRef<str>>(wanted: Option<&[T]>, unwanted: &[T], value: &str) -> bool {
    wanted.is_none_or(|wanted| wanted.iter().any(|w| w.as_ref() == value)) && !unwanted.iter().any(|u| u.as_ref() == value)
}

/// Whether the room filter's `rooms` and `not_rooms` let a room through.
pub fn room_allowed(filter: &RoomFilter, room_id: &RoomId) -> bool {
    listed_allow(filter.rooms.as_deref(), &filter.not_rooms, room_id.as_str())
}

/// Whether a room event passes: type, sender, room and `contains_url`.
pub fn event_matches(filter: &RoomEventFilter, event: &StoredEvent) -> bool {
    types_allow(filter.types.as_deref(), &filter.not_types, &event.kind)
        && listed_allow(filter.senders.as_deref(), &filter.not_senders, event.sender.as_str())
        && listed_allow(filter.rooms.as_deref(), &filter.not_rooms, event.room_id.as_str())
        && filter.url_filter.is_none_or(|url_filter| {
            let pdu: Value = serde_json::from_str(&event.json).unwrap_or_default();
            let has_url = pdu["content"]["url"].is_string();
            has_url == (url_filter == UrlFilter::EventsWithUrl)
        })
}

/// Whether a room-scoped non-event (ephemeral event, room account data) of
/// `kind` in `room_id`, from `sender` if it has one, passes.
pub fn room_item_matches(filter: &RoomEventFilter, room_id: &RoomId, kind: &str, sender: Option<&UserId>) -> bool {
    types_allow(filter.types.as_deref(), &filter.not_types, kind)
        && listed_allow(filter.rooms.as_deref(), &filter.not_rooms, room_id.as_str())
        && sender.is_none_or(|sender| listed_allow(filter.senders.as_deref(), &filter.not_senders, sender.as_str()))
}

/// Whether global account data or presence of `kind`, from `sender` if it has one, passes.
pub fn item_matches(filter: &Filter, kind: &str, sender: Option<&UserId>) -> bool {
    types_allow(filter.types.as_deref(), &filter.not_types, kind)
        && sender.is_none_or(|sender| listed_allow(filter.senders.as_deref(), &filter.not_senders, sender.as_str()))
}

/// Whether the filter can drop any room event (so a timeline may skip some).
pub fn drops_events(filter: &RoomEventFilter) -> bool {
    filter.types.is_some()
        || !filter.not_types.is_empty()
        || filter.senders.is_some()
        || !filter.not_senders.is_empty()
        || filter.rooms.is_some()
        || !filter.not_rooms.is_empty()
        || filter.url_filter.is_some()
}

/// A filter's `limit`, if it sets one.
pub fn limit_of(limit: Option<ruma::UInt>) -> Option<usize> {
    limit.map(|limit| usize::try_from(u64::from(limit)).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::glob_matches;

    #[test]
    fn wildcards() {
        assert!(glob_matches("m.room.message", "m.room.message"));
        assert!(!glob_matches("m.room.message", "m.room.message.x"));
        assert!(glob_matches("m.room.*", "m.room.topic"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("*.topic", "m.room.topic"));
        assert!(glob_matches("m.*.t*c", "m.room.topic"));
        assert!(!glob_matches("m.*.name", "m.room.topic"));
        assert!(!glob_matches("a*a", "a"));
        assert!(glob_matches("a*a", "aa"));
    }
}
