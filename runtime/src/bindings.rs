//! Host bindings of what every role shares, generated from `wit/`'s `base`
//! world: the `host`, `homeserver` and `types` interfaces (linked once per
//! engine, for every role) and `describe`. A role's own bindings reuse these
//! modules (`with` in its `bindgen!`), so one `CallState` implements `host`
//! and `homeserver` for all.
//!
//! Generated for the newest patch version of `weft:plugin@0.1`; wasmtime
//! matches a component's `weft:plugin/...@0.1.x` names semver-compatibly, so
//! components built for an older 0.1 patch link too. A 0.2 would get a module
//! of its own beside this one. Every host import is async (outbound HTTP
//! waits on the network) and trappable (a host-side failure such as an
//! over-quota log ends the call); every export is called with `call_async`.

wasmtime::component::bindgen!({
    world: "weft:plugin/base@0.1.4",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use weft::plugin::{homeserver, host, types};
