//! The reference plugins through the testkit (the real runtime with
//! production limits): `spam_rules` (every rule) and `oidc` (logging in with
//! a real OpenID provider, `idp`). Build them first, e.g.
//! `cargo build --release --target wasm32-wasip2 --manifest-path plugins/oidc/Cargo.toml`,
//! and install the provider (tests/run.sh does both).

mod idp;
mod oidc;
mod spam_rules;

use std::path::PathBuf;

/// The component `file` of the reference plugin `plugins/{plugin}`, built
/// into `$CARGO_TARGET_DIR` (as tests/run.sh builds it) or the plugin's own target.
pub fn built(plugin: &str, file: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let file = format!("wasm32-wasip2/release/{file}");
    let candidates =
        [std::env::var_os("CARGO_TARGET_DIR").map(|dir| PathBuf::from(dir).join(&file)), Some(root.join("plugins").join(plugin).join("target").join(&file))];
    candidates.into_iter().flatten().find(|p| p.exists()).unwrap_or_else(|| panic!("{file} of plugins/{plugin} is built (tests/run.sh)"))
}
