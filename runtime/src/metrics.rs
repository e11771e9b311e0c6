//! Per-plugin metrics, through the `metrics` facade (the server installs the
//! process's recorder). Labels are the plugin's configured name and the WIT
//! callback name: both come from the configuration and the WIT, never from
//! request data, so their number is bounded.

use std::time::Duration;

pub fn call(plugin: &str, call: &'static str, elapsed: Duration) {
    metrics::counter!("weft_plugin_calls_total", "plugin" => plugin.to_owned(), "call" => call).increment(1);
    metrics::histogram!("weft_plugin_call_duration_seconds", "plugin" => plugin.to_owned(), "call" => call).record(elapsed.as_secs_f64());
}

pub fn failure(plugin: &str, call: &'static str, reason: &'static str) {
    metrics::counter!("weft_plugin_failures_total", "plugin" => plugin.to_owned(), "call" => call, "reason" => reason).increment(1);
}

pub fn peak_memory(plugin: &str, bytes: usize) {
    metrics::gauge!("weft_plugin_peak_memory_bytes", "plugin" => plugin.to_owned()).set(bytes as f64);
}

pub fn switched_off(plugin: &str, call: &'static str, off: bool) {
    metrics::gauge!("weft_plugin_switched_off", "plugin" => plugin.to_owned(), "call" => call).set(if off { 1.0 } else { 0.0 });
}
