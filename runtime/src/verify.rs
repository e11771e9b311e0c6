//! Checks on `[[plugins]]` for configuration validation: names, instances,
//! limits, capabilities, a failure policy the role knows, the pool this
//! instance must reserve, that each
//! path is a component exporting its role's world (compiled once; the
//! compiled form lands in the cache the server then uses), and, for a
//! component with the optional `configuration` export, the plugin's own
//! verdict on its `config` table (the plugin is loaded and asked, on a
//! thread of its own: configuration loading is synchronous and may run
//! inside the server's async runtime).
//!
//! What only the hosting instances use (the component file, `data_dir`) is
//! checked on them alone: an instance that forwards a plugin's calls needs
//! its name, instances, limits and failure policy, not its file, which may
//! exist only on the machine of the worker it is pinned to.

use std::{collections::BTreeSet, sync::Arc};

use super::{
    appservice::AppserviceNotifier,
    config_export::{self, ConfigCheck},
    egress::Egress,
    engine::{EngineSettings, PluginEngine},
    host_services::LiveServices,
    limits::{MAX_MEMORY_MB, MAX_TIMEOUT_MS},
    loaded::LoadedPlugin,
    pusher::Pusher,
    role::{Role, fits},
    spam::Spam,
    sso::Sso,
    version::WIT_VERSION,
};
use crate::config::{Deployment, PluginConfig, PluginRole};

/// The most calls one plugin may run at once.
const MAX_CONCURRENT_CALLS: u32 = 1024;

