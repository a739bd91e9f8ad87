//! Sources: read records, assign event times and keys, and send events to
//! the driver in batches.
//!
//! Each source owns the sending half of a bounded channel; the driver owns
//! the receiving half. Inline records are sent by a tokio task. Files and
//! standard input are read and decoded on a thread of their own, so
//! parsing runs beside the matching and a blocking read blocks no one else.
//! A line that cannot be read becomes a [`Malformed`] item in its place
//! among the events. A source ends by dropping its sender, which the driver
//! sees as the end of that input.

mod kafka;
mod lines;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use tokio::sync::mpsc;

use super::error::RunError;
use super::event::{Event, Key};
use super::operator::Malformed;
use super::returns::{self, Returned};
use crate::checkpoint::InputPosition;
use crate::codec::{Decoder, Line};
use crate::config::Format;
use crate::diagnostic::Span;
use crate::expr::{Env, EvalError, Record, Value};
use crate::plan::{Bound, InlineRecord, Input, Side, SourceNode};
use crate::runtime::Instance;
use crate::time::EventTime;
pub(crate) use kafka::{GroupOffsets, fatal};
pub(crate) use lines::Head;
use lines::{Lines, MAX_LINE, Origin, Start, Step};

/// Events per batch: large enough to make channel traffic cheap, small
/// enough to keep the driver's buffers small.
pub(crate) const BATCH: usize = 1024;

/// How long a followed source waits at the end of its files before
/// looking again.
const POLL: StdDuration = StdDuration::from_millis(100);

/// How much of a malformed line its outcome carries.
const MAX_RAW: usize = 4096;

/// One thing a source read, and where it ended.
#[derive(Debug)]
pub(crate) enum Item {
    /// A record, timestamped and keyed.
    Event(Event, At),
    /// A line that is not a record.
    Malformed(Malformed, At),
}

impl Item {
    /// Where the item ended in its input.
    pub(crate) fn at(&self) -> At {
        match self {
            Self::Event(_, at) | Self::Malformed(_, at) => *at,
        }
    }
}

/// Where an item ended in its input: for a file, the byte after its line
/// and the line's number; for inline records, the record's number (in
/// both); for a Kafka message, the offset after it and its partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct At {
    pub(crate) offset: u64,
    pub(crate) line: u64,
}

/// Items a source read from one file (`-` for standard input and fed
/// lines, empty for inline records), in order.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) file: Arc<str>,
    /// The file's head as far as it was read, where there is a file.
    pub(crate) head: Option<Head>,
    pub(crate) items: Vec<Item>,
    /// For a source that tracks its watermark per partition (Kafka): after
    /// each item, the least newest event time over its partitions, which
    /// its watermark follows; and after them all, for a chunk with no
    /// items (a partition fell idle).
    pub(crate) frontiers: Vec<Option<EventTime>>,
    pub(crate) frontier: Option<EventTime>,
}

/// What a source sends: a chunk of items, or the error that stopped it.
pub(crate) type Batch = Result<Chunk, RunError>;

/// A source ready to run: its files listed, or its stream chosen.
pub(crate) struct Opened {
    source: SourceNode,
    input: Opening,
    /// Bytes read so far.
    pub(crate) read: Arc<AtomicU64>,
    /// Bytes there are to read, when that is known at the start.
    pub(crate) size: Option<u64>,
}

enum Opening {
    /// The records, and how many of them a resumed run skips.
    Inline(Vec<InlineRecord>, usize),
    /// Lines, and where a resumed run starts in them.
    Lines(Origin, Format, Option<Start>),
    /// Lines sent by the program that runs the pipeline.
    Fed(mpsc::Receiver<String>, Format),
    /// Messages of a Kafka topic.
    Kafka(kafka::Consumer, Format),
}

/// Lines for a source, sent by the program running the pipeline in place
/// of the source's own input.
pub(crate) type Feed = mpsc::Receiver<String>;

impl Opened {
    /// Whether its records go back to its thread to be freed
    /// ([`returns`](crate::runtime::returns)): a file's or a Kafka
    /// topic's thread, which reads until the input ends.
    pub(crate) fn takes_back(&self) -> bool {
        matches!(self.input, Opening::Lines(..) | Opening::Kafka(..))
    }

    /// The source's name.
    pub(crate) fn name(&self) -> &str {
        &self.source.name
    }

    /// How far its watermark trails its newest event time.
    pub(crate) fn watermark_lag(&self) -> crate::time::Duration {
        self.source.watermark_lag
    }

