//! Sinks: threads that write rendered outcomes.
//!
//! The driver renders outcomes into a buffer per sink target and sends full
//! buffers over a bounded channel to the target's thread, so a slow sink
//! slows the driver instead of growing memory. The thread writes each
//! buffer with plain blocking writes and hands it back, emptied, for the
//! driver to fill again. Sinks of the same target (two `stdout` sinks)
//! share one thread, keeping their lines in outcome order.
//! File sinks are created (or replaced) when the run starts, with their
//! directories, after every input is found: a run that cannot start leaves
//! the files of the last run as they were.

mod kafka;

pub(crate) use kafka::{Onlooker, Settling, Snapshot, StateTopic, Transactions};

use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};

use super::error::RunError;
use super::operator::Outcome;
use super::returns::{Returns, Ways};
use super::router::Router;
use crate::checkpoint::SinkLength;
use crate::config::{SinkKind, Spanned};
use crate::plan::SinkNode;

/// Something a sink thread writes to.
pub(crate) type Writer = Box<dyn Write + Send>;

/// Where output goes: the process's streams for the CLI, a writer of the
/// caller's, or one buffer per sink for tests.
pub struct Outputs {
    targets: Targets,
    /// Whether the run keeps every outcome in [`Summary::log`](super::Summary::log).
    log: bool,
}

enum Targets {
    /// `stdout` sinks share the first writer, `stderr` sinks the second;
    /// file sinks write to their files.
    Streams(Writer, Writer),
    /// Every sink writes to its own buffer, by sink index.
    Capture(Vec<SharedBuffer>),
}

impl Outputs {
    /// The process's standard output and error, and files.
    pub fn stdio() -> Self {
        Self::streams(io::stdout(), io::stderr())
    }

    /// `type: stdout` sinks write to `writer` instead of standard output.
    pub fn stdout_to(writer: impl Write + Send + 'static) -> Self {
        Self::streams(writer, io::stderr())
    }

