//! `weft supervise`: runs a whole deployment on one machine in the spirit of
//! Synapse's `synctl`. Main starts first (it migrates the database and
//! writes the signing key), then the workers, then the router. A process
//! that dies is restarted with backoff. Stopping goes the other way: the
//! router, the workers, main last.
//!
//! The run directory holds `supervisor.pid`, one `<name>.pid` and one
//! `<name>.log` per process.

mod child;
mod plan;

use std::{
    future::Future,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tokio::sync::watch;

pub use child::{is_alive, send_signal};
pub use plan::{Layout, Plan, Planned, ReadyAt, Role};

use child::Child;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Plan(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("{name} exited while starting ({status}); see {}", log.display())]
    Died { name: String, status: String, log: PathBuf },
    #[error("a supervisor is already running this deployment (pid {0})")]
    AlreadyRunning(u32),
    #[error("no supervisor is running this deployment (no live pid in {})", .0.display())]
    NotRunning(PathBuf),
    #[error("the supervisor (pid {0}) did not stop within {1} s")]
    StopTimeout(u32, u64),
}

const SUPERVISOR_PID: &str = "supervisor.pid";

/// Starts every process of `plan` and keeps them running until `shutdown`
/// completes, then stops them all.
pub async fn run(plan: Plan, binary: &Path, run_dir: &Path, shutdown: impl Future<Output = ()>) -> Result<(), SupervisorError> {
    std::fs::create_dir_all(run_dir).map_err(|error| SupervisorError::Io(format!("cannot create {}", run_dir.display()), error))?;
    let pid_file = run_dir.join(SUPERVISOR_PID);
    if let Some(pid) = read_pid(&pid_file).filter(|pid| *pid != std::process::id() && is_alive(*pid)) {
        return Err(SupervisorError::AlreadyRunning(pid));
    }
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))
        .map_err(|error| SupervisorError::Io(format!("cannot write {}", pid_file.display()), error))?;

    let mut running = Running::default();
    let started = start_all(&plan, binary, run_dir, &mut running);
    tokio::pin!(shutdown);
    let outcome = tokio::select! {
        outcome = started => outcome,
        () = &mut shutdown => Ok(()),
    };
    if outcome.is_ok() {
        tracing::info!(processes = running.count(), "deployment running");
        shutdown.await;
        tracing::info!("stopping the deployment");
    }
    running.stop_all().await;
    let _ = std::fs::remove_file(&pid_file);
    outcome
}

async fn start_all(plan: &Plan, binary: &Path, run_dir: &Path, running: &mut Running) -> Result<(), SupervisorError> {
    for role in [Role::Main, Role::Worker, Role::Router] {
        let children: Vec<Child> = plan.processes.iter().filter(|p| p.role == role).map(|p| Child::new(p.clone(), binary, run_dir)).collect();
        let starts = children.iter().map(Child::start);
        let results = futures_util::future::join_all(starts).await;
        let mut first_error = None;
        for (child, result) in children.into_iter().zip(results) {
            match result {
                Ok(process) => {
                    tracing::info!(process = %child.planned.name, pid = process.id().unwrap_or_default(), log = %child.log_path().display(), "started");
                    running.add(role, child, process);
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
    }
    Ok(())
}

/// The supervising tasks, stopped in reverse start order.
#[derive(Default)]
struct Running {
    groups: Vec<(Role, watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>)>,
}

impl Running {
    fn add(&mut self, role: Role, child: Child, process: tokio::process::Child) {
        if self.groups.last().is_none_or(|(last, _, _)| *last != role) {
            self.groups.push((role, watch::channel(false).0, Vec::new()));
        }
        let (_, stop, tasks) = self.groups.last_mut().expect("pushed above");
        tasks.push(tokio::spawn(child.supervise(process, stop.subscribe())));
    }

    fn count(&self) -> usize {
        self.groups.iter().map(|(_, _, tasks)| tasks.len()).sum()
    }

    async fn stop_all(self) {
        for (_, stop, tasks) in self.groups.into_iter().rev() {
            let _ = stop.send(true);
            futures_util::future::join_all(tasks).await;
        }
    }
}

/// Asks the supervisor running from `run_dir` to stop, and waits until it has.
pub async fn stop(run_dir: &Path) -> Result<(), SupervisorError> {
    let pid_file = run_dir.join(SUPERVISOR_PID);
    let pid = read_pid(&pid_file).filter(|pid| is_alive(*pid)).ok_or_else(|| SupervisorError::NotRunning(pid_file.clone()))?;
    send_signal(pid, libc::SIGTERM);
    // Every group gets the grace period in turn, plus a margin.
    let limit = child::STOP_GRACE * 3 + Duration::from_secs(10);
    let started = Instant::now();
    while is_alive(pid) && read_pid(&pid_file) == Some(pid) {
        if started.elapsed() > limit {
            return Err(SupervisorError::StopTimeout(pid, limit.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Each process of `plan` with its pid, if it is running.
pub fn status(plan: &Plan, run_dir: &Path) -> Vec<(String, Option<u32>)> {
    let supervisor = read_pid(&run_dir.join(SUPERVISOR_PID)).filter(|pid| is_alive(*pid));
    std::iter::once(("supervisor".to_owned(), supervisor))
        .chain(plan.processes.iter().map(|process| {
            let pid = read_pid(&run_dir.join(format!("{}.pid", process.name))).filter(|pid| is_alive(*pid));
            (process.name.clone(), pid)
        }))
        .collect()
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
