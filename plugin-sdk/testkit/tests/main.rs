//! The reference plugins through the testkit (the real runtime with
//! production limits): `spam_rules` (every rule), `oidc` (logging in with
//! a real OpenID provider, `idp`), `http_pusher` (pushing to the Push
//! Gateway API double) and `appservice_http` (the Application Service API,
//! with recorded HTTP); and the testkit's own tools (`sandbox`: the clock
//! and the key-value store; `homeserver`: the fake view and its grants;
//! `config`: `validate-config`), with spam-rules and the test guest
//! `misbehave`. Build them first, e.g.
//! `cargo build --release --target wasm32-wasip2 --manifest-path plugins/oidc/Cargo.toml`,
//! and install the provider (tests/run.sh does both).

mod appservice_http;
mod config;
mod homeserver;
mod http_pusher;
mod idp;
mod oidc;
mod sandbox;
mod spam_rules;

use std::path::PathBuf;

/// 2026-01-01T00:00:00Z, where a testkit's clock starts (a whole minute).
const START_MS: u64 = 1_767_225_600_000;

/// The component `file` of the reference plugin `plugins/{plugin}`, built
/// into `$CARGO_TARGET_DIR` (as tests/run.sh builds it) or the plugin's own target.
pub fn built(plugin: &str, file: &str) -> PathBuf {
    component(&format!("plugins/{plugin}"), file)
}

/// The test guest `host/tests/plugins/guests/misbehave`.
fn misbehave() -> PathBuf {
    component("host/tests/plugins/guests/misbehave", "misbehave.wasm")
}

/// The component `file` of the guest crate in `dir` of the repository.
fn component(dir: &str, file: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let file = format!("wasm32-wasip2/release/{file}");
    let candidates = [std::env::var_os("CARGO_TARGET_DIR").map(|target| PathBuf::from(target).join(&file)), Some(root.join(dir).join("target").join(&file))];
    candidates.into_iter().flatten().find(|p| p.exists()).unwrap_or_else(|| panic!("{file} of {dir} is built (tests/run.sh)"))
}
