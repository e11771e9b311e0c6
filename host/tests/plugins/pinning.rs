//! A plugin pinned to another instance: until calls are forwarded between
//! instances (workers), checks made here apply its `on_error`, logged and
//! counted as `unreachable`, instead of silently allowing.

use std::sync::Arc;

use weft::{
    config::{OnError, PluginConfig},
    plugins::{
        SpamCheckers,
        remote::RemotePlugin,
        spam::{SpamAnswer, SpamCheckerBackend, SpamVerdict},
    },
};

use super::{capture, message, metric};

fn pinned(name: &str, on_error: OnError) -> SpamCheckers {
    let config = PluginConfig { name: name.into(), instances: vec!["worker1".into()], on_error: Some(on_error), ..PluginConfig::default() };
    SpamCheckers::new(vec![Arc::new(RemotePlugin::new(&config, "main")) as Arc<dyn SpamCheckerBackend>])
}

#[tokio::test]
async fn checks_on_an_instance_without_the_plugin_apply_on_error() {
    capture::install();
    let closed = pinned("pin-closed", OnError::FailClosed);
    assert!(matches!(closed.check(message("x")).await, SpamAnswer::Verdict(SpamVerdict::Reject(_))));
    assert!(capture::lines("pin-closed").iter().any(|l| l.text.contains("unreachable") && l.text.contains("worker1")));
    assert_eq!(metric("weft_plugin_failures_total", &["plugin=\"pin-closed\"", "reason=\"unreachable\""]), Some(1.0));
    let open = pinned("pin-open", OnError::FailOpen);
    assert_eq!(open.check(message("x")).await, SpamAnswer::Verdict(SpamVerdict::Allow));
}
