//! The operator interface and what operators emit.

use std::sync::Arc;

use super::event::{Event, Key};
use crate::config::OutcomeKind;
use crate::expr::Record;
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

/// The result for one group of events of a key.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Matched, mismatched or timed out.
    pub kind: OutcomeKind,
    /// The key.
    pub key: Key,
    /// Each side's record, in side order; `None` for a missing side.
    pub records: Box<[Option<Record>]>,
    /// Each side's event time; meaningful where the record is present.
    pub times: Box<[EventTime]>,
    /// For timeouts: the side whose wait ran out first.
    pub expired: Option<Side>,
    /// For mismatches: why.
    pub reason: Option<Arc<str>>,
}

impl Outcome {
    /// The sides with no event, in side order.
    pub fn missing(&self) -> impl Iterator<Item = Side> + '_ {
        self.records
            .iter()
            .enumerate()
            .filter(|(_, record)| record.is_none())
            .map(|(side, _)| Side(side))
    }

    /// How many input events the outcome accounts for.
    pub fn events(&self) -> usize {
        self.records
            .iter()
            .filter(|record| record.is_some())
            .count()
    }
}
