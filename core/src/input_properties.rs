//! Property tests over configuration parsing that hostile input reaches:
//! Synapse-style durations. Each runs on a few hundred generated inputs per
//! `cargo test`; none may panic. (The request-body and token properties are
//! in `weft-api` and `weft-services`, beside their parsers.)

use proptest::prelude::*;

use crate::input_strategies::tricky_string;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn durations_parse_or_are_refused(text in tricky_string(), digits in "[0-9]{0,25}", unit in prop_oneof![Just(""), Just("ms"), Just("s"), Just("y")]) {
        let _ = crate::config::SynapseDuration::parse(&text);
        let _ = crate::config::SynapseDuration::parse(&format!("{digits}{unit}"));
    }
}
