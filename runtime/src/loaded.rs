//! One loaded plugin of any role (`LoadedPlugin<R>`) and how a call into it
//! runs; the role says which export a call runs and how its answer is
//! checked (`Role`). An optional export (`configuration`, see
//! `config_export`) runs the same way, in a fresh instance of its own.
//!
//! A call: admit (not switched off), check the input size, take a slot (the
//! pool has `max_concurrent_calls` per plugin), take an instance (a parked
//! warm one, or a fresh `Store` with the plugin's limits and a fresh instance
//! from the pre-instantiated component), run the export under the deadline
//! (epochs trap the guest, a tokio timeout bounds blocked host calls),
//! convert and check the answer. Any failure is classified (`CallFailure`),
//! logged once with its reason, counted, and fed to the plugin's health; the
//! caller applies `on_error`.
//!
//! By default an instance serves one call: no state survives it. A plugin
//! configured with `max_calls_per_instance` above 1 keeps warm instances:
//! one is parked only after a clean return (a valid answer), serves at most
//! that many calls, and is dropped after a trap, a timeout, an over-limit,
//! a malformed answer or a cancelled call. A running or parked instance
//! holds one of the plugin's slots, so the pool never holds more than
//! `max_concurrent_calls` instances of a plugin.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::{
    config_export::{self, ConfigCheck, ConfigExport},
    egress::Egress,
    engine::{EPOCH_TICK, PluginEngine},
    error::{CallFailure, LoadError},
    health::{Health, Tripped},
    host_services::{BoxFuture, HostServices},
    limits::Limits,
    metrics,
    role::{PluginBackend, Role},
    spam::Spam,
    state::CallState,
};
use crate::config::{HomeserverScope, OnError, PluginConfig};

/// What every call of one plugin shares (read-only).
pub struct PluginContext {
    pub name: String,
    pub role: &'static str,
    /// The instance running the plugin, for logs.
    pub instance: String,
    /// The plugin's `config` table as JSON.
    pub config_json: Arc<str>,
    pub egress: Egress,
    pub limits: Limits,
    pub data_dir: Option<PathBuf>,
    /// The parts of the `homeserver` view the operator granted.
    pub homeserver: Vec<HomeserverScope>,
    pub services: Arc<dyn HostServices>,
}

/// A plugin loaded in this process, of role `R` (spam checking unless said).
pub struct LoadedPlugin<R: Role = Spam> {
    pub ctx: Arc<PluginContext>,
    pub on_error: OnError,
    /// What the plugin's `describe` answered at load.
    pub version: String,
    engine: wasmtime::Engine,
    /// Whether the engine counts fuel (when any plugin has a budget).
    fuel: bool,
    pre: R::Pre,
    /// The optional `configuration` export, when the component has it.
    config_export: Option<ConfigExport>,
    health: Health,
    /// Bounds the calls running at once to the slots the pool reserved.
    slots: Semaphore,
    /// Warm instances between calls (always empty when instances serve one call).
    parked: Parking<R::Guest>,
}

/// How a call gets a fresh instance with the exports it runs bound: the
/// role's world (`RoleExports`) or an optional export (`ConfigExport`).
pub trait Instantiate: Sync {
    type Guest: Send + Sync;
    fn instantiate<'a>(&'a self, store: &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<Self::Guest>>;
}

/// The exports of role `R`'s world.
struct RoleExports<'p, R: Role>(&'p R::Pre);

impl<R: Role> Instantiate for RoleExports<'_, R> {
    type Guest = R::Guest;
    fn instantiate<'a>(&'a self, store: &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<R::Guest>> {
        R::instantiate(self.0, store)
    }
}

/// Where an instance that answered cleanly waits for its next call (role
/// calls only: an optional export's instance is dropped).
type Parking<G> = Mutex<Vec<WarmInstance<G>>>;

/// An instance kept for further calls, with the store it lives in.
struct WarmInstance<G> {
    store: Store<CallState>,
    guest: G,
    /// Calls it has answered.
    calls: u32,
}

/// Facts about one successful call, for the testkit and the benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallStats {
    pub elapsed: Duration,
    pub peak_memory_bytes: usize,
    pub fuel_used: Option<u64>,
}

