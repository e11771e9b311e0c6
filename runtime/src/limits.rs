//! One plugin's limits, resolved from `[plugins.limits]`, and the memory
//! limiter installed in every call's store.
//!
//! Memory growth past the cap traps at once (instead of `memory.grow`
//! returning -1, which Rust guests turn into an abort anyway) and is recorded,
//! so the failure is reported as "over limit", not as a generic trap.

use std::time::Duration;

use crate::config::PluginLimitsConfig;

/// The most one plugin instance may use: the pooling allocator reserves a
/// slot of this size per concurrent call, so it bounds the reservation.
pub const MAX_MEMORY_MB: u64 = 4096;
/// The longest deadline a call may have: a spam check holds up a request.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Table elements an instance may grow to (Rust guests use a few hundred).
const MAX_TABLE_ELEMENTS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    pub fuel: Option<u64>,
    pub max_input_bytes: u64,
    pub max_output_bytes: u64,
    pub max_log_bytes: u64,
    pub max_concurrent_calls: u32,
    pub max_calls_per_instance: u32,
}

impl Limits {
    pub fn from_config(config: &PluginLimitsConfig) -> Self {
        Self {
            timeout: Duration::from_millis(config.timeout_ms.clamp(1, MAX_TIMEOUT_MS)),
            memory_bytes: (config.memory_mb.clamp(1, MAX_MEMORY_MB) * 1024 * 1024) as usize,
            fuel: config.fuel,
            max_input_bytes: config.max_input_bytes,
            max_output_bytes: config.max_output_bytes,
            max_log_bytes: config.max_log_bytes,
            max_concurrent_calls: config.max_concurrent_calls.max(1),
            max_calls_per_instance: config.max_calls_per_instance.max(1),
        }
    }
}

/// The per-call memory cap, with the peak for metrics.
#[derive(Debug)]
pub struct MemoryLimiter {
    cap: usize,
    pub peak: usize,
    /// Set when the guest asked for more than `cap`.
    pub exceeded: Option<usize>,
}

impl MemoryLimiter {
    pub fn new(cap: usize) -> Self {
        Self { cap, peak: 0, exceeded: None }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.exceeded = Some(desired);
            return Err(wasmtime::format_err!("memory limit exceeded: {desired} bytes requested, the cap is {}", self.cap));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
