//! `validate-config` through the testkit: `spam-rules` reports every
//! problem of its configuration at once; the SDK's default answers what
//! `new` refuses; a component built before the export is not asked.

use serde_json::json;
use weft_plugin_testkit::{ConfigCheck, HomeserverScope, Testkit};

use super::{misbehave, spam_rules::spam_rules};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spam_rules_reports_every_problem_of_its_configuration() {
    let bad = json!({
        "min_age_secs": "an hour", "invites": "sometimes", "body_patterns": ["fine", "(unclosed"], "errcode": "forbidden",
        "blocked_user": ["@a:example.org"], "media_max_bytes": -1, "room_creators": "@a:example.org",
    });
    let plugin = Testkit::new(spam_rules())
        .name("config-bad")
        .config(bad)
        .grant_homeserver(&[HomeserverScope::Users])
        .load()
        .await
        .expect("loads: the testkit does not check");
    let ConfigCheck::Invalid(errors) = plugin.validate_config().await.expect("answers") else { panic!("refused") };
    for expected in [
        "`min_age_secs` must be a whole number of seconds, not \"an hour\"",
        "`invites` must be one of anyone, same-server, nobody, not \"sometimes\"",
        "`body_patterns`: `(unclosed` is not a valid pattern",
        "`errcode` must be a Matrix errcode such as \"M_FORBIDDEN\", not \"forbidden\"",
        "unknown option `blocked_user`",
        "`media_max_bytes` must be a whole number of bytes, not -1",
        "`room_creators` must be a list of strings",
    ] {
        assert!(errors.iter().any(|e| e.contains(expected)), "missing {expected}: {errors:#?}");
    }
    assert_eq!(errors.len(), 7, "{errors:#?}");

    let good = json!({"min_age_secs": 3600, "invites": "same-server", "body_patterns": ["(?i)buy now", "bit\\.ly/"], "errcode": "M_FORBIDDEN"});
    let plugin = Testkit::new(spam_rules()).name("config-good").config(good).grant_homeserver(&[HomeserverScope::Users]).load().await.unwrap();
    assert_eq!(plugin.validate_config().await.unwrap(), ConfigCheck::Valid);
    let empty = Testkit::new(spam_rules()).name("config-empty").load().await.unwrap();
    assert_eq!(empty.validate_config().await.unwrap(), ConfigCheck::Valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_default_answers_what_new_refuses() {
    // `misbehave` does not override `validate_config`; its `new` refuses a
    // `mode` that is not a string.
    let refused = Testkit::new(misbehave()).name("default-check").config(json!({"mode": 3})).load().await.unwrap();
    assert_eq!(refused.validate_config().await.unwrap(), ConfigCheck::Invalid(vec!["`mode` must be a string".into()]));
    let fine = Testkit::new(misbehave()).name("default-check-ok").config(json!({"mode": "allow"})).load().await.unwrap();
    assert_eq!(fine.validate_config().await.unwrap(), ConfigCheck::Valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_built_before_the_export_is_not_asked() {
    let released = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../host/tests/plugins/fixtures/spam-rules-0.1.0.wasm");
    let plugin = Testkit::new(released).name("released").config(json!({"invites": "sometimes"})).load().await.expect("a 0.1.0 component loads");
    assert_eq!(plugin.validate_config().await.unwrap(), ConfigCheck::NotExported);
}
