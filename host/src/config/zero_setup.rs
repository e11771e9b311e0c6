//! The zero-setup start: `weft run` without `-c` writes a configuration for a
//! single process on SQLite into a data directory on first run and reuses it
//! afterwards. Registration is open there (and only there) so that a newcomer
//! can sign up from any client at once.
//!
//! The reference plugins, the spam checker `plugins/spam-rules`, the push
//! gateway client `plugins/http-pusher` and the appservice notifier
//! `plugins/appservice-http`, are built into the binary
//! (`host/build.rs`) and written into the data directory at start when they
//! are missing or another version, so the zero-setup server runs them with
//! nothing to fetch; a binary built without the wasm32-wasip2 target has none
//! and its configuration lists no plugin.

use std::{
    io,
    path::{Path, PathBuf},
};

use rand::{Rng, distributions::Alphanumeric};

/// The configuration file inside a data directory.
pub const CONFIG_FILE: &str = "weft.toml";

/// The port the zero-setup configuration listens on, Synapse's usual one.
pub const DEFAULT_PORT: u16 = 8008;

/// A reference plugin built into weft.
#[derive(Debug, Clone, Copy)]
pub struct ReferencePlugin {
    /// Its component; empty when weft was built without it.
    pub wasm: &'static [u8],
    /// Where it is written, relative to the data directory (and the configuration).
    pub path: &'static str,
    /// Its `[[plugins]]` entry in the zero-setup configuration.
    section: &'static str,
}

/// The reference spam checker.
pub const SPAM_RULES: ReferencePlugin =
    ReferencePlugin { wasm: include_bytes!(concat!(env!("OUT_DIR"), "/spam_rules.wasm")), path: "plugins/spam_rules.wasm", section: SPAM_RULES_SECTION };
/// The reference pusher: pushes to Push Gateway API gateways (`http` pushers).
pub const HTTP_PUSHER: ReferencePlugin =
    ReferencePlugin { wasm: include_bytes!(concat!(env!("OUT_DIR"), "/http_pusher.wasm")), path: "plugins/http_pusher.wasm", section: HTTP_PUSHER_SECTION };
/// The reference appservice notifier: the Application Service API.
pub const APPSERVICE_HTTP: ReferencePlugin = ReferencePlugin {
    wasm: include_bytes!(concat!(env!("OUT_DIR"), "/appservice_http.wasm")),
    path: "plugins/appservice_http.wasm",
    section: APPSERVICE_HTTP_SECTION,
};
/// Every reference plugin, in the configuration's order.
pub const REFERENCE_PLUGINS: [ReferencePlugin; 3] = [SPAM_RULES, HTTP_PUSHER, APPSERVICE_HTTP];

/// Creates `data_dir` and its configuration if they do not exist yet, and
/// returns the configuration's path. An existing configuration is left alone.
pub fn prepare(data_dir: &Path, port: u16) -> io::Result<(PathBuf, bool)> {
    std::fs::create_dir_all(data_dir)?;
    for plugin in REFERENCE_PLUGINS {
        write_reference_plugin(data_dir, plugin)?;
    }
    let path = data_dir.join(CONFIG_FILE);
    if path.exists() {
        return Ok((path, false));
    }
    let text = render(port);
    // Written to a temporary file first so an interrupted first run never
    // leaves a half-written configuration behind.
    let partial = data_dir.join(format!("{CONFIG_FILE}.partial"));
    std::fs::write(&partial, text)?;
    restrict_permissions(&partial)?;
    std::fs::rename(&partial, &path)?;
    Ok((path, true))
}

/// Writes the built-in reference plugin when it is missing or another
/// version (a newer weft brings its own).
fn write_reference_plugin(data_dir: &Path, plugin: ReferencePlugin) -> io::Result<()> {
    if plugin.wasm.is_empty() {
        return Ok(());
    }
    let path = data_dir.join(plugin.path);
    if std::fs::read(&path).is_ok_and(|existing| existing == plugin.wasm) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = path.with_extension("wasm.partial");
    std::fs::write(&partial, plugin.wasm)?;
    std::fs::rename(&partial, &path)
}

fn render(port: u16) -> String {
    let built_in: String = REFERENCE_PLUGINS.iter().filter(|plugin| !plugin.wasm.is_empty()).map(|plugin| plugin.section).collect();
    let plugin = if built_in.is_empty() { NO_PLUGIN_NOTE.to_owned() } else { built_in };
    format!(
        r#"# Written by `weft run` on its first start: one process on SQLite, for trying Weft.
# Edit freely; it is read again at every start. Paths are relative to this file.

server_name = "localhost"

# Open registration, for a first look only: anyone who can reach the port can sign up.
enable_registration = true
enable_registration_without_verification = true

# For `weft register-user -c {CONFIG_FILE}` (Synapse's register_new_matrix_user).
registration_shared_secret = "{shared}"
macaroon_secret_key = "{macaroon}"
form_secret = "{form}"
signing_key_path = "localhost.signing.key"

[[listeners]]
port = {port}
bind_addresses = ["127.0.0.1"]
type = "http"
[[listeners.resources]]
names = ["client", "federation", "health"]

[database]
name = "sqlite3"
args = {{ database = "weft.db" }}
{plugin}"#,
        shared = secret(),
        macaroon = secret(),
        form = secret(),
    )
}

const SPAM_RULES_SECTION: &str = r#"
# The reference spam checker (plugins/spam-rules in Weft's source), built into
# weft and written beside this file (again whenever weft brings another
# version). It refuses nothing until it has rules; docs/plugins.md lists them
# and every other setting.
[[plugins]]
name = "spam-rules"
path = "plugins/spam_rules.wasm"
[plugins.limits]
max_calls_per_instance = 1000   # warm instances: the rules are compiled once per instance
[plugins.config]
# body_patterns = ["(?i)buy now", 'bit\.ly/']
# blocked_servers = ["evil.example"]
# invites = "same-server"
"#;

const HTTP_PUSHER_SECTION: &str = r#"
# The reference pusher (plugins/http-pusher), built in the same way: it sends
# the notifications of `http` pushers to the push gateways their apps chose
# (the Push Gateway API). Gateways at loopback, private or link-local
# addresses are refused unless listed in the top-level ip_range_whitelist.
[[plugins]]
name = "http-pusher"
role = "pusher"
path = "plugins/http_pusher.wasm"
[plugins.capabilities]
allowed_outbound_hosts = ["*:*"]   # any gateway URL a client sets
"#;

const APPSERVICE_HTTP_SECTION: &str = r#"
# The reference appservice notifier (plugins/appservice-http), built in the
# same way: it delivers transactions to the application services (bridges,
# bots) registered in app_service_config_files, and does nothing without
# them. Weft lets it reach exactly their `url`s (private addresses included).
[[plugins]]
name = "appservice-http"
role = "appservice-notifier"
path = "plugins/appservice_http.wasm"
"#;

const NO_PLUGIN_NOTE: &str = r#"
# This weft was built without the wasm32-wasip2 target, so without its
# reference plugins (spam checker, pusher, appservice notifier); see docs/plugins.md to add plugins.
"#;

fn secret() -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(48).map(char::from).collect()
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) -> io::Result<()> {
    Ok(())
}