/// Calls `fail(key, message)` for every problem in `plugins` (the
/// `[[plugins]]` of a configuration deployed as `deployment` says).
pub fn check(plugins: &[PluginConfig], deployment: &Deployment, fail: &mut dyn FnMut(&str, String)) {
    if plugins.is_empty() {
        return;
    }
    let known: BTreeSet<&str> = deployment.known_instances.iter().map(String::as_str).collect();
    let mut names = BTreeSet::new();
    for (index, plugin) in plugins.iter().enumerate() {
        let at = |key: &str| if key.is_empty() { format!("plugins[{index}]") } else { format!("plugins[{index}].{key}") };
        // A name is a path segment of the internal API: `.` and `..` are not.
        let only_dots = plugin.name.chars().all(|c| c == '.');
        if only_dots || !plugin.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            fail(&at("name"), format!("`{}` is not a valid plugin name (letters, digits, `_`, `-`, `.`, not only dots)", plugin.name));
        } else if !names.insert(plugin.name.as_str()) {
            fail(&at("name"), format!("another plugin is already named `{}`", plugin.name));
        }
        for instance in &plugin.instances {
            if !known.contains(instance.as_str()) {
                fail(&at("instances"), format!("`{instance}` is not a known instance: add it to `instance_map`"));
            }
        }
        let limits = &plugin.limits;
        if !(1..=MAX_TIMEOUT_MS).contains(&limits.timeout_ms) {
            fail(&at("limits.timeout_ms"), format!("must be between 1 and {MAX_TIMEOUT_MS}, not {}", limits.timeout_ms));
        }
        if !(1..=MAX_MEMORY_MB).contains(&limits.memory_mb) {
            fail(&at("limits.memory_mb"), format!("must be between 1 and {MAX_MEMORY_MB}, not {}", limits.memory_mb));
        }
        if limits.fuel == Some(0) {
            fail(&at("limits.fuel"), "a budget of 0 lets no call run: leave it out for no fuel limit".into());
        }
        for (key, value) in [
            ("limits.max_input_bytes", limits.max_input_bytes),
            ("limits.max_output_bytes", limits.max_output_bytes),
            ("limits.max_log_bytes", limits.max_log_bytes),
        ] {
            if value == 0 {
                fail(&at(key), "must be more than 0".into());
            }
        }
        if !(1..=MAX_CONCURRENT_CALLS).contains(&limits.max_concurrent_calls) {
            fail(&at("limits.max_concurrent_calls"), format!("must be between 1 and {MAX_CONCURRENT_CALLS}, not {}", limits.max_concurrent_calls));
        }
        if limits.max_calls_per_instance == 0 {
            fail(&at("limits.max_calls_per_instance"), "must be at least 1 (1: a fresh instance per call)".into());
        }
        if let Err(entry) = Egress::parse(&plugin.capabilities.allowed_outbound_hosts, false) {
            fail(
                &at("capabilities.allowed_outbound_hosts"),
                format!("`{entry}` is not `scheme://host[:port]` (http or https; host may start with `*.` or be `*`; port may be `*`)"),
            );
        }
        if let Some(dir) = &plugin.capabilities.data_dir
            && plugin.runs_on(&deployment.instance)
            && !dir.is_dir()
        {
            fail(&at("capabilities.data_dir"), format!("{} is not a directory", dir.display()));
        }
        if let Some(policy) = plugin.on_error
            && !plugin.role.policies().contains(&policy)
        {
            let known: Vec<String> = plugin.role.policies().iter().map(|p| format!("`{}`", p.as_str())).collect();
            fail(&at("on_error"), format!("`{}` is not a policy of the {} role: it knows {}", policy.as_str(), plugin.role.as_str(), known.join(" and ")));
        }
        if plugin.disable_after_failures == Some(0) {
            fail(&at("disable_after_failures"), "must be at least 1".into());
        }
        if plugin.retry_after_secs == Some(0) {
            fail(&at("retry_after_secs"), "must be at least 1".into());
        }
    }

    let instance = deployment.instance.as_str();
    let settings = engine_settings(plugins, instance);
    if settings.slots == 0 {
        return;
    }
    if let Err(message) = settings.check() {
        fail("plugins", format!("instance `{instance}`: {message}"));
        return;
    }
    // The component checks need an engine; one with a single slot suffices.
    let probe = EngineSettings { slots: 1, ..settings };
    let engine = match PluginEngine::new(probe, deployment.cache_dir()) {
        Ok(engine) => engine,
        Err(error) => return fail("plugins", error.to_string()),
    };
    let mut configurable = Vec::new();
    for (index, plugin) in plugins.iter().enumerate().filter(|(_, plugin)| plugin.runs_on(instance)) {
        let at = format!("plugins[{index}].path");
        let component = match engine.load_component(&plugin.path) {
            Ok(component) => component,
            Err(error) => {
                fail(&at, error.to_string());
                continue;
            }
        };
        let fits = super::version::check(&component, &engine.engine).and_then(|()| match plugin.role {
            PluginRole::SpamChecker => fits::<Spam>(&engine.linker, &component).map(drop),
            PluginRole::SsoProvider => fits::<Sso>(&engine.linker, &component).map(drop),
            PluginRole::Pusher => fits::<Pusher>(&engine.linker, &component).map(drop),
            PluginRole::AppserviceNotifier => fits::<AppserviceNotifier>(&engine.linker, &component).map(drop),
        });
        if let Err(reason) = fits {
            fail(&at, format!("{} does not fit the `{}` world of weft:plugin@{WIT_VERSION}: {reason}", plugin.path.display(), plugin.role.as_str()));
            continue;
        }
        match config_export::find(&engine.engine, &engine.linker, &component) {
            Ok(Some(_)) => configurable.push(index),
            Ok(None) => {}
            Err(reason) => fail(&at, format!("{}: {reason}", plugin.path.display())),
        }
    }
    for (index, problem) in ask_plugins(&engine, plugins, &configurable, instance) {
        fail(&format!("plugins[{index}].config"), format!("plugin `{}`: {problem}", plugins[index].name));
    }
}