    /// After how long without events it is idle.
    pub(crate) fn idle_timeout(&self) -> Option<StdDuration> {
        self.source
            .idle_timeout
            .map(|timeout| StdDuration::from_millis(timeout.millis().unsigned_abs()))
    }

    /// Whether its records are written in the pipeline.
    pub(crate) fn is_inline(&self) -> bool {
        matches!(self.input, Opening::Inline(..))
    }

    /// A Kafka source's offsets in its group: what was read, and commits.
    pub(crate) fn offsets(&self) -> Option<GroupOffsets> {
        match &self.input {
            Opening::Kafka(consumer, _) => Some(consumer.offsets()),
            _ => None,
        }
    }
}

/// Checks that every source of a pipeline whose partitions processes
/// share reads Kafka: each process would read a file whole.
///
/// # Errors
///
/// The first source that does not, located at its path where it has one.
pub(crate) fn shareable(sources: &[SourceNode], instance: Instance) -> Result<(), RunError> {
    match instance.count() {
        Some(_) if !instance.is_shared() => Ok(()),
        Some(_) => only_kafka(sources, &format!("`--instance {instance}`")),
        None => only_kafka(sources, "`--join`"),
    }
}

/// Checks that every source reads Kafka, for processes that share the
/// partitions `how` (`--join`).
///
/// # Errors
///
/// The first source that does not, located at its path where it has one.
pub(crate) fn only_kafka(sources: &[SourceNode], how: &str) -> Result<(), RunError> {
    match sources
        .iter()
        .find(|source| !matches!(source.input, Input::Kafka(_)))
    {
        Some(source) => Err(RunError::Shared {
            message: format!(
                "source `{}` does not read Kafka: with {how}, every process would read all of \
                 it; processes share Kafka partitions only",
                source.name,
            ),
            span: match &source.input {
                Input::Files { span, .. } => Some(*span),
                _ => None,
            },
        }),
        None => Ok(()),
    }
}

/// How many partitions each connected Kafka topic has, asked of the
/// brokers, when they have as many each; `None` without Kafka sources.
/// Processes that share the partitions check that they can: the topics
/// have as many partitions each, at least one for this instance. A process
/// alone reads them however they are partitioned (then `None`), and its
/// checkpoints keep the count for processes that take its keys over later.
///
/// # Errors
///
/// For shared processes, topics partitioned differently, a topic that
/// cannot be read, or more instances than partitions, located at the topic
/// in the pipeline file; for a process alone, a topic that cannot be read.
pub(crate) fn co_partitioned(
    sources: &[Opened],
    instance: Instance,
) -> Result<Option<usize>, RunError> {
    let shared = instance.is_shared();
    let mut first: Option<(&str, &str, usize)> = None;
    let mut alike = true;
    for source in sources {
        let name = source.name();
        let Opening::Kafka(consumer, _) = &source.input else {
            continue;
        };
        let topic = consumer.topic();
        let located = |message: String| RunError::Shared {
            message: format!(
                "kafka topic `{}` of source `{name}`: {message}",
                topic.value
            ),
            span: Some(topic.span),
        };
        let count = match consumer.partition_ids() {
            Ok(ids) => ids.len(),
            Err(message) if shared => return Err(located(message)),
            // As the source would say it, reading.
            Err(message) => {
                return Err(RunError::Read {
                    input: name.to_string(),
                    file: format!("kafka topic {}", topic.value),
                    error: std::io::Error::other(message),
                });
            }
        };
        if let Some((other, other_topic, partitions)) = first
            && partitions != count
        {
            if !shared {
                alike = false;
                continue;
            }
            return Err(located(format!(
                "it has {count} partitions, but topic `{other_topic}` of source `{other}` has \
                 {partitions}: instances share partitions by number, so the connected topics \
                 must be co-partitioned (as many partitions each, a key sent to the same \
                 partition of each)"
            )));
        }
        if let Some(of) = instance.dealt_of()
            && usize::try_from(of).ok() != Some(count)
        {
            return Err(located(format!(
                "it has {count} partitions, but had {of} when the consumer group dealt this \
                 process {instance}"
            )));
        }
        if shared && instance.range(count).is_empty() {
            return Err(located(format!(
                "instance {instance} has none of its {count} partitions to read: run at most \
                 {count} instances"
            )));
        }
        first.get_or_insert((name, &topic.value, count));
    }
    Ok(first.filter(|_| alike).map(|(_, _, count)| count))
}

