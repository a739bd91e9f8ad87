//! The operator graph: what runs, with names resolved to ids and every
//! expression compiled.

use std::sync::Arc;

use crate::config::{Clock, ExprText, Format, KafkaSource, OutcomeKind, SinkKind};
use crate::diagnostic::Span;
use crate::expr::{Compiled, Expr, Record, RecordType, Type};
use crate::time::Duration;

/// Index of a connected input of the match: a position in
/// [`Graph::sources`] and in [`MatchNode::sides`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Side(pub usize);

/// Index of a sink in [`Graph::sinks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SinkId(pub usize);

/// A compiled pipeline.
#[derive(Debug)]
pub struct Graph {
    /// The pipeline's name, if it has one.
    pub name: Option<String>,
    /// One source per side, in side order.
    pub sources: Vec<SourceNode>,
    /// The connect-and-match operator.
    pub matcher: MatchNode,
    /// Which outcomes go where, in the order declared.
    pub routes: Vec<Route>,
    /// The sinks.
    pub sinks: Vec<SinkNode>,
    /// How often a run writes a checkpoint; `None` when it writes none.
    pub checkpoint: Option<Duration>,
    /// Whether Kafka sinks write in a Kafka transaction per checkpoint.
    pub transactions: bool,
    /// The compacted Kafka topic each checkpoint's transaction also writes
    /// every partition's state to.
    pub state_topic: Option<String>,
}

/// A source with its timestamp assigner and key-by.
#[derive(Debug)]
pub struct SourceNode {
    /// The source's name.
    pub name: String,
    /// The side of the match it feeds.
    pub side: Side,
    /// The layout of its records.
    pub layout: Arc<RecordType>,
    /// Where its events come from.
    pub input: Input,
    /// The event time of a record: `int` milliseconds or a `timestamp`;
    /// `None` with processing time, where a record's time is when it is
    /// read, and for a Kafka source that takes its messages' timestamps.
    pub event_time: Option<Bound>,
    /// How far the source's watermark trails its newest event time.
    pub watermark_lag: Duration,
    /// After how long without events the source stops holding back the
    /// watermark.
    pub idle_timeout: Option<Duration>,
    /// The key of a record.
    pub key: Bound,
}

/// Where a source's events come from.
#[derive(Debug)]
pub enum Input {
    /// Records from the pipeline file, already checked against the schema.
    Inline(Vec<InlineRecord>),
    /// Lines of the file a path names, or of every file a glob matches, in
    /// name order.
    Files {
        /// The path or glob as written, relative to the pipeline file's
        /// directory.
        path: String,
        /// Where the path is written.
        span: Span,
        /// How lines are read.
        format: Format,
        /// Whether to keep reading as files grow, until stopped.
        follow: bool,
    },
    /// Lines of standard input.
    Stdin {
        /// How lines are read.
        format: Format,
    },
    /// Messages of a Kafka topic; without an `event_time`, each record's
    /// time is its message's timestamp.
    Kafka(KafkaSource),
}

/// A record written in the pipeline file.
#[derive(Debug)]
pub struct InlineRecord {
    /// Its values.
    pub record: Record,
    /// Where it is written.
    pub span: Span,
}

/// The connect-and-match operator.
#[derive(Debug)]
pub struct MatchNode {
    /// The sides, in the order `connect` lists them.
    pub sides: Vec<SideNode>,
    /// The type every side's key has.
    pub key_type: Type,
    /// What a complete match must satisfy, in the order written.
    pub rules: Vec<RuleNode>,
    /// How long, in event time, a key is remembered after it is done.
    pub retention: Duration,
    /// Which clock the waits run on.
    pub clock: Clock,
    /// How long every live input may be idle before the watermark follows
    /// the wall clock.
    pub idle_grace: Option<Duration>,
}

/// A named rule of the match.
#[derive(Debug)]
pub struct RuleNode {
    /// Its name.
    pub name: String,
    /// The `bool` expression.
    pub rule: Bound,
}

