//! Which versions of `weft:plugin` this host runs. A component names the
//! version it was built against in every `weft:plugin/...@x.y.z` import and
//! export (the SDK pins it); a mismatch is refused at load with a message
//! saying so, instead of the linker's "import not found".
//!
//! Compatible means the same major version, and for 0.x the same minor
//! (semver), older or newer patch: wasmtime's linker matches such names
//! semver-compatibly (a `host@0.1.0` import is served by the `host@0.1.4`
//! this host defines), and a patch version only adds (see `wit/plugin.wit`).
//! When a second minor version is supported this becomes a list, with a
//! bindings module per version (see `bindings`).

use wasmtime::{Engine, component::Component};

/// The version of `wit/` the host bindings are generated from.
pub const WIT_VERSION: &str = "0.1.4";

/// `Err` naming the first `weft:plugin` item of an incompatible version.
pub fn check(component: &Component, engine: &Engine) -> Result<(), String> {
    let ty = component.component_type();
    let names: Vec<String> = ty.imports(engine).map(|(name, _)| name.to_owned()).chain(ty.exports(engine).map(|(name, _)| name.to_owned())).collect();
    for name in names {
        let Some(item) = name.strip_prefix("weft:plugin/") else { continue };
        let Some((_, version)) = item.split_once('@') else {
            return Err(format!("`{name}` has no version: build the plugin with weft-plugin-sdk"));
        };
        if !compatible(version, WIT_VERSION) {
            return Err(format!("it was built for weft:plugin@{version} (`{name}`); this Weft runs weft:plugin@{WIT_VERSION} and compatible versions"));
        }
    }
    Ok(())
}

/// Whether a component built for `theirs` runs on a host of `ours`.
pub fn compatible(theirs: &str, ours: &str) -> bool {
    let parts = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split(['.', '-', '+']);
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    match (parts(theirs), parts(ours)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}
