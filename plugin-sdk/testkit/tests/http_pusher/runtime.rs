//! The pusher role in the runtime around the real plugin: a malformed
//! answer follows `on_error = "retry"`, the plugin set routes a pusher by
//! kind and app id, and a call forwarded to the instance hosting the plugin
//! (the one internal route, `Hosted::serve`, and `RemotePlugin` reading its
//! reply) answers as a local one.

use std::sync::Arc;

use bytes::Bytes;
use weft_plugin_runtime::{
    PluginBackend,
    config::PluginConfig,
    host_services::BoxFuture,
    remote::{self, Hosted, RemotePlugin, RemoteTransport, TransportError, TransportReply},
};
use weft_plugin_testkit::{
    CallFailure,
    pusher::{PushAnswer, PushCall, PusherPlugins},
};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_answer_follows_on_error_retry() {
    let gateway = PushGateway::start().await.unwrap();
    // A rejected list longer than the answer may be is malformed.
    gateway.set_reply(Reply::Reject(vec!["x".repeat(64)]));
    let plugin = kit("hp-malformed")
        .limits(PluginLimitsConfig { max_output_bytes: 32, ..PluginLimitsConfig::for_role(PluginRole::Pusher) })
        .load_pusher()
        .await
        .unwrap();
    assert_eq!(plugin.plugin.on_error, weft_plugin_testkit::OnError::Retry, "the pusher role's default");
    let n = notification(info(&gateway.url(), json!({})), Subject::Badge, 1, json!({}));
    let failure = plugin.notify(n.clone()).await.unwrap_err();
    assert!(matches!(&failure, CallFailure::Malformed(detail) if detail.contains("max_output_bytes")), "{failure}");
    // What call sites act on: the policy's answer, a retry.
    let answer = plugin.plugin.answer(&PushCall::Notify { notification: Box::new(n.clone()) }).await;
    assert!(matches!(&answer, PushAnswer::Delivery(Delivery::Retry { after_ms: None, .. })), "{answer:?}");
    let set = PusherPlugins::new(vec![plugin.plugin.clone()]);
    assert!(matches!(set.notify(n).await, Delivery::Retry { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_set_routes_by_kind_and_app_and_refuses_unserved_pushers() {
    let gateway = PushGateway::start().await.unwrap();
    let vector = kit("hp-route-vector").config(json!({"app_ids": ["im.vector.*"]})).load_pusher().await.unwrap();
    let any = kit("hp-route-any").load_pusher().await.unwrap();
    let set = PusherPlugins::new(vec![vector.plugin.clone(), any.plugin.clone()]);
    let chosen = |app: &str| {
        let set = set.clone();
        let app = app.to_owned();
        async move { set.serving("http", &app).await.map(|p| p.name().to_owned()) }
    };
    assert_eq!(chosen("im.vector.app").await.as_deref(), Some("hp-route-vector"));
    assert_eq!(chosen("im.example.app").await.as_deref(), Some("hp-route-any"));
    assert!(set.serving("email", "im.example.app").await.is_none());
    let email = PusherInfo { kind: "email".into(), ..info(&gateway.url(), json!({})) };
    let refused = set.check_pusher(&email).await;
    assert!(matches!(&refused, PusherCheck::Invalid(e) if e.errcode == "M_INVALID_PARAM" && e.message.contains("email")), "{refused:?}");
    assert_eq!(set.check_pusher(&info(&gateway.url(), json!({}))).await, PusherCheck::Valid);
    let n = notification(info(&gateway.url(), json!({})), Subject::Badge, 4, json!({}));
    assert_eq!(set.notify(n).await, Delivery::Delivered);
    assert_eq!(gateway.received()[0].notification()["counts"]["unread"], 4);
}

/// The internal API in one process: posts a forwarded call to the hosted
/// plugin's `serve`, as the server's route does.
struct InProcess(Arc<dyn Hosted>);

impl RemoteTransport for InProcess {
    fn post<'a>(&'a self, _instance: &'a str, path: &'a str, body: Bytes, _timeout: Duration) -> BoxFuture<'a, Result<TransportReply, TransportError>> {
        Box::pin(async move {
            let mut segments = path.rsplit('/');
            let (_txn, callback, name) = (segments.next().unwrap(), segments.next().unwrap(), segments.next().unwrap());
            assert_eq!(name, self.0.name());
            let reply = self.0.serve(callback, &body).await.map_err(|e| TransportError::Unreachable(e.to_string()))?;
            Ok(TransportReply { status: http::StatusCode::OK, body: serde_json::to_vec(&reply).unwrap().into() })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_call_answers_as_a_local_one() {
    let gateway = PushGateway::start().await.unwrap();
    let hosted = pusher("hp-remote").await;
    let config = PluginConfig { name: "hp-remote".into(), role: PluginRole::Pusher, instances: vec!["pusher1".into()], ..PluginConfig::default() };
    let forwarder: Arc<dyn PluginBackend<Pusher>> = Arc::new(RemotePlugin::<Pusher>::new(&config, "main", Arc::new(InProcess(hosted.plugin.clone()))));
    let set = PusherPlugins::new(vec![forwarder]);
    assert_eq!(set.check_pusher(&info(&gateway.url(), json!({}))).await, PusherCheck::Valid);
    let refused = set.check_pusher(&PusherInfo { data: Map::new(), ..info("", json!({})) }).await;
    assert!(matches!(refused, PusherCheck::Invalid(e) if e.errcode == "M_MISSING_PARAM"));
    gateway.set_reply(Reply::Reject(vec!["PUSHKEY-bob".into()]));
    let n = notification(info(&gateway.url(), json!({})), Subject::Event(Box::new(message_event())), 2, json!({"highlight": true}));
    assert_eq!(set.notify(n).await, Delivery::Rejected { pushkeys: vec!["PUSHKEY-bob".into()] });
    assert_eq!(gateway.received()[0].notification()["prio"], "high");
    // The route's path names the callback.
    assert!(remote::path("hp-remote", PushCall::Serves.name(), "t").ends_with("/hp-remote/serves/t"));
}