/// A variable of output templates, beside the sides' records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variable {
    /// The key.
    Key,
    /// The missing sides, joined with `, `.
    Missing,
    /// The side whose wait ran out.
    Expired,
    /// The rules that failed, joined with `, `.
    Failed,
    /// The side a duplicate or late event arrived on.
    Side,
    /// What a duplicate duplicates: `waiting`, `completed` or `timed_out`.
    Of,
    /// The sides that arrived late to resolve an alert, joined with `, `.
    Arrived,
    /// The deadline of the alert a resolution resolves.
    Deadline,
    /// The source of a malformed line.
    Source,
    /// Its file, or `-` for standard input.
    File,
    /// Its line number.
    Line,
    /// The line itself.
    Raw,
    /// What is wrong with it.
    Reason,
}

impl Variable {
    /// The name templates use.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Missing => "missing",
            Self::Expired => "expired",
            Self::Failed => "failed",
            Self::Side => "side",
            Self::Of => "of",
            Self::Arrived => "arrived",
            Self::Deadline => "deadline",
            Self::Source => "source",
            Self::File => "file",
            Self::Line => "line",
            Self::Raw => "raw",
            Self::Reason => "reason",
        }
    }

    /// Its type, given the key's.
    pub fn ty(self, key: &Type) -> Type {
        match self {
            Self::Key => key.clone(),
            Self::Line => Type::INT,
            Self::Deadline => Type::TIMESTAMP,
            _ => Type::STRING,
        }
    }

    /// The variables of a template for `kind`, in the order the runtime
    /// gives their values.
    pub const fn of(kind: OutcomeKind) -> &'static [Self] {
        match kind {
            OutcomeKind::Matched => &[Self::Key],
            OutcomeKind::Mismatched => &[Self::Key, Self::Failed],
            OutcomeKind::TimedOut => &[Self::Key, Self::Missing, Self::Expired],
            OutcomeKind::Duplicate => &[Self::Key, Self::Side, Self::Of],
            OutcomeKind::Late => &[Self::Key, Self::Side],
            OutcomeKind::Resolved => &[Self::Key, Self::Expired, Self::Arrived, Self::Deadline],
            OutcomeKind::Malformed => &[
                Self::Source,
                Self::File,
                Self::Line,
                Self::Raw,
                Self::Reason,
            ],
        }
    }
}

/// One side of the match.
#[derive(Debug)]
pub struct SideNode {
    /// The source's name.
    pub name: String,
    /// How long, in event time, an event of this side waits for the others.
    pub wait: Duration,
    /// The layout of its records.
    pub layout: Arc<RecordType>,
}

/// A route from an outcome to a sink.
#[derive(Debug)]
pub struct Route {
    /// Which outcome.
    pub outcome: OutcomeKind,
    /// For timeouts: only those where this side's wait ran out.
    pub side: Option<Side>,
    /// Where to write.
    pub sink: SinkId,
    /// How to render: a template, or JSON when `None`.
    pub template: Option<Bound>,
    /// For a Kafka sink with a `key`: the record key of this output's
    /// outcomes (the match key when `None`).
    pub key: Option<Bound>,
}

/// A sink.
#[derive(Debug)]
pub struct SinkNode {
    /// Its name.
    pub name: String,
    /// What it writes to.
    pub kind: SinkKind,
}

/// A compiled expression with what it was compiled from.
#[derive(Debug)]
pub struct Bound {
    /// The parsed expression, printed by `explain`.
    pub expr: Expr,
    /// Its type.
    pub ty: Type,
    /// The closure that evaluates it.
    pub compiled: Compiled,
    /// Its text in the pipeline file, to locate evaluation errors.
    pub text: ExprText,
}

impl Bound {
    /// The pipeline-file span of `span`, a byte range of the expression.
    pub fn file_span(&self, span: Span) -> Span {
        self.text.file_span(span)
    }
}
