//! The Weft plugin SDK: write a plugin as a Rust type implementing a trait,
//! export it with a macro, and build it with `cargo build --target
//! wasm32-wasip2`. The generated WebAssembly bindings stay private; authors
//! see typed Rust.
//!
//! ```text
//! struct Hello;
//! impl weft_plugin_sdk::Plugin for Hello {
//!     fn describe() -> weft_plugin_sdk::PluginInfo {
//!         weft_plugin_sdk::PluginInfo::new("hello", env!("CARGO_PKG_VERSION"))
//!     }
//! }
//! weft_plugin_sdk::export_plugin!(Hello);
//! ```
//!
//! This is the first cut (`weft:plugin@0.1.0`): the host's log and
//! configuration and the `describe` export. Role traits with default methods
//! (spam checking first) come with the plugin runtime.

/// The version of the WIT package this SDK targets.
pub const WIT_VERSION: &str = "0.1.0";

/// What a plugin says about itself.
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

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Every plugin implements this.
pub trait Plugin {
    fn describe() -> PluginInfo;
}

/// Logs through the host, which attributes the line to this plugin and call.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use bindings::weft::plugin::host::{self, LogLevel as Wit};
        let level = match level {
            LogLevel::Trace => Wit::Trace,
            LogLevel::Debug => Wit::Debug,
            LogLevel::Info => Wit::Info,
            LogLevel::Warn => Wit::Warn,
            LogLevel::Error => Wit::Error,
        };
        host::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message);
}

/// The plugin's `config` table from the server configuration, as JSON text.
#[cfg(target_arch = "wasm32")]
pub fn config_json() -> String {
    bindings::weft::plugin::host::plugin_config()
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "weft:plugin/base@0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_base",
        default_bindings_module: "weft_plugin_sdk::bindings",
    });
}

/// Exports a [`Plugin`] implementation as the component's `plugin` interface.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Export;
            impl $crate::bindings::exports::weft::plugin::plugin::Guest for Export {
                fn describe() -> $crate::bindings::weft::plugin::types::PluginInfo {
                    let info = <$plugin as $crate::Plugin>::describe();
                    $crate::bindings::weft::plugin::types::PluginInfo { name: info.name, version: info.version }
                }
            }
            $crate::bindings::export_base!(Export with_types_in $crate::bindings);
        };
    };
}
