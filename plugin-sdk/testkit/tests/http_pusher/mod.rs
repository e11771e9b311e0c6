//! The reference pusher `plugins/http-pusher` through the testkit, its
//! requests sent for real to the Push Gateway API double on loopback
//! (`push_gateway`), which the address policy refuses unless the test
//! whitelists it. Build it first:
//! `cargo build --release --target wasm32-wasip2 --manifest-path plugins/http-pusher/Cargo.toml`
//! (tests/run.sh does).

mod gateway;
mod runtime;

use std::{path::PathBuf, time::Duration};

use serde_json::{Map, Value, json};
use weft_plugin_testkit::{
    ConfigCheck, PluginLimitsConfig, PluginRole, TestPlugin, Testkit,
    push_gateway::{PushGateway, Received, Reply},
    pusher::{Counts, Delivery, Notification, Priority, PushEvent, Pusher, PusherCheck, PusherInfo, Served, Subject},
};

pub fn http_pusher_wasm() -> PathBuf {
    crate::built("http-pusher", "http_pusher.wasm")
}

/// The http-pusher as a server runs it (`allowed_outbound_hosts = ["*:*"]`),
/// with loopback whitelisted so the gateway double can be reached.
pub fn kit(name: &str) -> Testkit {
    Testkit::new(http_pusher_wasm()).name(name).allow_host("*:*").live_http().ip_range_whitelist(&["127.0.0.1"])
}

pub async fn pusher(name: &str) -> TestPlugin<Pusher> {
    kit(name).load_pusher().await.expect("http-pusher loads")
}

