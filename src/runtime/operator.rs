//! The operator interface and what operators emit.

use std::sync::Arc;

use super::event::{Event, Key};
use crate::config::OutcomeKind;
use crate::expr::{Record, Value};
use crate::plan::Side;
use crate::time::{EventTime, Watermark};

/// A keyed, event-time operator: plain synchronous code, driven by the
/// runtime's driver and testable without it.
pub trait Operator {
    /// Takes one event.
    fn on_event(&mut self, event: Event, out: &mut Vec<Outcome>);
    /// Takes the operator's new watermark: fires every timer it reaches.
    fn on_watermark(&mut self, watermark: Watermark, out: &mut Vec<Outcome>);
    /// Takes the end of all input: fires everything still pending.
    fn on_end(&mut self, out: &mut Vec<Outcome>) {
        self.on_watermark(Watermark::MAX, out);
    }
}

/// The result for some input: a group of events of one key, a single
/// event, or a line that could not be read.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The key; null for a malformed line.
    pub key: Key,
    /// Each side's record, in side order; `None` for a side not in it.
    pub records: Box<[Option<Record>]>,
    /// Each side's event time; meaningful where the record is present.
    pub times: Box<[EventTime]>,
    /// What kind of outcome, and what only that kind carries.
    pub detail: Detail,
}

/// What an outcome carries beyond its key and records.
#[derive(Clone, Debug, PartialEq)]
pub enum Detail {
    /// Every side arrived in time and every rule holds.
    Matched,
    /// Every side arrived but these rules failed (a rule that could not be
    /// evaluated says why after its name).
    Mismatched {
        /// The failed rules.
        failed: Arc<[Arc<str>]>,
    },
    /// The wait of `expired` ran out first.
    TimedOut {
        /// The side whose wait ran out.
        expired: Side,
    },
    /// A second event for `side`.
    Duplicate {
        /// The side the duplicate arrived on.
        side: Side,
        /// What it duplicates.
        of: Prior,
    },
    /// An event of `side` behind the watermark that had nothing to join.
    Late {
        /// The side it arrived on.
        side: Side,
    },
    /// Late events completed a key whose timeout was reported.
    Resolved {
        /// The side whose wait had run out: the alert being resolved.
        expired: Side,
        /// That alert's deadline.
        deadline: EventTime,
        /// Which sides arrived late, by side index.
        arrived: Box<[bool]>,
    },
    /// A line that could not be read.
    Malformed(Arc<Malformed>),
}

/// What a duplicate duplicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prior {
    /// An event still waiting for the other sides.
    Waiting,
    /// An event of a key that completed (matched or mismatched).
    Completed,
    /// An event of a key whose timeout was reported.
    TimedOut,
}

impl Prior {
    /// The name used in output.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Completed => "completed",
            Self::TimedOut => "timed_out",
        }
    }
}

/// An input line that could not be read as a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed {
    /// The source it was read from.
    pub source: Arc<str>,
    /// The file, or `-` for standard input.
    pub file: Arc<str>,
    /// Its one-based line number in the file.
    pub line: u64,
    /// The line as read, without its line break.
    pub raw: String,
    /// What is wrong with it.
    pub reason: String,
}

/// No record on any of `sides` sides, to fill in. Not `vec![None; n]`,
/// which clones its `None` in a loop: this is made for every outcome.
pub(crate) fn no_records(sides: usize) -> Box<[Option<Record>]> {
    std::iter::repeat_with(|| None).take(sides).collect()
}

impl Outcome {
    /// A malformed line: no key, no records.
    pub fn malformed(malformed: Malformed, sides: usize) -> Self {
        Self {
            key: Key::new(Value::Null),
            records: no_records(sides),
            times: vec![EventTime::from_millis(0); sides].into_boxed_slice(),
            detail: Detail::Malformed(Arc::new(malformed)),
        }
    }

    /// The kind of outcome.
    pub fn kind(&self) -> OutcomeKind {
        match self.detail {
            Detail::Matched => OutcomeKind::Matched,
            Detail::Mismatched { .. } => OutcomeKind::Mismatched,
            Detail::TimedOut { .. } => OutcomeKind::TimedOut,
            Detail::Duplicate { .. } => OutcomeKind::Duplicate,
            Detail::Late { .. } => OutcomeKind::Late,
            Detail::Resolved { .. } => OutcomeKind::Resolved,
            Detail::Malformed(_) => OutcomeKind::Malformed,
        }
    }

    /// The side an output's `side` filter selects on: the side whose wait
    /// ran out for timeouts and resolutions, the event's side for
    /// duplicates and late events.
    pub fn side(&self) -> Option<Side> {
        match self.detail {
            Detail::TimedOut { expired } | Detail::Resolved { expired, .. } => Some(expired),
            Detail::Duplicate { side, .. } | Detail::Late { side } => Some(side),
            _ => None,
        }
    }

    /// The sides with no event, in side order.
    pub fn missing(&self) -> impl Iterator<Item = Side> + '_ {
        self.records
            .iter()
            .enumerate()
            .filter(|(_, record)| record.is_none())
            .map(|(side, _)| Side(side))
    }

    /// How many input events or lines this outcome accounts for: a
    /// resolution only its late arrivals, since the rest were in the
    /// timeout it resolves.
    pub fn inputs(&self) -> usize {
        match &self.detail {
            Detail::Resolved { arrived, .. } => arrived.iter().filter(|late| **late).count(),
            Detail::Malformed(_) => 1,
            _ => self
                .records
                .iter()
                .filter(|record| record.is_some())
                .count(),
        }
    }
}
