//! Reading, merging and type-checking configuration files.
//!
//! Files merge in order, later over earlier: tables merge key by key, every
//! other value (arrays included) is replaced whole, as Synapse merges YAML
//! files. The origin of every value is remembered so that an error names the
//! file that set the offending key. Each top-level key is checked on its own so
//! that one bad value does not hide the others.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::{Table, Value};

use super::{Config, validate};

/// One problem in a configuration: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file that set the key, when one did.
    pub file: Option<PathBuf>,
    /// The key path, such as `listeners[0].port`; empty for a whole file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.key.is_empty()) {
            (Some(file), false) => write!(f, "{}: `{}`: {}", file.display(), self.key, self.message),
            (Some(file), true) => write!(f, "{}: {}", file.display(), self.message),
            (None, false) => write!(f, "`{}`: {}", self.key, self.message),
            (None, true) => write!(f, "{}", self.message),
        }
    }
}

/// Every problem found in a configuration, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        writeln!(f, "{count} configuration error{}:", if count == 1 { "" } else { "s" })?;
        for error in &self.0 {
            writeln!(f, "  {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where each merged value came from: key path to index into `files`.
#[derive(Debug, Default)]
pub(super) struct Origins {
    files: Vec<PathBuf>,
    by_key: BTreeMap<String, usize>,
}

impl Origins {
    /// The file that set `key` or the nearest enclosing key that a file set.
    pub(super) fn file_of(&self, key: &str) -> Option<PathBuf> {
        let mut probe = key;
        loop {
            if let Some(&index) = self.by_key.get(probe) {
                return Some(self.files[index].clone());
            }
            let cut = probe.rfind(['.', '['])?;
            probe = &probe[..cut];
        }
    }

    pub(super) fn error(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let key = key.into();
        ConfigError { file: self.file_of(&key), key, message: message.into() }
    }

    fn record(&mut self, key: String, file: usize) {
        let nested = |k: &String| k.len() > key.len() && k.starts_with(&key) && matches!(k.as_bytes()[key.len()], b'.' | b'[');
        self.by_key.retain(|k, _| !nested(k));
        self.by_key.insert(key, file);
    }
}

/// A check that a higher layer adds to validation: it calls `fail(key,
/// message)` for every problem it finds. The `weft` binary passes the plugin
/// runtime's checks of `[[plugins]]` (which compile each component).
pub type ExtraCheck<'a> = &'a dyn Fn(&Config, &mut dyn FnMut(&str, String));

/// Reads, merges, checks and validates the given files, with `extra`'s checks.
pub fn load_files_with(paths: &[PathBuf], extra: ExtraCheck<'_>) -> Result<Config, ConfigErrors> {
    let mut sources = Vec::with_capacity(paths.len());
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(text) => sources.push((path.clone(), text)),
            Err(e) => errors.push(ConfigError { file: Some(path.clone()), key: String::new(), message: format!("cannot read the file: {e}") }),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    load_sources(&sources, extra)
}

/// Checks and validates one configuration given as text, with `extra`'s
/// checks; `name` stands in for a file name.
pub fn load_str_with(name: &str, text: &str, extra: ExtraCheck<'_>) -> Result<Config, ConfigErrors> {
    load_sources(&[(PathBuf::from(name), text.to_owned())], extra)
}

fn load_sources(sources: &[(PathBuf, String)], extra: ExtraCheck<'_>) -> Result<Config, ConfigErrors> {
    let mut origins = Origins::default();
    let mut merged = Table::new();
    let mut errors = Vec::new();
    for (path, text) in sources {
        match text.parse::<Table>() {
            Ok(table) => {
                origins.files.push(path.clone());
                let index = origins.files.len() - 1;
                merge_into(&mut merged, table, "", index, &mut origins);
            }
            Err(e) => {
                errors.push(ConfigError { file: Some(path.clone()), key: String::new(), message: format!("not valid TOML: {}", e.to_string().trim_end()) })
            }
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }

    // Unknown keys do not stop deserialization, so validation still runs and
    // its findings are reported with them; a type error does stop it.
    let mut type_errors = false;
    for (key, value) in &merged {
        let mut single = Table::new();
        single.insert(key.clone(), value.clone());
        let (unknown, wrong_type) = check_types(single, &origins);
        errors.extend(unknown);
        if let Some(error) = wrong_type {
            type_errors = true;
            errors.push(error);
        }
    }
    if type_errors {
        return Err(ConfigErrors(errors));
    }

    let mut config =
        Config::deserialize(Value::Table(merged)).map_err(|e| ConfigErrors(vec![ConfigError { file: None, key: String::new(), message: e.to_string() }]))?;
    resolve_relative_paths(&mut config, &origins);
    if !config.app_service_config_files.is_empty() {
        let (services, invalid) = super::appservice::load(&config.app_service_config_files, config.server_name());
        config.app_services = crate::appservice::AppServices::new(services);
        errors.extend(invalid);
    }
    super::appservice::grant_notifier(&mut config);
    if let Err(ConfigErrors(invalid)) = validate::validate(&config, &origins, extra) {
        errors.extend(invalid);
    }
    if errors.is_empty() { Ok(config) } else { Err(ConfigErrors(errors)) }
}

fn merge_into(base: &mut Table, overlay: Table, prefix: &str, file: usize, origins: &mut Origins) {
    for (key, value) in overlay {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match (base.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(incoming)) => merge_into(existing, incoming, &path, file, origins),
            (_, value) => {
                origins.record(path, file);
                base.insert(key, value);
            }
        }
    }
}

/// Deserializes a one-key table: every unknown key under it, and the first
/// type error.
fn check_types(table: Table, origins: &Origins) -> (Vec<ConfigError>, Option<ConfigError>) {
    let mut unknown = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(format_ignored_path(&path));
    let ignored = serde_ignored::Deserializer::new(Value::Table(table), &mut on_unknown);
    let wrong_type = serde_path_to_error::deserialize::<_, Config>(ignored).err().map(|e| {
        let key = format_error_path(e.path());
        // toml appends "in `key`" on a line of its own; the key is shown already.
        let message = e.inner().to_string();
        let message = message.lines().next().unwrap_or_default().trim_end().to_owned();
        origins.error(key, message)
    });
    (unknown.into_iter().map(|key| origins.error(&key, retired(&key).unwrap_or("unknown key"))).collect(), wrong_type)
}

/// Synapse options Weft replaced, with what to write instead.
fn retired(key: &str) -> Option<&'static str> {
    match key {
        "send_federation" => Some(
            "Synapse's legacy switch is not read: list the instances that send federation transactions in `federation_sender_instances` (unset: main sends)",
        ),
        _ => None,
    }
}

fn format_error_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key } | serde_path_to_error::Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}

