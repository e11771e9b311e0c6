//! The generated bindings of the `pusher` world (`wit/pusher.wit`), for
//! `weft-plugin-sdk`, which re-exports them as `pusher_bindings` (hidden)
//! and wraps them in the `Pusher` trait and `export_pusher!`. Empty outside
//! wasm32. The SDK's own `host` wrappers use the spam-checker bindings'
//! imports; these carry only what the pusher world adds.

#[cfg(target_arch = "wasm32")]
wit_bindgen::generate!({
    path: "../../wit",
    world: "weft:plugin/pusher@0.1.2",
    pub_export_macro: true,
    export_macro_name: "export_pusher_world",
    default_bindings_module: "weft_plugin_sdk::pusher_bindings",
});
