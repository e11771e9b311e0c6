//! A human summary of what an instance will do with a configuration, printed
//! by `weft check-config` and at start-up.

use std::fmt::Write;

use super::{Config, DatabaseEngine, ListenerConfig, MAIN_INSTANCE};

pub fn describe(config: &Config) -> String {
    let mut out = String::new();
    let instance = config.instance_name();
    let role = if config.is_main_process() { "the main process" } else { "a worker" };
    let _ = writeln!(out, "instance `{instance}` ({role}) of server `{}`", config.server_name());

    let args = &config.database.args;
    let database = match config.database.name {
        DatabaseEngine::Sqlite => format!("SQLite at {}", args.database.as_deref().unwrap_or("?")),
        DatabaseEngine::Postgres => format!(
            "PostgreSQL database `{}` on {}:{}",
            args.dbname.as_deref().or(args.database.as_deref()).unwrap_or("?"),
            args.host.as_deref().unwrap_or("localhost"),
            args.port.unwrap_or(5432)
        ),
    };
    let _ = writeln!(out, "database: {database}");
    let bus = if config.redis.enabled {
        let rows = if config.follows_event_rows() { "every events row" } else { "events writers' positions only" };
        format!("Redis at {}:{}, following {rows}", config.redis.host, config.redis.port)
    } else {
        "in-process (single process)".to_owned()
    };
    let _ = writeln!(out, "replication: {bus}");

    for listener in config.own_listeners() {
        let _ = writeln!(out, "listener: {}", describe_listener(listener));
    }

    let written: Vec<&str> =
        config.stream_writers.all().map(|(stream, _)| stream).filter(|stream| config.stream_writers.writers_of(stream).iter().any(|w| w == instance)).collect();
    let _ = writeln!(out, "writes streams: {}", if written.is_empty() { "none".to_owned() } else { written.join(", ") });
    let background = config.run_background_tasks_on.as_deref().unwrap_or(MAIN_INSTANCE) == instance;
    let _ = writeln!(out, "runs background tasks: {}", if background { "yes" } else { "no" });
    let pushers = config.pusher_instances();
    let push = if !config.push.enabled {
        "no (push.enabled is false)".to_owned()
    } else if pushers.is_empty() {
        "no (pusher_instances is empty: no instance sends them)".to_owned()
    } else if pushers.iter().any(|name| name == instance) {
        if pushers.len() == 1 { "yes, for every user".to_owned() } else { format!("yes, for 1/{} of the users (by sha256 of the user id)", pushers.len()) }
    } else {
        format!("no ({} send them)", pushers.join(", "))
    };
    let _ = writeln!(out, "sends push notifications: {push}");
    let media = if config.runs_media_repo() { format!("yes, files in {}", config.media_store_path().display()) } else { "no".to_owned() };
    let _ = writeln!(out, "media repository: {media}");
    let restricted = &config.outbound_federation_restricted_to;
    let egress = if restricted.is_empty() || restricted.iter().any(|name| name == instance) {
        "directly".to_owned()
    } else {
        format!("through {} (outbound_federation_restricted_to); never directly", restricted.join(", "))
    };
    let _ = writeln!(out, "connects to other servers: {egress}");
    let registration = match (config.enable_registration, config.registration_shared_secret.is_some() || config.registration_shared_secret_path.is_some()) {
        (true, _) => "open to anyone (m.login.dummy)",
        (false, true) => "closed; admins register users with the shared secret",
        (false, false) => "closed",
    };
    let _ = writeln!(out, "registration: {registration}");
    let notifier = config.notify_appservices_from_worker.as_deref().unwrap_or(MAIN_INSTANCE);
    for service in config.app_services.all() {
        let url = service.url.as_deref().unwrap_or("no URL: receives nothing");
        let here = if notifier == instance { "notified from here" } else { "notified from `{notifier}`" };
        let _ = writeln!(
            out,
            "appservice `{}` ({}) at {url}, sender {}; {}",
            service.id,
            service.file.display(),
            service.sender,
            here.replace("{notifier}", notifier)
        );
    }
    for plugin in &config.plugins {
        let place = if plugin.runs_on(instance) {
            "runs here".to_owned()
        } else {
            format!("runs on {} (checks here are forwarded there; its file is checked there, not here)", plugin.instances.join(", "))
        };
        let instances = match plugin.limits.max_calls_per_instance {
            0 | 1 => "a fresh instance per call".to_owned(),
            calls => format!("warm instances for up to {calls} calls"),
        };
        let _ = writeln!(
            out,
            "plugin `{}` ({}) from {}: {place}; {} ms, {} MiB, {instances}, on error {}",
            plugin.name,
            plugin.role.as_str(),
            plugin.path.display(),
            plugin.limits.timeout_ms,
            plugin.limits.memory_mb,
            plugin.on_error().as_str()
        );
    }
    out
}

fn describe_listener(listener: &ListenerConfig) -> String {
    let mut resources: Vec<&str> = listener.resources.iter().flat_map(|r| r.names.iter().map(|n| n.as_str())).collect();
    if listener.kind == super::ListenerType::Metrics {
        resources.push("metrics");
    }
    let place = match (&listener.path, listener.port) {
        (Some(path), _) => format!("unix:{}", path.display()),
        (None, Some(port)) => {
            let addresses: Vec<String> = listener.bind_addresses.iter().map(ToString::to_string).collect();
            format!("{} port {port}", addresses.join(", "))
        }
        (None, None) => "?".to_owned(),
    };
    format!("{place} serving {}", resources.join(", "))
}
