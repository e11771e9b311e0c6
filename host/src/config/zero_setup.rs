//! The zero-setup start: `weft run` without `-c` writes a configuration for a
//! single process on SQLite into a data directory on first run and reuses it
//! afterwards. Registration is open there (and only there) so that a newcomer
//! can sign up from any client at once.

use std::{
    io,
    path::{Path, PathBuf},
};

use rand::{Rng, distributions::Alphanumeric};

/// The configuration file inside a data directory.
pub const CONFIG_FILE: &str = "weft.toml";

/// The port the zero-setup configuration listens on, Synapse's usual one.
pub const DEFAULT_PORT: u16 = 8008;

/// Creates `data_dir` and its configuration if they do not exist yet, and
/// returns the configuration's path. An existing configuration is left alone.
pub fn prepare(data_dir: &Path, port: u16) -> io::Result<(PathBuf, bool)> {
    std::fs::create_dir_all(data_dir)?;
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

fn render(port: u16) -> String {
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
"#,
        shared = secret(),
        macaroon = secret(),
        form = secret(),
    )
}

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
