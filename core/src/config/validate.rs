//! Semantic checks on a merged configuration: required values, impossible
//! combinations, and names that must refer to known instances. Synapse lets
//! several of these slip silently; Weft refuses to start on any of them.

use std::collections::BTreeSet;

use ruma::ServerName;

use super::{
    Config, DatabaseEngine, ListenerConfig, ListenerType, MAIN_INSTANCE, RateLimit, Resource, StreamWriters,
    load::{ConfigErrors, ExtraCheck, Origins},
};

pub(super) fn validate(config: &Config, origins: &Origins, extra: ExtraCheck<'_>) -> Result<(), ConfigErrors> {
    let mut errors = Vec::new();
    let mut fail = |key: &str, message: String| errors.push(origins.error(key, message));

    check_identity(config, &mut fail);
    check_listeners("listeners", &config.listeners, config, &mut fail);
    check_listeners("worker_listeners", &config.worker_listeners, config, &mut fail);
    check_database(config, &mut fail);
    check_workers(config, &mut fail);
    check_routes(config, &mut fail);
    check_registration(config, &mut fail);
    check_rate_limit("rc_message", &config.rc_message, &mut fail);
    check_rate_limit("rc_registration", &config.rc_registration, &mut fail);
    check_rate_limit("rc_media_create", &config.rc_media_create, &mut fail);
    check_rate_limit("rc_login.address", &config.rc_login.address, &mut fail);
    check_rate_limit("rc_login.account", &config.rc_login.account, &mut fail);
    check_rate_limit("rc_login.failed_attempts", &config.rc_login.failed_attempts, &mut fail);
    check_rate_limit("rc_room_creation", &config.rc_room_creation, &mut fail);
    check_rate_limit("rc_invites.per_room", &config.rc_invites.per_room, &mut fail);
    check_rate_limit("rc_invites.per_user", &config.rc_invites.per_user, &mut fail);
    check_rate_limit("rc_invites.per_issuer", &config.rc_invites.per_issuer, &mut fail);
    check_rate_limit("rc_joins.local", &config.rc_joins.local, &mut fail);
    check_rate_limit("rc_joins.remote", &config.rc_joins.remote, &mut fail);
    super::media::check(config, &mut fail);
    check_federation(config, &mut fail);
    extra(config, &mut fail);
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.logging.level) {
        fail("logging.level", format!("not a valid log filter: {e}"));
    }

    if errors.is_empty() { Ok(()) } else { Err(ConfigErrors(errors)) }
}

type Fail<'a> = dyn FnMut(&str, String) + 'a;

fn check_identity(config: &Config, fail: &mut Fail<'_>) {
    match config.server_name.as_deref() {
        None => fail("server_name", "required: the public name of this server, such as `example.org`".into()),
        Some(name) => {
            if let Err(e) = <&ServerName>::try_from(name) {
                fail("server_name", format!("`{name}` is not a valid server name: {e}"));
            }
        }
    }
    if let Some(url) = config.public_baseurl.as_deref() {
        let valid = url.parse::<http::Uri>().ok().filter(|uri| matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some());
        if valid.is_none() {
            fail("public_baseurl", format!("`{url}` is not an http or https URL"));
        }
    }
    for (key, timeout) in [("header", config.http_timeouts.header), ("body", config.http_timeouts.body)] {
        if timeout.0.is_zero() {
            fail(&format!("http_timeouts.{key}"), "must be more than 0".into());
        }
    }
    if config.max_request_body_size == Some(0) {
        fail("max_request_body_size", "must be more than 0 bytes".into());
    }
}

fn check_listeners(key: &str, listeners: &[ListenerConfig], config: &Config, fail: &mut Fail<'_>) {
    let mut seen = BTreeSet::new();
    for (index, listener) in listeners.iter().enumerate() {
        let at = format!("{key}[{index}]");
        match (listener.port, &listener.path) {
            (None, None) => fail(&at, "needs a `port` (or a Unix socket `path`)".into()),
            (Some(_), Some(_)) => fail(&at, "has both `port` and `path`: choose one".into()),
            _ => {}
        }
        if listener.tls {
            if listener.path.is_some() {
                fail(&format!("{at}.tls"), "TLS is for TCP listeners, not Unix sockets".into());
            }
            if config.tls_certificate_path.is_none() || config.tls_private_key_path.is_none() {
                fail(&format!("{at}.tls"), "needs `tls_certificate_path` and `tls_private_key_path`".into());
            }
        }
        if listener.kind == ListenerType::Http && listener.resources.iter().all(|r| r.names.is_empty()) {
            fail(&format!("{at}.resources"), "an http listener needs at least one resource name".into());
        }
        let serves = |resource| listener.serves(resource);
        if serves(Resource::Replication) && (serves(Resource::Client) || serves(Resource::Federation)) {
            fail(
                &format!("{at}.resources"),
                "the `replication` resource must have a listener of its own, never one that serves `client` or `federation`".into(),
            );
        }
        if serves(Resource::Metrics) && !config.enable_metrics {
            fail(&format!("{at}.resources"), "serves `metrics` but `enable_metrics` is false".into());
        }
        if let Some(port) = listener.port.filter(|port| *port != 0) {
            for address in &listener.bind_addresses {
                if !seen.insert((*address, port)) {
                    fail(&format!("{at}.port"), format!("{address} port {port} is used by another listener"));
                }
            }
        }
    }
}