    /// `type: stdout` sinks write to `stdout`, `type: stderr` sinks to
    /// `stderr`, and file sinks to their files.
    pub fn streams(
        stdout: impl Write + Send + 'static,
        stderr: impl Write + Send + 'static,
    ) -> Self {
        Self {
            targets: Targets::Streams(Box::new(stdout), Box::new(stderr)),
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

    /// Opens a target per distinct destination of `sinks`, creating files
    /// at paths relative to `base`, or, for a resumed run, cutting them back
    /// to the lengths in `resume`; returns each target's name and writer,
    /// and the target of each sink.
    ///
    /// # Errors
    ///
    /// A file that cannot be created, or that is shorter than the
    /// checkpoint says it was.
    pub(crate) fn open(
        self,
        sinks: &[SinkNode],
        base: &Path,
        resume: &[SinkLength],
        transactions: Option<&std::sync::Arc<Transactions>>,
    ) -> Result<Opened, RunError> {
        match self.targets {
            Targets::Streams(stdout, stderr) => {
                // Each stream is a target once, for every sink that uses it.
                let mut streams: [(&str, Option<Writer>, Option<usize>); 2] = [
                    ("stdout", Some(stdout), None),
                    ("stderr", Some(stderr), None),
                ];
                let mut targets: Vec<(String, Destination)> = Vec::new();
                let mut target_of = Vec::with_capacity(sinks.len());
                for sink in sinks {
                    let stream = match &sink.kind {
                        SinkKind::Stdout => &mut streams[0],
                        SinkKind::Stderr => &mut streams[1],
                        SinkKind::File { path, .. } => {
                            let file = open_file(&sink.name, base, path, resume)?;
                            targets.push((
                                format!("{} ({})", sink.name, file.path),
                                Destination::File(file),
                            ));
                            target_of.push(targets.len() - 1);
                            continue;
                        }
                        SinkKind::Kafka(config) => {
                            let producer = kafka::Producer::open(&sink.name, config, transactions)?;
                            targets.push((
                                format!("{} (kafka topic {})", sink.name, config.topic.value),
                                Destination::Kafka(producer),
                            ));
                            target_of.push(targets.len() - 1);
                            continue;
                        }
                    };
                    let (name, writer, index) = stream;
                    let target = match (*index, writer.take()) {
                        (Some(target), _) => target,
                        (None, writer) => {
                            let writer = writer.unwrap_or_else(|| Box::new(io::sink()));
                            targets.push(((*name).to_string(), Destination::Thread(writer)));
                            targets.len() - 1
                        }
                    };
                    *index = Some(target);
                    target_of.push(target);
                }
                Ok((targets, target_of))
            }
            Targets::Capture(buffers) => {
                // Written by the driver itself, so that what a run has
                // decided is in the buffer as soon as it waits.
                let targets = sinks
                    .iter()
                    .zip(buffers)
                    .map(|(sink, buffer)| {
                        (sink.name.clone(), Destination::Inline(Box::new(buffer)))
                    })
                    .collect();
                Ok((targets, (0..sinks.len()).collect()))
            }
        }
    }
}

/// A file a sink writes.
pub(crate) struct FileSink {
    /// The sink's name.
    pub(crate) sink: String,
    /// The file's path as shown in messages.
    pub(crate) path: String,
    pub(crate) file: std::fs::File,
    /// Its length when opened: what a resumed run keeps.
    pub(crate) length: u64,
}

/// Creates the file a sink writes, and its directory; or, when `resume`
/// has its length, opens it and cuts it back to that length.
fn open_file(
    sink: &str,
    base: &Path,
    path: &Spanned<String>,
    resume: &[SinkLength],
) -> Result<FileSink, RunError> {
    let full = base.join(&path.value);
    let shown = full.display().to_string();
    let failed = |error: io::Error| RunError::Open {
        path: shown.clone(),
        span: path.span,
        message: error.to_string(),
    };
    let kept = resume
        .iter()
        .find(|kept| kept.name == sink && kept.path == shown)
        .map(|kept| kept.length);
    if let Some(length) = kept {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&full)
            .map_err(failed)?;
        let now = file.metadata().map_err(failed)?.len();
        if now < length {
            return Err(RunError::Checkpoint(format!(
                "`{shown}` has {now} bytes, fewer than the {length} it had at the checkpoint: \
                 it was changed since"
            )));
        }
        file.set_len(length).map_err(failed)?;
        let mut file = file;
        io::Seek::seek(&mut file, io::SeekFrom::End(0)).map_err(failed)?;
        return Ok(FileSink {
            sink: sink.to_string(),
            path: shown,
            file,
            length,
        });
    }
    if let Some(parent) = full.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let file = create_empty(&full).map_err(failed)?;
    Ok(FileSink {
        sink: sink.to_string(),
        path: shown,
        file,
        length: 0,
    })
}

/// Creates `path` empty. A regular file there with no other name is
/// replaced by a new one with its permissions, rather than truncated: ext4
/// writes out a file that was truncated and written again as it is closed
/// (its safeguard for programs that replace files that way), which held
/// the end of a run writing 1.9 GB up 0.8 s. Anything else (a device, a
/// pipe, a symbolic link, a file with other names, a file in a directory
/// that keeps it) is opened and truncated, as it must be.
#[cfg(unix)]
fn create_empty(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(path) {
        // A directory that does not let the file be removed may still let
        // it be written.
        Ok(old)
            if old.file_type().is_file()
                && old.nlink() == 1
                && std::fs::remove_file(path).is_ok() =>
        {
            let file = std::fs::File::create(path)?;
            file.set_permissions(old.permissions())?;
            Ok(file)
        }
        _ => std::fs::File::create(path),
    }
}

#[cfg(not(unix))]
fn create_empty(path: &Path) -> io::Result<std::fs::File> {
    std::fs::File::create(path)
}

/// Each target's name and writer, and the target of each sink.
pub(crate) type Opened = (Vec<(String, Destination)>, Vec<usize>);

impl Destination {
    /// The same writer, written by a thread of its own.
    pub(crate) fn threaded(self) -> Self {
        match self {
            Self::Inline(writer) => Self::Thread(writer),
            other => other,
        }
    }
}

/// How a target is written.
pub(crate) enum Destination {
    /// By a thread of its own: the process's streams, which may block.
    Thread(Writer),
    /// A file, by a thread of its own, which syncs it for checkpoints.
    File(FileSink),
    /// A Kafka topic, by a thread of its own, which has every record
    /// delivered at checkpoints.
    Kafka(kafka::Producer),
    /// By the driver, as it hands buffers on: in-memory buffers.
    Inline(Writer),
}

/// What a sink thread is sent.
pub(crate) enum Message {
    /// Outcomes to render and write.
    Outcomes(Batch),
    /// A checkpoint: write everything sent before, then answer with the
    /// file's length there and a handle to sync it by (a Kafka sink: once
    /// every record sent is delivered).
    Barrier(oneshot::Sender<Result<Written, RunError>>),
}

/// A file sink's length at a checkpoint's barrier, and a handle to make
/// that much of it durable (syncing takes a while, and need not hold up
/// the writing).
pub(crate) struct Written {
    pub(crate) length: u64,
    /// `None` for a sink that is not a file (a Kafka topic, its records
    /// delivered by the barrier's answer).
    pub(crate) file: Option<std::fs::File>,
}

/// A barrier sent to a file or Kafka sink's thread, to be answered.
pub(crate) struct Barrier {
    pub(crate) sink: String,
    pub(crate) path: String,
    pub(crate) answer: oneshot::Receiver<Result<Written, RunError>>,
}

impl Barrier {
    /// Waits for the thread to reach the barrier, then syncs the file up to
    /// there. Blocks: for a checkpoint's own thread.
    ///
    /// # Errors
    ///
    /// The sink failed, or its file could not be synced.
    pub(crate) fn sync(self) -> Result<Option<SinkLength>, String> {
        let written = match self.answer.blocking_recv() {
            Ok(Ok(written)) => written,
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => return Err(format!("sink `{}` stopped", self.sink)),
        };
        let Some(file) = written.file else {
            return Ok(None);
        };
        file.sync_data()
            .map_err(|error| format!("cannot sync `{}`: {error}", self.path))?;
        Ok(Some(SinkLength {
            name: self.sink,
            path: self.path,
            length: written.length,
        }))
    }
}

/// Bytes a sink collects before writing them.
pub(crate) const FLUSH_AT: usize = 64 * 1024;

/// Buffers a sink thread may have queued.
const QUEUE: usize = 4;

/// Outcomes for a sink thread, each with the route it goes by.
pub(crate) type Batch = Vec<(usize, Outcome)>;

/// A sink target's thread, seen from the driver.
pub(crate) struct SinkThread {
    /// Outcomes to render and write, and barriers.
    pub(crate) messages: mpsc::Sender<Message>,
    /// Batches rendered and emptied, to fill again.
    pub(crate) spare: std::sync::mpsc::Receiver<Batch>,
    /// How the writing ended, once the channel is closed.
    pub(crate) done: oneshot::Receiver<Result<(), RunError>>,
}

/// What a sink thread writes to.
struct Output {
    writer: Writer,
    /// For a file: a handle to sync it, and its length so far.
    file: Option<(std::fs::File, u64)>,
}

impl Output {
    fn write(&mut self, buffer: &mut Vec<u8>) -> io::Result<()> {
        self.writer.write_all(buffer)?;
        if let Some((_, length)) = &mut self.file {
            *length += buffer.len() as u64;
        }
        buffer.clear();
        Ok(())
    }
}

/// Starts the thread that renders outcomes by `router` and writes them to
/// `destination`, after `header`; `name` names the target in errors.
///
/// # Errors
///
/// A thread that cannot be started.
pub(crate) fn spawn(
    name: String,
    destination: Destination,
    router: Arc<Router>,
    header: String,
    ways: Ways,
) -> io::Result<SinkThread> {
    let mut out = match destination {
        Destination::Kafka(producer) => return kafka::spawn(&name, producer, router, ways),
        Destination::Thread(writer) | Destination::Inline(writer) => Output { writer, file: None },
        Destination::File(sink) => {
            let sync = sink.file.try_clone()?;
            Output {
                writer: Box::new(sink.file),
                file: Some((sync, sink.length)),
            }
        }
    };
    let (messages, mut receiver) = mpsc::channel::<Message>(QUEUE);
    // Bounded: a batch nobody takes back (workers make their own) is
    // dropped rather than kept.
    let (give_back, spare) = std::sync::mpsc::sync_channel(QUEUE);
    let (report, done) = oneshot::channel();
    let thread_name = format!("sink {name}");
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let failed = |source: io::Error| RunError::Write {
                sink: name.clone(),
                source,
            };
            let mut buffer = header.into_bytes();
            buffer.reserve(FLUSH_AT + FLUSH_AT / 4);
            let mut returns = Returns::new(ways);
            let mut write = || -> Result<(), RunError> {
                while let Some(message) = receiver.blocking_recv() {
                    let mut batch = match message {
                        Message::Outcomes(batch) => batch,
                        Message::Barrier(answer) => {
                            let written = out
                                .write(&mut buffer)
                                .and_then(|()| out.writer.flush())
                                .and_then(|()| match &out.file {
                                    Some((file, length)) => Ok(Written {
                                        length: *length,
                                        file: Some(file.try_clone()?),
                                    }),
                                    None => Err(io::Error::other("it is not a file")),
                                })
                                .map_err(failed);
                            let stop = written.is_err();
                            let _ = answer.send(written);
                            if stop {
                                return Ok(());
                            }
                            continue;
                        }
                    };
                    for (route, mut outcome) in batch.drain(..) {
                        router.render(route, &outcome, &mut buffer)?;
                        returns.take(&mut outcome);
                        if buffer.len() >= FLUSH_AT {
                            out.write(&mut buffer).map_err(failed)?;
                        }
                    }
                    // Full, or the driver is done: then the batch goes.
                    let _ = give_back.try_send(batch);
                    if receiver.is_empty() {
                        // Nothing more is queued: let it reach its reader now.
                        out.write(&mut buffer).map_err(failed)?;
                        out.writer.flush().map_err(failed)?;
                    }
                }
                out.write(&mut buffer).map_err(failed)?;
                out.writer.flush().map_err(failed)
            };
            let _ = report.send(write());
        })?;
    Ok(SinkThread {
        messages,
        spare,
        done,
    })
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

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Outcomes a sink thread's batch collects before it is sent.
const SEND_AT: usize = 1024;

