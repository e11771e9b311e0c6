//! The testkit's clock and key-value store, with `misbehave` in its
//! `window` mode: it counts each call in its store under the current minute
//! of WASI's wall clock (`calls/<minute>`, a little-endian u64), allows
//! `limit` calls a minute and rejects the rest with `minute`, `count` and
//! the host's `now_ms`. So its answer depends on the time and on the store.

use std::time::Duration;

use serde_json::{Map, Value, json};
use weft_plugin_testkit::{
    TestClock, TestKv, TestPlugin, Testkit,
    spam::{SpamAnswer, SpamCall, SpamEvent, SpamVerdict},
};

use super::{START_MS, misbehave};

fn message() -> SpamCall {
    let event = SpamEvent::from_json(json!({
        "room_id": "!r:example.org", "sender": "@a:example.org", "type": "m.room.message", "content": {"body": "hi"},
    }))
    .unwrap();
    SpamCall::CheckEventForSpam { event }
}

/// The rejection's fields, `None` when the call was allowed.
async fn window(plugin: &TestPlugin) -> Option<Map<String, Value>> {
    match plugin.call(message()).await.expect("answers") {
        SpamAnswer::Verdict(SpamVerdict::Allow) => None,
        SpamAnswer::Verdict(SpamVerdict::Reject(rejection)) => Some(rejection.fields),
        other => panic!("{other:?}"),
    }
}

fn key(ms: u64) -> String {
    format!("calls/{}", ms / 60_000)
}

fn count(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_is_set_and_advanced_after_load_for_wasi_and_the_host() {
    let plugin = Testkit::new(misbehave()).name("window-clock").config(json!({"mode": "window", "limit": 0})).load().await.unwrap();
    let first = window(&plugin).await.expect("limit 0 rejects");
    assert_eq!((first["minute"].as_u64(), first["now_ms"].as_u64(), first["count"].as_u64()), (Some(START_MS / 60_000), Some(START_MS), Some(1)));

    plugin.clock().advance(Duration::from_secs(90));
    let later = START_MS + 90_000;
    let second = window(&plugin).await.unwrap();
    assert_eq!((second["minute"].as_u64(), second["now_ms"].as_u64(), second["count"].as_u64()), (Some(later / 60_000), Some(later), Some(1)), "a new minute");
    assert_eq!(plugin.clock().now_ms(), later);

    plugin.clock().set_ms(START_MS + 5_000);
    let third = window(&plugin).await.unwrap();
    assert_eq!(
        (third["minute"].as_u64(), third["now_ms"].as_u64(), third["count"].as_u64()),
        (Some(START_MS / 60_000), Some(START_MS + 5_000), Some(2)),
        "back in the first minute"
    );

    let entries = plugin.kv_entries();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!((entries.get(&key(START_MS)), entries.get(&key(later))), (Some(&count(2)), Some(&count(1))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_clock_moves_every_plugin_on_it() {
    let clock = TestClock::new(START_MS);
    let load = |name: &str| Testkit::new(misbehave()).name(name).config(json!({"mode": "window", "limit": 0})).clock(clock.clone()).load();
    let (a, b) = (load("shared-clock-a").await.unwrap(), load("shared-clock-b").await.unwrap());
    clock.advance(Duration::from_secs(3600));
    for plugin in [&a, &b] {
        assert_eq!(window(plugin).await.unwrap()["now_ms"].as_u64(), Some(START_MS + 3_600_000));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_is_seeded_before_and_after_load_and_inspected() {
    let config = json!({"mode": "window"});
    // Seeded at load: two calls this minute already, so the next is the third.
    let plugin = Testkit::new(misbehave()).name("window-seeded").config(config.clone()).kv_entry(&key(START_MS), count(2)).load().await.unwrap();
    let fields = window(&plugin).await.expect("over the limit of 2");
    assert_eq!(fields["count"].as_u64(), Some(3));
    assert_eq!(plugin.kv_get(&key(START_MS)), Some(count(3)));

    // Seeded after load, as the plugin would have stored it.
    plugin.kv_set(&key(START_MS), count(0)).unwrap();
    assert_eq!(window(&plugin).await, None, "the first call of the minute");
    assert_eq!(plugin.kv_entries().into_iter().collect::<Vec<_>>(), vec![(key(START_MS), count(1))]);

    // The server's limits hold in the testkit's store too.
    assert!(plugin.kv_set("big", vec![0; 64 * 1024 + 1]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_store_keeps_one_namespace_per_plugin_name() {
    let store = TestKv::default();
    store.set("limited", &key(START_MS), count(1)).unwrap();
    let load = |name: &str| Testkit::new(misbehave()).name(name).config(json!({"mode": "window"})).kv(store.clone()).load();
    // Two plugins of one name share entries, as two instances running one plugin do.
    let (first, second, other) = (load("limited").await.unwrap(), load("limited").await.unwrap(), load("other").await.unwrap());
    assert_eq!(window(&first).await, None, "count 2");
    assert_eq!(window(&second).await.expect("count 3")["count"].as_u64(), Some(3));
    assert_eq!(window(&other).await, None, "another name counts apart");
    assert_eq!(store.get("limited", &key(START_MS)), Some(count(3)));
    assert_eq!(store.entries("other").get(&key(START_MS)), Some(&count(1)));
    assert!(first.kv().entries("other").contains_key(&key(START_MS)), "each plugin's handle is the whole shared store");
    store.delete("limited", &key(START_MS));
    assert_eq!(second.kv_entries().len(), 0);
}
