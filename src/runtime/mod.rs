//! Running a graph: sources, watermarks, the match operator and sinks.
//!
//! Takes a [`Graph`]; produces outcomes on its sinks and a [`Summary`].
//! Each source runs as a tokio task that evaluates event times and keys and
//! sends batches over a bounded channel. One driver merges the inputs in
//! event-time order, tracks watermarks ([`Watermarks`]), feeds the
//! [`Matcher`] and renders what it emits to sink tasks. The operator is
//! plain synchronous code ([`Operator`]), tested without tokio. Nothing here
//! parses YAML or expressions.

mod driver;
mod error;
mod event;
mod matcher;
mod operator;
mod router;
mod sink;
mod source;
mod watermarks;

pub use error::RunError;
pub use event::{Event, Key};
pub use matcher::{Matcher, Rule};
pub use operator::{Detail, Malformed, Operator, Outcome, Prior};
pub use sink::{Outputs, SharedBuffer};
pub use watermarks::Watermarks;

use crate::config::OutcomeKind;
use crate::plan::Graph;

/// What a run did.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Events read per source, in side order.
    pub events: Vec<(String, u64)>,
    /// Outcomes emitted per kind.
    pub outcomes: Vec<(OutcomeKind, u64)>,
    /// Events still waiting in the operator when the run ended.
    pub pending_events: usize,
    /// Every outcome, in order, when the outputs asked for it
    /// ([`Outputs::with_log`]).
    pub log: Option<Vec<Outcome>>,
}

/// Runs `graph` until its inputs end, writing to `outputs`.
///
/// # Errors
///
/// An expression that fails on an event, or a sink that cannot be written.
pub async fn run(graph: Graph, outputs: Outputs) -> Result<Summary, RunError> {
    driver::drive(graph, outputs).await
}

/// Runs `graph` on a new single-threaded tokio runtime.
///
/// # Errors
///
/// As [`run`]; also if the runtime cannot start.
pub fn run_blocking(graph: Graph, outputs: Outputs) -> Result<Summary, RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Start)?;
    runtime.block_on(run(graph, outputs))
}
