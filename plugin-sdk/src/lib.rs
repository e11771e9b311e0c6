//! The Weft plugin SDK: write a plugin as a Rust type implementing a role's
//! trait ([`spam::SpamChecker`], [`sso::SsoProvider`], [`pusher::Pusher`]),
//! export it with the role's macro, and build it with `cargo build --target
//! wasm32-wasip2`. The generated WebAssembly bindings stay private
//! (`bindings`, hidden); authors see typed Rust.
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
//! A plugin of any role may check its own configuration: override the role
//! trait's `validate_config` (see [`spam::SpamChecker::validate_config`]);
//! `weft check-config` and every server start ask it.
//!
//! Built against `weft:plugin@0.1.4` ([`WIT_VERSION`]); which Weft runs
//! what is the versioning rule in the SDK's README.

pub mod appservice;
pub mod homeserver;
pub mod host;
pub mod pusher;
pub mod spam;
pub mod sso;

pub use host::{PluginConfig, PluginError, http, kv, log, now_ms, random_bytes};
/// The JSON library events, room configurations and rejection fields use.
pub use serde_json;

/// The version of the WIT package (`weft:plugin`) this SDK targets.
pub const WIT_VERSION: &str = "0.1.4";

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

/// The generated WebAssembly bindings. A component has one role: it
/// exports the world of the role whose export macro it calls, and nothing
/// else.
///
/// Every role's world (with the optional exports) is generated in a crate of
/// its own, `plugin-sdk/bindings/<world>`, re-exported here by module: every
/// world exports the shared `plugin` interface (and `configuration`), and
/// wit-bindgen names an exported interface's macro, which the role's export
/// macro expands in the plugin's crate and so must be `#[macro_export]`,
/// after the interface alone: two worlds generated in one crate would clash.
/// A role's bindings carry only its imports' description; the exports' is
/// added by the export macro, in the plugin, so a plugin exports only the
/// world it asks for.
///
/// The SDK's own wrappers of the host functions ([`host`], [`homeserver`])
/// call the imports generated here, from a world of imports alone; every
/// role's world imports the same (`base`).
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        inline: "
            package weft:sdk;
            world imports {
                import weft:plugin/host@0.1.4;
                import weft:plugin/homeserver@0.1.4;
            }
        ",
        world: "weft:sdk/imports",
        generate_all,
    });

    pub use weft_plugin_sdk_appservice_notifier_bindings as appservice_notifier;
    pub use weft_plugin_sdk_pusher_bindings as pusher;
    pub use weft_plugin_sdk_spam_checker_bindings as spam_checker;
    pub use weft_plugin_sdk_sso_provider_bindings as sso_provider;
}

/// Re-exported for the export macros.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;

    use crate::PluginConfig;

    /// The optional `validate-config` export of every role: the
    /// configuration's JSON text, checked by the role trait's `validate_config`.
    pub fn validate_config(config: &str, check: fn(&PluginConfig) -> Result<(), Vec<String>>) -> Result<(), Vec<String>> {
        let config = PluginConfig::from_json(config).map_err(|error| vec![error.to_string()])?;
        check(&config)
    }
}
