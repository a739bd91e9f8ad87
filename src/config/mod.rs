//! Pipeline files: YAML text to a typed, spanned [`Pipeline`].
//!
//! Takes the text of a pipeline file; produces inert config data in which
//! every name, duration and expression keeps the span it was written at.
//! Expressions stay text ([`ExprText`]) here: parsing and checking them is the
//! job of [`crate::expr`] and [`crate::plan`]. Nothing here runs anything.

/// The JSON Schema of the pipeline format, for editors and CI.
pub const SCHEMA: &str = include_str!("schema.json");

mod expr_text;
pub mod node;
mod pipeline;
mod reader;

use std::sync::Arc;

pub use expr_text::ExprText;
pub use node::Node;

use crate::diagnostic::{Diagnostic, Span};
use crate::expr::RecordType;
use crate::time::Duration;

/// A value and the span it was written at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where in the pipeline file.
    pub span: Span,
}

/// A user-chosen name (of a source, sink or field) and where it was written.
pub type Name = Spanned<String>;

/// A pipeline as written: the top level of a pipeline file.
///
/// Reading reports every problem and keeps everything it could read, so
/// later checks can go on with the rest. Where something could not be read,
/// the pipeline says so (a declared name without a config, a section marked
/// incomplete), and later checks stay quiet about what depends on it rather
/// than report a consequence of a problem already reported.
#[derive(Clone, Debug, Default)]
pub struct Pipeline {
    /// An optional name for messages and `explain`.
    pub name: Option<Spanned<String>>,
    /// The sources that could be read, in the order written.
    pub sources: Declared<SourceConfig>,
    /// The sources to match and how they are keyed, if `connect` could be
    /// read.
    pub connect: Option<Connect>,
    /// The wait rules and condition, if `match` could be read.
    pub matching: Option<Match>,
    /// The sinks that could be read, in the order written.
    pub sinks: Declared<SinkConfig>,
    /// The outputs that could be read, in the order written.
    pub outputs: Vec<OutputConfig>,
    /// Whether every output could be read.
    pub outputs_complete: bool,
    /// Where `outputs` is written.
    pub outputs_span: Span,
    /// Test cases for `runner test`; a run ignores them.
    pub tests: Vec<TestCase>,
    /// How often a run writes a checkpoint, if the pipeline says.
    pub checkpoint: Option<CheckpointConfig>,
}

/// The `checkpoint` section.
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// Whether checkpoints are written; `None` for the default (on when a
    /// source reads files and none reads standard input).
    pub enabled: Option<Spanned<bool>>,
    /// How often, in wall-clock time.
    pub interval: Option<Spanned<Duration>>,
    /// Whether Kafka sinks write each checkpoint's records in a Kafka
    /// transaction, committed with the checkpoint.
    pub transactions: Option<Spanned<bool>>,
    /// The compacted Kafka topic that each checkpoint's transaction also
    /// writes every partition's state to, for processes without a shared
    /// state directory to take partitions over from.
    pub state_topic: Option<Spanned<String>>,
    /// Where the section is written.
    pub span: Span,
}

/// A test case: records per source, and what must come out.
#[derive(Clone, Debug)]
pub struct TestCase {
    /// What it tests, as `runner test` reports it.
    pub name: Spanned<String>,
    /// Per source, in the order they arrive; sources not listed get none.
    pub records: Vec<(Name, Vec<Node>)>,
    /// Every outcome, in order, if given.
    pub expect: Option<Vec<Expected>>,
    /// Per sink, every line it writes, in order, if given.
    pub output: Option<Vec<(Name, Vec<Spanned<String>>)>>,
    /// Where the case is written.
    pub span: Span,
}

/// One expected outcome. Fields left out are not compared.
#[derive(Clone, Debug)]
pub struct Expected {
    /// Which outcome.
    pub outcome: Spanned<OutcomeKind>,
    /// The key, as text.
    pub key: Spanned<String>,
    /// For a timeout or resolution: the side whose wait ran out.
    pub expired: Option<Name>,
    /// For a timeout: the missing sides, in side order.
    pub missing: Option<Vec<Name>>,
    /// For a mismatch: the names of the failed rules, in the order written.
    pub failed: Option<Vec<Name>>,
    /// For a duplicate or late event: the side it arrived on.
    pub side: Option<Name>,
    /// Where the expectation is written.
    pub span: Span,
}

/// Named items: those that could be read, and every name declared.
#[derive(Clone, Debug)]
pub struct Declared<T> {
    /// The items that could be read.
    pub items: Vec<T>,
    /// Every name declared, readable or not; `None` when the section itself
    /// is missing or unreadable.
    pub names: Option<Vec<Name>>,
    /// For sources: the schema of every source whose schema could be read,
    /// also when the rest of it could not, so expressions over its records
    /// can still be checked.
    pub schemas: Vec<(String, Arc<RecordType>)>,
}

