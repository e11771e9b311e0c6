//! The role-generic runtime: a component built against the released WIT
//! (`weft:plugin@0.1.0`, kept as a fixture) loads into this host and answers
//! after the package grew; a failed or mismatched answer follows the
//! plugin's `on_error` for both policies, never a silent default.

use std::{path::PathBuf, sync::Arc};

use serde_json::json;
use weft::{
    config::{self, OnError},
    plugins::{
        CallFailure, CallStats, PluginBackend, Spam, SpamCheckers,
        host_services::BoxFuture,
        spam::{RegistrationVerdict, SpamAnswer, SpamCall, SpamEvent, SpamVerdict},
        testkit::Testkit,
        version::WIT_VERSION,
    },
};

use super::{capture, guest, message, metric};

/// `plugins/spam-rules` as built at the 0.1.0 release of the WIT package.
fn released_spam_rules() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/fixtures/spam-rules-0.1.0.wasm")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spam_rules_component_built_for_0_1_0_loads_and_answers() {
    let path = released_spam_rules();
    let bytes = std::fs::read(&path).expect("the fixture is committed");
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains("weft:plugin/host@0.1.0") && contains("weft:plugin/spam-checks@0.1.0"), "the fixture was built for 0.1.0");
    assert!(!contains(&format!("weft:plugin/host@{WIT_VERSION}")) && WIT_VERSION != "0.1.0", "this host runs a newer WIT");

    let plugin = Testkit::new(&path)
        .name("released-0-1-0")
        .config(json!({"body_patterns": ["(?i)buy now"], "errcode": "W_SPAM", "blocked_servers": ["evil.example"]}))
        .load()
        .await
        .expect("a 0.1.0 component loads into this host");
    match plugin.call(message("BUY NOW, cheap")).await.expect("answers") {
        SpamAnswer::Verdict(SpamVerdict::Reject(rejection)) => assert_eq!(rejection.errcode, "W_SPAM"),
        other => panic!("a matching message is refused, got {other:?}"),
    }
    assert_eq!(plugin.call(message("hello")).await.expect("answers"), SpamAnswer::Verdict(SpamVerdict::Allow));
    let federated = SpamEvent::from_json(json!({
        "room_id": "!r:example.org", "sender": "@mallory:evil.example", "type": "m.room.message", "content": {"body": "hi"},
    }))
    .unwrap();
    assert_eq!(plugin.call(SpamCall::ShouldDropFederatedEvent { event: federated }).await.expect("answers"), SpamAnswer::Flag(true));
    assert!(plugin.logs().iter().any(|line| line.message == "message refused"), "the host interface works: {:?}", plugin.logs());

    // And `weft check-config` accepts it as a spam checker.
    let text = format!("server_name = \"example.org\"\n[[plugins]]\nname = \"old\"\npath = {:?}\n", path.display().to_string());
    config::load_str("weft.toml", &text).expect("a 0.1.0 component passes the configuration check");
}

/// A checker that answers the wrong kind: a flag to verdict and registration
/// callbacks, a verdict to flag callbacks.
struct Mismatched {
    name: String,
    on_error: OnError,
}

impl PluginBackend<Spam> for Mismatched {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_error(&self) -> OnError {
        self.on_error
    }

    fn call<'a>(&'a self, call: &'a SpamCall) -> BoxFuture<'a, Result<(SpamAnswer, CallStats), CallFailure>> {
        let answer = match call {
            SpamCall::ShouldDropFederatedEvent { .. } | SpamCall::CheckUsernameForSpam { .. } => SpamAnswer::Verdict(SpamVerdict::Allow),
            _ => SpamAnswer::Flag(false),
        };
        Box::pin(std::future::ready(Ok((answer, CallStats::default()))))
    }
}

#[tokio::test]
async fn a_mismatched_answer_follows_on_error_for_both_policies() {
    capture::install();
    let event = SpamEvent::from_json(json!({"room_id": "!r:example.org", "sender": "@a:example.org", "type": "m.room.message", "content": {}})).unwrap();
    let user = weft::plugins::spam::ids::UserId::parse("@a:example.org").unwrap();
    for on_error in [OnError::FailClosed, OnError::FailOpen] {
        let name = format!("mismatched-{}", on_error.as_str());
        let checker: Arc<dyn PluginBackend<Spam>> = Arc::new(Mismatched { name: name.clone(), on_error });
        let chain = SpamCheckers::new(vec![Arc::new(Mismatched { name: name.clone(), on_error })]);
        let closed = on_error == OnError::FailClosed;

        match chain.check_event_for_spam(&event).await {
            SpamVerdict::Reject(rejection) => assert!(closed && rejection.errcode == "M_FORBIDDEN", "{rejection:?}"),
            SpamVerdict::Allow => assert!(!closed, "fail-closed refuses a mismatched answer"),
        }
        assert_eq!(chain.should_drop_federated_event(&event).await, closed);
        let registration = chain.check_registration_for_spam(None, Some("a"), &[], None).await;
        assert_eq!(registration, if closed { RegistrationVerdict::Deny } else { RegistrationVerdict::Allow });
        let verdict = chain.user_may_create_room(&user, &json!({})).await;
        assert_eq!(matches!(verdict, SpamVerdict::Allow), !closed, "{verdict:?}");

        assert_eq!(checker.answer(&message("x")).await.allows(), !closed);
        let labels = [&format!("plugin=\"{name}\"") as &str, "call=\"check-event-for-spam\"", "reason=\"malformed\""];
        assert_eq!(metric("weft_plugin_failures_total", &labels), Some(2.0), "each mismatched answer counts as malformed");
        assert!(capture::lines(&name).iter().any(|line| line.text.contains("does not answer")), "{:?}", capture::lines(&name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_answer_follows_on_error_for_both_policies() {
    for on_error in [OnError::FailClosed, OnError::FailOpen] {
        let name = format!("garbage-{}", on_error.as_str());
        let plugin = Testkit::new(guest("misbehave")).name(&name).config(json!({"mode": "garbage"})).on_error(on_error).load().await.expect("loads");
        let failure = plugin.call(message("x")).await.expect_err("a garbage errcode is malformed");
        assert_eq!(failure.reason(), "malformed");
        let chain = SpamCheckers::new(vec![plugin.plugin.clone()]);
        let verdict = chain
            .check_event_for_spam(&SpamEvent::from_json(json!({"room_id": "!r:x", "sender": "@a:x", "type": "m.room.message", "content": {}})).unwrap())
            .await;
        assert_eq!(matches!(verdict, SpamVerdict::Allow), on_error == OnError::FailOpen, "{verdict:?}");
    }
}

#[test]
fn the_configuration_default_policy_is_the_role_s() {
    use weft::plugins::Role;
    let plugin = config::PluginConfig { role: config::PluginRole::SpamChecker, ..Default::default() };
    assert_eq!(plugin.on_error(), Spam::DEFAULT_ON_ERROR);
    assert_eq!(Spam::DEFAULT_ON_ERROR, OnError::FailClosed, "spam checking fails closed");
}
