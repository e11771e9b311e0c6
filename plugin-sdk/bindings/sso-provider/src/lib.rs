//! The generated bindings of the `sso-provider` world (`wit/sso-provider.wit`), with
//! the optional exports, for `weft-plugin-sdk`: it re-exports them as
//! `bindings::sso_provider` (hidden) and wraps them in `SsoProvider` and
//! `export_sso_provider!`. Empty outside wasm32.

// The role's world and the optional exports (which no role's world
// requires, so the SDK adds them here).
#[cfg(target_arch = "wasm32")]
wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package weft:sdk;
        world sso-provider {
            include weft:plugin/sso-provider@0.1.4;
            include weft:plugin/optional-exports@0.1.4;
        }
    ",
    world: "weft:sdk/sso-provider",
    // The interfaces are `weft:plugin`'s, not the inline package's.
    generate_all,
    pub_export_macro: true,
    export_macro_name: "export_world",
    default_bindings_module: "weft_plugin_sdk::bindings::sso_provider",
});