/// Lists the files `source` reads, resolving relative paths against
/// `base`, or makes its Kafka consumer. Files that are followed may appear
/// later; others must exist now. `fresh` runs start over, also where a
/// Kafka group has committed offsets.
///
/// # Errors
///
/// A path that names no file, or a glob that matches none; a Kafka client
/// property librdkafka does not take.
pub(crate) fn open(
    mut source: SourceNode,
    base: &Path,
    feed: Option<Feed>,
    resume: Option<&InputPosition>,
    fresh: bool,
    instance: Instance,
) -> Result<Opened, RunError> {
    let input = std::mem::replace(&mut source.input, Input::Inline(Vec::new()));
    if let Some(feed) = feed {
        let format = match input {
            Input::Files { format, .. } | Input::Stdin { format } => format,
            Input::Kafka(kafka) => kafka.format,
            Input::Inline(_) => Format::Jsonl,
        };
        return Ok(Opened {
            source,
            input: Opening::Fed(feed, format),
            read: Arc::new(AtomicU64::new(0)),
            size: None,
        });
    }
    // A source that had ended reads nothing more; one that had read some
    // starts after it.
    let ended = resume.is_some_and(|position| position.finished);
    let from = resume
        .filter(|position| !position.finished)
        .and_then(|position| Some((position.file.as_deref()?, position)));
    let (input, size) = match input {
        Input::Inline(records) => {
            let skip = match (ended, from) {
                (true, _) => records.len(),
                (false, Some((_, position))) => {
                    usize::try_from(position.offset).unwrap_or(usize::MAX)
                }
                (false, None) => 0,
            };
            (Opening::Inline(records, skip), None)
        }
        Input::Stdin { format } => (Opening::Lines(Origin::Stdin, format, None), None),
        Input::Kafka(kafka) => {
            let resume = resume.map_or_else(Vec::new, |position| position.partitions.clone());
            let consumer = kafka::Consumer::open(&source.name, &kafka, resume, fresh, instance)?;
            (Opening::Kafka(consumer, kafka.format), None)
        }
        Input::Files {
            path,
            span,
            format,
            follow,
        } => {
            let glob = path.contains(['*', '?', '[']);
            let pattern = resolve(base, &path, glob);
            let start = from.map(|(file, position)| Start {
                path: file.into(),
                head: position.file_head,
                offset: position.offset,
                line: position.line,
            });
            if follow {
                (
                    Opening::Lines(Origin::Follow { pattern, glob }, format, start),
                    None,
                )
            } else if ended {
                (
                    Opening::Lines(Origin::Files(Vec::new()), format, None),
                    Some(0),
                )
            } else {
                let (files, size) = existing_files(pattern, glob, span)?;
                if let Some(start) = &start {
                    resumable(&source.name, &files, start)?;
                }
                (
                    Opening::Lines(Origin::Files(files), format, start),
                    Some(size),
                )
            }
        }
    };
    Ok(Opened {
        source,
        input,
        read: Arc::new(AtomicU64::new(0)),
        size,
    })
}

/// The files a source that is not followed reads, which must exist now, and
/// their total size.
fn existing_files(
    pattern: String,
    glob: bool,
    span: Span,
) -> Result<(Vec<PathBuf>, u64), RunError> {
    let files = if glob {
        let files = lines::matches(&pattern).map_err(|error| RunError::Open {
            path: pattern.clone(),
            span,
            message: error.to_string(),
        })?;
        if files.is_empty() {
            return Err(RunError::Open {
                message: "no file matches it".to_string(),
                path: pattern,
                span,
            });
        }
        files
    } else {
        vec![pattern.into()]
    };
    let mut size = 0;
    for file in &files {
        let metadata = std::fs::metadata(file)
            .and_then(|metadata| {
                if metadata.is_dir() {
                    Err(std::io::Error::other("it is a directory"))
                } else {
                    Ok(metadata)
                }
            })
            .map_err(|error| RunError::Open {
                path: file.display().to_string(),
                span,
                message: error.to_string(),
            })?;
        size += metadata.len();
    }
    Ok((files, size))
}

