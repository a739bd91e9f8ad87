//! Sinks: tasks that write rendered outcomes.
//!
//! The driver renders outcomes into a buffer per sink target and sends full
//! buffers over a bounded channel to the target's task, so a slow sink slows
//! the driver instead of growing memory. Sinks of the same target (two
//! `stdout` sinks) share one task, keeping their lines in outcome order.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Where output goes; the CLI passes the process's streams, tests and
/// embedders pass their own.
pub struct Outputs {
    /// What `type: stdout` sinks write to.
    pub stdout: Box<dyn AsyncWrite + Send + Unpin>,
}

impl Outputs {
    /// The process's standard output.
    pub fn stdio() -> Self {
        Self {
            stdout: Box::new(tokio::io::stdout()),
        }
    }
}

/// Bytes to collect before handing a buffer to a sink task.
pub(crate) const FLUSH_AT: usize = 64 * 1024;

/// Buffers a sink task may have queued.
const QUEUE: usize = 4;

/// Starts the task writing to `out`; returns the channel to it.
pub(crate) fn spawn(
    mut out: Box<dyn AsyncWrite + Send + Unpin>,
) -> (
    mpsc::Sender<Vec<u8>>,
    tokio::task::JoinHandle<io::Result<()>>,
) {
    let (sender, mut receiver) = mpsc::channel::<Vec<u8>>(QUEUE);
    let task = tokio::spawn(async move {
        while let Some(chunk) = receiver.recv().await {
            out.write_all(&chunk).await?;
        }
        out.flush().await
    });
    (sender, task)
}

/// An in-memory output that can be read after the run: for tests and for
/// embedding `runner` in another program.
#[derive(Clone, Debug, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far, as text (invalid UTF-8 replaced).
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl AsyncWrite for SharedBuffer {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
