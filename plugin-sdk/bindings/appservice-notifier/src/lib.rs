//! The generated bindings of the `appservice-notifier` world
//! (`wit/appservice-notifier.wit`), with the optional exports, for
//! `weft-plugin-sdk`: it re-exports them as `bindings::appservice_notifier`
//! (hidden) and wraps them in `AppserviceNotifier` and
//! `export_appservice_notifier!`. Empty outside wasm32.

// The role's world and the optional exports (which no role's world
// requires, so the SDK adds them here).
#[cfg(target_arch = "wasm32")]
wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package weft:sdk;
        world appservice-notifier {
            include weft:plugin/appservice-notifier@0.1.4;
            include weft:plugin/appservice-notifier-extras@0.1.4;
            include weft:plugin/optional-exports@0.1.4;
        }
    ",
    world: "weft:sdk/appservice-notifier",
    // The interfaces are `weft:plugin`'s, not the inline package's.
    generate_all,
    pub_export_macro: true,
    export_macro_name: "export_world",
    default_bindings_module: "weft_plugin_sdk::bindings::appservice_notifier",
});