/// Loads each plugin at `indices` and asks it to check its configuration:
/// every error it answers, or why it could not be asked.
fn ask_plugins(engine: &PluginEngine, plugins: &[PluginConfig], indices: &[usize], instance: &str) -> Vec<(usize, String)> {
    if indices.is_empty() {
        return Vec::new();
    }
    let ask_all = async {
        let mut problems = Vec::new();
        for &index in indices {
            let plugin = &plugins[index];
            let answer = match plugin.role {
                PluginRole::SpamChecker => ask::<Spam>(engine, plugin, instance).await,
                PluginRole::SsoProvider => ask::<Sso>(engine, plugin, instance).await,
                PluginRole::Pusher => ask::<Pusher>(engine, plugin, instance).await,
                PluginRole::AppserviceNotifier => ask::<AppserviceNotifier>(engine, plugin, instance).await,
            };
            match answer {
                Ok(ConfigCheck::NotExported | ConfigCheck::Valid) => {}
                Ok(ConfigCheck::Invalid(errors)) => problems.extend(errors.into_iter().map(|error| (index, error))),
                Err(problem) => problems.push((index, problem)),
            }
        }
        problems
    };
    let everyone = |problem: &str| -> Vec<(usize, String)> { indices.iter().map(|&index| (index, problem.to_owned())).collect() };
    // The runtime lives and dies on the thread: neither may happen inside
    // the caller's runtime.
    let asked = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                Ok::<_, std::io::Error>(runtime.block_on(ask_all))
            })
            .join()
    });
    match asked {
        Ok(Ok(problems)) => problems,
        Ok(Err(error)) => everyone(&format!("cannot check its configuration: no async runtime: {error}")),
        Err(_) => everyone("checking its configuration panicked"),
    }
}

/// One plugin's answer, with host services that reach nothing of a server
/// (an in-memory store; no homeserver view).
async fn ask<R: Role>(engine: &PluginEngine, plugin: &PluginConfig, instance: &str) -> Result<ConfigCheck, String> {
    let services = Arc::new(LiveServices::default());
    let loaded =
        LoadedPlugin::<R>::load(engine, plugin, instance, services).await.map_err(|error| format!("cannot be loaded to check its configuration: {error}"))?;
    loaded.validate_config().await.map_err(|failure| format!("its `{}` call failed: {failure}", config_export::CALL))
}

/// What the engine of `instance` must hold (`""`: every plugin, for the testkit).
pub fn engine_settings(plugins: &[PluginConfig], instance: &str) -> EngineSettings {
    let plugins = plugins.iter().filter(|p| instance.is_empty() || p.runs_on(instance));
    let mut settings = EngineSettings { slots: 0, max_memory_bytes: 1024 * 1024, fuel: false };
    for plugin in plugins {
        settings.slots = settings.slots.saturating_add(plugin.limits.max_concurrent_calls);
        let memory = (plugin.limits.memory_mb.clamp(1, MAX_MEMORY_MB) * 1024 * 1024) as usize;
        settings.max_memory_bytes = settings.max_memory_bytes.max(memory);
        settings.fuel |= plugin.limits.fuel.is_some();
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OnError;

    /// The problems of one plugin pinned to another instance (no file check).
    fn problems(role: PluginRole, on_error: Option<OnError>) -> Vec<(String, String)> {
        let plugin = PluginConfig { name: "p".into(), role, on_error, instances: vec!["w1".into()], ..PluginConfig::default() };
        let deployment = Deployment { instance: "main".into(), known_instances: vec!["main".into(), "w1".into()], cache_dir: None };
        let mut found = Vec::new();
        check(&[plugin], &deployment, &mut |key, message| found.push((key.to_owned(), message)));
        found
    }

    #[test]
    fn a_failure_policy_must_be_one_the_role_knows() {
        assert!(problems(PluginRole::Pusher, Some(OnError::Retry)).is_empty());
        assert!(problems(PluginRole::Pusher, None).is_empty());
        assert!(problems(PluginRole::SpamChecker, Some(OnError::FailOpen)).is_empty());
        let pusher = problems(PluginRole::Pusher, Some(OnError::FailOpen));
        assert_eq!(pusher.len(), 1);
        assert_eq!(pusher[0].0, "plugins[0].on_error");
        assert!(pusher[0].1.contains("`fail-open` is not a policy of the pusher role: it knows `retry`"), "{}", pusher[0].1);
        let spam = problems(PluginRole::SpamChecker, Some(OnError::Retry));
        assert!(spam[0].1.contains("it knows `fail-closed` and `fail-open`"), "{}", spam[0].1);
        assert!(problems(PluginRole::SsoProvider, Some(OnError::FailClosed)).is_empty());
        let sso = problems(PluginRole::SsoProvider, Some(OnError::FailOpen));
        assert!(sso[0].1.contains("`fail-open` is not a policy of the sso-provider role: it knows `fail-closed`"), "{}", sso[0].1);
    }
}