/// Checks that a resumed source's files still hold what it had read: the
/// file it was in is still among them, at least as long as it was.
fn resumable(source: &str, files: &[PathBuf], start: &Start) -> Result<(), RunError> {
    let shown = start.path.display();
    if !files.contains(&start.path) {
        return Err(RunError::Checkpoint(format!(
            "source `{source}` was reading `{shown}` at the checkpoint, and its path no longer names it"
        )));
    }
    if let Some((crc, length)) = start.head {
        let now = std::fs::File::open(&start.path)
            .ok()
            .and_then(|file| lines::head(&file, u64::from(length)));
        if now != Some((crc, length)) {
            return Err(RunError::Checkpoint(format!(
                "source `{source}` was reading `{shown}` at the checkpoint, and it begins differently now: \
                 it was replaced since; run with --fresh to start over (every output is then written anew)"
            )));
        }
    }
    let length = std::fs::metadata(&start.path).map_or(0, |m| m.len());
    if length < start.offset {
        return Err(RunError::Checkpoint(format!(
            "source `{source}` had read {} bytes of `{shown}` at the checkpoint, and it now has {length}: \
             it was changed since",
            start.offset
        )));
    }
    Ok(())
}

/// `path` relative to `base`, as a glob pattern when `glob` (so that
/// `base` is matched literally).
fn resolve(base: &Path, path: &str, glob: bool) -> String {
    if Path::new(path).is_absolute() || base.as_os_str().is_empty() {
        return path.to_string();
    }
    let base = base.to_string_lossy();
    let base = if glob {
        glob::Pattern::escape(&base)
    } else {
        base.into_owned()
    };
    Path::new(&base).join(path).to_string_lossy().into_owned()
}

impl Opened {
    /// Starts reading, sending on `events` until the input ends, `stop`
    /// is set, or the driver hangs up; freeing what comes back on
    /// `returned`.
    pub(crate) fn spawn(
        self,
        events: mpsc::Sender<Batch>,
        stop: Arc<AtomicBool>,
        returned: Option<Returned>,
    ) {
        let idle_timeout = self.idle_timeout();
        let Self {
            source,
            input,
            read,
            ..
        } = self;
        let record_time = matches!(input, Opening::Kafka(..)) && source.event_time.is_none();
        let assign = Assign::new(source, record_time);
        match input {
            Opening::Inline(records, skip) => {
                tokio::spawn(inline(assign, records, skip, events));
            }
            Opening::Lines(origin, format, start) => {
                let mut decoder = Decoder::new(&format, assign.layout.clone());
                let mut lines = Lines::new(origin, read);
                if let Some(start) = start {
                    lines.start_at(start);
                    // Resuming inside a CSV file: its header says where
                    // the columns are.
                    if decoder.reads_header()
                        && let Some(header) = lines.start_header()
                    {
                        decoder.start_file();
                        let _ = decoder.decode(&String::from_utf8_lossy(&header));
                    }
                }
                let name = format!("source {}", assign.name);
                let failed = events.clone();
                let reader = move || {
                    read_lines(&assign, lines, decoder, &events, &stop, returned.as_ref());
                };
                if let Err(error) = std::thread::Builder::new().name(name).spawn(reader) {
                    // Without a thread the source cannot be read; the run
                    // stops with the reason.
                    let _ = failed.try_send(Err(RunError::Start(error)));
                }
            }
            Opening::Fed(feed, format) => {
                let decoder = Decoder::new(&format, assign.layout.clone());
                tokio::spawn(fed(assign, feed, decoder, events));
            }
            Opening::Kafka(mut consumer, format) => {
                consumer.count_bytes_in(read);
                let decoder = Decoder::new(&format, assign.layout.clone());
                let name = format!("source {}", assign.name);
                let failed = events.clone();
                let reader = move || {
                    kafka::read(
                        &assign,
                        &consumer,
                        decoder,
                        idle_timeout,
                        &events,
                        &stop,
                        returned.as_ref(),
                    );
                };
                if let Err(error) = std::thread::Builder::new().name(name).spawn(reader) {
                    let _ = failed.try_send(Err(RunError::Start(error)));
                }
            }
        }
    }
}

/// Sends inline records. An event time or key that fails stops the run:
/// the record is in the pipeline file, so that is where the error points.
async fn inline(
    assign: Assign,
    records: Vec<InlineRecord>,
    skip: usize,
    events: mpsc::Sender<Batch>,
) {
    let file: Arc<str> = Arc::from("");
    let chunk = |items| {
        Ok(Chunk {
            file: file.clone(),
            head: None,
            items,
            frontiers: Vec::new(),
            frontier: None,
        })
    };
    let mut batch = Vec::with_capacity(BATCH.min(records.len()));
    for (index, inline) in records.into_iter().enumerate().skip(skip) {
        let number = index as u64 + 1;
        let at = At {
            offset: number,
            line: number,
        };
        match assign.event(inline.record, None) {
            Ok(event) => batch.push(Item::Event(event, at)),
            Err(failure) => {
                // The driver stops at the error; nothing after it is read.
                let _ = events.send(chunk(std::mem::take(&mut batch))).await;
                let _ = events.send(Err(failure.into_error(inline.span))).await;
                return;
            }
        }
        if batch.len() == BATCH
            && events
                .send(chunk(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(BATCH),
                )))
                .await
                .is_err()
        {
            return;
        }
    }
    if !batch.is_empty() {
        let _ = events.send(chunk(batch)).await;
    }
}

