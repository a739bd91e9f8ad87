//! The driver: one loop that merges the inputs, advances watermarks, feeds
//! the operator and routes what it emits.
//!
//! Inputs are merged in event-time order: the next event is the earliest
//! head among the inputs (ties go to the side listed first), waiting until
//! every input that has neither ended nor gone idle has an event buffered.
//! So a bounded run is deterministic, byte for byte, whatever the tasks'
//! scheduling, and it sees events in the order a live system would have.
//!
//! Processing-time waits stamp each event with the wall-clock time it
//! arrives at the driver, and the watermark is the wall clock: arrivals
//! only grow, so nothing waits for a silent input. Time is read from
//! tokio's clock, which tests pause and advance.
//!
//! An input is idle after its idle timeout passes with nothing received:
//! it no longer holds back the merge or the watermark, until it sends
//! again. When every input that has not ended is idle, the watermark
//! stands still, unless the match declares an idle grace: past it, the
//! watermark follows the wall clock from the newest event time seen, so
//! pending deadlines still fire.

mod checkpointing;
mod layouts;

pub use checkpointing::state_topic_listing;
pub use layouts::other_checkpoints;

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::engine::{Engine, FIRE_BATCH};
use super::error::RunError;
use super::matcher::{Matcher, Rule};
use super::operator::Outcome;
use super::returns::{Returned, Ways};
use super::router::Router;
use super::sink::{Destination, Outputs, Target};
use super::source::{self, At, Batch, Chunk, Head, Item};
use super::watermarks::Watermarks;
use super::{Instance, Progress, SourceSummary, Summary};
use crate::config::{Clock, OutcomeKind, SinkKind};
use crate::plan::Graph;
use crate::time::{EventTime, Watermark};

/// Batches a source may have queued.
const QUEUE: usize = 4;

/// Outcomes the merge lets pile up before handing them to the sinks, while
/// no timer is due.
const ROUTE_AT: usize = 256;

/// How often progress is reported, at most.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// How a run is set up beyond its graph: where relative paths start, when
/// it stops early, what the wall clock reads, who sees its progress.
pub struct Options {
    pub(super) base: PathBuf,
    pub(super) stop: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    pub(super) wall_clock: Option<EventTime>,
    pub(super) progress: Option<ProgressFn>,
    pub(super) feeds: Vec<(String, source::Feed)>,
    pub(super) workers: usize,
    pub(super) instance: Instance,
    /// The state directory, and whether to start fresh.
    pub(super) checkpoints: Option<(PathBuf, bool)>,
}

/// What is told of a run's progress.
type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// Paths relative to the working directory; runs until its inputs end.
    pub fn new() -> Self {
        Self {
            base: PathBuf::new(),
            stop: None,
            wall_clock: None,
            progress: None,
            feeds: Vec::new(),
            workers: 1,
            instance: Instance::ALONE,
            checkpoints: None,
        }
    }

    /// Writes checkpoints under `dir` (when the pipeline has them), and
    /// resumes from the last one there, unless `fresh`: then the state is
    /// cleared and the run starts over.
    #[must_use]
    pub fn checkpoints(self, dir: impl Into<PathBuf>, fresh: bool) -> Self {
        Self {
            checkpoints: Some((dir.into(), fresh)),
            ..self
        }
    }

    /// Matches on `workers` threads, each taking the keys that hash to it:
    /// for machines with cores to spare. Every key's outcomes keep their
    /// order; outcomes of different keys may reach a sink in a different
    /// order from run to run. 1 (the default) matches on the driver's
    /// thread, in an order that is the same on every run.
    #[must_use]
    pub fn workers(self, workers: usize) -> Self {
        Self {
            workers: workers.max(1),
            ..self
        }
    }

    /// Runs as `instance` of the processes sharing the pipeline's Kafka
    /// partitions: it reads its range of every topic's partitions, keeps
    /// its checkpoints in a directory of its own within the state
    /// directory, and writes each file sink's path with its number and
    /// count before the extension (`alerts.2-of-3.jsonl`). The run refuses
    /// sources that are not Kafka and topics not partitioned alike.
    #[must_use]
    pub fn instance(self, instance: Instance) -> Self {
        Self { instance, ..self }
    }

    /// Source `source` reads the lines sent on `lines` instead of its own
    /// input (JSON lines for an inline source, else the source's format),
    /// and ends when the sender is dropped: for embedding the engine in a
    /// program that has the events, and for tests that time them.
    #[must_use]
    pub fn feed(mut self, source: &str, lines: tokio::sync::mpsc::Receiver<String>) -> Self {
        self.feeds.push((source.to_string(), lines));
        self
    }

    /// Relative paths in the pipeline start at `base`: the pipeline file's
    /// directory.
    #[must_use]
    pub fn relative_to(self, base: impl Into<PathBuf>) -> Self {
        Self {
            base: base.into(),
            ..self
        }
    }

    /// The run stops when `stop` completes (Ctrl-C): it stops reading,
    /// handles what it has read, writes everything out, and returns. Keys
    /// still waiting are not timed out: their waits have not run out.
    #[must_use]
    pub fn stop_on(self, stop: impl Future<Output = ()> + Send + 'static) -> Self {
        Self {
            stop: Some(Box::pin(stop)),
            ..self
        }
    }

    /// Polls the stop future once, before the run starts, so that it
    /// listens from then on: a signal it waits for that comes while the
    /// run starts (taking a state directory over, say) stops the run once
    /// it is under way, rather than finding the system's default, which
    /// ends the process at once.
    fn listen(&mut self) {
        if let Some(stop) = &mut self.stop {
            let mut context = std::task::Context::from_waker(std::task::Waker::noop());
            if stop.as_mut().poll(&mut context).is_ready() {
                self.stop = Some(Box::pin(std::future::ready(())));
            }
        }
    }

    /// The wall clock reads `now` when the run starts (and moves with
    /// tokio's clock from there), instead of the system's time.
    #[must_use]
    pub fn wall_clock_at(self, now: EventTime) -> Self {
        Self {
            wall_clock: Some(now),
            ..self
        }
    }

    /// `report` is called with the run's progress every 200ms or so.
    #[must_use]
    pub fn progress(self, report: impl FnMut(&Progress) + Send + 'static) -> Self {
        Self {
            progress: Some(Box::new(report)),
            ..self
        }
    }
}