pub fn info(url: &str, extra: Value) -> PusherInfo {
    let mut data = json!({"url": url});
    data.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    PusherInfo {
        user_id: "@bob:example.org".try_into().unwrap(),
        kind: "http".into(),
        app_id: "im.example.app".into(),
        pushkey: "PUSHKEY-bob".into(),
        pushkey_ts: 1_767_225_600_123,
        app_display_name: "Example".into(),
        device_display_name: "Bob's phone".into(),
        profile_tag: None,
        lang: "en".into(),
        data: data.as_object().unwrap().clone(),
    }
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

pub fn message_event() -> PushEvent {
    PushEvent {
        event_id: "$ev1".try_into().unwrap(),
        room_id: "!room:example.org".try_into().unwrap(),
        event_type: "m.room.message".into(),
        sender: "@alice:example.org".try_into().unwrap(),
        state_key: None,
        content: Some(json!({"msgtype": "m.text", "body": "hello bob"})),
        membership: None,
        user_is_target: None,
        sender_display_name: Some("Alice".into()),
        room_name: Some("Lobby".into()),
        room_alias: Some("#lobby:example.org".try_into().unwrap()),
    }
}

/// A notification as the server sends it: the priority by Synapse's rule.
pub fn notification(pusher: PusherInfo, subject: Subject, unread: u64, tweaks: Value) -> Notification {
    let tweaks = object(tweaks);
    let priority = match &subject {
        Subject::Event(event) => Priority::for_event(&event.event_type, &tweaks),
        _ => Priority::Low,
    };
    Notification { pusher, subject, counts: Counts { unread: Some(unread), missed_calls: None }, tweaks, priority }
}

async fn one(gateway: &PushGateway) -> Received {
    let received = gateway.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 1, "{received:?}");
    received.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_serves_http_pushers_of_any_app_or_the_configured_ones() {
    let plugin = pusher("hp-serves").await;
    assert_eq!(plugin.serves().await.unwrap(), Served { kinds: vec!["http".into()], app_ids: vec!["*".into()] });
    let only = kit("hp-serves-only").config(json!({"app_ids": ["im.vector.*"]})).load_pusher().await.unwrap();
    let served = only.serves().await.unwrap();
    assert!(served.serves("http", "im.vector.app") && !served.serves("http", "im.example.app") && !served.serves("email", "im.vector.app"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_configuration_is_checked_by_the_sdk_default_validate_config() {
    let good = kit("hp-config-good").config(json!({"app_ids": ["im.vector.*"]})).load_pusher().await.unwrap();
    assert_eq!(good.validate_config().await.unwrap(), ConfigCheck::Valid);
    let bad = kit("hp-config-bad").config(json!({"app_ids": "im.vector.*"})).load_pusher().await.unwrap();
    assert_eq!(bad.validate_config().await.unwrap(), ConfigCheck::Invalid(vec!["`app_ids` must be a list of strings".into()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_format_is_synapses() {
    let gateway = PushGateway::start().await.unwrap();
    let plugin = pusher("hp-full").await;
    let pusher = info(&gateway.url(), json!({"default_payload": {"aps": {"mutable-content": 1}}}));
    let tweaks = json!({"sound": "default", "highlight": true});
    let delivery = plugin.notify(notification(pusher, Subject::Event(Box::new(message_event())), 3, tweaks)).await.unwrap();
    assert_eq!(delivery, Delivery::Delivered);
    let received = one(&gateway).await;
    assert_eq!((received.method.as_str(), received.path.as_str(), received.status), ("POST", "/_matrix/push/v1/notify", 200));
    assert_eq!(received.header("content-type"), Some("application/json"));
    assert_eq!(
        received.body,
        json!({"notification": {
            "id": "$ev1", "event_id": "$ev1", "room_id": "!room:example.org", "type": "m.room.message",
            "sender": "@alice:example.org", "prio": "high",
            "content": {"msgtype": "m.text", "body": "hello bob"},
            "sender_display_name": "Alice", "room_name": "Lobby",
            "counts": {"unread": 3},
            "devices": [{
                "app_id": "im.example.app", "pushkey": "PUSHKEY-bob", "pushkey_ts": 1_767_225_600,
                "data": {"default_payload": {"aps": {"mutable-content": 1}}},
                "tweaks": {"sound": "default", "highlight": true},
            }],
        }})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_message_is_low_priority_and_empty_or_missing_details_are_left_out() {
    let gateway = PushGateway::start().await.unwrap();
    let plugin = pusher("hp-low").await;
    let event = PushEvent { content: None, sender_display_name: Some(String::new()), room_name: None, ..message_event() };
    let mut n = notification(info(&gateway.url(), json!({})), Subject::Event(Box::new(event)), 1, json!({}));
    n.counts.missed_calls = Some(2);
    assert_eq!(plugin.notify(n).await.unwrap(), Delivery::Delivered);
    let body = one(&gateway).await.body;
    let notification = body["notification"].as_object().unwrap();
    assert_eq!(body["notification"]["prio"], "low");
    assert_eq!(body["notification"]["counts"], json!({"unread": 1, "missed_calls": 2}));
    for absent in ["content", "sender_display_name", "room_name", "room_alias", "membership"] {
        assert!(!notification.contains_key(absent), "{absent} in {body}");
    }
    assert_eq!(body["notification"]["devices"][0]["data"], json!({}), "data without url");
    assert_eq!(body["notification"]["devices"][0]["tweaks"], json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_event_is_high_priority() {
    let gateway = PushGateway::start().await.unwrap();
    let plugin = pusher("hp-encrypted").await;
    let event = PushEvent {
        event_type: "m.room.encrypted".into(),
        content: Some(json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEn..."})),
        ..message_event()
    };
    let n = notification(info(&gateway.url(), json!({})), Subject::Event(Box::new(event)), 1, json!({}));
    assert_eq!(n.priority, Priority::High, "Synapse's rule");
    assert_eq!(plugin.notify(n).await.unwrap(), Delivery::Delivered);
    let body = one(&gateway).await.body;
    assert_eq!(body["notification"]["prio"], "high");
    assert_eq!(body["notification"]["type"], "m.room.encrypted");
    assert_eq!(body["notification"]["content"]["ciphertext"], "AwgAEn...");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_carries_membership_and_user_is_target() {
    let gateway = PushGateway::start().await.unwrap();
    let plugin = pusher("hp-invite").await;
    let event = PushEvent {
        event_type: "m.room.member".into(),
        state_key: Some("@bob:example.org".into()),
        content: Some(json!({"membership": "invite", "displayname": "Bob"})),
        membership: Some("invite".into()),
        user_is_target: Some(true),
        ..message_event()
    };
    let n = notification(info(&gateway.url(), json!({})), Subject::Event(Box::new(event)), 1, json!({"sound": "default"}));
    assert_eq!(plugin.notify(n).await.unwrap(), Delivery::Delivered);
    let body = one(&gateway).await.body;
    assert_eq!((&body["notification"]["membership"], &body["notification"]["user_is_target"]), (&json!("invite"), &json!(true)));
    assert_eq!(body["notification"]["prio"], "high", "a sound tweak");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_id_only_sends_ids_counts_and_devices_without_tweaks() {
    let gateway = PushGateway::start().await.unwrap();
    let plugin = pusher("hp-idonly").await;
    let pusher = info(&gateway.url(), json!({"format": "event_id_only"}));
    let subject = Subject::EventIdOnly { event_id: "$ev2".try_into().unwrap(), room_id: "!room:example.org".try_into().unwrap() };
    let mut n = notification(pusher, subject, 5, json!({"sound": "default", "highlight": true}));
    n.priority = Priority::High;
    assert_eq!(plugin.notify(n).await.unwrap(), Delivery::Delivered);
    assert_eq!(
        one(&gateway).await.body,
        json!({"notification": {
            "event_id": "$ev2", "room_id": "!room:example.org", "prio": "high", "counts": {"unread": 5},
            "devices": [{"app_id": "im.example.app", "pushkey": "PUSHKEY-bob", "pushkey_ts": 1_767_225_600, "data": {"format": "event_id_only"}}],
        }})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_badge_update_is_synapses_shape_without_tweaks() {
    let gateway = PushGateway::start().await.unwrap();
    let plugin = pusher("hp-badge").await;
    let n = notification(info(&gateway.url(), json!({"format": "event_id_only"})), Subject::Badge, 0, json!({}));
    assert_eq!(plugin.notify(n).await.unwrap(), Delivery::Delivered);
    assert_eq!(
        one(&gateway).await.body,
        json!({"notification": {
            "id": "", "type": null, "sender": "", "counts": {"unread": 0},
            "devices": [{"app_id": "im.example.app", "pushkey": "PUSHKEY-bob", "pushkey_ts": 1_767_225_600, "data": {"format": "event_id_only"}}],
        }})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_pushkeys_are_answered_as_rejected() {
    let gateway = PushGateway::start().await.unwrap();
    gateway.script([Reply::Reject(vec!["PUSHKEY-bob".into(), "someone-else".into()]), Reply::Reject(vec![])]);
    let plugin = pusher("hp-rejected").await;
    let n = || notification(info(&gateway.url(), json!({})), Subject::Event(Box::new(message_event())), 1, json!({}));
    let delivery = plugin.notify(n()).await.unwrap();
    assert_eq!(delivery, Delivery::Rejected { pushkeys: vec!["PUSHKEY-bob".into(), "someone-else".into()] });
    assert!(delivery.rejects("PUSHKEY-bob"));
    assert_eq!(plugin.notify(n()).await.unwrap(), Delivery::Delivered, "an empty rejected list is a delivery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_are_retried() {
    let gateway = PushGateway::start().await.unwrap();
    gateway.script([Reply::Status(500), Reply::RetryAfter(429, 7), Reply::Status(404)]);
    let plugin = pusher("hp-500").await;
    let n = || notification(info(&gateway.url(), json!({})), Subject::Event(Box::new(message_event())), 1, json!({}));
    let retry = |d: Delivery| match d {
        Delivery::Retry { after_ms, reason } => (after_ms, reason),
        other => panic!("expected a retry, got {other:?}"),
    };
    let (after, reason) = retry(plugin.notify(n()).await.unwrap());
    assert_eq!(after, None, "the server's backoff");
    assert!(reason.contains("500"), "{reason}");
    assert_eq!(retry(plugin.notify(n()).await.unwrap()).0, Some(7_000), "Retry-After");
    assert!(retry(plugin.notify(n()).await.unwrap()).1.contains("404"), "any HTTP error code is retried (the specification)");
    assert_eq!(plugin.notify(n()).await.unwrap(), Delivery::Delivered);
    assert_eq!(gateway.received().iter().map(|r| r.status).collect::<Vec<_>>(), [500, 429, 404, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_gateway_times_out_into_a_retry_within_the_deadline() {
    let gateway = PushGateway::start().await.unwrap();
    gateway.set_delay(Duration::from_secs(3));
    let plugin =
        kit("hp-slow").limits(PluginLimitsConfig { timeout_ms: 1_000, ..PluginLimitsConfig::for_role(PluginRole::Pusher) }).load_pusher().await.unwrap();
    let start = std::time::Instant::now();
    let delivery = plugin.notify(notification(info(&gateway.url(), json!({})), Subject::Badge, 1, json!({}))).await;
    let elapsed = start.elapsed();
    // The plugin answers itself (the host keeps back a reserve of the deadline
    // for it), so a slow gateway does not count as the plugin failing.
    assert!(matches!(&delivery, Ok(Delivery::Retry { reason, .. }) if reason.contains("in time")), "{delivery:?}");
    assert!(elapsed < Duration::from_millis(1_200), "{elapsed:?}");
    assert_eq!(gateway.received().len(), 1, "the request reached the gateway");
}