impl<T> Default for Declared<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            names: None,
            schemas: Vec::new(),
        }
    }
}

impl<T> Declared<T> {
    /// The schema of source `name`, if it could be read.
    pub fn schema(&self, name: &str) -> Option<&Arc<RecordType>> {
        self.schemas
            .iter()
            .find(|(source, _)| source == name)
            .map(|(_, schema)| schema)
    }
}

impl<T> Declared<T> {
    /// Whether `name` is declared; always true when the declarations are
    /// unknown, so nothing is reported as undeclared on a guess.
    pub fn declares(&self, name: &str) -> bool {
        self.names
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n.value == name))
    }
}

/// The `connect` section.
#[derive(Clone, Debug)]
pub struct Connect {
    /// The connected sources in the order written: the order of the sides.
    pub sides: Vec<ConnectConfig>,
    /// Where `connect` is written.
    pub span: Span,
}

/// The `match` section.
#[derive(Clone, Debug)]
pub struct Match {
    /// How long each side waits for the others.
    pub wait: WaitConfig,
    /// What a complete match must satisfy: `condition` (a rule of that
    /// name) and the named `rules`, in the order written.
    pub rules: Vec<RuleConfig>,
    /// Whether every rule could be read.
    pub rules_complete: bool,
    /// How long, in event time, a key is remembered after it completes or
    /// times out; the longest wait when not given.
    pub retention: Option<Spanned<Duration>>,
    /// Which clock the waits run on.
    pub clock: Spanned<Clock>,
    /// How long every live source may be idle before the watermark follows
    /// the wall clock, so that deadlines still fire.
    pub idle_grace: Option<Spanned<Duration>>,
    /// Where `match` is written.
    pub span: Span,
}

/// The clock that waits run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Clock {
    /// Event time: the time each record carries, read by `event_time`;
    /// deadlines fire as the watermark passes them.
    #[default]
    Event,
    /// Processing time: the wall-clock time each record is read; deadlines
    /// fire as the wall clock passes them.
    Processing,
}

/// A named rule of a match.
#[derive(Clone, Debug)]
pub struct RuleConfig {
    /// Its name, as a mismatch reports it.
    pub name: Name,
    /// The `bool` expression.
    pub expr: ExprText,
}

/// One source of events.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// Its name; also the name its records have in expressions.
    pub name: Name,
    /// Where the events come from.
    pub kind: SourceKind,
    /// The fields of its records.
    pub schema: Arc<RecordType>,
    /// The event time of a record: an expression of type `int` (milliseconds
    /// since the epoch) or `timestamp`. Required by event-time matching;
    /// the planner reports it missing.
    pub event_time: Option<ExprText>,
    /// How far behind the newest event time the watermark trails; required
    /// with `event_time`.
    pub watermark_lag: Option<Spanned<Duration>>,
    /// After how long without events the source stops holding back the
    /// watermark; meaningful for sources that can fall silent.
    pub idle_timeout: Option<Spanned<Duration>>,
}

/// Where a source's events come from; tagged by `type` in the file.
#[derive(Clone, Debug)]
pub enum SourceKind {
    /// Records written in the pipeline file itself.
    Inline {
        /// One node per record, checked against the schema by the planner.
        records: Vec<Node>,
    },
    /// Lines of a file, or of every file a glob matches, in name order.
    File {
        /// The path or glob as written; relative to the pipeline file's
        /// directory.
        path: Spanned<String>,
        /// How each line is read.
        format: Format,
        /// Whether to keep reading as the file grows, until stopped.
        follow: bool,
    },
    /// Lines of standard input.
    Stdin {
        /// How each line is read.
        format: Format,
    },
    /// Records of a Kafka topic, one per message value.
    Kafka(KafkaSource),
}

/// A `kafka` source: the topic it reads and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSource {
    /// The bootstrap servers, `host:port[,host:port...]`.
    pub brokers: Spanned<String>,
    /// The topic, every partition of it.
    pub topic: Spanned<String>,
    /// The consumer group its offsets are committed for.
    pub group: Spanned<String>,
    /// How each message's value is read (CSV values name their columns).
    pub format: Format,
    /// Where a partition without a committed offset starts.
    pub start: StartAt,
    /// Whether the source ends at the offsets the topic had when the run
    /// started, as a file ends, instead of reading on until stopped.
    pub bounded: bool,
    /// Client properties passed to librdkafka as they are.
    pub properties: Vec<(Spanned<String>, Spanned<String>)>,
}

