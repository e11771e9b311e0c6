//! The guest's stdout and stderr: one buffer the host takes after every call
//! and logs with it.
//!
//! Bytes past the call's budget (`max_log_bytes`) are dropped, and the guest
//! is never told: a write error would make Rust's `println!` panic, turning a
//! chatty plugin into a failing one. Taking the text empties the buffer, so a
//! reused instance starts each call with the whole budget again.

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::{
    async_trait,
    cli::{IsTerminal, StdoutStream},
    p2::{OutputStream, Pollable, StreamResult},
};

/// What the guest may write at once before the host looks again.
const WRITE_PERMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct CapturedOutput {
    buffer: Arc<Mutex<Buffer>>,
}

struct Buffer {
    bytes: Vec<u8>,
    capacity: usize,
    truncated: bool,
}

impl CapturedOutput {
    pub fn new(capacity: usize) -> Self {
        Self { buffer: Arc::new(Mutex::new(Buffer { bytes: Vec::new(), capacity, truncated: false })) }
    }

    /// What was written since the last take, trimmed; `None` when nothing was.
    pub fn take_text(&self) -> Option<String> {
        let mut buffer = self.lock();
        let bytes = std::mem::take(&mut buffer.bytes);
        let truncated = std::mem::take(&mut buffer.truncated);
        let text = String::from_utf8_lossy(&bytes).trim().to_owned();
        match (text.is_empty(), truncated) {
            (true, _) => None,
            (false, false) => Some(text),
            (false, true) => Some(format!("{text} [output truncated at max_log_bytes]")),
        }
    }

    fn push(&self, data: &[u8]) {
        let mut buffer = self.lock();
        let room = buffer.capacity.saturating_sub(buffer.bytes.len());
        if data.len() > room {
            buffer.truncated = true;
        }
        buffer.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }

    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait]
impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.push(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
