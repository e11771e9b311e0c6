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
//! Host functions: [`log`], [`kv`], [`http`], [`now_ms`], [`random_bytes`],
//! the plugin's configuration ([`PluginConfig`]) and, when the operator
//! grants it, the read-only [`homeserver`] view. Outside wasm32 they are
//! native stand-ins (log to stderr, an in-memory store, HTTP refused, no
//! homeserver) so plugin logic can be unit-tested natively.
//!
//! A plugin may check its own configuration: override the role trait's
//! `validate_config` (see [`spam::SpamChecker::validate_config`]); `weft
//! check-config` and every server start ask it.
//!
//! Built against `weft:plugin@0.1.2` ([`WIT_VERSION`]); which Weft runs
//! what is the versioning rule in the SDK's README.

pub mod homeserver;
pub mod host;
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

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    // The role's world and the optional exports (which no role's world
    // requires, so the SDK adds them here).
    wit_bindgen::generate!({
        path: "../wit",
        inline: "
            package weft:sdk;
            world spam-checker {
                include weft:plugin/spam-checker@0.1.2;
                include weft:plugin/optional-exports@0.1.2;
            }
        ",
        world: "weft:sdk/spam-checker",
        // The interfaces are `weft:plugin`'s, not the inline package's.
        generate_all,
        pub_export_macro: true,
        export_macro_name: "export_spam_checker_world",
        default_bindings_module: "weft_plugin_sdk::bindings",
    });
}

/// Re-exported for the export macros.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;
}
