//! `check-pusher` at `/pushers/set`, and the server's address policy on the
//! gateway URL: loopback is refused by default, by address and by a name
//! resolving to it, when the pusher is set and when a push is sent, and
//! reached once `ip_range_whitelist` allows it.

use super::*;

fn refusal(check: PusherCheck) -> (String, String) {
    match check {
        PusherCheck::Invalid(error) => (error.errcode, error.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_pusher_refuses_a_url_that_is_no_push_gateway_as_synapse() {
    let plugin = pusher("hp-check").await;
    let with_data = |data: Value| PusherInfo { data: object(data), ..info("", json!({})) };
    for (data, message) in [
        (json!({}), "'url' required in data for HTTP pusher"),
        (json!({"url": 42}), "'url' must be a string"),
        (json!({"url": "https://push.example.org/_matrix/push/v1/notifyx"}), "'url' must have a path of '/_matrix/push/v1/notify'"),
        (json!({"url": "https://push.example.org/"}), "'url' must have a path of '/_matrix/push/v1/notify'"),
        (json!({"url": "/_matrix/push/v1/notify"}), "absolute"),
        (json!({"url": "ftp://push.example.org/_matrix/push/v1/notify"}), "http or https"),
        (json!({"url": "https:///_matrix/push/v1/notify"}), "no host"),
    ] {
        let (errcode, got) = refusal(plugin.check_pusher(&with_data(data.clone())).await.unwrap());
        assert_eq!(errcode, "M_MISSING_PARAM", "{data}");
        assert!(got.contains(message), "{data}: {got}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_gateway_is_refused_by_default_when_set_and_when_pushed() {
    let gateway = PushGateway::start().await.unwrap();
    let plugin = Testkit::new(http_pusher_wasm()).name("hp-loopback").allow_host("*:*").live_http().load_pusher().await.unwrap();
    for url in [gateway.url(), gateway.url_via("localhost"), format!("http://[::1]:{}/_matrix/push/v1/notify", gateway.port())] {
        let (errcode, message) = refusal(plugin.check_pusher(&info(&url, json!({}))).await.unwrap());
        assert_eq!(errcode, "M_INVALID_PARAM", "{url}");
        assert!(message.contains("ip_range_blacklist") && message.contains(&url), "{url}: {message}");
        let delivery = plugin.notify(notification(info(&url, json!({})), Subject::Badge, 1, json!({}))).await.unwrap();
        assert!(matches!(&delivery, Delivery::Retry { reason, .. } if reason.contains("ip_range_blacklist")), "{url}: {delivery:?}");
    }
    assert!(gateway.received().is_empty(), "nothing reached the gateway: {:?}", gateway.received());
    let refused: Vec<_> = plugin.http_calls().into_iter().map(|call| call.outcome).collect();
    assert_eq!(refused.len(), 3);
    assert!(refused.iter().all(|outcome| outcome.as_ref().is_err_and(|e| e.contains("127.0.0.1") || e.contains("::1"))), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_range_whitelist_lets_a_loopback_gateway_through() {
    let gateway = PushGateway::start().await.unwrap();
    // `localhost` resolves to loopback: allowed by the whitelist, then reached.
    for (name, url) in [("hp-allowed-ip", gateway.url()), ("hp-allowed-name", gateway.url_via("localhost"))] {
        let plugin = pusher(name).await;
        assert_eq!(plugin.check_pusher(&info(&url, json!({}))).await.unwrap(), PusherCheck::Valid, "{url}");
        let n = notification(info(&url, json!({})), Subject::Event(Box::new(message_event())), 1, json!({}));
        assert_eq!(plugin.notify(n).await.unwrap(), Delivery::Delivered, "{url}");
    }
    assert_eq!(gateway.received().len(), 2);
    // A whitelist that does not cover it, or a blacklist without loopback, is what it says.
    let other = Testkit::new(http_pusher_wasm()).name("hp-other-range").allow_host("*:*").live_http().ip_range_whitelist(&["10.0.0.0/8"]);
    let plugin = other.load_pusher().await.unwrap();
    assert!(matches!(plugin.check_pusher(&info(&gateway.url(), json!({}))).await.unwrap(), PusherCheck::Invalid(_)));
    let open = Testkit::new(http_pusher_wasm()).name("hp-own-blacklist").allow_host("*:*").live_http().ip_range_blacklist(&["10.0.0.0/8"]);
    let plugin = open.load_pusher().await.unwrap();
    assert_eq!(plugin.check_pusher(&info(&gateway.url(), json!({}))).await.unwrap(), PusherCheck::Valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_outside_allowed_outbound_hosts_is_refused() {
    let gateway = PushGateway::start().await.unwrap();
    let plugin = Testkit::new(http_pusher_wasm())
        .name("hp-allow-list")
        .allow_host("https://push.example.org")
        .live_http()
        .ip_range_whitelist(&["127.0.0.1"])
        .load_pusher()
        .await
        .unwrap();
    let (errcode, message) = refusal(plugin.check_pusher(&info(&gateway.url(), json!({}))).await.unwrap());
    assert_eq!(errcode, "M_INVALID_PARAM");
    assert!(message.contains("allowed_outbound_hosts"), "{message}");
}
