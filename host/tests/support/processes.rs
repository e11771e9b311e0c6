//! What tests that start real processes share: the `weft` binary, ports no
//! other test in this run was given, and a child killed with the test.

use std::process::Child;

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// A free port nobody in this test process was given before: processes run
/// side by side, and a port released by one must not reach another.
///
/// Ports come from below the kernel's ephemeral range: a port in that range
/// can be taken between this check and the child's `bind` by any outgoing
/// connection (to PostgreSQL, Redis, another instance).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOWEST: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = ephemeral_range_start().saturating_sub(LOWEST).max(1_000);
    let offset = (std::process::id() * 7919) % span;
    loop {
        let port = (LOWEST + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The first port the kernel hands out to outgoing connections.
fn ephemeral_range_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok().and_then(|range| range.split_whitespace().next()?.parse().ok()).unwrap_or(32_768)
}

/// A child process killed (and reaped) when the test ends, passed or not.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
