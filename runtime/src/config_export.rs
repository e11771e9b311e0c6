//! The optional `configuration` export (since WIT 0.1.2): a plugin's check
//! of its own `config` table. No role's world requires it: whether a
//! component has it is read from the component's type (`find`), and
//! `LoadedPlugin::validate_config` runs it in a fresh instance of its own,
//! under the plugin's limits. `verify` calls it for `weft check-config` and
//! every start; the testkit hands it to plugin authors.
//!
//! May call: wasmtime (the bindings of the `optional-exports` world).

use wasmtime::{
    Engine, Store,
    component::{Component, InstancePre, Linker},
};

use super::{host_services::BoxFuture, loaded::Instantiate, state::CallState};

mod bindings {
    wasmtime::component::bindgen!({
        world: "weft:plugin/optional-exports@0.1.4",
        path: "../wit",
        exports: { default: async },
    });
}

use bindings::{OptionalExports, OptionalExportsIndices};

/// The export's name without its version (`weft:plugin/configuration@0.1.2`).
const EXPORT: &str = "weft:plugin/configuration@";

/// The WIT name of the call, in logs and metrics.
pub const CALL: &str = "validate-config";

/// What a plugin answered about its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigCheck {
    /// The component does not export `configuration` (built before 0.1.2,
    /// or without the SDK): nothing was asked.
    NotExported,
    Valid,
    /// Every problem the plugin found, one line each.
    Invalid(Vec<String>),
}

/// The `configuration` export of one component, bound.
#[derive(Clone)]
pub struct ConfigExport {
    pre: InstancePre<CallState>,
    indices: OptionalExportsIndices,
}

/// The component's `configuration` export, when its type has one; `Err`
/// when it has one that does not fit this host's.
pub fn find(engine: &Engine, linker: &Linker<CallState>, component: &Component) -> Result<Option<ConfigExport>, String> {
    if !component.component_type().exports(engine).any(|(name, _)| name.starts_with(EXPORT)) {
        return Ok(None);
    }
    let pre = linker.instantiate_pre(component).map_err(|e| format!("{e:#}"))?;
    let indices = OptionalExportsIndices::new(&pre).map_err(|e| format!("its `configuration` export does not fit: {e:#}"))?;
    Ok(Some(ConfigExport { pre, indices }))
}

impl Instantiate for ConfigExport {
    type Guest = OptionalExports;

    fn instantiate<'a>(&'a self, store: &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<OptionalExports>> {
        Box::pin(async move {
            let instance = self.pre.instantiate_async(&mut *store).await?;
            self.indices.load(&mut *store, &instance)
        })
    }
}

/// Runs `validate-config` with `config` (the plugin's table as JSON).
pub fn invoke<'a>(guest: &'a OptionalExports, store: &'a mut Store<CallState>, config: String) -> BoxFuture<'a, wasmtime::Result<Result<(), Vec<String>>>> {
    Box::pin(async move { guest.weft_plugin_configuration().call_validate_config(store, &config).await })
}

/// Checks the guest's answer: errors are non-empty lines, `max_output`
/// bytes in all.
pub fn check(raw: Result<(), Vec<String>>, max_output: u64) -> Result<ConfigCheck, String> {
    let errors = match raw {
        Ok(()) => return Ok(ConfigCheck::Valid),
        Err(errors) => errors,
    };
    if errors.is_empty() || errors.iter().any(|e| e.trim().is_empty()) {
        return Err("an error answer must list its errors, each with a message".into());
    }
    let size: usize = errors.iter().map(String::len).sum();
    if size as u64 > max_output {
        return Err(format!("the errors are {size} bytes, more than max_output_bytes ({max_output})"));
    }
    Ok(ConfigCheck::Invalid(errors))
}