fn format_ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", format_ignored_path(parent)),
        Path::Map { parent, key } => {
            let parent = format_ignored_path(parent);
            if parent.is_empty() { key.clone() } else { format!("{parent}.{key}") }
        }
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => format_ignored_path(parent),
    }
}

fn resolve_relative_paths(config: &mut Config, origins: &Origins) {
    let resolve = |key: &str, path: &mut PathBuf| {
        if path.is_relative()
            && let Some(dir) = origins.file_of(key).as_deref().and_then(Path::parent)
        {
            *path = dir.join(&*path);
        }
    };
    if let Some(path) = config.signing_key_path.as_mut() {
        resolve("signing_key_path", path);
    }
    if let Some(path) = config.registration_shared_secret_path.as_mut() {
        resolve("registration_shared_secret_path", path);
    }
    for path in &mut config.app_service_config_files {
        resolve("app_service_config_files", path);
    }
    for (key, path) in [("tls_certificate_path", config.tls_certificate_path.as_mut()), ("tls_private_key_path", config.tls_private_key_path.as_mut())] {
        if let Some(path) = path {
            resolve(key, path);
        }
    }
    for path in &mut config.federation_custom_ca_list {
        resolve("federation_custom_ca_list", path);
    }
    if let Some(path) = config.plugin_cache_dir.as_mut() {
        resolve("plugin_cache_dir", path);
    }
    if let Some(path) = config.templates.custom_template_directory.as_mut() {
        resolve("templates", path);
    }
    // Synapse's default media store, `media_store`, sits next to the first configuration file.
    match config.media_store_path.as_mut() {
        Some(path) => resolve("media_store_path", path),
        None => {
            if let Some(dir) = origins.files.first().and_then(|f| f.parent()) {
                config.media_store_path = Some(dir.join("media_store"));
            }
        }
    }
    for plugin in &mut config.plugins {
        resolve("plugins", &mut plugin.path);
        if let Some(dir) = plugin.capabilities.data_dir.as_mut() {
            resolve("plugins", dir);
        }
    }
    if config.database.name == super::DatabaseEngine::Sqlite {
        // Synapse's default database file, next to the first configuration file.
        let database = config.database.args.database.get_or_insert_with(|| "homeserver.db".into());
        if database != ":memory:" {
            let mut path = PathBuf::from(&*database);
            let key = if origins.file_of("database.args.database").is_some() { "database.args.database" } else { "" };
            if key.is_empty() {
                if let Some(dir) = origins.files.first().and_then(|f| f.parent()) {
                    path = dir.join(path);
                }
            } else {
                resolve(key, &mut path);
            }
            *database = path.to_string_lossy().into_owned();
        }
    }
}
