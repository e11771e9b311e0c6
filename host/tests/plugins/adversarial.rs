//! Components that misbehave on purpose: each failure gives the configured
//! outcome, one log line with the reason, and a metric; ordinary calls that
//! run at the same time are unaffected.

use std::time::{Duration, Instant};

use serde_json::json;
use weft::{
    config::{OnError, PluginLimitsConfig},
    plugins::{
        CallFailure, SpamCheckers,
        spam::{SpamAnswer, SpamCall, SpamCheckerBackend, SpamVerdict},
        testkit::{TestPlugin, Testkit},
    },
};

use super::{capture, guest, message, metric};

async fn misbehave(name: &str, mode: &str, limits: PluginLimitsConfig) -> TestPlugin {
    capture::install();
    Testkit::new(guest("misbehave")).name(name).config(json!({"mode": mode})).limits(limits).load().await.expect("loads")
}

fn quick() -> PluginLimitsConfig {
    PluginLimitsConfig { timeout_ms: 200, memory_mb: 16, ..PluginLimitsConfig::default() }
}

/// The failure is logged once with its reason and counted, and a fail-closed
/// chain refuses.
async fn assert_failure(plugin: &TestPlugin, name: &str, reason: &str) {
    let before = metric("weft_plugin_failures_total", &[&format!("plugin=\"{name}\""), &format!("reason=\"{reason}\"")]).unwrap_or(0.0);
    let failure = plugin.call(message("hello")).await.expect_err("the call fails");
    assert_eq!(failure.reason(), reason, "{failure}");
    let after = metric("weft_plugin_failures_total", &[&format!("plugin=\"{name}\""), &format!("reason=\"{reason}\"")]).unwrap_or(0.0);
    assert_eq!(after, before + 1.0, "one failure counted");
    let logged: Vec<_> =
        capture::lines(name).into_iter().filter(|l| l.text.contains(&format!("reason={reason}")) || l.text.contains(&format!("reason=\"{reason}\""))).collect();
    assert!(!logged.is_empty(), "a log line with reason {reason}: {:?}", capture::lines(name));
    assert!(logged.iter().all(|l| l.level == tracing::Level::WARN));

    let chain = SpamCheckers::new(vec![plugin.plugin.clone() as std::sync::Arc<dyn SpamCheckerBackend>]);
    match chain.check(message("hello")).await {
        SpamAnswer::Verdict(SpamVerdict::Reject(rejection)) => assert_eq!(rejection.errcode, "M_FORBIDDEN"),
        other => panic!("fail-closed refuses, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_forever_times_out() {
    let plugin = misbehave("adv-loop", "loop", quick()).await;
    let start = Instant::now();
    assert_failure(&plugin, "adv-loop", "timeout").await;
    // Two calls (the direct one and the chain's), each held to 200 ms.
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_memory_is_over_limit() {
    let plugin = misbehave("adv-memory", "memory", quick()).await;
    assert_failure(&plugin, "adv-memory", "over_limit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_trap_with_its_message_logged() {
    let plugin = misbehave("adv-panic", "panic", quick()).await;
    assert_failure(&plugin, "adv-panic", "trap").await;
    assert!(capture::lines("adv-panic").iter().any(|l| l.text.contains("misbehave panics on purpose")), "the panic message is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_outside_the_allow_list_is_refused_before_any_connection() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/steal", listener.local_addr().unwrap());
    capture::install();
    let plugin = Testkit::new(guest("misbehave"))
        .name("adv-http")
        .config(json!({"mode": "http", "url": url}))
        .allow_host("https://allowed.example.org")
        .limits(quick())
        .load()
        .await
        .unwrap();
    assert_failure(&plugin, "adv-http", "trap").await;
    let calls = plugin.http_calls();
    assert!(!calls.is_empty() && calls.iter().all(|c| c.outcome.as_ref().is_err_and(|e| e.contains("allowed_outbound_hosts"))), "{calls:?}");
    // Nothing connected to the listener.
    let accepted = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
    assert!(accepted.is_err(), "no connection was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_file_fails_without_a_grant() {
    let plugin = misbehave("adv-file", "file", quick()).await;
    assert_failure(&plugin, "adv-file", "trap").await;
    assert!(capture::lines("adv-file").iter().any(|l| l.text.contains("cannot open /etc/passwd")), "{:?}", capture::lines("adv-file"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_answers_are_malformed() {
    let plugin = misbehave("adv-garbage", "garbage", quick()).await;
    assert_failure(&plugin, "adv-garbage", "malformed").await;
    let huge = misbehave("adv-huge", "huge", quick()).await;
    assert_failure(&huge, "adv-huge", "malformed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_allows_when_the_plugin_fails() {
    capture::install();
    let plugin = Testkit::new(guest("misbehave")).name("adv-open").config(json!({"mode": "panic"})).on_error(OnError::FailOpen).load().await.unwrap();
    let chain = SpamCheckers::new(vec![plugin.plugin.clone() as std::sync::Arc<dyn SpamCheckerBackend>]);
    assert_eq!(chain.check(message("hi")).await, SpamAnswer::Verdict(SpamVerdict::Allow));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_calls_are_unaffected_by_a_runaway_one() {
    let runaway = misbehave("adv-runaway", "loop", PluginLimitsConfig { timeout_ms: 500, ..quick() }).await;
    let ordinary = misbehave("adv-ordinary", "reject", quick()).await;
    let start = Instant::now();
    let looping = tokio::spawn(async move { runaway.call(message("x")).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..20 {
        let call_start = Instant::now();
        let answer = ordinary.call(message("x")).await.expect("an ordinary call succeeds");
        assert!(matches!(answer, SpamAnswer::Verdict(SpamVerdict::Reject(_))));
        assert!(call_start.elapsed() < Duration::from_millis(150), "an ordinary call took {:?}", call_start.elapsed());
    }
    assert!(start.elapsed() < Duration::from_millis(500), "the ordinary calls finished while the runaway one ran");
    let failure = looping.await.unwrap().expect_err("the runaway call times out");
    assert!(matches!(failure, CallFailure::Timeout(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_failing_is_switched_off_and_retried() {
    capture::install();
    let plugin = Testkit::new(guest("misbehave")).name("adv-switch").config(json!({"mode": "panic"})).disable_after(3, 1).limits(quick()).load().await.unwrap();
    for _ in 0..3 {
        assert_eq!(plugin.call(message("x")).await.unwrap_err().reason(), "trap");
    }
    assert!(capture::lines("adv-switch").iter().any(|l| l.level == tracing::Level::ERROR && l.text.contains("SWITCHED OFF")));
    assert_eq!(metric("weft_plugin_switched_off", &["plugin=\"adv-switch\""]), Some(1.0));
    // Off: answered without running the plugin.
    let off = plugin.call(message("x")).await.unwrap_err();
    assert_eq!(off.reason(), "disabled");
    // After the backoff it runs again (and, still failing, is switched off again).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(plugin.call(message("x")).await.unwrap_err().reason(), "trap");
    assert_eq!(plugin.call(message("x")).await.unwrap_err().reason(), "disabled");
}

/// Health is per callback: a working callback neither shares the failing
/// one's switch-off nor serves as its trial call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_callback_is_switched_off_alone_and_only_its_own_trial_switches_it_back_on() {
    capture::install();
    let plugin =
        Testkit::new(guest("misbehave")).name("adv-per-call").config(json!({"mode": "event-panics"})).disable_after(2, 1).limits(quick()).load().await.unwrap();
    let login = || SpamCall::CheckLoginForSpam {
        user: "@a:example.org".try_into().unwrap(),
        device_id: None,
        initial_display_name: None,
        request_info: Vec::new(),
        auth_provider_id: None,
    };
    for _ in 0..2 {
        assert_eq!(plugin.call(message("x")).await.unwrap_err().reason(), "trap");
    }
    assert_eq!(plugin.call(message("x")).await.unwrap_err().reason(), "disabled");
    assert_eq!(metric("weft_plugin_switched_off", &["plugin=\"adv-per-call\"", "call=\"check-event-for-spam\""]), Some(1.0));
    assert_eq!(plugin.call(login()).await.expect("another callback keeps running"), SpamAnswer::Verdict(SpamVerdict::Allow));
    assert_eq!(plugin.call(message("x")).await.unwrap_err().reason(), "disabled", "another callback's success is no trial");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(plugin.call(login()).await.expect("answers"), SpamAnswer::Verdict(SpamVerdict::Allow));
    assert_eq!(plugin.call(message("x")).await.unwrap_err().reason(), "trap", "the failing callback's own trial call runs it");
    assert_eq!(plugin.call(message("x")).await.unwrap_err().reason(), "disabled", "and, failing, switches it off again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_budgets_and_input_caps_are_enforced() {
    let fuel = misbehave("adv-fuel", "loop", PluginLimitsConfig { fuel: Some(1_000_000), timeout_ms: 5000, ..quick() }).await;
    let failure = fuel.call(message("x")).await.unwrap_err();
    assert_eq!(failure.reason(), "over_limit", "{failure}");
    assert!(failure.to_string().contains("fuel"));

    let small = misbehave("adv-input", "allow", PluginLimitsConfig { max_input_bytes: 100, ..quick() }).await;
    assert_eq!(small.call(message(&"x".repeat(200))).await.unwrap_err().reason(), "input_too_large");
    assert!(small.call(message("x")).await.is_err(), "a minimal event is over 100 bytes too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_beyond_the_budget_are_dropped() {
    let plugin = misbehave("adv-flood", "log-flood", PluginLimitsConfig { max_log_bytes: 2000, ..quick() }).await;
    assert_eq!(plugin.call(message("x")).await.unwrap(), SpamAnswer::Verdict(SpamVerdict::Allow));
    let kept = plugin.logs().len();
    assert!((10..100).contains(&kept), "kept {kept} lines");
    assert!(capture::lines("adv-flood").iter().any(|l| l.text.contains("log budget spent")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_max_concurrent_calls_wait_for_a_slot_within_the_deadline() {
    let plugin = std::sync::Arc::new(misbehave("adv-slots", "loop", PluginLimitsConfig { timeout_ms: 300, max_concurrent_calls: 1, ..quick() }).await);
    let first = tokio::spawn({
        let plugin = plugin.clone();
        async move { plugin.call(message("x")).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    // The only slot is taken until the first call times out (at 300 ms), and
    // this call's own 300 ms run out while it waits.
    assert_eq!(plugin.call(message("y")).await.unwrap_err().reason(), "timeout");
    assert!(start.elapsed() < Duration::from_millis(700), "{:?}", start.elapsed());
    assert_eq!(first.await.unwrap().unwrap_err().reason(), "timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_names_its_reason_in_the_failure_and_the_log_line() {
    let plugin = misbehave("adv-reason", "panic", quick()).await;
    let failure = plugin.call(message("x")).await.expect_err("panics").to_string();
    assert!(failure.contains("panicked at") && failure.contains("misbehave panics on purpose"), "{failure}");
    assert!(!failure.contains("wasm backtrace"), "{failure}");
    let lines = capture::lines("adv-reason");
    let line = lines.iter().find(|l| l.text.contains("plugin call failed")).expect("a failure line");
    let text = line.text.split(" message=").nth(1).unwrap_or_default();
    assert!(text.contains("misbehave panics on purpose"), "the reason is in the message itself: {}", line.text);

    // A plugin whose `new` refuses its configuration: the error it returned.
    let failure = match Testkit::new(guest("misbehave")).name("adv-new").config(json!({"mode": 5})).limits(quick()).load().await {
        Err(error) => error.to_string(),
        Ok(plugin) => plugin.call(message("x")).await.expect_err("cannot start").to_string(),
    };
    assert!(failure.contains("the plugin cannot start") && failure.contains("mode"), "{failure}");
}
