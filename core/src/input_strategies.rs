//! Inputs for the property tests of the code hostile input reaches first
//! (each crate's `input_properties`): strings drawn from the characters that
//! confuse parsers, and JSON values built from them. Built for this crate's
//! tests and, with the `input-strategies` feature, for the other crates' tests.

use proptest::prelude::*;
use serde_json::Value;

/// Strings drawn from the characters that confuse parsers: NUL, escapes,
/// quotes, separators of tokens, non-ASCII and astral characters.
pub fn tricky_string() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('\0'),
            Just('\\'),
            Just('u'),
            Just('0'),
            Just('"'),
            Just('_'),
            Just('~'),
            Just('.'),
            Just('m'),
            Just('s'),
            Just('é'),
            Just('\u{1F600}'),
            any::<char>(),
        ],
        0..12,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(tricky_string(), inner, 0..6).prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}
