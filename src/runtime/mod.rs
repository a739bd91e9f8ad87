//! Running a graph: sources, watermarks, the match operator and sinks.
//!
//! Takes a [`Graph`]; produces outcomes on its sinks and a [`Summary`].
//! Each source runs as a tokio task that evaluates event times and keys and
//! sends batches over a bounded channel. One driver merges the inputs in
//! event-time order, tracks watermarks ([`Watermarks`]), feeds the
//! [`Matcher`] and renders what it emits to sink tasks. The operator is
//! plain synchronous code ([`Operator`]), tested without tokio. Nothing here
//! parses YAML or expressions.

mod columns;
mod driver;
mod engine;

mod error;
mod event;
mod instance;
mod matcher;
mod membership;
mod operator;
mod returns;
mod router;
mod sink;
mod source;
mod watermarks;

pub use error::RunError;
pub use event::{Event, Key};
pub use instance::Instance;
pub use matcher::{Matcher, PendingGroup, Rule, StateFormat};
pub use membership::{Membership, Term};
pub use operator::{Detail, Malformed, Operator, Outcome, Prior};
pub use sink::{Outputs, SharedBuffer};
pub use watermarks::Watermarks;

pub use driver::{Options, other_checkpoints, state_topic_listing};

use crate::config::OutcomeKind;
use crate::plan::Graph;
use crate::time::{EventTime, Watermark};

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// What was read per source, in side order.
    pub sources: Vec<SourceSummary>,
    /// Outcomes emitted per kind.
    pub outcomes: Vec<(OutcomeKind, u64)>,
    /// Events still waiting in the operator when the run ended: none after
    /// inputs that end, since the end fires every wait.
    pub pending_events: usize,
    /// Keys with events still waiting when the run ended.
    pub pending_keys: usize,
    /// The most keys that had events waiting at once.
    pub peak_pending_keys: usize,
    /// The last watermark before the end of input, if it ever moved.
    pub watermark: Option<EventTime>,
    /// How long the run took.
    pub elapsed: std::time::Duration,
    /// Whether the run was stopped before its inputs ended.
    pub stopped: bool,
    /// Bytes resident when the inputs ended (before the waits still
    /// pending were fired), where the system tells.
    pub memory_at_end_of_input: Option<u64>,
    /// The most bytes resident during the run, where the system tells.
    pub peak_memory: Option<u64>,
    /// The checkpoint the run resumed from, if it did.
    pub resumed_from: Option<Resumed>,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// The longest a checkpoint held the run up: writing out what was
    /// decided, syncing the sinks, and saving the state.
    pub longest_checkpoint: std::time::Duration,
    /// The last checkpoint taken (its pause, once begun; how long it took
    /// and its size, once saved).
    pub last_checkpoint: CheckpointTaken,
    /// What went wrong but did not stop the run (a damaged checkpoint the
    /// run did not use), for people.
    pub warnings: Vec<String>,
    /// Every outcome, in order, when the outputs asked for it
    /// ([`Outputs::with_log`]).
    pub log: Option<Vec<Outcome>>,
}

/// One checkpoint taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointTaken {
    /// How long it held the run up.
    pub pause: std::time::Duration,
    /// From its start until it was saved, synced, on disk.
    pub took: std::time::Duration,
    /// The bytes of its file.
    pub bytes: u64,
}

/// The checkpoint a run resumed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resumed {
    /// Its number.
    pub sequence: u64,
    /// Keys it had waiting for a side.
    pub pending: usize,
    /// Keys it remembered as done, within the retention.
    pub remembered: usize,
    /// When the run took its partitions over from the checkpoints of
    /// another number of processes: how many (the newest of their
    /// checkpoints is `sequence`).
    pub of: Option<u32>,
    /// How many of its partitions it took from the state topic.
    pub from_topic: usize,
    /// How long the run took to read it and be ready to go on.
    pub took: std::time::Duration,
}

/// Resident bytes now and at most so far, from `/proc/self/status` on
/// Linux; `None` elsewhere.
pub(crate) fn memory() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// What was read from one source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceSummary {
    /// The source's name.
    pub name: String,
    /// Events merged.
    pub events: u64,
    /// Lines that were not records.
    pub malformed: u64,
}

impl Summary {
    /// How many outcomes of `kind` were emitted.
    pub fn count(&self, kind: OutcomeKind) -> u64 {
        self.outcomes
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, count)| *count)
    }

    /// Events merged, over every source.
    pub fn events(&self) -> u64 {
        self.sources.iter().map(|source| source.events).sum()
    }
}

/// How far a run has got, for a progress display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress<'a> {
    /// Bytes read from files and standard input.
    pub read: u64,
    /// Bytes there are to read, when every source's size is known.
    pub size: Option<u64>,
    /// Events merged so far.
    pub events: u64,
    /// Keys with events waiting now.
    pub pending_keys: usize,
    /// Whether this is the last report.
    pub done: bool,
    /// What was read per source so far, in side order.
    pub sources: &'a [SourceSummary],
    /// Each source's watermark, in side order: [`Watermark::MIN`] before
    /// its first event, [`Watermark::MAX`] once it has ended.
    pub source_watermarks: Vec<Watermark>,
    /// Outcomes emitted per kind so far.
    pub outcomes: &'a [(OutcomeKind, u64)],
    /// The watermark, once it has moved.
    pub watermark: Option<EventTime>,
    /// Checkpoints written so far.
    pub checkpoints: u64,
    /// The last checkpoint taken.
    pub last_checkpoint: CheckpointTaken,
    /// What each Kafka source read per partition.
    pub partitions: Vec<PartitionProgress>,
}

/// What a Kafka source read from one partition of its topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionProgress {
    /// The source's name.
    pub source: String,
    /// The partition.
    pub partition: u32,
    /// Messages read from it.
    pub messages: u64,
    /// Messages in it not read yet (its end offset minus the consumer's
    /// position), once the client's statistics have told its end.
    pub lag: Option<u64>,
}

/// Runs `graph` until its inputs end, writing to `outputs`.
///
/// # Errors
///
/// An input that cannot be opened or read, an expression that fails on an
/// inline record, or a sink that cannot be opened or written.
pub async fn run(graph: Graph, outputs: Outputs) -> Result<Summary, RunError> {
    run_with(graph, outputs, Options::new()).await
}

/// Runs `graph` as `options` say, writing to `outputs`.
///
/// # Errors
///
/// As [`run`].
pub async fn run_with(
    graph: Graph,
    outputs: Outputs,
    options: Options,
) -> Result<Summary, RunError> {
    driver::drive(graph, outputs, options).await
}

/// Runs `graph` on a new single-threaded tokio runtime.
///
/// # Errors
///
/// As [`run`]; also if the runtime cannot start.
pub fn run_blocking(graph: Graph, outputs: Outputs) -> Result<Summary, RunError> {
    run_blocking_with(graph, outputs, Options::new())
}

/// Runs `graph` as `options` say on a new single-threaded tokio runtime.
///
/// # Errors
///
/// As [`run`]; also if the runtime cannot start.
pub fn run_blocking_with(
    graph: Graph,
    outputs: Outputs,
    options: Options,
) -> Result<Summary, RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Start)?;
    runtime.block_on(run_with(graph, outputs, options))
}
