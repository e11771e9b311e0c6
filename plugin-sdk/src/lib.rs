//! The Weft plugin SDK: write a plugin as a Rust type implementing a role's
//! trait, export it with the role's macro, and build it with
//! `cargo build --target wasm32-wasip2`. The generated WebAssembly bindings
//! stay private (`bindings`, hidden); authors see typed Rust.
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
//! Roles: [`spam`] (the default) and [`sso`] (with the `sso-provider`
//! feature: a component has one role, so one role's bindings are built).
//!
//! Host functions: [`log`], [`kv`], [`http`], [`now_ms`], [`random_bytes`],
//! and the plugin's configuration ([`PluginConfig`]). Outside wasm32 they are
//! native stand-ins (log to stderr, an in-memory store, HTTP refused) so
//! plugin logic can be unit-tested natively.

pub mod host;
pub mod spam;
pub mod sso;

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

// One role's bindings per build: a component exports one world, and
// wit-bindgen's description of a world (a custom section) would make every
// generated world's exports required. The `sso-provider` feature picks that
// role; without it, the spam checker.
#[cfg(all(target_arch = "wasm32", not(feature = "sso-provider")))]
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

#[cfg(all(target_arch = "wasm32", feature = "sso-provider"))]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "weft:plugin/sso-provider@0.1.2",
        pub_export_macro: true,
        export_macro_name: "export_sso_provider_world",
        default_bindings_module: "weft_plugin_sdk::bindings",
    });
}

/// Re-exported for the export macros.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;
}
