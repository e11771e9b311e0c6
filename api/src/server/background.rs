//! The jobs an instance runs, in start order (they stop in the reverse
//! order, see `weft_core::lifecycle`). On every instance: the stream-position recorder
//! (first, so that it stops last and records the final positions) and the
//! replication handler. On the instance named by `run_background_tasks_on`
//! (main by default): purging expired user-interactive auth sessions. On the
//! one named by `update_user_directory_from_worker` (main by default): the
//! user directory updater. On main: the federation sender (federation-sender
//! workers come later). On the instances in `pusher_instances` (main by
//! default) with `push.enabled`: the push sender. On the one named by
//! `notify_appservices_from_worker` (main by default), with appservices
//! registered: the appservice notifier. On media instances, as
//! `media_instance_running_background_jobs` says: the media clean-up. On the
//! presence writer, with presence enabled: the presence timer.

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::{FutureExt, future::BoxFuture};

use weft_core::config::MAIN_INSTANCE;
use weft_core::lifecycle::{Job, Stop, job, stopped};
use weft_services::services::AppState;
use weft_storage::now_ms;

use crate::uia::SESSION_LIFETIME_MS;

const PURGE_INTERVAL: Duration = Duration::from_secs(10 * 60);

pub(super) fn jobs(state: &AppState) -> Vec<Arc<dyn Job>> {
    let mut jobs = Vec::new();
    let with = |run: fn(AppState, Stop) -> BoxFuture<'static, ()>| {
        let state = state.clone();
        move |stop| run(state.clone(), stop)
    };
    jobs.push(job("stream positions", with(|state, stop| weft_services::replication::handler::record_positions(state, stop).boxed())));
    jobs.push(job("replication", with(|state, stop| weft_services::replication::handler::run(state, stop).boxed())));
    if weft_services::appservices::queue::notifies_here(&state.config) {
        jobs.push(job("appservice notifier", with(|state, stop| weft_services::appservices::queue::run(state, stop).boxed())));
    }
    if weft_services::user_directory::updates_here(&state.config) {
        jobs.push(job("user directory", with(|state, stop| weft_services::user_directory::run(state, stop).boxed())));
    }
    if weft_services::federation::sender::sends_here(state) {
        jobs.push(job("federation sender", with(|state, stop| weft_services::federation::sender::run(state, stop).boxed())));
    }
    if weft_services::push::pusher_pool::sends_here(state) {
        jobs.push(job("push sender", with(|state, stop| weft_services::push::pusher_pool::run(state, stop).boxed())));
    }
    let runs_here = state.config.run_background_tasks_on.as_deref().unwrap_or(MAIN_INSTANCE) == state.config.instance_name();
    if runs_here {
        jobs.push(every("auth session purge", PURGE_INTERVAL, state, |state| async move {
            match state.storage.purge_uia_sessions(now_ms() - SESSION_LIFETIME_MS).await {
                Ok(0) => {}
                Ok(purged) => tracing::debug!(purged, "purged expired user-interactive auth sessions"),
                Err(error) => tracing::warn!(%error, "could not purge user-interactive auth sessions"),
            }
        }));
    }
    if state.config.runs_media_background_jobs() {
        jobs.push(every("media clean-up", PURGE_INTERVAL, state, |state| async move {
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
        jobs.push(every("presence timer", weft_services::presence::TIMER_INTERVAL, state, |state| async move {
            if let Err(error) = weft_services::presence::expire(&state).await {
                tracing::warn!(%error, "presence timer failed");
            }
        }));
    }
    jobs
}

/// A job that runs `pass` at once and then every `period` until stopped; a
/// pass under way when the stop comes is finished.
fn every<F, Fut>(name: &'static str, period: Duration, state: &AppState, pass: F) -> Arc<dyn Job>
where
    F: Fn(AppState) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let state = state.clone();
    job(name, move |mut stop: Stop| {
        let state = state.clone();
        async move {
            let mut interval = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = interval.tick() => pass(state.clone()).await,
                    () = stopped(&mut stop) => break,
                }
            }
        }
        .boxed()
    })
}