impl<R: Role> LoadedPlugin<R> {
    pub async fn load(engine: &PluginEngine, config: &PluginConfig, instance: &str, services: Arc<dyn HostServices>) -> Result<Self, LoadError> {
        debug_assert_eq!(config.role, R::ROLE, "a plugin is loaded as its configured role");
        let role = R::ROLE.as_str();
        let component = engine.load_component(&config.path)?;
        let wrong_world = |reason: String| LoadError::WrongWorld { path: config.path.clone(), role, reason };
        super::version::check(&component, &engine.engine).map_err(wrong_world)?;
        let pre = super::role::fits::<R>(&engine.linker, &component).map_err(wrong_world)?;
        let config_export = config_export::find(&engine.engine, &engine.linker, &component).map_err(wrong_world)?;
        let egress = Egress::parse(&config.capabilities.allowed_outbound_hosts, config.capabilities.allow_private_addresses)
            .map_err(|entry| LoadError::Engine(format!("`{entry}` is not a valid allowed_outbound_hosts entry")))?
            .with_policy(services.address_policy());
        let config_json = serde_json::to_string(&config.config).unwrap_or_else(|_| "{}".into());
        let limits = Limits::from_config(&config.limits);
        let mut plugin = Self {
            ctx: Arc::new(PluginContext {
                name: config.name.clone(),
                role,
                instance: instance.to_owned(),
                config_json: config_json.into(),
                egress,
                data_dir: config.capabilities.data_dir.clone(),
                homeserver: config.capabilities.homeserver.clone(),
                services,
                limits: limits.clone(),
            }),
            on_error: config.on_error.unwrap_or(R::DEFAULT_ON_ERROR),
            version: String::new(),
            engine: engine.engine.clone(),
            fuel: engine.fuel,
            pre,
            config_export,
            health: Health::new(config.disable_after_failures(), Duration::from_secs(config.retry_after_secs())),
            slots: Semaphore::new(limits.max_concurrent_calls as usize),
            parked: Mutex::new(Vec::new()),
        };
        let (info, _) = plugin.run("describe", 0, |guest, store| R::describe(guest, store), Ok).await.map_err(LoadError::SmokeTest)?;
        plugin.version = info.version;
        // Calls start on instances of their own, not on the smoke test's.
        plugin.parked.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
        tracing::info!(plugin = %config.name, role, instance, guest = %info.name, version = %plugin.version, "loaded plugin");
        Ok(plugin)
    }

    pub fn name(&self) -> &str {
        &self.ctx.name
    }

    /// Runs one call of the role: its export, its answer checked.
    pub async fn call(&self, call: &R::Call) -> Result<(R::Answer, CallStats), CallFailure> {
        let limits = &self.ctx.limits;
        self.run(R::call_name(call), R::input_size(call), |guest, store| R::invoke(guest, store, call), |raw| R::check(call, raw, limits)).await
    }

    /// Asks the plugin to check its configuration (the optional
    /// `configuration` export), in a fresh instance under its limits.
    /// `Err` when the call failed: a trap, a timeout, a malformed answer.
    pub async fn validate_config(&self) -> Result<ConfigCheck, CallFailure> {
        let Some(export) = &self.config_export else { return Ok(ConfigCheck::NotExported) };
        let config = self.ctx.config_json.to_string();
        let max_output = self.ctx.limits.max_output_bytes;
        let (answer, _) = self
            .run_on(
                config_export::CALL,
                self.ctx.config_json.len(),
                export,
                None,
                move |guest, store| config_export::invoke(guest, store, config),
                |raw| config_export::check(raw, max_output),
            )
            .await?;
        Ok(answer)
    }

    /// Runs one export of the role's world in an instance (a parked warm one
    /// or a fresh one). `call` is the WIT callback name; `input_size` the
    /// bytes handed in; `convert` checks the raw answer.
    pub async fn run<Raw, T>(
        &self,
        call: &'static str,
        input_size: usize,
        invoke: impl for<'a> FnOnce(&'a R::Guest, &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<Raw>>,
        convert: impl FnOnce(Raw) -> Result<T, String>,
    ) -> Result<(T, CallStats), CallFailure> {
        self.run_on(call, input_size, &RoleExports::<R>(&self.pre), Some(&self.parked), invoke, convert).await
    }

