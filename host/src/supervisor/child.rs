//! One supervised process: start it with its output appended to a log file,
//! wait until it accepts connections, restart it with backoff when it dies,
//! and stop it with SIGTERM (SIGKILL after a grace period).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::{process::Command, sync::watch};

use super::{
    SupervisorError,
    plan::{Planned, ReadyAt},
};

/// The first restart waits this long; each quick death doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A process that ran this long before dying is restarted after `FIRST_BACKOFF` again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long a process has to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(15);
/// How long a process has to accept connections after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Child {
    pub planned: Planned,
    binary: PathBuf,
    run_dir: PathBuf,
}

impl Child {
    pub fn new(planned: Planned, binary: &Path, run_dir: &Path) -> Self {
        Self { planned, binary: binary.to_path_buf(), run_dir: run_dir.to_path_buf() }
    }

    pub fn log_path(&self) -> PathBuf {
        self.run_dir.join(format!("{}.log", self.planned.name))
    }

    pub fn pid_path(&self) -> PathBuf {
        self.run_dir.join(format!("{}.pid", self.planned.name))
    }

    fn spawn(&self) -> Result<tokio::process::Child, SupervisorError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|error| SupervisorError::Io(format!("cannot open {}", self.log_path().display()), error))?;
        let stderr = log.try_clone().map_err(|error| SupervisorError::Io("cannot duplicate a log file".into(), error))?;
        let child = Command::new(&self.binary)
            .args(&self.planned.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            // Its own process group: Ctrl-C in the supervisor's terminal
            // reaches the supervisor only, which then stops everyone in order.
            .process_group(0)
            .spawn()
            .map_err(|error| SupervisorError::Io(format!("cannot start {}", self.binary.display()), error))?;
        if let Some(pid) = child.id() {
            let _ = std::fs::write(self.pid_path(), format!("{pid}\n"));
        }
        Ok(child)
    }

    /// Starts the process and waits until it is ready (or has died).
    pub async fn start(&self) -> Result<tokio::process::Child, SupervisorError> {
        let mut child = self.spawn()?;
        let started = Instant::now();
        let Some(ready_at) = &self.planned.ready_at else { return Ok(child) };
        loop {
            if let Some(status) = child.try_wait().map_err(|error| SupervisorError::Io("cannot wait for a child".into(), error))? {
                return Err(SupervisorError::Died { name: self.planned.name.clone(), status: status.to_string(), log: self.log_path() });
            }
            if accepts_connections(ready_at).await {
                return Ok(child);
            }
            if started.elapsed() > READY_TIMEOUT {
                tracing::warn!(process = %self.planned.name, "not accepting connections after {} s; supervising it anyway", READY_TIMEOUT.as_secs());
                return Ok(child);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Keeps the process running until `stop` turns true, then stops it.
    pub async fn supervise(self, mut child: tokio::process::Child, mut stop: watch::Receiver<bool>) {
        let name = self.planned.name.clone();
        let mut backoff = FIRST_BACKOFF;
        let mut started = Instant::now();
        loop {
            let status = tokio::select! {
                status = child.wait() => status,
                () = stopped(&mut stop) => {
                    terminate(&name, &mut child).await;
                    break;
                }
            };
            let status = status.map_or_else(|error| error.to_string(), |status| status.to_string());
            if started.elapsed() >= HEALTHY_RUN {
                backoff = FIRST_BACKOFF;
            }
            tracing::error!(process = %name, %status, log = %self.log_path().display(), "process died; restarting in {} s", backoff.as_secs());
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                () = stopped(&mut stop) => break,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            started = Instant::now();
            match self.spawn() {
                Ok(restarted) => {
                    tracing::info!(process = %name, pid = restarted.id().unwrap_or_default(), "restarted");
                    child = restarted;
                }
                // The dead child's `wait` returns at once: the next round waits
                // out a longer backoff and tries again.
                Err(error) => tracing::error!(process = %name, %error, "cannot restart; trying again later"),
            }
        }
        let _ = std::fs::remove_file(self.pid_path());
    }
}

/// SIGTERM, then SIGKILL if it has not exited within [`STOP_GRACE`].
async fn terminate(name: &str, child: &mut tokio::process::Child) {
    let Some(pid) = child.id() else { return };
    send_signal(pid, libc::SIGTERM);
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => {
            tracing::info!(process = %name, status = %status.map_or_else(|e| e.to_string(), |s| s.to_string()), "stopped");
        }
        Err(_) => {
            tracing::warn!(process = %name, "did not stop within {} s of SIGTERM; killing it", STOP_GRACE.as_secs());
            let _ = child.kill().await;
        }
    }
}

pub fn send_signal(pid: u32, signal: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: kill(2) takes plain integers and has no memory effects here.
    unsafe { libc::kill(pid, signal) == 0 }
}

pub fn is_alive(pid: u32) -> bool {
    send_signal(pid, 0)
}

async fn accepts_connections(ready_at: &ReadyAt) -> bool {
    match ready_at {
        ReadyAt::Tcp(host, port) => tokio::net::TcpStream::connect((host.as_str(), *port)).await.is_ok(),
        ReadyAt::Unix(path) => tokio::net::UnixStream::connect(path).await.is_ok(),
    }
}

/// Completes once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
