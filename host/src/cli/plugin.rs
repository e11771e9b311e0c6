//! `weft plugin test` and `weft plugin bench`: run a component outside a
//! server, in the testkit (the real runtime with production limits and fake
//! host services).
//!
//! Fixtures for `test` are a JSON array of `{"call": {...}, "expect": ...}`;
//! `call` is a `SpamCall` (`{"callback": "user-may-invite", "inviter": ..}`),
//! `expect` an answer: `{"verdict": "allow"}`, `{"verdict": "reject",
//! "errcode": "M_FORBIDDEN", ...}` (fields left out are not compared),
//! `true`/`false` for the flag callbacks, `"allow"`/`"shadow-ban"`/`"deny"`
//! for registration, or `"failure"` for a call that must fail. Before the
//! fixtures, the plugin checks its configuration (`validate-config`, when
//! it has it): errors fail the run as `weft check-config` would refuse them.
//! The full format is in `plugin-sdk/README.md`.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    config::PluginLimitsConfig,
    plugins::{
        ConfigCheck, SpamCheckers,
        spam::{SpamCall, SpamCheckerBackend, SpamEvent},
        testkit::Testkit,
    },
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run a spam-checker component against JSON fixtures.
    Test {
        /// The component (`.wasm`).
        #[arg(short = 'p', long = "plugin", value_name = "WASM")]
        plugin: PathBuf,
        /// The plugin's configuration, a JSON file (default: `{}`).
        #[arg(short = 'c', long = "config", value_name = "JSON")]
        config: Option<PathBuf>,
        /// The fixtures: a JSON array of `{"call": ..., "expect": ...}`.
        fixtures: PathBuf,
    },
    /// Measure the latency a spam checker adds per checked event (p50, p99)
    /// and the cost of instantiating it, with production limits.
    Bench {
        #[arg(short = 'p', long = "plugin", value_name = "WASM")]
        plugin: PathBuf,
        #[arg(short = 'c', long = "config", value_name = "JSON")]
        config: Option<PathBuf>,
        /// Checks per measurement.
        #[arg(short = 'n', long, default_value_t = 5000)]
        iterations: usize,
        /// The plugin's `max_calls_per_instance` (1: a fresh instance per call).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        max_calls_per_instance: u32,
    },
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Test { plugin, config, fixtures } => test(plugin, config, fixtures).await,
        Command::Bench { plugin, config, iterations, max_calls_per_instance } => bench(plugin, config, iterations, max_calls_per_instance).await,
    }
}

fn read_config(path: Option<PathBuf>) -> anyhow::Result<Value> {
    match path {
        None => Ok(json!({})),
        Some(path) => {
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
        }
    }
}

#[derive(Debug, Deserialize)]
struct Fixture {
    call: SpamCall,
    #[serde(default)]
    expect: Option<Value>,
}

