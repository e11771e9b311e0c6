//! Property tests over the code hostile input reaches first: the NUL check
//! of request bodies, the legacy-field rewrite, sync and pagination tokens,
//! the event content checks and Synapse-style durations. Each runs on a few
//! hundred generated inputs per `cargo test`; none may panic, and the checks
//! must agree with their specification.

use proptest::prelude::*;
use serde_json::Value;

/// Strings drawn from the characters that confuse parsers: NUL, escapes,
/// quotes, separators of tokens, non-ASCII and astral characters.
fn tricky_string() -> impl Strategy<Value = String> {
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

fn json_value() -> impl Strategy<Value = Value> {
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

const EVENT_TYPES: &[&str] = &[
    "m.room.name",
    "m.room.topic",
    "m.room.member",
    "m.room.power_levels",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.canonical_alias",
    "m.room.tombstone",
    "m.room.server_acl",
    "m.room.retention",
    "m.room.message",
    "m.room.create",
    "m.room.encryption",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_body_is_refused_for_nul_exactly_when_a_string_holds_one(value in json_value()) {
        let object = serde_json::json!({ "content": value });
        let body = serde_json::to_vec(&object).unwrap();
        let refused = crate::api::ruma_route::refuse_nul_in_json(&body).is_err();
        prop_assert_eq!(refused, crate::json::contains_nul(&object));
    }

    #[test]
    fn the_legacy_field_rewrite_keeps_json_valid(value in json_value(), user in tricky_string()) {
        let object = serde_json::json!({ "auth": { "type": "m.login.password", "user": user, "extra": value } });
        let rewritten = crate::api::legacy_fields::upgrade_auth_user(bytes::Bytes::from(serde_json::to_vec(&object).unwrap()));
        prop_assert!(serde_json::from_slice::<Value>(&rewritten).is_ok());
    }

    #[test]
    fn any_text_parses_as_a_token_or_is_refused_and_tokens_round_trip(text in tricky_string(), prefix in prop_oneof![Just(""), Just("s"), Just("sm")]) {
        let candidate = format!("{prefix}{text}");
        if let Ok(token) = crate::sync::token::StreamToken::parse(&candidate) {
            let again = crate::sync::token::StreamToken::parse(&token.to_string());
            prop_assert_eq!(again, Ok(token));
        }
    }

    #[test]
    fn content_checks_answer_every_content_without_panicking(kind in proptest::sample::select(EVENT_TYPES), content in json_value(), state_key in proptest::option::of(tricky_string())) {
        let server = ruma::server_name!("example.org");
        let _ = crate::rooms::content_checks::check(kind, state_key.as_deref(), &content, "!room:example.org", server);
    }

    #[test]
    fn durations_parse_or_are_refused(text in tricky_string(), digits in "[0-9]{0,25}", unit in prop_oneof![Just(""), Just("ms"), Just("s"), Just("y")]) {
        let _ = crate::config::SynapseDuration::parse(&text);
        let _ = crate::config::SynapseDuration::parse(&format!("{digits}{unit}"));
    }
}
