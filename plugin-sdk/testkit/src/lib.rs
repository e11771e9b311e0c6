//! Test a Weft plugin in the sandbox it will run in: the real runtime (the
//! `weft-plugin-runtime` crate the server runs, without the server), production limits unless you set others, and fake host
//! services (recording HTTP that enforces the allow-list, an in-memory
//! key-value store, a fixed clock, seeded randomness). With `live_http()`
//! requests go out for real, under the server's address policy; a pusher
//! can be tested against `push_gateway::PushGateway`, a Push Gateway API
//! double on loopback (allow it with `ip_range_whitelist(&["127.0.0.1"])`).
//!
//! ```text
//! use weft_plugin_testkit::{Testkit, spam::{SpamCall, SpamAnswer, SpamVerdict}};
//!
//! #[tokio::test]
//! async fn blocks_evil() {
//!     let plugin = Testkit::new("target/wasm32-wasip2/release/my_plugin.wasm")
//!         .config(serde_json::json!({"blocked_servers": ["evil.example"]}))
//!         .load().await.unwrap();
//!     let answer = plugin.call(SpamCall::UserMayInvite { .. }).await.unwrap();
//!     assert!(!answer.allows());
//! }
//! ```
//!
//! A pusher: `Testkit::new(path).load_pusher()`, then `serves()`,
//! `check_pusher(&pusher)` and `notify(notification)` (types in `pusher`).
//!
//! Build the plugin first (`cargo build --release --target wasm32-wasip2`).
//! Calls answer `Err(CallFailure)` where the server would apply `on_error`:
//! a trap, a timeout, a limit, a malformed answer.

pub mod push_gateway;

pub use weft_plugin_runtime::{
    CallFailure, CallStats, LoadError, Role,
    config::{OnError, PluginCapabilities, PluginLimitsConfig, PluginRole},
    egress::AddressPolicy,
    host_services::{HttpRequest, LogRecord},
    pusher, spam,
    testkit::{HttpCall, TestPlugin, Testkit},
};
