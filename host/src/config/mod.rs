//! The configuration as the `weft` binary loads it: `weft_core::config`
//! (schema, merging, validation) re-exported whole, with loading that adds
//! the plugin runtime's checks of `[[plugins]]` (`weft_services::plugins::
//! check_config`, which compiles each component), and the zero-setup start.
//!
//! May call: `weft_core::config`, `weft_services::plugins`.

pub mod zero_setup;

use std::path::PathBuf;

pub use weft_core::config::*;

/// Reads, merges, checks and validates the given files, plugins included.
pub fn load_files(paths: &[PathBuf]) -> Result<Config, ConfigErrors> {
    load_files_with(paths, &weft_services::plugins::check_config)
}

/// Checks and validates one configuration given as text, plugins included;
/// `name` stands in for a file name.
pub fn load_str(name: &str, text: &str) -> Result<Config, ConfigErrors> {
    load_str_with(name, text, &weft_services::plugins::check_config)
}
