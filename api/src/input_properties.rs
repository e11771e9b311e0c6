//! Property tests over the code hostile input reaches first in the API: the
//! NUL check of request bodies and the legacy-field rewrite. Each runs on a
//! few hundred generated inputs per `cargo test`; none may panic, and the
//! checks must agree with their specification.

use proptest::prelude::*;
use serde_json::Value;

use weft_core::input_strategies::{json_value, tricky_string};

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_body_is_refused_for_nul_exactly_when_a_string_holds_one(value in json_value()) {
        let object = serde_json::json!({ "content": value });
        let body = serde_json::to_vec(&object).unwrap();
        let refused = crate::ruma_route::refuse_nul_in_json(&body).is_err();
        prop_assert_eq!(refused, weft_core::json::contains_nul(&object));
    }

    #[test]
    fn the_legacy_field_rewrite_keeps_json_valid(value in json_value(), user in tricky_string()) {
        let object = serde_json::json!({ "auth": { "type": "m.login.password", "user": user, "extra": value } });
        let rewritten = crate::legacy_fields::upgrade_auth_user(bytes::Bytes::from(serde_json::to_vec(&object).unwrap()));
        prop_assert!(serde_json::from_slice::<Value>(&rewritten).is_ok());
    }
}
