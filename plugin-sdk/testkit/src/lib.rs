//! Test a Weft plugin in the sandbox it will run in: the real runtime (the
//! `weft-plugin-runtime` crate the server runs, without the server),
//! production limits unless you set others, and fake host services:
//! recording HTTP that enforces the allow-list, an in-memory key-value
//! store you seed and inspect ([`TestKv`]), a wall clock you set and
//! advance ([`TestClock`]), seeded randomness, and a homeserver view you
//! seed ([`FakeHomeserver`]) for plugins granted `homeserver`. With
//! `live_http()` requests go out for real, under the server's address
//! policy: to a real service (an OpenID provider), or, for a pusher, to
//! [`push_gateway::PushGateway`], a Push Gateway API double on loopback
//! (allow it with `ip_range_whitelist(&["127.0.0.1"])`).
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
//! Other roles: `.load_as::<Sso>()` and `plugin.call(sso::SsoCall::..)`;
//! `.load_pusher()`, then `serves()`, `check_pusher(&pusher)` and
//! `notify(notification)` (types in `pusher`); `.load_appservice_notifier()`,
//! then `appservice(call)` with an `appservice::AppserviceCall`.
//!
//! Build the plugin first (`cargo build --release --target wasm32-wasip2`).
//! Calls answer `Err(CallFailure)` where the server would apply `on_error`:
//! a trap, a timeout, a limit, a malformed answer.

pub mod push_gateway;

pub use weft_plugin_runtime::{
    CallFailure, CallStats, ConfigCheck, LoadError, PluginBackend, Role, Sso, appservice,
    config::{HomeserverScope, OnError, PluginCapabilities, PluginLimitsConfig, PluginRole},
    egress::AddressPolicy,
    homeserver::{Profile, UserInfo},
    host_services::{HttpRequest, LogRecord},
    kv::KvError,
    pusher, spam, sso,
    testkit::{FakeHomeserver, HttpCall, TestClock, TestKv, TestPlugin, Testkit},
};
