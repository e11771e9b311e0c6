//! The generated bindings of the `pusher` world (`wit/pusher.wit`), with
//! the optional exports, for `weft-plugin-sdk`: it re-exports them as
//! `bindings::pusher` (hidden) and wraps them in `Pusher` and
//! `export_pusher!`. Empty outside wasm32.

// The role's world and the optional exports (which no role's world
// requires, so the SDK adds them here).
#[cfg(target_arch = "wasm32")]
wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package weft:sdk;
        world pusher {
            include weft:plugin/pusher@0.1.4;
            include weft:plugin/optional-exports@0.1.4;
        }
    ",
    world: "weft:sdk/pusher",
    // The interfaces are `weft:plugin`'s, not the inline package's.
    generate_all,
    pub_export_macro: true,
    export_macro_name: "export_world",
    default_bindings_module: "weft_plugin_sdk::bindings::pusher",
});
