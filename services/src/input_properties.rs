//! Property tests over the code hostile input reaches first in the
//! services: sync and pagination tokens, and the event content checks. Each
//! runs on a few hundred generated inputs per `cargo test`; none may panic,
//! and the checks must agree with their specification.

use proptest::prelude::*;

use weft_core::input_strategies::{json_value, tricky_string};

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
}