/// Where a Kafka source starts in a partition it has no offset for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// At the oldest message the topic keeps.
    Earliest,
    /// After the newest message: only what comes later.
    Latest,
}

/// How the lines of a file or stream are read into records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values, one record per line.
    Csv(CsvFormat),
}

/// How a CSV input is laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvFormat {
    /// Whether the first line of each file is a header naming the columns.
    pub header: bool,
    /// The columns, in order, when the pipeline names them; a header line
    /// is then skipped, not read.
    pub columns: Option<Vec<Name>>,
    /// The byte between fields: `,` unless declared.
    pub delimiter: u8,
}

/// One connected source and how its events are keyed.
#[derive(Clone, Debug)]
pub struct ConnectConfig {
    /// The source.
    pub source: Name,
    /// The key expression, evaluated on the source's records; `None` if it
    /// could not be read (reported).
    pub key: Option<ExprText>,
}

/// How long each side waits for the others, in event time.
#[derive(Clone, Debug)]
pub enum WaitConfig {
    /// The same wait for every side: `wait: 5s`.
    All(Spanned<Duration>),
    /// A wait per side, in the order written; `None` for a wait that could
    /// not be read (reported).
    PerSide(Vec<(Name, Option<Spanned<Duration>>)>),
    /// `wait` is missing or unreadable; already reported.
    Missing,
}

/// One destination for outcomes.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Its name, as outputs refer to it.
    pub name: Name,
    /// What it writes to.
    pub kind: SinkKind,
}

/// What a sink writes to; tagged by `type` in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkKind {
    /// Standard output, a line per outcome.
    Stdout,
    /// Standard error, a line per outcome.
    Stderr,
    /// A file, written afresh when the run starts.
    File {
        /// The path as written; relative to the pipeline file's directory.
        path: Spanned<String>,
        /// How outcomes are written.
        format: SinkFormat,
    },
    /// A Kafka topic: a record per outcome.
    Kafka(KafkaSink),
}

/// A `kafka` sink: where its records go and how they are keyed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSink {
    /// The bootstrap servers, `host:port[,host:port...]`.
    pub brokers: Spanned<String>,
    /// The topic each outcome is a record of.
    pub topic: Spanned<String>,
    /// The record key, an expression over the outcome as a template is;
    /// the match key when absent.
    pub key: Option<ExprText>,
    /// Client properties passed to librdkafka as they are (TLS, SASL,
    /// timeouts), in the order written.
    pub properties: Vec<(Spanned<String>, Spanned<String>)>,
}

/// How a file sink writes outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkFormat {
    /// A line per outcome: its JSON, or its template.
    Jsonl,
    /// A CSV row per outcome, after a header: the fields of the default
    /// JSON, flattened.
    Csv,
}

/// The outcomes of matching a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    /// Every side arrived in time and every rule holds.
    Matched,
    /// Every side arrived in time but a rule does not hold.
    Mismatched,
    /// A side's wait ran out before every other side arrived.
    TimedOut,
    /// A second event for a side already waiting, or for a key that
    /// completed or timed out within the retention.
    Duplicate,
    /// An event behind the watermark that has nothing to join.
    Late,
    /// Late events that complete a key whose timeout was already reported.
    Resolved,
    /// An input line that could not be read as a record.
    Malformed,
}

impl OutcomeKind {
    /// Every kind, in the order they are documented.
    pub const ALL: [Self; 7] = [
        Self::Matched,
        Self::Mismatched,
        Self::TimedOut,
        Self::Duplicate,
        Self::Late,
        Self::Resolved,
        Self::Malformed,
    ];

    /// The name used in pipeline files and output.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::Mismatched => "mismatched",
            Self::TimedOut => "timed_out",
            Self::Duplicate => "duplicate",
            Self::Late => "late",
            Self::Resolved => "resolved",
            Self::Malformed => "malformed",
        }
    }
}

/// A route from an outcome to a sink.
#[derive(Clone, Debug)]
pub struct OutputConfig {
    /// Which outcome.
    pub outcome: Spanned<OutcomeKind>,
    /// For `timed_out`: only timeouts where this side's wait ran out.
    pub side: Option<Name>,
    /// The sink to write to.
    pub sink: Name,
    /// How to render the outcome; JSON when absent.
    pub template: Option<ExprText>,
    /// Where the output is written.
    pub span: Span,
}

/// Reads a pipeline from the text of a pipeline file: everything that could
/// be read, and every problem found. No pipeline at all when the text is not
/// YAML, or not a mapping.
pub fn parse(text: &str) -> (Option<Pipeline>, Vec<Diagnostic>) {
    match node::parse(text) {
        Ok(root) => pipeline::read(&root, text),
        Err(diagnostic) => (None, vec![diagnostic]),
    }
}
