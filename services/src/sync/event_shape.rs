//! What a room event looks like in `/sync` under the client's filter: the
//! client format (as given), the federation format (`event_format:
//! federation`, the PDU as stored) or, with `event_fields`, only the fields
//! listed. A field is a dot-separated path (`content.body`); `\.` stands
//! for a dot inside a key and `\\` for a backslash, as the spec says.

use ruma::api::client::filter::{EventFormat, FilterDefinition};
use serde_json::{Map, Value};

use weft_storage::StoredEvent;

/// `client_form` as the filter wants it.
pub fn shape(filter: &FilterDefinition, event: &StoredEvent, client_form: Value) -> Value {
    let whole = match filter.event_format {
        EventFormat::Federation => serde_json::from_str(&event.json).unwrap_or(client_form),
        _ => client_form,
    };
    match &filter.event_fields {
        Some(fields) => only_fields(&whole, fields),
        None => whole,
    }
}

fn only_fields(event: &Value, fields: &[String]) -> Value {
    let mut kept = Map::new();
    for field in fields {
        let path = split_path(field);
        if let Some(value) = path.iter().try_fold(event, |value, key| value.get(key)) {
            insert_at(&mut kept, &path, value.clone());
        }
    }
    Value::Object(kept)
}

fn insert_at(target: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut object = target;
    for key in parents {
        let entry = object.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(inner) = entry else { return };
        object = inner;
    }
    object.insert(last.clone(), value);
}

fn split_path(field: &str) -> Vec<String> {
    let mut keys = vec![String::new()];
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => keys.last_mut().expect("never empty").push(escaped),
                None => keys.last_mut().expect("never empty").push('\\'),
            },
            '.' => keys.push(String::new()),
            other => keys.last_mut().expect("never empty").push(other),
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{only_fields, split_path};

    #[test]
    fn paths_split_on_unescaped_dots() {
        assert_eq!(split_path("content.body"), ["content", "body"]);
        assert_eq!(split_path(r"content.m\.relates_to.rel_type"), ["content", "m.relates_to", "rel_type"]);
        assert_eq!(split_path(r"content.a\\b"), ["content", r"a\b"]);
    }

    #[test]
    fn only_the_listed_fields_are_kept() {
        let event =
            json!({"type": "m.room.message", "sender": "@a:x", "content": {"body": "hi", "msgtype": "m.text", "m.relates_to": {"rel_type": "m.thread"}}});
        let fields = ["type".to_owned(), "content.body".to_owned(), r"content.m\.relates_to".to_owned(), "content.missing".to_owned()];
        assert_eq!(only_fields(&event, &fields), json!({"type": "m.room.message", "content": {"body": "hi", "m.relates_to": {"rel_type": "m.thread"}}}));
    }
}
