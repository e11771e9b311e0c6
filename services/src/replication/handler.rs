//! The replication task every instance runs: applies what other writers
//! announce (RDATA, POSITION; positions once the database confirms them,
//! see `announced`), answers REPLICATE, hands each stream's announcements
//! and the commands that name no stream to the handlers the streams
//! registered (`streams`), and announces this instance's own positions.
//!
//! Catching up: the database holds every stream but `typing`, so for those
//! a reader only needs the writer's position, and positions are re-announced
//! on REPLICATE and every second. After a (re)connect, or when it fell
//! behind the bus, an instance reads the recorded positions from the
//! database, asks everyone to announce (REPLICATE), and lets each stream's
//! handler catch up its own way (typing fetches the writer's state).
//!
//! Stopping: the task announces its final positions and waits for the work
//! handlers started off the task (presence writes for USER_SYNC).

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::{
    sync::{broadcast::error::RecvError, watch},
    task::JoinSet,
};

use weft_storage::Stream;

use super::{BusEvent, Command, Follow, stream_named};
use crate::services::AppState;

/// How often a writer checks whether to announce its positions (and moves
/// an idle multi-writer position up to the others').
const TICK: Duration = Duration::from_millis(50);
/// Positions are announced at least this often, so a reader that missed a
/// command learns the position anyway.
const KEEPALIVE: Duration = Duration::from_secs(1);
/// How often each writer records its positions in `stream_positions`.
const FLUSH: Duration = Duration::from_millis(250);

/// The replication task; see the module doc. Ends when `stopped` turns `true`.
pub async fn run(state: AppState, mut stopped: watch::Receiver<bool>) {
    let mut events = state.replication.bus().subscribe();
    catch_up(&state).await;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_keepalive = Instant::now();
    // Handlers' writes, run off this loop so that they hold up nothing else.
    let mut writes = JoinSet::new();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(BusEvent::Command(command)) => handle(&state, &command, &mut writes).await,
                Ok(BusEvent::Connected) => catch_up(&state).await,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "replication: fell behind the bus; catching up");
                    catch_up(&state).await;
                }
                Err(RecvError::Closed) => break,
            },
            _ = tick.tick() => {
                let keepalive = last_keepalive.elapsed() >= KEEPALIVE;
                if keepalive {
                    last_keepalive = Instant::now();
                }
                announce(&state, keepalive);
                state.replication.handlers().tick(&state);
            }
            Some(_) = writes.join_next(), if !writes.is_empty() => {}
            () = weft_core::lifecycle::stopped(&mut stopped) => break,
        }
    }
    announce(&state, true);
    while writes.join_next().await.is_some() {}
}

/// Records this instance's positions in `stream_positions` every `FLUSH` and
/// once more on shutdown. A task of its own, so that a slow database never
/// holds up applying replication commands.
pub async fn record_positions(state: AppState, mut stopped: watch::Receiver<bool>) {
    let mut flushed = [-1; Stream::COUNT];
    let mut tick = tokio::time::interval(FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => flush(&state, &mut flushed).await,
            () = weft_core::lifecycle::stopped(&mut stopped) => break,
        }
    }
    flush(&state, &mut flushed).await;
}

/// Every stream this instance writes, with its current position.
pub fn own_positions(state: &AppState) -> Vec<(Stream, String, i64)> {
    let writers = state.replication.writers();
    Stream::ALL
        .into_iter()
        .filter(|stream| writers.writes(*stream))
        .map(|stream| (stream, writers.instance().to_owned(), state.notifier.writer_position(stream, writers.instance())))
        .collect()
}

fn announce(state: &AppState, force: bool) {
    let writers = state.replication.writers();
    for stream in Stream::ALL {
        if !writers.writes(stream) {
            continue;
        }
        if writers.of(stream).len() > 1
            && let Some(position) = state.storage.advance_idle(stream, state.notifier.max_position(stream))
        {
            state.notifier.notify(stream, position);
        }
        let position = state.notifier.writer_position(stream, writers.instance());
        state.replication.announce_position(stream, position, force);
    }
}

/// Records the positions that moved since the last flush in `stream_positions`.
async fn flush(state: &AppState, flushed: &mut [i64; Stream::COUNT]) {
    for stream in Stream::ALL {
        let position = state.storage.persisted_position(stream);
        if !stream.is_in_database() || !state.replication.writers().writes(stream) || flushed[stream.index()] == position {
            continue;
        }
        match state.storage.flush_position(stream).await {
            Ok(()) => flushed[stream.index()] = position,
            Err(error) => tracing::warn!(%error, stream = stream.as_str(), "cannot record the stream position"),
        }
    }
}

/// Brings this instance's view up to what is persisted, and asks every
/// writer to announce its positions.
async fn catch_up(state: &AppState) {
    match state.storage.recorded_positions().await {
        Ok(rows) => {
            for (stream, instance, position) in rows {
                if instance != state.replication.instance() {
                    state.notifier.advance(stream, &instance, position);
                }
            }
        }
        Err(error) => tracing::warn!(%error, "replication: cannot read recorded positions"),
    }
    state.replication.publish(&Command::Replicate);
    announce(state, true);
    state.replication.handlers().caught_up(state);
}

async fn handle(state: &AppState, command: &Command, writes: &mut JoinSet<()>) {
    let handlers = state.replication.handlers();
    match command {
        Command::Rdata { stream, instance, token, row } if instance != state.replication.instance() => {
            let Some(stream) = stream_named(stream) else { return };
            if handlers.row(state, stream, instance, *token, row) == Follow::Hold {
                return;
            }
            if super::announced::apply(state, stream, instance, *token).await {
                record_lag(stream, instance, row);
            }
        }
        Command::Position { stream, instance, new, .. } if instance != state.replication.instance() => {
            let Some(stream) = stream_named(stream) else { return };
            if handlers.position(state, stream, instance, *new) == Follow::Hold {
                return;
            }
            super::announced::apply(state, stream, instance, *new).await;
        }
        Command::Replicate => announce(state, true),
        // This instance's own announcements, back from the bus.
        Command::Rdata { .. } | Command::Position { .. } => {}
        Command::FederationAck { instance, token } => tracing::debug!(%instance, token, "federation ack (no federation sender yet)"),
        Command::RemoteServerUp { server_name } => tracing::debug!(%server_name, "remote server up (no federation sender yet)"),
        _ => {
            for work in handlers.command(state, command) {
                writes.spawn(work);
            }
        }
    }
}

/// Replication lag: from the writer stamping the row (its last element, in
/// microseconds) until this process has applied it and woken its waiters.
fn record_lag(stream: Stream, writer: &str, row: &Value) {
    if let Some(sent) = row.as_array().and_then(|row| row.last()).and_then(Value::as_i64) {
        let lag = (super::now_micros() - sent).max(0) as f64 / 1e6;
        metrics::histogram!("weft_replication_lag_seconds", "stream" => stream.as_str(), "writer" => writer.to_owned()).record(lag);
    }
}
