//! Which processes a deployment directory describes, with the arguments that
//! start each and the address that says it is up.
//!
//! A deployment is the shared configuration (one or more files), an optional
//! `main.toml` for the main process's own settings, one file per worker in a
//! directory, and the router when the shared configuration has `[router]`.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use crate::config::{self, Config, InstanceLocation, MAIN_INSTANCE};

use super::SupervisorError;

/// What to run, in start order: main, the workers, the router.
#[derive(Debug, Clone)]
pub struct Plan {
    pub processes: Vec<Planned>,
}

#[derive(Debug, Clone)]
pub struct Planned {
    /// The instance name (`main`, a `worker_name`, or `router`).
    pub name: String,
    /// Arguments to the `weft` binary.
    pub args: Vec<OsString>,
    /// Accepting connections here means the process finished starting.
    pub ready_at: Option<ReadyAt>,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Main,
    Worker,
    Router,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyAt {
    Tcp(String, u16),
    Unix(PathBuf),
}

/// Where the parts of a deployment are.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The shared configuration files, merged in order (later over earlier).
    pub shared: Vec<PathBuf>,
    /// The main process's own file, if any.
    pub main: Option<PathBuf>,
    /// A directory with one `.toml` per worker.
    pub workers: Option<PathBuf>,
}

impl Layout {
    /// The conventional layout next to the first shared file: `main.toml` and
    /// `workers/*.toml`, each used when it exists.
    pub fn beside(shared: Vec<PathBuf>, main: Option<PathBuf>, workers: Option<PathBuf>) -> Self {
        let dir = shared.first().and_then(|file| file.parent()).map(Path::to_path_buf).unwrap_or_default();
        let main = main.or_else(|| Some(dir.join("main.toml")).filter(|path| path.is_file()));
        let workers = workers.or_else(|| Some(dir.join("workers")).filter(|path| path.is_dir()));
        Self { shared, main, workers }
    }
}

impl Plan {
    /// Reads and validates every process's configuration, so that a mistake
    /// stops the deployment before anything starts.
    pub fn from_layout(layout: &Layout) -> Result<Self, SupervisorError> {
        let shared = load(&layout.shared)?;
        let mut processes = Vec::new();

        let main_files = with_own(&layout.shared, layout.main.as_deref());
        let main_config = load(&main_files)?;
        if !main_config.is_main_process() {
            return Err(SupervisorError::Plan(format!("the main process's configuration sets `worker_name = \"{}\"`", main_config.instance_name())));
        }
        processes.push(Planned {
            name: MAIN_INSTANCE.to_owned(),
            args: run_args(&main_files),
            ready_at: ready_at(&main_config, MAIN_INSTANCE),
            role: Role::Main,
        });

        for file in worker_files(layout.workers.as_deref())? {
            let files = with_own(&layout.shared, Some(&file));
            let config = load(&files)?;
            let Some(name) = config.worker_name.clone() else {
                return Err(SupervisorError::Plan(format!("{} does not set `worker_name`", file.display())));
            };
            if processes.iter().any(|process: &Planned| process.name == name) {
                return Err(SupervisorError::Plan(format!("two files configure the instance `{name}` (the second is {})", file.display())));
            }
            processes.push(Planned { ready_at: ready_at(&config, &name), name, args: run_args(&files), role: Role::Worker });
        }

        if let Some(router) = &shared.router {
            let host = router.bind_addresses.first().map_or_else(
                || "127.0.0.1".to_owned(),
                |address| {
                    if address.is_unspecified() { "127.0.0.1".to_owned() } else { address.to_string() }
                },
            );
            let mut args: Vec<OsString> = vec!["router".into()];
            for file in &layout.shared {
                args.push("-c".into());
                args.push(file.into());
            }
            processes.push(Planned { name: "router".into(), args, ready_at: Some(ReadyAt::Tcp(host, router.port)), role: Role::Router });
        }
        Ok(Self { processes })
    }
}

fn load(files: &[PathBuf]) -> Result<Config, SupervisorError> {
    config::load_files(files).map_err(|errors| SupervisorError::Config(errors.to_string()))
}

fn with_own(shared: &[PathBuf], own: Option<&Path>) -> Vec<PathBuf> {
    shared.iter().cloned().chain(own.map(Path::to_path_buf)).collect()
}

fn run_args(files: &[PathBuf]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["run".into()];
    for file in files {
        args.push("-c".into());
        args.push(file.into());
    }
    args
}

/// The worker files, sorted by name so start order is stable.
fn worker_files(dir: Option<&Path>) -> Result<Vec<PathBuf>, SupervisorError> {
    let Some(dir) = dir else { return Ok(Vec::new()) };
    let entries = std::fs::read_dir(dir).map_err(|error| SupervisorError::Plan(format!("cannot read {}: {error}", dir.display())))?;
    let mut files: Vec<PathBuf> =
        entries.filter_map(Result::ok).map(|entry| entry.path()).filter(|path| path.extension().is_some_and(|extension| extension == "toml")).collect();
    files.sort();
    Ok(files)
}

/// The instance's `replication` address from `instance_map`: it is bound
/// once the process has connected to the database and built its services.
fn ready_at(config: &Config, name: &str) -> Option<ReadyAt> {
    let location: &InstanceLocation = config.instance_map.get(name)?;
    if let Some(path) = &location.path {
        return Some(ReadyAt::Unix(path.clone()));
    }
    Some(ReadyAt::Tcp(location.host.clone().unwrap_or_else(|| "localhost".into()), location.port?))
}