pub(crate) async fn drive(
    graph: Graph,
    outputs: Outputs,
    mut options: Options,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    options.listen();
    let mut driver = Driver::start(graph, outputs, options)?;
    let sources: Vec<&str> = driver
        .summary
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    tracing::info!(
        sources = %sources.join(", "),
        resumed_from = driver.summary.resumed_from.as_ref().map(|r| r.sequence),
        pending = driver.summary.resumed_from.as_ref().map(|r| r.pending),
        took_over_from = driver.summary.resumed_from.as_ref().and_then(|r| r.of),
        from_state_topic = (driver.summary.resumed_from.as_ref())
            .map(|r| r.from_topic)
            .filter(|&partitions| partitions > 0),
        "run started"
    );
    let mut result = if driver.took_over() {
        // What it took over is its own from now on, and the file sinks'
        // lengths before it writes: kept at once, before anything else.
        driver.checkpoint(true).await
    } else {
        Ok(())
    };
    if result.is_ok() {
        result = driver.run().await;
    }
    driver.stop_sources();
    let transactional = driver.transactional();
    if result.is_ok() && !driver.summary.stopped && !transactional {
        // Read to the end: there is nothing to resume.
        result = driver.finish_checkpoints().await;
    }
    // What was matched is written, also when the run failed.
    if result.is_ok() {
        result = driver.engine.dispatch(true).await;
    }
    let report = driver.engine.finish();
    let summary = &mut driver.summary;
    summary.elapsed = started.elapsed();
    summary.pending_events = report.pending_events;
    summary.pending_keys = report.waiting_keys;
    summary.peak_pending_keys = report.peak_waiting_keys;
    for ((_, count), more) in summary.outcomes.iter_mut().zip(report.outcomes) {
        *count += more;
    }
    if let (Some(log), Some(more)) = (&mut summary.log, report.log) {
        log.extend(more);
    }
    summary.peak_memory = super::memory().map(|(_, peak)| peak);
    if let Err(error) = &result {
        // Sinks waiting for a checkpoint's transaction wait no more.
        driver.fail_transactions(error);
    }
    let closed = driver.close().await;
    if transactional {
        let finished = result.is_ok() && closed.is_ok() && !driver.summary.stopped;
        let ended = driver.end_transactions(finished);
        if finished {
            // Committed to their end: there is nothing to resume. (A
            // commit that failed keeps them, to resume from.)
            result = match ended {
                Ok(()) => driver.finish_checkpoints().await,
                Err(error) => Err(error),
            };
        } else if result.is_ok() {
            result = ended;
        }
    }
    if result.is_ok() && closed.is_ok() && !driver.summary.stopped && !transactional {
        // Every outcome of what was read is written: the groups' offsets
        // move to the end.
        source::GroupOffsets::commit_all(
            driver
                .inputs
                .iter()
                .filter_map(|input| Some((input.offsets.as_ref()?, &input.buffer.partitions[..]))),
        );
    }
    match (result, closed) {
        // A worker stops when a sink fails; the sink says why.
        (Err(_), Err(sink)) if report.broken => Err(sink),
        (result, closed) => result.and(closed).map(|()| driver.summary),
    }
}

