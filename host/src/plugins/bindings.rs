//! Host bindings generated from `wit/` (`weft:plugin@0.1.0`).
//!
//! One module per supported WIT version: when 0.1.0 is released and a 0.2.0
//! follows, this becomes `v0_1.rs` beside `v0_2.rs` and the runtime dispatches
//! on the version a component imports. Every host import is async (outbound
//! HTTP waits on the network) and trappable (a host-side failure such as an
//! over-quota log ends the call); every export is called with `call_async`.

wasmtime::component::bindgen!({
    world: "weft:plugin/spam-checker@0.1.0",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use weft::plugin::{host, types};
