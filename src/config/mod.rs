//! Pipeline files: YAML text to a typed, spanned [`Pipeline`].
//!
//! Takes the text of a pipeline file; produces inert config data in which
//! every name, duration and expression keeps the span it was written at.
//! Expressions stay text ([`ExprText`]) here: parsing and checking them is the
//! job of [`crate::expr`] and [`crate::plan`]. Nothing here runs anything.

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where in the pipeline file.
    pub span: Span,
}

/// A user-chosen name (of a source, sink or field) and where it was written.
pub type Name = Spanned<String>;

/// A pipeline as written: the top level of a pipeline file.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// An optional name for messages and `explain`.
    pub name: Option<Spanned<String>>,
    /// Every declared source, in the order written.
    pub sources: Vec<SourceConfig>,
    /// The sources to match, each with its key expression, in the order
    /// written; this order is the order of the sides.
    pub connect: Vec<ConnectConfig>,
    /// Where `connect` is written.
    pub connect_span: Span,
    /// How long each side waits for the others.
    pub wait: WaitConfig,
    /// What a complete match must satisfy, if anything.
    pub condition: Option<ExprText>,
    /// Where `match` is written.
    pub match_span: Span,
    /// Every declared sink, in the order written.
    pub sinks: Vec<SinkConfig>,
    /// Which outcomes go to which sink, rendered how.
    pub outputs: Vec<OutputConfig>,
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
    /// since the epoch) or `timestamp`.
    pub event_time: ExprText,
    /// How far behind the newest event time the watermark trails.
    pub watermark_lag: Spanned<Duration>,
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
}

/// One connected source and how its events are keyed.
#[derive(Clone, Debug)]
pub struct ConnectConfig {
    /// The source.
    pub source: Name,
    /// The key expression, evaluated on the source's records.
    pub key: ExprText,
}

/// How long each side waits for the others, in event time.
#[derive(Clone, Debug)]
pub enum WaitConfig {
    /// The same wait for every side: `wait: 5s`.
    All(Spanned<Duration>),
    /// A wait per side, in the order written.
    PerSide(Vec<(Name, Spanned<Duration>)>),
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkKind {
    /// Standard output, a line per outcome.
    Stdout,
}

/// The outcomes of matching a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    /// Every side arrived in time and the condition, if any, holds.
    Matched,
    /// Every side arrived in time but the condition does not hold.
    Mismatched,
    /// A side's wait ran out before every other side arrived.
    TimedOut,
}

impl OutcomeKind {
    /// Every kind, in the order of their names.
    pub const ALL: [Self; 3] = [Self::Matched, Self::Mismatched, Self::TimedOut];

    /// The name used in pipeline files and output.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::Mismatched => "mismatched",
            Self::TimedOut => "timed_out",
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

/// Reads a pipeline from the text of a pipeline file.
///
/// # Errors
///
/// Every problem found, in the order of their position in the file.
pub fn parse(text: &str) -> Result<Pipeline, Vec<Diagnostic>> {
    let root = node::parse(text).map_err(|diagnostic| vec![diagnostic])?;
    pipeline::read(&root, text)
}