fn check_database(config: &Config, fail: &mut Fail<'_>) {
    let args = &config.database.args;
    match config.database.name {
        DatabaseEngine::Sqlite => {
            for (name, set) in [
                ("user", args.user.is_some()),
                ("password", args.password.is_some()),
                ("host", args.host.is_some()),
                ("port", args.port.is_some()),
                ("dbname", args.dbname.is_some()),
            ] {
                if set {
                    fail(&format!("database.args.{name}"), "only used with PostgreSQL (`database.name = \"psycopg2\"`)".into());
                }
            }
            if config.has_workers() {
                fail("database.name", "SQLite cannot be shared by several processes: workers need PostgreSQL (`name = \"psycopg2\"`)".into());
            }
        }
        DatabaseEngine::Postgres => match (&args.database, &args.dbname) {
            (None, None) => fail("database.args.dbname", "required: the PostgreSQL database to use".into()),
            (Some(_), Some(_)) => fail("database.args", "has both `database` and `dbname`: they mean the same, keep one".into()),
            _ => {}
        },
    }
    if let (Some(min), Some(max)) = (args.cp_min, args.cp_max)
        && min > max
    {
        fail("database.args.cp_min", format!("{min} is larger than cp_max ({max})"));
    }
    if args.cp_max == Some(0) {
        fail("database.args.cp_max", "must be at least 1".into());
    }
}

fn check_workers(config: &Config, fail: &mut Fail<'_>) {
    if let Some(name) = config.worker_name.as_deref() {
        if name == MAIN_INSTANCE {
            fail("worker_name", format!("`{MAIN_INSTANCE}` is the main process's name; a worker needs another"));
        }
        if !valid_instance_name(name) {
            fail("worker_name", format!("`{name}` is not a valid instance name (letters, digits, `_`, `-`, `.`)"));
        }
    } else if !config.worker_listeners.is_empty() {
        fail("worker_listeners", "set on a process without `worker_name`: the main process uses `listeners`".into());
    }
    if let Some(app) = config.worker_app.as_deref()
        && !matches!(app, "synapse.app.generic_worker" | "synapse.app.media_repository" | "synapse.app.homeserver")
    {
        fail("worker_app", format!("`{app}` is not a worker application Weft knows; it can be left out"));
    }
    for name in config.instance_map.keys() {
        if !valid_instance_name(name) {
            fail(&format!("instance_map.{name}"), "not a valid instance name (letters, digits, `_`, `-`, `.`)".into());
        }
    }
    for (name, location) in &config.instance_map {
        let at = format!("instance_map.{name}");
        match (&location.host, location.port, &location.path) {
            (_, _, Some(_)) if location.host.is_some() || location.port.is_some() => {
                fail(&at, "has a Unix socket `path` and a `host`/`port`: choose one".into())
            }
            (Some(_), Some(_), None) | (None, None, Some(_)) => {}
            _ => fail(&at, "needs `host` and `port`, or a Unix socket `path`".into()),
        }
    }

    let known: BTreeSet<&str> = std::iter::once(MAIN_INSTANCE).chain(config.instance_map.keys().map(String::as_str)).collect();
    let check_known = |key: &str, name: &str, fail: &mut Fail<'_>| {
        if !known.contains(name) {
            fail(key, format!("`{name}` is not a known instance: add it to `instance_map`"));
        }
    };

    for (stream, writers) in config.stream_writers.all() {
        let key = format!("stream_writers.{stream}");
        if StreamWriters::SINGLE_WRITER.contains(&stream) && writers.len() > 1 {
            fail(&key, format!("the `{stream}` stream has exactly one writer, not {}", writers.len()));
        }
        let mut unique = BTreeSet::new();
        for writer in writers {
            if !unique.insert(writer) {
                fail(&key, format!("`{writer}` is listed twice"));
            }
            check_known(&key, writer, fail);
        }
    }
    for (key, names) in [
        ("pusher_instances", config.pusher_instances()),
        ("federation_sender_instances", &config.federation_sender_instances),
        ("outbound_federation_restricted_to", &config.outbound_federation_restricted_to),
    ] {
        for name in names {
            check_known(key, name, fail);
        }
    }
    for (key, name) in [
        ("notify_appservices_from_worker", &config.notify_appservices_from_worker),
        ("update_user_directory_from_worker", &config.update_user_directory_from_worker),
        ("run_background_tasks_on", &config.run_background_tasks_on),
        ("media_instance_running_background_jobs", &config.media_instance_running_background_jobs),
    ] {
        if let Some(name) = name {
            check_known(key, name, fail);
        }
    }

    let me = config.instance_name();
    if config.outbound_federation_restricted_to.iter().any(|name| name == me)
        && !config.own_listeners().iter().any(|listener| listener.serves(Resource::Replication))
    {
        fail(
            "outbound_federation_restricted_to",
            format!("lists `{me}`, which has no `replication` listener: the other instances send their federation requests there"),
        );
    }

    if config.has_workers() {
        if !config.instance_map.contains_key(MAIN_INSTANCE) {
            fail("instance_map", format!("must contain `{MAIN_INSTANCE}` when workers are configured, so workers can reach it"));
        }
        if config.worker_replication_secret.as_deref().is_none_or(str::is_empty) {
            fail("worker_replication_secret", "required when workers are configured: it authenticates calls between processes".into());
        }
        if !config.redis.enabled {
            fail("redis.enabled", "workers replicate over Redis: set `enabled = true` in `[redis]`".into());
        }
    }
}

