//! What tests that start real processes share: the `weft` binary, ports no
//! other test in this run was given, and a child killed with the test.

use std::process::Child;

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// A free port nobody in this test process was given before: processes run
/// side by side, and a port released by one must not reach another.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() * 7919) % 25_000;
    loop {
        let port = (base + NEXT.fetch_add(1, Ordering::Relaxed) % 20_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A child process killed (and reaped) when the test ends, passed or not.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