/// Everything one run owns.
struct Driver {
    checkpointing: Option<checkpointing::Checkpointing>,
    inputs: Vec<InputQueue>,
    watermarks: Watermarks,
    engine: Engine,
    router: Arc<Router>,
    targets: Vec<Target>,
    /// The routes and targets of the outcome being routed.
    hits: Vec<(usize, usize)>,
    /// What the operator emitted and the router has not rendered yet.
    out: Vec<Outcome>,
    summary: Summary,
    clock: WallClock,
    processing: bool,
    idle_grace: Option<std::time::Duration>,
    /// Since when every input that has not ended is idle.
    all_idle_since: Option<Instant>,
    /// The newest event time merged, and when the last batch arrived.
    newest: Option<EventTime>,
    last_arrival: Instant,
    stop: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Tells the source threads to stop reading.
    stopping: Arc<AtomicBool>,
    progress: Option<ProgressFn>,
    last_progress: Instant,
    /// Bytes read and to read, per source.
    sizes: Vec<(Arc<AtomicU64>, Option<u64>)>,
}

/// One input of the merge.
struct InputQueue {
    /// Batches from the source; closed when the source ends.
    receiver: mpsc::Receiver<Batch>,
    /// Items received and not yet merged.
    buffer: Received,
    finished: bool,
    idle: bool,
    idle_timeout: Option<std::time::Duration>,
    last_received: Instant,
    stamp: Stamp,
    /// Whether the merge waits for this input when it has nothing buffered.
    holds_merge: bool,
    /// A Kafka source's offsets in its group: what was read, and commits.
    offsets: Option<source::GroupOffsets>,
}

impl InputQueue {
    /// Starts `source`, sending to a new input of the merge.
    fn spawn(
        source: source::Opened,
        processing: bool,
        stopping: &Arc<AtomicBool>,
        now: Instant,
        returned: Option<Returned>,
    ) -> Self {
        let inline = source.is_inline();
        let stamp = match (processing, inline) {
            (false, _) => Stamp::EventTime,
            (true, true) => Stamp::Start,
            (true, false) => Stamp::Arrival,
        };
        let idle_timeout = source.idle_timeout().filter(|_| !processing);
        let offsets = source.offsets();
        let (sender, receiver) = mpsc::channel(QUEUE);
        source.spawn(sender, stopping.clone(), returned);
        Self {
            receiver,
            buffer: Received {
                partitioned: offsets.is_some(),
                ..Received::default()
            },
            finished: false,
            idle: false,
            idle_timeout,
            last_received: now,
            stamp,
            holds_merge: !processing || inline,
            offsets,
        }
    }
}

/// Opens every source, each fed lines by the program running the pipeline
/// if `options` say, and resuming where `resume` says.
fn open_sources(
    sources: Vec<crate::plan::SourceNode>,
    options: &mut Options,
    resume: Option<&crate::checkpoint::Checkpoint>,
    fresh: bool,
) -> Result<Vec<source::Opened>, RunError> {
    sources
        .into_iter()
        .enumerate()
        .map(|(side, source)| {
            let feed = options
                .feeds
                .iter()
                .position(|(name, _)| *name == source.name)
                .map(|index| options.feeds.swap_remove(index).1);
            let position = resume.and_then(|c| c.inputs.get(side));
            source::open(
                source,
                &options.base,
                feed,
                position,
                fresh,
                options.instance,
            )
        })
        .collect()
}

/// Gives each file sink of `sinks` the file `instance` writes for it.
fn instance_files(sinks: &mut [crate::plan::SinkNode], instance: Instance) {
    for sink in sinks {
        if let SinkKind::File { path, .. } = &mut sink.kind {
            path.value = instance.file_path(&path.value);
        }
    }
}

/// Starts writing each target, after the headers of its sinks; with
/// workers, every target through a thread of its own.
fn start_targets(
    writers: Vec<(String, Destination)>,
    target_of: &[usize],
    headers: &[String],
    router: &Arc<Router>,
    workers: usize,
    ways: &Ways,
) -> Result<Vec<Target>, RunError> {
    let mut target_headers = vec![String::new(); writers.len()];
    for (sink, header) in headers.iter().enumerate() {
        target_headers[target_of[sink]].push_str(header);
    }
    writers
        .into_iter()
        .zip(target_headers)
        .map(|((name, destination), header)| {
            let destination = if workers > 1 {
                destination.threaded()
            } else {
                destination
            };
            // A file kept from before a resumed run has its header.
            let header = match &destination {
                Destination::File(file) if file.length > 0 => String::new(),
                _ => header,
            };
            Target::start(name, destination, router, header, ways.clone())
        })
        .collect()
}