fn valid_instance_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn check_registration(config: &Config, fail: &mut Fail<'_>) {
    if config.use_appservice_legacy_authorization {
        fail(
            "use_appservice_legacy_authorization",
            "Weft sends an appservice's hs_token only in the `Authorization` header, never in the query string: remove this option".into(),
        );
    }
    if config.enable_registration && !config.enable_registration_without_verification {
        fail(
            "enable_registration",
            "open registration without email or captcha verification invites spam; \
             set `enable_registration_without_verification = true` if that is really intended"
                .into(),
        );
    }
    if config.registration_shared_secret.is_some() && config.registration_shared_secret_path.is_some() {
        fail("registration_shared_secret_path", "both `registration_shared_secret` and its `_path` are set: keep one".into());
    }
}

fn check_rate_limit(key: &str, limit: &RateLimit, fail: &mut Fail<'_>) {
    if !(limit.per_second > 0.0 && limit.per_second.is_finite()) {
        fail(&format!("{key}.per_second"), format!("must be a positive number, not {}", limit.per_second));
    }
    if !(limit.burst_count >= 1.0 && limit.burst_count.is_finite()) {
        fail(&format!("{key}.burst_count"), format!("must be at least 1, not {}", limit.burst_count));
    }
}

/// With the router configured: an `sso-provider` plugin pinned to
/// `instances` must be pinned where the `sso` endpoint group is served (any
/// instance listing it, or `main` when none does), so that the logins it
/// serves are run where they arrive.
fn check_sso_pinning(config: &Config, fail: &mut Fail<'_>) {
    let sso = crate::endpoint_groups::EndpointGroup::Sso.as_str();
    let mut serving: Vec<&str> = config.instance_map.iter().filter(|(_, l)| l.serves.iter().any(|g| g == sso)).map(|(name, _)| name.as_str()).collect();
    if serving.is_empty() {
        serving.push(MAIN_INSTANCE);
    }
    for (index, plugin) in config.plugins.iter().enumerate() {
        if plugin.role != super::PluginRole::SsoProvider || plugin.instances.is_empty() {
            continue;
        }
        for instance in &plugin.instances {
            if !serving.contains(&instance.as_str()) {
                fail(
                    &format!("plugins[{index}].instances"),
                    format!("the SSO provider is pinned to `{instance}`, which does not serve the `sso` endpoint group (served by {})", serving.join(", ")),
                );
            }
        }
    }
}

