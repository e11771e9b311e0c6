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
    world: "weft:plugin/base@0.1.2",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use weft::plugin::{homeserver, host, types};

/// The draft worlds of `wit/drafts.wit` are valid WIT and include the shared
/// `host` interface (wasmtime's `bindgen!` parses every `@unstable` feature;
/// no role loads these worlds yet).
#[cfg(test)]
mod drafts {
    macro_rules! draft {
        ($module:ident, $world:literal) => {
            mod $module {
                wasmtime::component::bindgen!({
                    world: $world,
                    path: "../wit",
                    imports: { default: async | trappable },
                    exports: { default: async },
                    with: {
                        "weft:plugin/types": crate::bindings::types,
                        "weft:plugin/host": crate::bindings::host,
                        "weft:plugin/homeserver": crate::bindings::homeserver,
                    },
                });
            }
        };
    }
    draft!(appservice_notifier, "weft:plugin/appservice-notifier@0.1.2");

    #[test]
    fn the_draft_worlds_share_the_host_interface() {
        use wasmtime::component::{HasSelf, Linker};

        use crate::state::CallState;
        let engine = wasmtime::Engine::default();
        let mut linker = Linker::<CallState>::new(&engine);
        // The state that implements `host` for the spam checker does for them.
        let options = appservice_notifier::LinkOptions::default().draft_appservice_notifier(true).clone();
        appservice_notifier::AppserviceNotifier::add_to_linker::<_, HasSelf<_>>(&mut linker, &options, |s| s).expect("links");
    }
}