/// Items received and not yet merged: the batches as they came, read in
/// place rather than copied into one queue. No batch in it is empty.
#[derive(Default)]
struct Received {
    batches: VecDeque<Queued>,
    /// Where the last item taken ended: its file, and the place in it.
    taken: Option<Taken>,
    /// Whether the source's items are of partitions (Kafka), each item's
    /// place its partition and the offset after it, and its chunks carry
    /// the frontier its watermark follows.
    partitioned: bool,
    /// Of a partitioned source, each partition merged from and the offset
    /// after its last item merged, by partition.
    pub(super) partitions: Vec<(u32, u64)>,
    /// Of a partitioned source, the frontier of the items merged, not yet
    /// taken by the watermarks.
    reached: Option<EventTime>,
}

/// A chunk received, read in place.
struct Queued {
    file: Arc<str>,
    head: Option<Head>,
    items: std::vec::IntoIter<Item>,
    /// Of a partitioned source, the frontier after each item, and after
    /// the last.
    frontiers: std::vec::IntoIter<Option<EventTime>>,
    frontier: Option<EventTime>,
}

/// Where the last item a source's input had merged ended.
pub(super) struct Taken {
    /// Its file (empty for inline records, `-` for standard input).
    pub(super) file: Arc<str>,
    /// That file's head, as far as its source had read it.
    pub(super) head: Option<Head>,
    /// The place just after the item in it.
    pub(super) at: At,
}

impl Received {
    fn push(&mut self, chunk: Chunk) {
        if !chunk.items.is_empty() {
            self.batches.push_back(Queued {
                file: chunk.file,
                head: chunk.head,
                items: chunk.items.into_iter(),
                frontiers: chunk.frontiers.into_iter(),
                frontier: chunk.frontier,
            });
        } else if let Some(frontier) = chunk.frontier {
            // A frontier alone holds from after what came before it.
            match self.batches.back_mut() {
                Some(last) => last.frontier = last.frontier.max(Some(frontier)),
                None => self.reached = self.reached.max(Some(frontier)),
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    fn front(&self) -> Option<&Item> {
        self.batches
            .front()
            .and_then(|queued| queued.items.as_slice().first())
    }

    fn pop_front(&mut self) -> Option<Item> {
        let queued = self.batches.front_mut()?;
        let item = queued.items.next()?;
        let at = item.at();
        match &mut self.taken {
            Some(taken) if Arc::ptr_eq(&taken.file, &queued.file) => {
                taken.at = at;
                taken.head = queued.head;
            }
            taken => {
                *taken = Some(Taken {
                    file: queued.file.clone(),
                    head: queued.head,
                    at,
                });
            }
        }
        if self.partitioned {
            self.reached = self.reached.max(queued.frontiers.next().flatten());
            let partition = u32::try_from(at.line).unwrap_or(u32::MAX);
            match self
                .partitions
                .binary_search_by_key(&partition, |(p, _)| *p)
            {
                Ok(found) => self.partitions[found].1 = at.offset,
                Err(place) => self.partitions.insert(place, (partition, at.offset)),
            }
        }
        if queued.items.as_slice().is_empty() {
            self.reached = self.reached.max(queued.frontier);
            self.batches.pop_front();
        }
        Some(item)
    }
}

/// The time an input's events get.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stamp {
    /// Their event time.
    EventTime,
    /// The wall-clock time they arrive.
    Arrival,
    /// The wall-clock time the run started: inline records, which all
    /// arrive at once.
    Start,
}

/// The wall clock as event time, read from tokio's clock.
struct WallClock {
    at_start: EventTime,
    start: Instant,
}

impl WallClock {
    fn at(&self, instant: Instant) -> EventTime {
        let elapsed = instant.saturating_duration_since(self.start).as_millis();
        EventTime::from_millis(
            self.at_start
                .millis()
                .saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX)),
        )
    }

    /// When the wall clock reads `time`.
    fn instant(&self, time: EventTime) -> Instant {
        let ahead = time.millis().saturating_sub(self.at_start.millis()).max(0);
        self.start + std::time::Duration::from_millis(ahead.unsigned_abs())
    }
}