    /// Runs one call on an instance of `exports` (parked in `parking` after a
    /// clean return, when given), then records its metrics, log and health.
    async fn run_on<X: Instantiate, Raw, T>(
        &self,
        call: &'static str,
        input_size: usize,
        exports: &X,
        parking: Option<&Parking<X::Guest>>,
        invoke: impl for<'a> FnOnce(&'a X::Guest, &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<Raw>>,
        convert: impl FnOnce(Raw) -> Result<T, String>,
    ) -> Result<(T, CallStats), CallFailure> {
        let start = Instant::now();
        let (result, output) = self.run_inner(call, input_size, exports, parking, invoke, convert).await;
        let elapsed = start.elapsed();
        let name = &self.ctx.name;
        metrics::call(name, call, elapsed);
        match result {
            Ok((value, mut stats)) => {
                if let Some(output) = output {
                    tracing::info!(target: "weft::plugin", plugin = %name, role = self.ctx.role, call, instance = %self.ctx.instance,
                        "plugin output: {output}");
                }
                stats.elapsed = elapsed;
                metrics::peak_memory(name, stats.peak_memory_bytes);
                if self.health.record_success(call) {
                    metrics::switched_off(name, call, false);
                    tracing::warn!(plugin = %name, role = self.ctx.role, call, instance = %self.ctx.instance, "plugin callback switched back on: its trial call succeeded");
                }
                Ok((value, stats))
            }
            Err(failure) => {
                self.report_failure(call, &failure, output.as_deref());
                Err(failure)
            }
        }
    }

    fn report_failure(&self, call: &'static str, failure: &CallFailure, output: Option<&str>) {
        let ctx = &self.ctx;
        metrics::failure(&ctx.name, call, failure.reason());
        let outcome = self.on_error.as_str();
        if let CallFailure::Disabled(_) = failure {
            tracing::debug!(plugin = %ctx.name, role = ctx.role, call, instance = %ctx.instance, reason = failure.reason(), outcome, "plugin switched off: {failure}");
            return;
        }
        tracing::warn!(plugin = %ctx.name, role = ctx.role, call, instance = %ctx.instance, reason = failure.reason(), outcome,
            output = output.unwrap_or(""), "plugin call failed: {failure}");
        if failure.counts_against_plugin()
            && let Tripped::SwitchedOff(backoff) = self.health.record_failure(call)
        {
            metrics::switched_off(&ctx.name, call, true);
            tracing::error!(plugin = %ctx.name, role = ctx.role, call, instance = %ctx.instance, retry_in = ?backoff,
                "PLUGIN CALLBACK SWITCHED OFF after repeated failures: every call of it answers `{outcome}` until it is retried");
        }
    }

    async fn run_inner<X: Instantiate, Raw, T>(
        &self,
        call: &'static str,
        input_size: usize,
        exports: &X,
        parking: Option<&Parking<X::Guest>>,
        invoke: impl for<'a> FnOnce(&'a X::Guest, &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<Raw>>,
        convert: impl FnOnce(Raw) -> Result<T, String>,
    ) -> (Result<(T, CallStats), CallFailure>, Option<String>) {
        let limits = &self.ctx.limits;
        if let Err(remaining) = self.health.admit(call) {
            return (Err(CallFailure::Disabled(remaining)), None);
        }
        if input_size as u64 > limits.max_input_bytes {
            return (Err(CallFailure::InputTooLarge { size: input_size, limit: limits.max_input_bytes }), None);
        }
        let deadline = Instant::now() + limits.timeout;
        let Ok(Ok(_slot)) = tokio::time::timeout(limits.timeout, self.slots.acquire()).await else {
            return (Err(CallFailure::Timeout(limits.timeout)), None);
        };
        let (mut store, warm_guest, calls) = match parking.and_then(take_parked) {
            Some(WarmInstance { mut store, guest, calls }) => {
                store.data_mut().begin_call(call, deadline);
                (store, Some(guest), calls)
            }
            None => match self.new_store(call, deadline) {
                Ok(store) => (store, None, 0),
                Err(reason) => return (Err(CallFailure::Trap(reason)), None),
            },
        };
        if self.fuel {
            let _ = store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
        }
        store.set_epoch_deadline(1);

        let store_ref = &mut store;
        let run = async move {
            let guest = match warm_guest {
                Some(guest) => guest,
                None => exports.instantiate(&mut *store_ref).await?,
            };
            let raw = invoke(&guest, &mut *store_ref).await?;
            Ok::<_, wasmtime::Error>((guest, raw))
        };
        // Epochs stop guest code; this bounds a host call that blocks.
        let outcome = tokio::time::timeout(limits.timeout + 2 * EPOCH_TICK, run).await;
        let state = store.data();
        let output = state.take_output();
        let stats = CallStats {
            elapsed: Duration::ZERO,
            peak_memory_bytes: state.limiter.peak,
            fuel_used: limits.fuel.and_then(|budget| store.get_fuel().ok().map(|left| budget.saturating_sub(left))),
        };
        let result = match outcome {
            Err(_) => Err(CallFailure::Timeout(limits.timeout)),
            Ok(Err(error)) => Err(classify(&error, &store, limits, output.as_deref())),
            Ok(Ok((guest, raw))) => match convert(raw) {
                Ok(value) => {
                    if let Some(parking) = parking {
                        self.park(parking, WarmInstance { store, guest, calls: calls + 1 });
                    }
                    Ok((value, stats))
                }
                Err(reason) => Err(CallFailure::Malformed(reason)),
            },
        };
        (result, output)
    }

