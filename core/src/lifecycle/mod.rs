//! Long-running work and how it starts and stops: every background job of an
//! instance (the replication handler, the stream-position recorder, the user
//! directory updater, the periodic timers) is a [`Job`] started by one
//! [`Manager`], after tuwunel's service manager.
//!
//! - **Start**: the manager logs the names of the jobs this instance runs,
//!   then spawns each under a supervisor task.
//! - **Panic**: a job whose worker panics is logged with its name and the
//!   panic's message, counted in `weft_job_restarts_total{job}`, and started
//!   again after a pause that doubles from [`Backoff::initial`] up to
//!   [`Backoff::max`] (back to the start after a run that lasted longer than
//!   `max`). A worker that returns before it is stopped has finished its work
//!   and is not restarted.
//! - **Stop**: jobs are stopped one at a time in the reverse of their start
//!   order, and each is waited for: its worker sees its stop signal, ends at
//!   a safe point and finishes what it started (the position recorder writes
//!   the final positions). So a job started first (positions) outlives those
//!   whose writes it records. A job that has not ended after the drain
//!   timeout is aborted with a warning.
//!
//! Why a handle per job rather than one `JoinSet`: stopping in order needs to
//! wait for one job at a time. Each supervisor runs the worker itself in a
//! task of its own, so a panic is caught as a `JoinError` and nothing else.
//!
//! May call: tokio, tracing, metrics. Knows no job by name: the API crate's `server`
//! builds the list (see `weft_api::server::background`).

#[cfg(test)]
mod tests;

use std::{sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use tokio::{sync::watch, task::JoinHandle, time::Instant};

/// A job's stop signal: becomes `true` when the manager stops the job. A
/// worker selects on [`stopped`] in its loop.
pub type Stop = watch::Receiver<bool>;

/// Completes when `stop` turns `true`. Holds no borrow of the signal when it
/// completes (the one `wait_for` returns is not `Send`).
pub async fn stopped(stop: &mut Stop) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A long-running piece of work, built from the instance's state before it starts.
pub trait Job: Send + Sync + 'static {
    /// A short name for logs and metrics (`"user directory"`).
    fn name(&self) -> &'static str;
    /// Runs until `stop` turns `true`, then finishes what it started and
    /// returns. Called again after a panic, so it must resume from what is
    /// saved (in the database or in `self`), not from where it panicked.
    fn worker(self: Arc<Self>, stop: Stop) -> BoxFuture<'static, ()>;
}

/// A job made of a name and a function that starts its worker.
pub struct FnJob<F> {
    name: &'static str,
    start: F,
}

/// The job named `name` whose worker is `start(stop)`.
pub fn job<F>(name: &'static str, start: F) -> Arc<dyn Job>
where
    F: Fn(Stop) -> BoxFuture<'static, ()> + Send + Sync + 'static,
{
    Arc::new(FnJob { name, start })
}

impl<F> Job for FnJob<F>
where
    F: Fn(Stop) -> BoxFuture<'static, ()> + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn worker(self: Arc<Self>, stop: Stop) -> BoxFuture<'static, ()> {
        (self.start)(stop)
    }
}

/// The pause before restarting a job that panicked.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: Duration::from_secs(1), max: Duration::from_secs(60) }
    }
}

/// How long one job may take to finish after it is told to stop.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

struct Running {
    name: &'static str,
    stop: watch::Sender<bool>,
    supervisor: JoinHandle<()>,
}

/// The running jobs of an instance; see the module doc.
pub struct Manager {
    /// In start order.
    running: Vec<Running>,
    drain_timeout: Duration,
}

impl Manager {
    /// Starts `jobs` in order, logging their names.
    pub fn start(jobs: Vec<Arc<dyn Job>>, backoff: Backoff) -> Self {
        let names: Vec<&str> = jobs.iter().map(|job| job.name()).collect();
        tracing::info!("jobs on this instance: {}", if names.is_empty() { "none".to_owned() } else { names.join(", ") });
        let running = jobs
            .into_iter()
            .map(|job| {
                let (stop, stopped) = watch::channel(false);
                Running { name: job.name(), stop, supervisor: tokio::spawn(supervise(job, stopped, backoff)) }
            })
            .collect();
        Self { running, drain_timeout: DRAIN_TIMEOUT }
    }

    /// The names of the running jobs, in start order.
    pub fn names(&self) -> Vec<&'static str> {
        self.running.iter().map(|running| running.name).collect()
    }

    /// Stops every job, the last started first, waiting for each to finish.
    pub async fn stop(self) {
        for running in self.running.into_iter().rev() {
            let _ = running.stop.send(true);
            let abort = running.supervisor.abort_handle();
            match tokio::time::timeout(self.drain_timeout, running.supervisor).await {
                Ok(Ok(())) => tracing::debug!(job = running.name, "job stopped"),
                Ok(Err(error)) => tracing::error!(job = running.name, %error, "the supervisor of a job failed"),
                Err(_) => {
                    tracing::warn!(job = running.name, timeout = ?self.drain_timeout, "a job did not finish after it was stopped; aborting it");
                    abort.abort();
                }
            }
        }
    }
}

/// Runs `job` until it returns or `stop` turns `true`, restarting it after a panic.
async fn supervise(job: Arc<dyn Job>, mut stop: Stop, backoff: Backoff) {
    let name = job.name();
    let mut delay = backoff.initial;
    loop {
        let started = Instant::now();
        let mut worker = tokio::spawn(job.clone().worker(stop.clone()));
        // The worker sees the stop signal itself; this only keeps a worker
        // that outlives the drain timeout from outliving its supervisor.
        let _abort_on_drop = AbortOnDrop(worker.abort_handle());
        let panic = match (&mut worker).await {
            Ok(()) => return,
            Err(error) if error.is_panic() => panic_message(error.into_panic()),
            Err(_) => return,
        };
        if started.elapsed() > backoff.max {
            delay = backoff.initial;
        }
        tracing::error!(job = name, panic = %panic, restart_in = ?delay, "a job panicked; restarting it");
        metrics::counter!("weft_job_restarts_total", "job" => name).increment(1);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        delay = (delay * 2).min(backoff.max);
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload.downcast_ref::<&str>().map_or_else(|| "(no message)".to_owned(), |message| (*message).to_owned()),
    }
}