/// What woke the driver while it waited.
enum Woke {
    /// A batch, an error or the end of input `0`.
    Input(usize, Option<Batch>),
    /// A timer: an idle timeout, the idle grace or a deadline.
    Timer,
    /// The run was told to stop.
    Stop,
}

impl Driver {
    /// Finds every input, then opens the sinks and starts the sources.
    fn start(mut graph: Graph, outputs: Outputs, mut options: Options) -> Result<Self, RunError> {
        let now = Instant::now();
        let mut warnings = Vec::new();
        let instance = options.instance;
        source::shareable(&graph.sources, instance)?;
        instance_files(&mut graph.sinks, instance);
        // A fresh run starts over, also where Kafka groups have offsets.
        let fresh = options
            .checkpoints
            .as_ref()
            .is_some_and(|(_, fresh)| *fresh);
        let (mut checkpointing, resume) =
            checkpointing::prepare(&graph, &mut options, now, &mut warnings)?;
        let Graph {
            sources,
            matcher,
            routes,
            sinks,
            ..
        } = graph;
        let processing = matcher.clock == Clock::Processing;
        let opened = open_sources(sources, &mut options, resume.as_ref(), fresh)?;
        let partitions = source::co_partitioned(&opened, instance)?;
        checkpointing::partitions(checkpointing.as_mut(), partitions, &mut warnings)?;
        let log = outputs.logs();
        let kept = resume.as_ref().map_or(&[][..], |c| &c.sinks[..]);
        let transactions = checkpointing.as_ref().and_then(|c| c.transactions.as_ref());
        let (writers, target_of) = outputs.open(&sinks, &options.base, kept, transactions)?;
        let (router, headers) = Router::new(&matcher, routes, &sinks, |sink| target_of[sink]);
        let router = Arc::new(router);
        let workers = options.workers;
        let (ways, returned) = Ways::new(opened.iter().map(source::Opened::takes_back));
        let targets = start_targets(writers, &target_of, &headers, &router, workers, &ways)?;
        let waits: Vec<_> = matcher.sides.iter().map(|side| side.wait).collect();
        let rules = matcher.rules.into_iter().map(Rule::from).collect();
        let summary = Summary {
            sources: opened
                .iter()
                .map(|source| SourceSummary {
                    name: source.name().to_string(),
                    ..SourceSummary::default()
                })
                .collect(),
            outcomes: OutcomeKind::ALL.iter().map(|kind| (*kind, 0)).collect(),
            log: log.then(Vec::new),
            warnings,
            ..Summary::default()
        };
        let clock = WallClock {
            at_start: options.wall_clock.unwrap_or_else(system_time),
            start: now,
        };
        let stopping = Arc::new(AtomicBool::new(false));
        let watermarks = Watermarks::new(opened.iter().map(source::Opened::watermark_lag));
        let sizes = opened
            .iter()
            .map(|source| (source.read.clone(), source.size))
            .collect();
        let inputs = (opened.into_iter().zip(returned))
            .map(|(source, back)| InputQueue::spawn(source, processing, &stopping, now, back))
            .collect();
        let mut driver = Self {
            checkpointing,
            watermarks,
            engine: Engine::start(
                Matcher::new(waits, rules, matcher.retention),
                workers,
                &router,
                &targets.iter().map(Target::sender).collect::<Vec<_>>(),
                log,
            )?,
            inputs,
            targets,
            hits: Vec::new(),
            router,
            out: Vec::new(),
            summary,
            clock,
            processing,
            idle_grace: matcher
                .idle_grace
                .filter(|_| !processing)
                .map(|grace| std::time::Duration::from_millis(grace.millis().unsigned_abs())),
            all_idle_since: None,
            newest: None,
            last_arrival: now,
            stop: options.stop,
            stopping,
            progress: options.progress,
            last_progress: now,
            sizes,
        };
        if let Some(checkpoint) = resume {
            driver.restore(checkpoint, partitions)?;
            if let Some(resumed) = &mut driver.summary.resumed_from {
                resumed.took = now.elapsed();
            }
        }
        Ok(driver)
    }