    /// A store for a new instance, with the plugin's limits and a deadline
    /// callback that reads the current call's deadline.
    fn new_store(&self, call: &'static str, deadline: Instant) -> Result<Store<CallState>, String> {
        let state = CallState::new(self.ctx.clone(), call, deadline)?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|store| Ok(if Instant::now() >= store.data().deadline { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) }));
        Ok(store)
    }

    /// Keeps an instance that answered cleanly, unless it has served its calls.
    fn park<G>(&self, parking: &Parking<G>, instance: WarmInstance<G>) {
        if instance.calls < self.ctx.limits.max_calls_per_instance {
            parking.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(instance);
        }
    }
}

fn take_parked<G>(parking: &Parking<G>) -> Option<WarmInstance<G>> {
    parking.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop()
}

impl<R: Role> PluginBackend<R> for LoadedPlugin<R> {
    fn name(&self) -> &str {
        &self.ctx.name
    }

    fn on_error(&self) -> OnError {
        self.on_error
    }

    fn call<'a>(&'a self, call: &'a R::Call) -> BoxFuture<'a, Result<(R::Answer, CallStats), CallFailure>> {
        Box::pin(LoadedPlugin::call(self, call))
    }
}

fn classify(error: &wasmtime::Error, store: &Store<CallState>, limits: &Limits, output: Option<&str>) -> CallFailure {
    let state = store.data();
    if let Some(requested) = state.limiter.exceeded {
        return CallFailure::OverLimit(format!("memory: {requested} bytes requested, the cap is {} bytes", limits.memory_bytes));
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallFailure::Timeout(limits.timeout),
        Some(Trap::OutOfFuel) => CallFailure::OverLimit(format!("fuel: the budget of {} ran out", limits.fuel.unwrap_or(0))),
        _ => CallFailure::Trap(trap_reason(error, output)),
    }
}

/// Why the guest trapped, in one line: the panic message it printed (a Rust
/// panic, or the SDK's "the plugin cannot start: ..." when its `new`
/// failed) and wasmtime's root cause, not the backtrace's heading.
fn trap_reason(error: &wasmtime::Error, output: Option<&str>) -> String {
    let cause = error.root_cause().to_string();
    let cause = cause.lines().next().unwrap_or_default();
    match output.and_then(panic_message) {
        Some(panic) => format!("{panic} ({cause})"),
        None => cause.to_owned(),
    }
}

/// `panicked at src/lib.rs:7:9: the message` from a Rust panic's output
/// (`thread '..' panicked at src/lib.rs:7:9:\nthe message\nnote: ...`).
fn panic_message(output: &str) -> Option<String> {
    let rest = &output[output.find("panicked at ")?..];
    let mut lines = rest.lines();
    let location = lines.next()?.trim_end_matches(':');
    let message: Vec<&str> = lines.take_while(|line| !line.starts_with("note: ")).map(str::trim).collect();
    Some(format!("{location}: {}", message.join(" ").trim()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_message_is_taken_from_the_output() {
        let output = "thread '<unnamed>' panicked at src/lib.rs:97:24:\nthe plugin cannot start: `min_age_secs` is not a number\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace";
        assert_eq!(super::panic_message(output).as_deref(), Some("panicked at src/lib.rs:97:24: the plugin cannot start: `min_age_secs` is not a number"));
        assert_eq!(super::panic_message("just a log line"), None);
    }
}
