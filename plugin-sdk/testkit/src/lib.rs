//! Test a Weft plugin in the sandbox it will run in: the real runtime (the
//! `weft-plugin-runtime` crate the server runs, without the server), production limits unless you set others, and fake host
//! services (recording HTTP that enforces the allow-list, an in-memory
//! key-value store, a fixed clock, seeded randomness).
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
//! Another role: `.load_as::<Sso>()` and `plugin.call(sso::SsoCall::..)`;
//! `.live_http()` sends its requests to a real service (an OpenID provider).
//!
//! Build the plugin first (`cargo build --release --target wasm32-wasip2`).
//! Calls answer `Err(CallFailure)` where the server would apply `on_error`:
//! a trap, a timeout, a limit, a malformed answer.

pub use weft_plugin_runtime::{
    CallFailure, CallStats, LoadError, PluginBackend, Role, Sso,
    config::{OnError, PluginCapabilities, PluginLimitsConfig},
    host_services::{HttpRequest, LogRecord},
    spam, sso,
    testkit::{HttpCall, TestPlugin, Testkit},
};
