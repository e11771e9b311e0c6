//! The generated bindings of the `spam-checker` world (`wit/spam-checker.wit`), with
//! the optional exports, for `weft-plugin-sdk`: it re-exports them as
//! `bindings::spam_checker` (hidden) and wraps them in `SpamChecker` and
//! `export_spam_checker!`. Empty outside wasm32.

// The role's world and the optional exports (which no role's world
// requires, so the SDK adds them here).
#[cfg(target_arch = "wasm32")]
wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package weft:sdk;
        world spam-checker {
            include weft:plugin/spam-checker@0.1.4;
            include weft:plugin/optional-exports@0.1.4;
        }
    ",
    world: "weft:sdk/spam-checker",
    // The interfaces are `weft:plugin`'s, not the inline package's.
    generate_all,
    pub_export_macro: true,
    export_macro_name: "export_world",
    default_bindings_module: "weft_plugin_sdk::bindings::spam_checker",
});
