//! The Weft plugin SDK: write a plugin as a Rust type implementing a role's
//! trait ([`spam::SpamChecker`], [`pusher::Pusher`]), export it with the
//! role's macro, and build it with `cargo build --target wasm32-wasip2`. The
//! generated WebAssembly bindings stay private (`bindings`,
//! `pusher_bindings`, hidden); authors see typed Rust.
//!
//! ```text
//! use weft_plugin_sdk::{PluginConfig, PluginError, spam::{Event, SpamChecker, Verdict}};
//!
//! struct NoShouting;
//! impl SpamChecker for NoShouting {
//!     fn new(_config: &PluginConfig) -> Result<Self, PluginError> { Ok(Self) }
//!     fn check_event_for_spam(&self, event: &Event) -> Verdict {
//!         match event.body() {
//!             Some(body) if body.len() > 8 && body == body.to_uppercase() => Verdict::forbidden("no shouting"),
//!             _ => Verdict::Allow,
//!         }
//!     }
//! }
//! weft_plugin_sdk::export_spam_checker!(NoShouting);
//! ```
//!
//! Host functions: [`log`], [`kv`], [`http`], [`now_ms`], [`random_bytes`],
//! and the plugin's configuration ([`PluginConfig`]). Outside wasm32 they are
//! native stand-ins (log to stderr, an in-memory store, HTTP refused) so
//! plugin logic can be unit-tested natively.

pub mod host;
pub mod pusher;
pub mod spam;

pub use host::{PluginConfig, PluginError, http, kv, log, now_ms, random_bytes};
/// The JSON library events, room configurations and rejection fields use.
pub use serde_json;

/// The version of the WIT package (`weft:plugin`) this SDK targets.
pub const WIT_VERSION: &str = "0.1.2";

/// What a plugin says about itself (`describe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
}

impl PluginInfo {
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self { name: name.into(), version: version.into() }
    }
}

// The spam-checker world's bindings. Each role's bindings carry only its
// imports' description (the export macro, expanded in the plugin, adds its
// exports), so a plugin exports the one world whose macro it calls. The
// pusher world's are generated in `weft-plugin-sdk-pusher-bindings` (every
// world exports `plugin`, whose generated macro would clash in one crate).
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "weft:plugin/spam-checker@0.1.2",
        pub_export_macro: true,
        export_macro_name: "export_spam_checker_world",
        default_bindings_module: "weft_plugin_sdk::bindings",
    });
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub use weft_plugin_sdk_pusher_bindings as pusher_bindings;

/// Re-exported for the export macros.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;
}