/// Sends what is fed, as it comes: each line is numbered in the order fed,
/// and its file is `-`.
async fn fed(assign: Assign, mut feed: Feed, mut decoder: Decoder, events: mpsc::Sender<Batch>) {
    let file: Arc<str> = Arc::from("-");
    let mut number = 0;
    while let Some(first) = feed.recv().await {
        let mut batch = Vec::new();
        let mut line = Some(first);
        while let Some(text) = line.take() {
            number += 1;
            let at = Place {
                file: &file,
                at: At {
                    offset: number,
                    line: number,
                },
                raw: text.as_bytes(),
                line: number,
            };
            batch.extend(assign.item(&mut decoder, &text, &at));
            if batch.len() < BATCH {
                line = feed.try_recv().ok();
            }
        }
        let chunk = Chunk {
            file: file.clone(),
            head: None,
            items: batch,
            frontiers: Vec::new(),
            frontier: None,
        };
        if events.send(Ok(chunk)).await.is_err() {
            return;
        }
    }
}

/// Reads lines until the input ends or the run stops. A line that cannot
/// be decoded, or whose event time or key cannot be evaluated, is sent as
/// malformed; an input that cannot be read stops the run.
fn read_lines(
    assign: &Assign,
    mut lines: Lines,
    mut decoder: Decoder,
    events: &mpsc::Sender<Batch>,
    stop: &AtomicBool,
    returned: Option<&Returned>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    // The file being read, and its head as far as the lines in the batch.
    let mut file = (lines.file(), lines.head());
    let send = |batch: &mut Vec<Item>, (file, head): &(Arc<str>, Option<Head>)| -> bool {
        returns::free(returned);
        batch.is_empty()
            || events
                .blocking_send(Ok(Chunk {
                    file: file.clone(),
                    head: *head,
                    items: std::mem::replace(batch, Vec::with_capacity(BATCH)),
                    frontiers: Vec::new(),
                    frontier: None,
                }))
                .is_ok()
    };
    while !stop.load(Ordering::Relaxed) {
        match lines.next() {
            Ok(Step::Line) => {
                file.1 = lines.head();
                batch.extend(read_line(assign, &lines, &mut decoder));
                if batch.len() == BATCH && !send(&mut batch, &file) {
                    return;
                }
            }
            Ok(opened @ (Step::Started | Step::Resumed)) => {
                // A chunk is of one file.
                if !send(&mut batch, &file) {
                    return;
                }
                file = (lines.file(), lines.head());
                if opened == Step::Started {
                    decoder.start_file();
                }
            }
            Ok(Step::Flush) => {
                if !send(&mut batch, &file) {
                    return;
                }
            }
            Ok(Step::Waiting) => {
                if !send(&mut batch, &file) || events.is_closed() {
                    return;
                }
                std::thread::sleep(POLL);
            }
            Ok(Step::End) => break,
            Err((failed, error)) => {
                send(&mut batch, &file);
                let _ = events.blocking_send(Err(RunError::Read {
                    input: assign.name.to_string(),
                    file: failed.to_string(),
                    error,
                }));
                return;
            }
        }
    }
    send(&mut batch, &file);
}

/// The item one line makes; none for a CSV header.
fn read_line(assign: &Assign, lines: &Lines, decoder: &mut Decoder) -> Option<Item> {
    let file = lines.file();
    let at = Place {
        file: &file,
        at: At {
            offset: lines.offset(),
            line: lines.number(),
        },
        raw: lines.line(),
        line: lines.number(),
    };
    if lines.too_long() {
        let reason = format!("the line is longer than {MAX_LINE} bytes");
        return Some(assign.malformed(&at, reason));
    }
    let Ok(text) = std::str::from_utf8(lines.line()) else {
        return Some(assign.malformed(&at, "the line is not UTF-8 text".to_string()));
    };
    assign.item(decoder, text, &at)
}