/// `[router]` and `instance_map.*.serves`/`client_*`: what `weft router` needs.
fn check_routes(config: &Config, fail: &mut Fail<'_>) {
    use crate::endpoint_groups::EndpointGroup;
    let mut routing = config.router.is_some();
    let main_from_listeners = config.listeners.iter().any(|l| l.serves(Resource::Client) && (l.port.is_some_and(|p| p != 0) || l.path.is_some()));
    for (name, location) in &config.instance_map {
        let at = format!("instance_map.{name}");
        let has_client = location.client_port.is_some() || location.client_path.is_some() || (name == MAIN_INSTANCE && main_from_listeners);
        if location.client_port.is_some() && location.client_path.is_some() {
            fail(&at, "has `client_port` and `client_path`: choose one".into());
        }
        if location.client_host.is_some() && location.client_port.is_none() {
            fail(&format!("{at}.client_host"), "needs `client_port`".into());
        }
        if !location.serves.is_empty() {
            routing = true;
            if !has_client {
                fail(&format!("{at}.serves"), "the router needs this instance's client listener: set `client_port` (or `client_path`)".into());
            }
        }
        for group in &location.serves {
            match EndpointGroup::from_name(group) {
                None => {
                    let known: Vec<&str> = EndpointGroup::ALL.iter().map(|g| g.as_str()).collect();
                    fail(&format!("{at}.serves"), format!("`{group}` is not an endpoint group; the groups are {}", known.join(", ")));
                }
                Some(EndpointGroup::InitialSync) if !config.router.as_ref().is_some_and(|r| r.initial_sync_separately) => {
                    fail(&format!("{at}.serves"), "lists `initial_sync`, which only applies with `initial_sync_separately = true` in `[router]`".into())
                }
                Some(_) => {}
            }
        }
    }
    if let Some(router) = &config.router {
        for (key, value) in [("connect_timeout_ms", router.connect_timeout_ms), ("down_for_ms", router.down_for_ms)] {
            if value == 0 {
                fail(&format!("router.{key}"), "must be more than 0".into());
            }
        }
        if router.bind_addresses.is_empty() {
            fail("router.bind_addresses", "needs at least one address".into());
        }
        if router.tls_port.is_some() && (config.tls_certificate_path.is_none() || config.tls_private_key_path.is_none()) {
            fail("router.tls_port", "needs tls_certificate_path and tls_private_key_path".into());
        }
    }
    if routing {
        check_sso_pinning(config, fail);
    }
    let main_from_map = config.instance_map.get(MAIN_INSTANCE).is_some_and(|l| l.client_port.is_some() || l.client_path.is_some());
    if routing && !main_from_map && !main_from_listeners {
        fail(
            "instance_map.main.client_port",
            "the router sends every group no instance serves to `main`: give `main` a client listener in `listeners` or a `client_port`".into(),
        );
    }
}

/// Files named by the federation options must be readable PEM of the right
/// kind; server names must be valid.
fn check_federation(config: &Config, fail: &mut Fail<'_>) {
    let read = |path: &std::path::Path| std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    if let Some(path) = &config.tls_certificate_path {
        match read(path) {
            Ok(text) if !text.contains("-----BEGIN CERTIFICATE-----") => fail("tls_certificate_path", format!("{} holds no PEM certificate", path.display())),
            Ok(_) => {}
            Err(message) => fail("tls_certificate_path", message),
        }
    }
    if let Some(path) = &config.tls_private_key_path {
        match read(path) {
            Ok(text) if !text.contains("PRIVATE KEY-----") => fail("tls_private_key_path", format!("{} holds no PEM private key", path.display())),
            Ok(_) => {}
            Err(message) => fail("tls_private_key_path", message),
        }
    }
    for (index, path) in config.federation_custom_ca_list.iter().enumerate() {
        match read(path) {
            Ok(text) if !text.contains("-----BEGIN CERTIFICATE-----") => {
                fail(&format!("federation_custom_ca_list[{index}]"), format!("{} holds no PEM certificate", path.display()))
            }
            Ok(_) => {}
            Err(message) => fail(&format!("federation_custom_ca_list[{index}]"), message),
        }
    }
    for (index, name) in config.federation_domain_whitelist.iter().flatten().enumerate() {
        if <&ServerName>::try_from(name.as_str()).is_err() {
            fail(&format!("federation_domain_whitelist[{index}]"), format!("`{name}` is not a valid server name"));
        }
    }
    for (index, server) in config.trusted_key_servers.iter().flatten().enumerate() {
        if <&ServerName>::try_from(server.server_name.as_str()).is_err() {
            fail(&format!("trusted_key_servers[{index}].server_name"), format!("`{}` is not a valid server name", server.server_name));
        }
        for (key_id, key) in server.verify_keys.iter().flatten() {
            let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD_NO_PAD, key.trim_end_matches('='));
            if !key_id.starts_with("ed25519:") || decoded.map(|k| k.len()) != Ok(32) {
                fail(&format!("trusted_key_servers[{index}].verify_keys"), format!("`{key_id}`: expected an `ed25519:` key id and a 32-byte base64 key"));
            }
        }
    }
}
