//! Configuration: the TOML schema with Synapse's option names, loading and
//! merging several files, validation, and the zero-setup configuration.
//!
//! Owns: the `Config` type every other module reads (and never writes), and the
//! rules that make a configuration acceptable. The `[[plugins]]` types are the
//! plugin runtime's schema (the `weft-plugin-config` crate); the runtime's
//! `verify` checks them with the facts of `Config::plugin_deployment`, handed
//! in by the caller as an `ExtraCheck` (this crate does not build wasmtime:
//! `weft::config::load_files` is the loading that includes it). Loading collects every problem it
//! finds (unknown keys, wrong types, impossible combinations) and reports them
//! all at once, each with the file and the key path it came from.
//!
//! Relative paths are resolved against the directory of the file that set them
//! (Synapse resolves them against the working directory; a data directory that
//! moves as a whole is the more useful behaviour).

mod appservice;
mod describe;
mod duration;
mod load;
mod media;
mod schema;
mod validate;
mod warnings;

pub use describe::describe;
pub use duration::SynapseDuration;
pub use load::{ConfigError, ConfigErrors, ExtraCheck, load_files_with, load_str_with};
pub use media::{ByteSize, ThumbnailMethod, ThumbnailSize};
pub use schema::*;
pub use warnings::warnings;
/// `[[plugins]]`: the plugin runtime's schema, embedded in `Config`.
pub use weft_plugin_config::{Deployment as PluginDeployment, OnError, PluginCapabilities, PluginConfig, PluginLimitsConfig, PluginRole};

/// The name the main process has in `instance_map`, `stream_writers` and the
/// other instance-valued options, as in Synapse.
pub const MAIN_INSTANCE: &str = "main";
