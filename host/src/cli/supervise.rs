//! `weft supervise start|stop|status`: one command for a whole local
//! deployment (see `supervisor`).

use std::path::PathBuf;

use anyhow::Context;

use crate::{config, supervisor, telemetry};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `start` runs in the foreground until Ctrl-C, SIGTERM or `weft supervise stop`.
    #[arg(value_enum, default_value = "start")]
    action: Action,
    /// The shared configuration; repeat to merge several (later over earlier). Every process gets these first.
    #[arg(short = 'c', long = "config", value_name = "FILE", required = true)]
    config: Vec<PathBuf>,
    /// The main process's own file [default: main.toml beside the first -c, if it exists].
    #[arg(long, value_name = "FILE")]
    main: Option<PathBuf>,
    /// A directory with one file per worker [default: workers/ beside the first -c, if it exists].
    #[arg(long, value_name = "DIR")]
    workers: Option<PathBuf>,
    /// Where pid files and each process's log go [default: run/ beside the first -c].
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Action {
    Start,
    Stop,
    Status,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let run_dir =
        args.run_dir.clone().unwrap_or_else(|| args.config.first().and_then(|file| file.parent()).map(|dir| dir.join("run")).unwrap_or_else(|| "run".into()));
    let layout = supervisor::Layout::beside(args.config.clone(), args.main.clone(), args.workers.clone());
    match args.action {
        Action::Start => {
            let shared = config::load_files(&layout.shared).map_err(|errors| anyhow::anyhow!("{errors}"))?;
            telemetry::init_logging(&shared.logging);
            let plan = supervisor::Plan::from_layout(&layout)?;
            for process in &plan.processes {
                println!("{}: weft {}", process.name, process.args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
            }
            let binary = std::env::current_exe().context("cannot find the weft binary")?;
            supervisor::run(plan, &binary, &run_dir, super::shutdown_signal()).await?;
        }
        Action::Stop => supervisor::stop(&run_dir).await?,
        Action::Status => {
            let plan = supervisor::Plan::from_layout(&layout)?;
            for (name, pid) in supervisor::status(&plan, &run_dir) {
                match pid {
                    Some(pid) => println!("{name:<16} running (pid {pid})"),
                    None => println!("{name:<16} stopped"),
                }
            }
        }
    }
    Ok(())
}