    /// Merges every input to its end, then fires what is still pending; or,
    /// told to stop, handles what it has and returns.
    async fn run(&mut self) -> Result<(), RunError> {
        loop {
            let mut steps: u32 = 0;
            while let Some(input) = self.next() {
                self.step(input);
                // Timers fire before the next event is taken, and
                // outcomes go out a handful at a time.
                if self.out.len() >= ROUTE_AT || self.engine.has_due() {
                    self.route().await?;
                }
                steps = steps.wrapping_add(1);
                // The clock is read now and then, not for every event.
                if steps.is_multiple_of(1024) && self.checkpoint_due(Instant::now()) {
                    self.checkpoint(false).await?;
                }
            }
            self.route().await?;
            if self.checkpoint_due(Instant::now()) {
                self.checkpoint(false).await?;
            }
            self.report_progress(false);
            if self
                .inputs
                .iter()
                .all(|input| input.finished && input.buffer.is_empty())
            {
                break;
            }
            // What is decided is written before waiting for more: a live
            // run's alerts must not sit in a buffer while its inputs are
            // quiet.
            self.flush().await?;
            match self.wait().await {
                Woke::Input(index, batch) => self.receive(index, batch)?,
                Woke::Timer => {}
                Woke::Stop => return self.stopped().await,
            }
            self.tick();
        }
        self.summary.memory_at_end_of_input = super::memory().map(|(now, _)| now);
        self.engine.advance_to(Watermark::MAX);
        self.route().await?;
        self.report_progress(true);
        Ok(())
    }

    /// Told to stop: no more reading; what was read, also what the sources
    /// had sent and the driver not yet taken, is merged as far as it goes
    /// without waiting, and written out.
    async fn stopped(&mut self) -> Result<(), RunError> {
        self.stop_sources();
        self.summary.stopped = true;
        for index in 0..self.inputs.len() {
            self.inputs[index].holds_merge = false;
            while let Ok(batch) = self.inputs[index].receiver.try_recv() {
                self.receive(index, Some(batch))?;
            }
        }
        while let Some(input) = self.next() {
            self.step(input);
            self.route().await?;
        }
        self.route().await?;
        // Where the next run resumes.
        self.checkpoint(true).await?;
        self.report_progress(true);
        Ok(())
    }

    fn stop_sources(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        for input in &mut self.inputs {
            input.receiver.close();
        }
    }

    /// Emits malformed lines at the heads of the inputs, then picks the
    /// input whose head is earliest, the first listed on a tie. `None` when
    /// an input the merge waits for has nothing buffered, or nothing is.
    fn next(&mut self) -> Option<usize> {
        let sides = self.inputs.len();
        // One pass: each input's malformed head lines out, then its head
        // event weighed, or its empty buffer found to hold the merge.
        let (mut earliest, mut blocked) = (None::<(EventTime, usize)>, false);
        for (index, input) in self.inputs.iter_mut().enumerate() {
            loop {
                match input.buffer.front() {
                    Some(Item::Event(event, _)) => {
                        if earliest.is_none_or(|(time, _)| event.time < time) {
                            earliest = Some((event.time, index));
                        }
                        break;
                    }
                    Some(Item::Malformed(..)) => {
                        let Some(Item::Malformed(line, _)) = input.buffer.pop_front() else {
                            unreachable!("the head was just seen to be malformed")
                        };
                        self.summary.sources[index].malformed += 1;
                        self.out.push(Outcome::malformed(line, sides));
                    }
                    None => {
                        blocked |= input.holds_merge && !input.finished && !input.idle;
                        break;
                    }
                }
            }
        }
        if blocked {
            return None;
        }
        earliest.map(|(_, index)| index)
    }

    /// Feeds the head of `input` to the operator, then the watermark it
    /// moves.
    fn step(&mut self, input: usize) {
        let Some(Item::Event(event, _)) = self.inputs[input].buffer.pop_front() else {
            return;
        };
        let time = event.time;
        self.summary.sources[input].events += 1;
        self.newest = Some(self.newest.map_or(time, |newest| newest.max(time)));
        self.engine.on_event(event, &mut self.out);
        if self.processing {
            return;
        }
        // A partitioned source's watermark follows the frontier of what was
        // merged, not each event.
        let buffer = &mut self.inputs[input].buffer;
        let seen = if buffer.partitioned {
            buffer.reached.take()
        } else {
            Some(time)
        };
        if let Some(time) = seen
            && let Some(watermark) = self.watermarks.observe(input, time)
        {
            self.advance(watermark);
        }
    }

    fn advance(&mut self, watermark: Watermark) {
        if watermark.time().is_some() {
            self.summary.watermark = watermark.time();
        }
        // Fired by `route`, a batch at a time.
        self.engine.advance_to(watermark);
    }

