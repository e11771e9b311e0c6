//! Test a Weft plugin in the sandbox it will run in: the real runtime (the
//! `weft-plugin-runtime` crate the server runs, without the server),
//! production limits unless you set others, and fake host services:
//! recording HTTP that enforces the allow-list, an in-memory key-value
//! store you seed and inspect ([`TestKv`]), a wall clock you set and
//! advance ([`TestClock`]), seeded randomness, and a homeserver view you
//! seed ([`FakeHomeserver`]) for plugins granted `homeserver`.
//!
//! ```text
//! use std::time::Duration;
//! use weft_plugin_testkit::{Testkit, ConfigCheck, spam::{SpamCall, SpamAnswer, SpamVerdict}};
//!
//! #[tokio::test]
//! async fn blocks_evil() {
//!     let plugin = Testkit::new("target/wasm32-wasip2/release/my_plugin.wasm")
//!         .config(serde_json::json!({"blocked_servers": ["evil.example"]}))
//!         .kv_entry("seen", b"1".to_vec())
//!         .load().await.unwrap();
//!     assert_eq!(plugin.validate_config().await.unwrap(), ConfigCheck::Valid);
//!     let answer = plugin.call(SpamCall::UserMayInvite { .. }).await.unwrap();
//!     assert!(!answer.allows());
//!     plugin.clock().advance(Duration::from_secs(3600));
//!     println!("{:?}", plugin.kv_entries());
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
    CallFailure, CallStats, ConfigCheck, LoadError, PluginBackend, Role, Sso,
    config::{HomeserverScope, OnError, PluginCapabilities, PluginLimitsConfig},
    homeserver::{Profile, UserInfo},
    host_services::{HttpRequest, LogRecord},
    kv::KvError,
    spam, sso,
    testkit::{FakeHomeserver, HttpCall, TestClock, TestKv, TestPlugin, Testkit},
};