async fn test(plugin: PathBuf, config: Option<PathBuf>, fixtures: PathBuf) -> anyhow::Result<()> {
    let config = read_config(config)?;
    let text = std::fs::read_to_string(&fixtures).with_context(|| format!("cannot read {}", fixtures.display()))?;
    let fixtures: Vec<Fixture> = serde_json::from_str(&text).with_context(|| format!("{} is not a list of fixtures", fixtures.display()))?;
    let loaded = Testkit::new(&plugin).name("plugin-test").config(config).load().await?;
    let config_ok = match loaded.validate_config().await {
        Ok(ConfigCheck::NotExported) => {
            println!("config: not checked (the component has no validate-config export)");
            true
        }
        Ok(ConfigCheck::Valid) => {
            println!("config: ok");
            true
        }
        Ok(ConfigCheck::Invalid(errors)) => {
            errors.iter().for_each(|error| println!("config: {error}"));
            false
        }
        Err(failure) => {
            println!("config: validate-config failed: {failure}");
            false
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for (index, fixture) in fixtures.into_iter().enumerate() {
        let name = fixture.call.name();
        let outcome = loaded.call(fixture.call).await;
        let got = match &outcome {
            Ok(answer) => serde_json::to_value(answer)?,
            Err(failure) => json!({"failure": failure.to_string()}),
        };
        let ok = match &fixture.expect {
            None => true,
            Some(Value::String(s)) if s == "failure" => outcome.is_err(),
            Some(expected) => outcome.is_ok() && contains(&got, expected),
        };
        if ok {
            passed += 1;
            println!("ok   {index:>3} {name}: {got}");
        } else {
            failed += 1;
            println!("FAIL {index:>3} {name}: got {got}, expected {}", fixture.expect.unwrap_or(Value::Null));
        }
    }
    for line in loaded.logs() {
        println!("log  {} {}: {} {:?}", line.level, line.call, line.message, line.fields);
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} fixture(s) failed");
    }
    if !config_ok {
        bail!("the plugin refuses its configuration");
    }
    Ok(())
}

/// Whether `got` has every key of `expected` with an equal (recursively
/// contained) value.
fn contains(got: &Value, expected: &Value) -> bool {
    match (got, expected) {
        (Value::Object(got), Value::Object(expected)) => expected.iter().all(|(k, v)| got.get(k).is_some_and(|g| contains(g, v))),
        _ => got == expected,
    }
}

async fn bench(plugin: PathBuf, config: Option<PathBuf>, iterations: usize, max_calls_per_instance: u32) -> anyhow::Result<()> {
    let config = read_config(config)?;
    let limits = PluginLimitsConfig { max_calls_per_instance, ..PluginLimitsConfig::default() };
    let loaded = Testkit::new(&plugin).name("plugin-bench").config(config.clone()).limits(limits).load().await?;
    // Instantiation is measured on fresh instances whatever the reuse.
    let fresh = Testkit::new(&plugin).name("plugin-bench-fresh").config(config).load().await?;
    let chain = SpamCheckers::new(vec![loaded.plugin.clone() as std::sync::Arc<dyn SpamCheckerBackend>]);
    let empty = SpamCheckers::default();
    let event = SpamEvent::from_json(json!({
        "event_id": "$bench", "room_id": "!bench:example.org", "sender": "@alice:example.org",
        "type": "m.room.message", "origin_server_ts": 0,
        "content": {"msgtype": "m.text", "body": "hello, this is an ordinary message of ordinary length"},
    }))
    .context("the benchmark event")?;
    let instances = match max_calls_per_instance {
        1 => "a fresh instance per call".to_owned(),
        calls => format!("warm instances for up to {calls} calls"),
    };
    println!("plugin {} ({}), {iterations} iterations, production limits, {instances}", plugin.display(), loaded.plugin.version);

    // Warm up (page in the compiled code, fill the pool's warm slots).
    for _ in 0..200.min(iterations) {
        chain.check(SpamCall::CheckEventForSpam { event: event.clone() }).await;
    }
    let without = measure(iterations, || async {
        empty.check_event_for_spam(&event).await;
    })
    .await;
    let with = measure(iterations, || async {
        chain.check_event_for_spam(&event).await;
    })
    .await;
    let instantiate = measure(iterations, || async {
        let _ = fresh.plugin.run("instantiate", 0, |_, _| Box::pin(async { Ok(()) }), Ok::<(), String>).await;
    })
    .await;
    // Throughput with two callers at once (the machine's two cores).
    let start = Instant::now();
    let per_task = iterations / 2;
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let (chain, event) = (chain.clone(), event.clone());
            tokio::spawn(async move {
                for _ in 0..per_task {
                    chain.check_event_for_spam(&event).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.context("a benchmark task")?;
    }
    let concurrent = start.elapsed();

    report("check-event-for-spam, no plugin", &without);
    report("check-event-for-spam, with plugin", &with);
    report("instantiate + drop (pooling)", &instantiate);
    let added = |q: f64| percentile(&with, q).saturating_sub(percentile(&without, q));
    println!("added per checked event: p50 {:.1} µs, p99 {:.1} µs", micros(added(0.50)), micros(added(0.99)));
    println!(
        "two concurrent callers: {} checks in {:.1} ms, {:.0} checks/s",
        per_task * 2,
        concurrent.as_secs_f64() * 1e3,
        (per_task * 2) as f64 / concurrent.as_secs_f64()
    );
    Ok(())
}

async fn measure<F, Fut>(iterations: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        f().await;
        samples.push(start.elapsed());
    }
    samples.sort();
    samples
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report(label: &str, samples: &[Duration]) {
    println!(
        "{label:<36} p50 {:>8.1} µs   p99 {:>8.1} µs   max {:>8.1} µs",
        micros(percentile(samples, 0.50)),
        micros(percentile(samples, 0.99)),
        micros(percentile(samples, 1.0))
    );
}
