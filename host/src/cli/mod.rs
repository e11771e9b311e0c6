//! The `weft` command: parses arguments with clap and runs a subcommand.
//! `anyhow` is used here and nowhere below.

mod check_config;
mod gen_proxy_config;
mod plugin;
mod register_user;
mod router;
mod run;
mod supervise;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "weft", version, about = "Weft: a Matrix homeserver that scales out like Synapse's workers and runs sandboxed WebAssembly plugins")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a homeserver process: the main process, or a worker when the files set `worker_name`.
    ///
    /// Without `-c`, runs a single process on SQLite for a first look: on the first start it
    /// writes a configuration, a signing key and a database into the data directory, with open
    /// registration on http://localhost:8008; later starts reuse them.
    Run {
        /// A TOML configuration file; repeat to merge several, later files over earlier ones.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Without `-c`: where the zero-setup configuration, key and database live.
        #[arg(long, value_name = "DIR", default_value = "weft-data", env = "WEFT_DATA_DIR")]
        data_dir: PathBuf,
        /// Without `-c`: the port to listen on (on 127.0.0.1), overriding the stored configuration.
        #[arg(long, value_name = "PORT")]
        port: Option<u16>,
    },
    /// Check configuration files: print every problem, or what this instance would do.
    CheckConfig {
        /// A TOML configuration file; repeat to merge several, as `weft run` does.
        #[arg(short = 'c', long = "config", value_name = "FILE", required = true)]
        config: Vec<PathBuf>,
        /// Also print which instance sends federation transactions to this server name.
        #[arg(long, value_name = "SERVER_NAME")]
        destination: Option<String>,
    },
    /// Run the reverse proxy that sends each request to an instance serving its endpoint group
    /// (`instance_map.<name>.serves`), sticky where the worker documentation asks, with failover.
    Router {
        /// A TOML configuration file; repeat to merge several. Usually the shared configuration.
        #[arg(short = 'c', long = "config", value_name = "FILE", required = true)]
        config: Vec<PathBuf>,
    },
    /// Print a reverse proxy configuration equivalent to `weft router`.
    GenProxyConfig {
        /// The proxy to configure.
        #[arg(value_enum)]
        proxy: gen_proxy_config::Proxy,
        /// A TOML configuration file; repeat to merge several.
        #[arg(short = 'c', long = "config", value_name = "FILE", required = true)]
        config: Vec<PathBuf>,
    },
    /// Start, stop or inspect a whole deployment on this machine (main, workers, router),
    /// restarting any process that dies, in the spirit of Synapse's synctl.
    Supervise(supervise::Args),
    /// Register a user on a running server with the registration shared secret
    /// (as Synapse's register_new_matrix_user).
    RegisterUser(register_user::Args),
    /// Run a plugin component outside a server: against JSON fixtures, or as a benchmark.
    #[command(subcommand)]
    Plugin(plugin::Command),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config, destination } => check_config::check_config(&config, destination.as_deref()),
        Command::Run { config, data_dir, port } => run_async(run::run(config, data_dir, port)),
        Command::RegisterUser(args) => run_async(register_user::register_user(args)),
        Command::Plugin(command) => run_async(plugin::run(command)),
        Command::Router { config } => run_async(router::run(config)),
        Command::Supervise(args) => run_async(supervise::run(args)),
        Command::GenProxyConfig { proxy, config } => match gen_proxy_config::run(proxy, &config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run_async(future: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(future) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                return;
            }
            Err(error) => tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops this"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