    /// Waits for a batch from an input the merge needs (or an idle one,
    /// which may rejoin), a timer, or the signal to stop.
    async fn wait(&mut self) -> Woke {
        let wake = self.next_wake();
        let inputs = &mut self.inputs;
        let receive = std::future::poll_fn(|cx| {
            for (index, input) in inputs.iter_mut().enumerate() {
                if input.finished || !input.buffer.is_empty() {
                    continue;
                }
                if let Poll::Ready(batch) = input.receiver.poll_recv(cx) {
                    return Poll::Ready(Woke::Input(index, batch));
                }
            }
            Poll::Pending
        });
        let stop = &mut self.stop;
        let stop = async move {
            match stop {
                Some(stop) => stop.as_mut().await,
                None => std::future::pending().await,
            }
        };
        let timer = async {
            match wake {
                Some(wake) => tokio::time::sleep_until(wake).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            input = receive => input,
            () = timer => Woke::Timer,
            () = stop => Woke::Stop,
        }
    }

    /// Takes what input `index` sent.
    fn receive(&mut self, index: usize, batch: Option<Batch>) -> Result<(), RunError> {
        let now = Instant::now();
        let input = &mut self.inputs[index];
        match batch {
            Some(Ok(mut items)) => {
                input.last_received = now;
                self.last_arrival = now;
                match input.stamp {
                    Stamp::EventTime => {}
                    Stamp::Arrival | Stamp::Start => {
                        let time = if input.stamp == Stamp::Start {
                            self.clock.at_start
                        } else {
                            self.clock.at(now)
                        };
                        for item in &mut items.items {
                            if let Item::Event(event, _) = item {
                                event.time = time;
                            }
                        }
                    }
                }
                input.buffer.push(items);
                if std::mem::take(&mut input.idle) {
                    self.all_idle_since = None;
                    if let Some(watermark) = self.watermarks.set_idle(index, false) {
                        self.advance(watermark);
                    }
                }
                // A frontier with nothing left before it to merge holds now.
                let input = &mut self.inputs[index];
                if input.buffer.is_empty()
                    && !self.processing
                    && let Some(time) = input.buffer.reached.take()
                    && let Some(watermark) = self.watermarks.observe(index, time)
                {
                    self.advance(watermark);
                }
            }
            Some(Err(error)) => return Err(error),
            None => {
                input.finished = true;
                if let Some(watermark) = self.watermarks.finish(index) {
                    self.advance(watermark);
                }
            }
        }
        Ok(())
    }

    /// When a timer is due: the first idle timeout of an input the merge
    /// waits for, the end of the idle grace, the wall-clock time a pending
    /// deadline fires at, or the next progress report.
    fn next_wake(&self) -> Option<Instant> {
        let idle = self
            .inputs
            .iter()
            .filter(|input| !input.finished && !input.idle && input.buffer.is_empty())
            .filter_map(|input| Some(input.last_received + input.idle_timeout?));
        let timer = self.engine.next_timer();
        let clock = if self.processing {
            // The watermark reaches a deadline a millisecond after it.
            timer
                .filter(|_| !self.inline_pending())
                .map(|time| self.clock.instant(time.saturating_add(ONE_MS)))
        } else {
            // Following the wall clock matters only for a timer to fire.
            match (self.all_idle_since, self.idle_grace, timer) {
                (Some(since), Some(grace), Some(time)) => {
                    self.follow_instant(time).map(|at| at.max(since + grace))
                }
                _ => None,
            }
        };
        let progress = self
            .progress
            .as_ref()
            .map(|_| self.last_progress + PROGRESS_EVERY);
        let checkpoint = self.checkpointing.as_ref().map(|c| c.next);
        idle.chain(clock).chain(progress).chain(checkpoint).min()
    }

    /// When the watermark, following the wall clock from the newest event
    /// time, reaches `time`.
    fn follow_instant(&self, time: EventTime) -> Option<Instant> {
        let newest = self.newest?;
        let ahead = time
            .millis()
            .saturating_sub(newest.millis())
            .saturating_add(1);
        Some(self.last_arrival + std::time::Duration::from_millis(ahead.max(0).unsigned_abs()))
    }

    /// Applies the timers that are due: inputs going idle, the wall clock
    /// of processing time, and the watermark following the wall clock when
    /// every input is idle past the grace.
    fn tick(&mut self) {
        let now = Instant::now();
        for index in 0..self.inputs.len() {
            let input = &mut self.inputs[index];
            let due = input
                .idle_timeout
                .is_some_and(|timeout| now >= input.last_received + timeout);
            if due && !input.finished && !input.idle && input.buffer.is_empty() {
                input.idle = true;
                if let Some(watermark) = self.watermarks.set_idle(index, true) {
                    self.advance(watermark);
                }
            }
        }
        if self.processing {
            if !self.inline_pending() {
                let watermark = Watermark::bounded(self.clock.at(now), crate::time::Duration::ZERO);
                self.advance(watermark);
            }
            return;
        }
        let all_idle = self.inputs.iter().any(|input| !input.finished)
            && self
                .inputs
                .iter()
                .all(|input| input.finished || (input.idle && input.buffer.is_empty()));
        if !all_idle {
            self.all_idle_since = None;
            return;
        }
        let since = *self.all_idle_since.get_or_insert(now);
        let (Some(grace), Some(newest)) = (self.idle_grace, self.newest) else {
            return;
        };
        if now < since + grace {
            return;
        }
        let silent = now.saturating_duration_since(self.last_arrival).as_millis();
        let time = EventTime::from_millis(
            newest
                .millis()
                .saturating_add(i64::try_from(silent).unwrap_or(i64::MAX)),
        );
        if let Some(watermark) = self
            .watermarks
            .advance(Watermark::bounded(time, crate::time::Duration::ZERO))
        {
            self.advance(watermark);
        }
    }

    /// Whether inline records, which all arrive at the start, are still to
    /// be merged: with processing time, the wall clock must not pass them.
    fn inline_pending(&self) -> bool {
        self.inputs.iter().any(|input| {
            input.stamp == Stamp::Start && !(input.finished && input.buffer.is_empty())
        })
    }

    /// Reports progress if it is time, or `last`.
    fn report_progress(&mut self, last: bool) {
        let Some(report) = &mut self.progress else {
            return;
        };
        let now = Instant::now();
        if !last && now < self.last_progress + PROGRESS_EVERY {
            return;
        }
        self.last_progress = now;
        let progress = Progress {
            read: self
                .sizes
                .iter()
                .map(|(read, _)| read.load(Ordering::Relaxed))
                .sum(),
            size: self
                .sizes
                .iter()
                .map(|(_, size)| *size)
                .sum::<Option<u64>>(),
            events: self.summary.sources.iter().map(|s| s.events).sum(),
            pending_keys: self.engine.waiting_keys(),
            done: last,
            sources: &self.summary.sources,
            source_watermarks: (0..self.inputs.len())
                .map(|input| self.watermarks.input(input))
                .collect(),
            outcomes: &self.summary.outcomes,
            watermark: self.summary.watermark,
            checkpoints: self.summary.checkpoints,
            last_checkpoint: self.summary.last_checkpoint,
            partitions: self
                .inputs
                .iter()
                .filter_map(|input| input.offsets.as_ref())
                .flat_map(source::GroupOffsets::partitions)
                .collect(),
        };
        report(&progress);
    }

    /// Renders what the operator emitted, and what timers are due, a batch
    /// at a time, and hands full buffers to their targets; a slow target
    /// makes this wait, which holds the sources back.
    async fn route(&mut self) -> Result<(), RunError> {
        self.engine.dispatch(false).await?;
        loop {
            let more = self.engine.fire_due(&mut self.out, FIRE_BATCH);
            self.render().await?;
            if !more {
                return Ok(());
            }
        }
    }

    /// Hands what the operator emitted to the targets of its routes (the
    /// targets' threads render it), and sends what is collected when it is
    /// enough.
    async fn render(&mut self) -> Result<(), RunError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let Self {
            out,
            router,
            targets,
            hits,
            summary,
            ..
        } = self;
        let mut rendered = Ok(());
        for outcome in out.drain(..) {
            if let Some((_, count)) = summary
                .outcomes
                .iter_mut()
                .find(|(kind, _)| *kind == outcome.kind())
            {
                *count += 1;
            }
            if let Some(log) = &mut summary.log {
                log.push(outcome.clone());
            }
            router.hand_out(outcome, hits, |route, target, outcome| {
                // Every target takes its outcomes; the first failure is told.
                let taken = targets[target].take(router, route, outcome);
                if rendered.is_ok() {
                    rendered = taken;
                }
            });
        }
        for target in &mut self.targets {
            if target.full() {
                target.send().await?;
            }
        }
        rendered
    }

    /// Hands everything collected to its target, and what is queued for
    /// the workers to them.
    async fn flush(&mut self) -> Result<(), RunError> {
        self.engine.dispatch(true).await?;
        for target in &mut self.targets {
            target.send().await?;
        }
        Ok(())
    }

    /// Flushes and closes every target, waiting for its thread.
    async fn close(&mut self) -> Result<(), RunError> {
        let mut result = Ok(());
        for target in &mut self.targets {
            let sent = target.send().await;
            let finished = target.finish().await;
            result = result.and(sent).and(finished);
        }
        result
    }
}

const ONE_MS: crate::time::Duration = crate::time::Duration::from_millis(1);

/// The system's wall clock as event time.
fn system_time() -> EventTime {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    EventTime::from_millis(i64::try_from(since_epoch).unwrap_or(i64::MAX))
}