/// A sink target as the driver holds it: outcomes queued for its thread,
/// or a buffer the driver renders into and writes itself.
pub(crate) struct Target {
    name: String,
    writing: Writing,
}

enum Writing {
    Thread {
        /// The driver's end of the channel to the thread; `None` once
        /// closed, which ends the thread.
        sender: Option<mpsc::Sender<Message>>,
        /// The sink it answers checkpoints' barriers for, if it is a file
        /// or a Kafka topic: its sink, and the file or topic.
        file: Option<(String, String)>,
        /// Outcomes not sent yet.
        pending: Batch,
        /// Batches the thread has emptied, to fill again.
        spare: std::sync::mpsc::Receiver<Batch>,
        /// How the thread's writing ended; `None` once asked.
        done: Option<oneshot::Receiver<Result<(), RunError>>>,
    },
    Inline {
        writer: Writer,
        buffer: Vec<u8>,
    },
}

impl Target {
    /// Starts writing to `destination`, rendering by `router`, after
    /// `header`.
    pub(crate) fn start(
        name: String,
        destination: Destination,
        router: &Arc<Router>,
        header: String,
        ways: Ways,
    ) -> Result<Self, RunError> {
        let writing = match destination {
            Destination::Inline(writer) => Writing::Inline {
                writer,
                buffer: header.into_bytes(),
            },
            destination => {
                let file = match &destination {
                    Destination::File(sink) => Some((sink.sink.clone(), sink.path.clone())),
                    Destination::Kafka(producer) => Some(producer.barrier_names()),
                    _ => None,
                };
                let thread = spawn(name.clone(), destination, router.clone(), header, ways)
                    .map_err(RunError::Start)?;
                Writing::Thread {
                    sender: Some(thread.messages),
                    file,
                    pending: Vec::with_capacity(SEND_AT),
                    spare: thread.spare,
                    done: Some(thread.done),
                }
            }
        };
        Ok(Self { name, writing })
    }

