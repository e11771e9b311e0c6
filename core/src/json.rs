//! Conversions between `serde_json::Value` and ruma's `Raw` JSON, for the
//! handlers and `/sync`, which build responses from stored JSON and read
//! free-form request bodies (account data, keys, message content).

use ruma::serde::Raw;
use serde_json::{Map, Value, value::to_raw_value};

/// A JSON value as ruma's raw JSON of any event or content type.
pub fn raw<T>(value: &Value) -> Raw<T> {
    Raw::from_json(to_raw_value(value).expect("a JSON value serialises"))
}

/// Raw JSON parsed as a value; `None` when it is not JSON (ruma checked it is).
pub fn value_of<T>(raw: &Raw<T>) -> Option<Value> {
    serde_json::from_str(raw.json().get()).ok()
}

/// Raw JSON that must be an object.
pub fn object_of<T>(raw: &Raw<T>) -> Option<Map<String, Value>> {
    match value_of(raw)? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Whether any string of `value`, object keys included, contains U+0000.
pub fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(key, value)| key.contains('\0') || contains_nul(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}
