//! What a stream does with what other processes announce on the bus.
//! Replication knows no stream's module by name: each stream that needs more
//! than its position moved registers a [`StreamHandler`] when the services
//! are built (`typing` keeps a mirror of the writer's memory, `presence`
//! takes USER_SYNC on its writer), and the replication task calls the
//! registered handlers. A stream without a handler has its position moved
//! once the database confirms it (see `announced`), and nothing else.
//!
//! May call: nothing; handlers call whatever their stream needs.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use weft_storage::Stream;

use super::Command;
use crate::services::AppState;

/// Whether an announced position may move this instance's view of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Move it (once the database confirms it).
    Advance,
    /// Leave it: the handler has already moved it, or will once it has
    /// caught up some other way.
    Hold,
}

/// One stream's reactions to the bus; every method has a default that does nothing.
pub trait StreamHandler: Send + Sync + 'static {
    /// The stream this handler belongs to.
    fn stream(&self) -> Stream;

    /// Another writer persisted rows of the stream up to `token`.
    fn row(&self, _state: &AppState, _writer: &str, _token: i64, _row: &Value) -> Follow {
        Follow::Advance
    }

    /// Another writer announced it is at `position` with no rows since the last.
    fn position(&self, _state: &AppState, _writer: &str, _position: i64) -> Follow {
        Follow::Advance
    }

    /// This instance (re)connected to the bus or fell behind it; it has
    /// read the recorded positions and asked every writer to announce.
    fn caught_up(&self, _state: &AppState) {}

    /// Every tick of the replication task (50 ms), for work repeated on a timer.
    fn tick(&self, _state: &AppState) {}

    /// A command that names no stream (USER_SYNC, CLEAR_USER_SYNC, ...):
    /// every handler sees each and takes those that are its stream's. Work
    /// that writes is returned, to run off the replication task; shutdown
    /// waits for it.
    fn command(&self, _state: &AppState, _command: &Command) -> Option<BoxFuture<'static, ()>> {
        None
    }
}

/// The registered handlers.
#[derive(Default)]
pub struct StreamHandlers(Vec<Arc<dyn StreamHandler>>);

impl StreamHandlers {
    pub fn register(&mut self, handler: Arc<dyn StreamHandler>) {
        self.0.push(handler);
    }

    /// The streams with a handler, in registration order.
    pub fn streams(&self) -> Vec<Stream> {
        self.0.iter().map(|handler| handler.stream()).collect()
    }

    fn of(&self, stream: Stream) -> impl Iterator<Item = &Arc<dyn StreamHandler>> {
        self.0.iter().filter(move |handler| handler.stream() == stream)
    }

    /// `Hold` when any handler of the stream holds.
    pub(super) fn row(&self, state: &AppState, stream: Stream, writer: &str, token: i64, row: &Value) -> Follow {
        self.of(stream).fold(Follow::Advance, |follow, handler| follow.and(handler.row(state, writer, token, row)))
    }

    pub(super) fn position(&self, state: &AppState, stream: Stream, writer: &str, position: i64) -> Follow {
        self.of(stream).fold(Follow::Advance, |follow, handler| follow.and(handler.position(state, writer, position)))
    }

    pub(super) fn caught_up(&self, state: &AppState) {
        self.0.iter().for_each(|handler| handler.caught_up(state));
    }

    pub(super) fn tick(&self, state: &AppState) {
        self.0.iter().for_each(|handler| handler.tick(state));
    }

    pub(super) fn command(&self, state: &AppState, command: &Command) -> Vec<BoxFuture<'static, ()>> {
        self.0.iter().filter_map(|handler| handler.command(state, command)).collect()
    }
}

impl Follow {
    fn and(self, other: Follow) -> Follow {
        if self == Follow::Hold || other == Follow::Hold { Follow::Hold } else { Follow::Advance }
    }
}