    /// Takes `outcome` for `route`: queued for the thread, or rendered now.
    ///
    /// # Errors
    ///
    /// A template that fails on the outcome, rendered now.
    pub(crate) fn take(
        &mut self,
        router: &Router,
        route: usize,
        outcome: Outcome,
    ) -> Result<(), RunError> {
        match &mut self.writing {
            Writing::Thread { pending, .. } => {
                pending.push((route, outcome));
                Ok(())
            }
            Writing::Inline { buffer, .. } => router.render(route, &outcome, buffer),
        }
    }

    /// A sender to the target's thread, for a worker; `None` for a target
    /// the driver writes itself.
    pub(crate) fn sender(&self) -> Option<mpsc::Sender<Message>> {
        match &self.writing {
            Writing::Thread { sender, .. } => sender.clone(),
            Writing::Inline { .. } => None,
        }
    }

    /// Whether enough is collected to send or write.
    pub(crate) fn full(&self) -> bool {
        match &self.writing {
            Writing::Thread { pending, .. } => pending.len() >= SEND_AT,
            Writing::Inline { buffer, .. } => buffer.len() >= FLUSH_AT,
        }
    }

    /// Sends what is collected to the thread, or writes it.
    ///
    /// # Errors
    ///
    /// The writing failed, now or before.
    pub(crate) async fn send(&mut self) -> Result<(), RunError> {
        match &mut self.writing {
            Writing::Inline { writer, buffer } => {
                if buffer.is_empty() {
                    return Ok(());
                }
                let written = writer.write_all(buffer);
                buffer.clear();
                written.map_err(|source| RunError::Write {
                    sink: self.name.clone(),
                    source,
                })
            }
            Writing::Thread {
                sender,
                pending,
                spare,
                ..
            } => {
                if pending.is_empty() {
                    return Ok(());
                }
                let next = spare
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(SEND_AT));
                let batch = std::mem::replace(pending, next);
                let Some(channel) = sender else {
                    return Ok(());
                };
                if channel.send(Message::Outcomes(batch)).await.is_err() {
                    // The thread stopped early: its result says why.
                    return self.finish().await;
                }
                Ok(())
            }
        }
    }

    /// For a checkpoint: sends what is collected and, to a file sink's
    /// thread, a barrier, without waiting for it to be reached.
    ///
    /// # Errors
    ///
    /// The writing failed before.
    pub(crate) async fn barrier(&mut self) -> Result<Option<Barrier>, RunError> {
        self.send().await?;
        let Writing::Thread {
            sender: Some(channel),
            file: Some((sink, path)),
            ..
        } = &mut self.writing
        else {
            return Ok(None);
        };
        let (answer, answered) = oneshot::channel();
        let barrier = Barrier {
            sink: sink.clone(),
            path: path.clone(),
            answer: answered,
        };
        if channel.send(Message::Barrier(answer)).await.is_err() {
            // The thread stopped early: its result says why.
            self.finish().await?;
            return Err(RunError::Write {
                sink: barrier.sink,
                source: io::Error::other("its writer stopped"),
            });
        }
        Ok(Some(barrier))
    }

    /// Ends the writing: closes the thread's channel, waits for it, and
    /// reports how the writing ended.
    ///
    /// # Errors
    ///
    /// The writing failed.
    pub(crate) async fn finish(&mut self) -> Result<(), RunError> {
        match &mut self.writing {
            Writing::Inline { writer, .. } => writer.flush().map_err(|source| RunError::Write {
                sink: self.name.clone(),
                source,
            }),
            Writing::Thread { sender, done, .. } => {
                *sender = None;
                let Some(done) = done.take() else {
                    return Ok(());
                };
                done.await.unwrap_or_else(|_| {
                    Err(RunError::Write {
                        sink: self.name.clone(),
                        source: io::Error::other("the writer thread stopped"),
                    })
                })
            }
        }
    }
}