/// Where a line was read.
struct Place<'a> {
    file: &'a Arc<str>,
    at: At,
    /// The line as read.
    raw: &'a [u8],
    /// Its number in reports: the line's, or a Kafka message's offset.
    line: u64,
}

/// The start of a bad line as text, for its report.
fn raw(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(MAX_RAW)]);
    if line.len() > MAX_RAW {
        format!("{text}…")
    } else {
        text.into_owned()
    }
}

/// A source's timestamp assigner and key-by.
struct Assign {
    name: Arc<str>,
    side: Side,
    layout: Arc<crate::expr::RecordType>,
    /// `None` with processing time: the driver stamps arrivals.
    event_time: Option<Bound>,
    /// Whether, without an `event_time`, a record's time is its Kafka
    /// message's timestamp.
    record_time: bool,
    key: Bound,
}

/// An event time or key that could not be evaluated on a record.
struct Failure<'a> {
    what: &'static str,
    source: &'a str,
    bound: &'a Bound,
    error: EvalError,
}

impl Assign {
    fn new(source: SourceNode, record_time: bool) -> Self {
        Self {
            name: Arc::from(source.name.as_str()),
            side: source.side,
            layout: source.layout,
            event_time: source.event_time,
            record_time,
            key: source.key,
        }
    }

    /// The item a line of text makes: an event, or a malformed line; none
    /// for a CSV header.
    fn item(&self, decoder: &mut Decoder, text: &str, at: &Place<'_>) -> Option<Item> {
        self.item_at(decoder, text, at, None)
    }

    /// The item a line of text that came at `time` (a Kafka message's
    /// timestamp) makes.
    fn item_at(
        &self,
        decoder: &mut Decoder,
        text: &str,
        at: &Place<'_>,
        time: Option<EventTime>,
    ) -> Option<Item> {
        if self.record_time && time.is_none() {
            return Some(self.malformed(at, "the message has no timestamp".to_string()));
        }
        Some(match decoder.decode(text) {
            Ok(Line::Record(record)) => match self.event(record, time) {
                Ok(event) => Item::Event(event, at.at),
                Err(failure) => self.malformed(at, failure.reason()),
            },
            Ok(Line::Header) => return None,
            Err(reason) => self.malformed(at, reason),
        })
    }

    /// The line at `at`, malformed for `reason`.
    fn malformed(&self, at: &Place<'_>, reason: String) -> Item {
        Item::Malformed(
            Malformed {
                source: self.name.clone(),
                file: at.file.clone(),
                line: at.line,
                raw: raw(at.raw),
                reason,
            },
            at.at,
        )
    }

    /// The event of one record, which came at `came` (a Kafka message's
    /// timestamp) if that is known.
    fn event(&self, record: Record, came: Option<EventTime>) -> Result<Event, Failure<'_>> {
        let slots = [Some(record)];
        let env = Env::records(&slots);
        let failed = |what, bound, error| Failure {
            what,
            source: &self.name,
            bound,
            error,
        };
        let time = match &self.event_time {
            None => came.unwrap_or(EventTime::from_millis(0)),
            // The usual event time and key, fields of the record, are read
            // in place.
            Some(event_time) => match event_time.compiled.read(&env) {
                Ok(value) => match *value {
                    Value::Int(ms) => EventTime::from_millis(ms),
                    Value::Timestamp(time) => time,
                    ref other => {
                        let error = EvalError::new(
                            format!("it gave `{other}`, not a time"),
                            event_time.expr.span,
                        );
                        return Err(failed("the `event_time`", event_time, error));
                    }
                },
                Err(error) => return Err(failed("the `event_time`", event_time, error)),
            },
        };
        let key = match self.key.compiled.read(&env) {
            Ok(key) => Key::new(key.into_owned()),
            Err(error) => return Err(failed("the key", &self.key, error)),
        };
        let [Some(record)] = slots else {
            unreachable!("the slot was filled above and only read since")
        };
        Ok(Event {
            side: self.side,
            time,
            key,
            record,
            partition: None,
        })
    }
}

impl Failure<'_> {
    /// The error that stops a run, for a record written at `record`.
    fn into_error(self, record: Span) -> RunError {
        RunError::Eval {
            message: format!(
                "cannot evaluate {} of `{}` for a record: {}",
                self.what, self.source, self.error
            ),
            failing: self.bound.file_span(self.error.span),
            record: Some(record),
        }
    }

    /// Why a line is malformed.
    fn reason(&self) -> String {
        format!("{} of `{}` failed: {}", self.what, self.source, self.error)
    }
}
