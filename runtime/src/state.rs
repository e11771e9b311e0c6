//! The data of one instance's `Store`: the WASI context (deny by default), the
//! resource table, the memory limiter, and what the `host` interface needs
//! (the plugin's context, the current call's name, deadline and log budget,
//! reset by `begin_call` when a warm instance is reused).
//!
//! What a call can reach, written down (see `wasi_context`): no
//! environment, arguments or preopened directories (but `/data` when
//! `capabilities.data_dir` is set), stdin closed, stdout and stderr captured
//! up to `max_log_bytes` and logged after the call, no sockets and no name
//! lookup (outbound HTTP goes through `host.http-send`), the host's clocks
//! and randomness (the testkit swaps in its settable wall clock and seeded
//! randomness).

use std::{sync::Arc, time::Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::{limits::MemoryLimiter, loaded::PluginContext, output::CapturedOutput};

pub struct CallState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub plugin: Arc<PluginContext>,
    /// The WIT callback being run, for logs and metrics.
    pub call: &'static str,
    /// When the call must be over; host calls (HTTP) get what is left.
    pub deadline: Instant,
    /// Bytes of log written so far in this call (guest `log` and output).
    pub log_bytes: u64,
    pub log_dropped: bool,
    /// The guest's stdout and stderr (a panic message lands here).
    pub output: CapturedOutput,
}

impl CallState {
    pub fn new(plugin: Arc<PluginContext>, call: &'static str, deadline: Instant) -> Result<Self, String> {
        let output = CapturedOutput::new(plugin.limits.max_log_bytes as usize);
        let wasi = wasi_context(&plugin, &output)?;
        Ok(Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(plugin.limits.memory_bytes),
            plugin,
            call,
            deadline,
            log_bytes: 0,
            log_dropped: false,
            output,
        })
    }

    /// Makes a parked instance's state ready for its next call (its output
    /// was taken when the previous call ended).
    pub fn begin_call(&mut self, call: &'static str, deadline: Instant) {
        self.call = call;
        self.deadline = deadline;
        self.log_bytes = 0;
        self.log_dropped = false;
        self.limiter.exceeded = None;
    }

    /// What the guest wrote to stdout and stderr during the call, trimmed.
    pub fn take_output(&self) -> Option<String> {
        self.output.take_text()
    }
}

fn wasi_context(plugin: &PluginContext, output: &CapturedOutput) -> Result<WasiCtx, String> {
    let mut builder = WasiCtxBuilder::new();
    builder.stdout(output.clone()).stderr(output.clone()).allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
    if let Some(dir) = &plugin.data_dir {
        builder.preopened_dir(dir, "/data", FsPerms::ReadWrite).map_err(|e| format!("cannot open the data directory {}: {e}", dir.display()))?;
    }
    plugin.services.configure_wasi(&mut builder);
    Ok(builder.build())
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
