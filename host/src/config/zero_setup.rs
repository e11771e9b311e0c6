//! The zero-setup start: `weft run` without `-c` writes a configuration for a
//! single process on SQLite into a data directory on first run and reuses it
//! afterwards. Registration is open there (and only there) so that a newcomer
//! can sign up from any client at once.
//!
//! The reference spam checker (`plugins/spam-rules`) is built into the binary
//! (`host/build.rs`) and written into the data directory at start when it is
//! missing or another version, so the zero-setup server runs it with nothing
//! to fetch; a binary built without the wasm32-wasip2 target has none and its
//! configuration lists no plugin.

use std::{
    io,
    path::{Path, PathBuf},
};

use rand::{Rng, distributions::Alphanumeric};

/// The configuration file inside a data directory.
pub const CONFIG_FILE: &str = "weft.toml";

/// The port the zero-setup configuration listens on, Synapse's usual one.
pub const DEFAULT_PORT: u16 = 8008;

/// The reference spam checker's component; empty when weft was built without it.
pub const REFERENCE_PLUGIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/spam_rules.wasm"));
/// Where it is written, relative to the data directory (and the configuration).
pub const REFERENCE_PLUGIN_PATH: &str = "plugins/spam_rules.wasm";

/// Creates `data_dir` and its configuration if they do not exist yet, and
/// returns the configuration's path. An existing configuration is left alone.
pub fn prepare(data_dir: &Path, port: u16) -> io::Result<(PathBuf, bool)> {
    std::fs::create_dir_all(data_dir)?;
    write_reference_plugin(data_dir)?;
    let path = data_dir.join(CONFIG_FILE);
    if path.exists() {
        return Ok((path, false));
    }
    let text = render(port, !REFERENCE_PLUGIN.is_empty());
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
fn write_reference_plugin(data_dir: &Path) -> io::Result<()> {
    if REFERENCE_PLUGIN.is_empty() {
        return Ok(());
    }
    let path = data_dir.join(REFERENCE_PLUGIN_PATH);
    if std::fs::read(&path).is_ok_and(|existing| existing == REFERENCE_PLUGIN) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = path.with_extension("wasm.partial");
    std::fs::write(&partial, REFERENCE_PLUGIN)?;
    std::fs::rename(&partial, &path)
}

fn render(port: u16, with_plugin: bool) -> String {
    let plugin = if with_plugin { PLUGIN_SECTION } else { NO_PLUGIN_NOTE };
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

const PLUGIN_SECTION: &str = r#"
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

const NO_PLUGIN_NOTE: &str = r#"
# This weft was built without the wasm32-wasip2 target, so without its
# reference spam checker; see docs/plugins.md to add plugins.
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
