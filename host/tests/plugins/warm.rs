//! Warm instances (`max_calls_per_instance`): by default every call gets a
//! fresh instance; with reuse an instance serves at most that many calls, is
//! dropped after a trap or a timeout, and a plugin never has more instances
//! than `max_concurrent_calls`.

use std::collections::HashMap;

use serde_json::json;
use weft::{
    config::PluginLimitsConfig,
    plugins::{
        error::CallFailure,
        spam::{SpamAnswer, SpamVerdict},
        testkit::{TestPlugin, Testkit},
    },
};

use super::{guest, message};

async fn counting(name: &str, limits: PluginLimitsConfig) -> TestPlugin {
    Testkit::new(guest("misbehave")).name(name).config(json!({"mode": "instance-calls"})).limits(limits).load().await.expect("loads")
}

/// The number of calls the answering instance has served, this one included.
async fn instance_calls(plugin: &TestPlugin, body: &str) -> Result<u64, CallFailure> {
    match plugin.call(message(body)).await? {
        SpamAnswer::Verdict(SpamVerdict::Reject(rejection)) => Ok(rejection.fields["instance_calls"].as_u64().expect("a count")),
        other => panic!("expected the count, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_every_call_gets_a_fresh_instance() {
    let plugin = counting("warm-default", PluginLimitsConfig::default()).await;
    for _ in 0..4 {
        assert_eq!(instance_calls(&plugin, "hi").await.unwrap(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_instance_serves_at_most_max_calls_per_instance() {
    let plugin = counting("warm-max", PluginLimitsConfig { max_calls_per_instance: 3, ..PluginLimitsConfig::default() }).await;
    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push(instance_calls(&plugin, "hi").await.unwrap());
    }
    assert_eq!(seen, [1, 2, 3, 1, 2, 3, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_traps_or_times_out_is_not_reused() {
    let limits = PluginLimitsConfig { max_calls_per_instance: 100, timeout_ms: 100, ..PluginLimitsConfig::default() };
    let plugin = counting("warm-failures", limits).await;
    assert_eq!(instance_calls(&plugin, "hi").await.unwrap(), 1);
    assert_eq!(instance_calls(&plugin, "hi").await.unwrap(), 2);
    assert!(matches!(instance_calls(&plugin, "panic").await, Err(CallFailure::Trap(_))));
    assert_eq!(instance_calls(&plugin, "hi").await.unwrap(), 1, "a fresh instance after the trap");
    assert_eq!(instance_calls(&plugin, "hi").await.unwrap(), 2);
    assert!(matches!(instance_calls(&plugin, "loop").await, Err(CallFailure::Timeout(_))));
    assert_eq!(instance_calls(&plugin, "hi").await.unwrap(), 1, "a fresh instance after the timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_never_hold_more_instances_than_slots() {
    let limits = PluginLimitsConfig { max_calls_per_instance: 1000, max_concurrent_calls: 2, ..PluginLimitsConfig::default() };
    let plugin = std::sync::Arc::new(counting("warm-slots", limits).await);
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let plugin = plugin.clone();
            tokio::spawn(async move { instance_calls(&plugin, "hi").await.unwrap() })
        })
        .collect();
    let mut counts = HashMap::new();
    for task in tasks {
        *counts.entry(task.await.unwrap()).or_insert(0u32) += 1;
    }
    let instances = counts[&1];
    assert!((1..=2).contains(&instances), "{instances} instances for 2 slots: {counts:?}");
    assert_eq!(counts.values().sum::<u32>(), 40);
}
