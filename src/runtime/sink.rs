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

use crate::config::SinkKind;
use crate::plan::SinkNode;

/// Something a sink task writes to.
pub(crate) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Where output goes: the process's streams for the CLI, a writer of the
/// caller's, or one buffer per sink for tests.
pub struct Outputs {
    targets: Targets,
    /// Whether the run keeps every outcome in [`Summary::log`](super::Summary::log).
    log: bool,
}

enum Targets {
    /// `type: stdout` sinks share this writer.
    Stdout(Writer),
    /// Every sink writes to its own buffer, by sink index.
    Capture(Vec<SharedBuffer>),
}

impl Outputs {
    /// The process's standard output.
    pub fn stdio() -> Self {
        Self::stdout_to(tokio::io::stdout())
    }

    /// `type: stdout` sinks write to `writer` instead of standard output.
    pub fn stdout_to(writer: impl AsyncWrite + Send + Unpin + 'static) -> Self {
        Self {
            targets: Targets::Stdout(Box::new(writer)),
            log: false,
        }
    }

    /// Every one of `sinks` sinks writes to a buffer of its own, returned
    /// here by sink index.
    pub fn capture(sinks: usize) -> (Self, Vec<SharedBuffer>) {
        let buffers: Vec<SharedBuffer> = (0..sinks).map(|_| SharedBuffer::new()).collect();
        (
            Self {
                targets: Targets::Capture(buffers.clone()),
                log: false,
            },
            buffers,
        )
    }

    /// The same outputs, and the run keeps a copy of every outcome.
    #[must_use]
    pub fn with_log(self) -> Self {
        Self { log: true, ..self }
    }

    pub(crate) fn logs(&self) -> bool {
        self.log
    }

    /// Opens a target per distinct destination of `sinks`; returns each
    /// target's name and writer, and the target of each sink.
    pub(crate) fn open(self, sinks: &[SinkNode]) -> (Vec<(String, Writer)>, Vec<usize>) {
        match self.targets {
            Targets::Stdout(writer) => {
                let targets = sinks
                    .iter()
                    .map(|sink| match sink.kind {
                        SinkKind::Stdout => 0,
                    })
                    .collect();
                (vec![("stdout".to_string(), writer)], targets)
            }
            Targets::Capture(buffers) => {
                let targets = sinks
                    .iter()
                    .zip(buffers)
                    .map(|(sink, buffer)| (sink.name.clone(), Box::new(buffer) as Writer))
                    .collect();
                (targets, (0..sinks.len()).collect())
            }
        }
    }
}

/// Bytes to collect before handing a buffer to a sink task.
pub(crate) const FLUSH_AT: usize = 64 * 1024;

/// Buffers a sink task may have queued.
const QUEUE: usize = 4;

/// Starts the task writing to `out`; returns the channel to it.
pub(crate) fn spawn(
    mut out: Writer,
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
