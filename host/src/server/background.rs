//! Background jobs. On every instance: the replication task. On the instance named by `run_background_tasks_on` (main
//! by default): purging expired user-interactive auth sessions. On the one
//! named by `update_user_directory_from_worker` (main by default): the user
//! directory updater. On media instances, as
//! `media_instance_running_background_jobs` says: the media clean-up.

use std::time::Duration;

use tokio::{sync::watch, task::JoinSet};

use crate::{api::uia::SESSION_LIFETIME_MS, config::MAIN_INSTANCE, services::AppState, storage::now_ms};

const PURGE_INTERVAL: Duration = Duration::from_secs(10 * 60);

pub(super) fn spawn(state: AppState, stopped: watch::Receiver<bool>) -> JoinSet<()> {
    let mut jobs = JoinSet::new();
    jobs.spawn(crate::replication::handler::run(state.clone(), stopped.clone()));
    jobs.spawn(crate::replication::handler::record_positions(state.clone(), stopped.clone()));
    if crate::user_directory::updates_here(&state.config) {
        jobs.spawn(crate::user_directory::run(state.clone(), stopped.clone()));
    }
    let runs_here = state.config.run_background_tasks_on.as_deref().unwrap_or(MAIN_INSTANCE) == state.config.instance_name();
    if runs_here {
        jobs.spawn(every(PURGE_INTERVAL, state.clone(), stopped.clone(), |state| async move {
            match state.storage.purge_uia_sessions(now_ms() - SESSION_LIFETIME_MS).await {
                Ok(0) => {}
                Ok(purged) => tracing::debug!(purged, "purged expired user-interactive auth sessions"),
                Err(error) => tracing::warn!(%error, "could not purge user-interactive auth sessions"),
            }
        }));
    }
    if state.config.runs_media_background_jobs() {
        jobs.spawn(every(PURGE_INTERVAL, state.clone(), stopped.clone(), |state| async move {
            let Some(media) = state.media.as_ref() else { return };
            match media.clean_up(&state.storage).await {
                Ok((0, 0)) => {}
                Ok((ids, files)) => tracing::debug!(ids, files, "removed expired media ids and stale temporary files"),
                Err(error) => tracing::warn!(%error, "media clean-up failed"),
            }
        }));
    }
    let presence_writer = state.config.stream_writers.presence.first().map_or(MAIN_INSTANCE, String::as_str);
    if state.config.presence.enabled && presence_writer == state.config.instance_name() {
        jobs.spawn(every(crate::presence::TIMER_INTERVAL, state.clone(), stopped.clone(), |state| async move {
            if let Err(error) = crate::presence::expire(&state).await {
                tracing::warn!(%error, "presence timer failed");
            }
        }));
    }
    jobs
}

/// Runs `job` at once and then every `period` until shutdown.
async fn every<F, Fut>(period: Duration, state: AppState, mut stopped: watch::Receiver<bool>, job: F)
where
    F: Fn(AppState) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut interval = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = interval.tick() => job(state.clone()).await,
            _ = async { let _ = stopped.wait_for(|stop| *stop).await; } => break,
        }
    }
}
