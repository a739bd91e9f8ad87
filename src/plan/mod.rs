//! Planning: a [`Pipeline`] to an operator [`Graph`].
//!
//! Takes inert config; resolves every name to an id exactly once, parses,
//! checks and compiles every expression, converts inline records to rows,
//! and reports every problem it finds. The [`Graph`] it produces holds ids,
//! compiled closures and plain values; `Display` renders it for
//! `runner explain`. Nothing here reads YAML or runs anything.

mod build;
mod cases;
mod explain;
mod files;
mod fingerprint;

mod graph;
mod records;
mod sides;
mod warnings;

pub(crate) use sides::MAX_SIDES;

pub use graph::{
    Bound, Graph, InlineRecord, Input, MatchNode, Route, RuleNode, Side, SideNode, SinkId,
    SinkNode, SourceNode, Variable,
};

use crate::config::Pipeline;
use crate::diagnostic::Diagnostic;

/// Builds the operator graph of `pipeline`: the graph if nothing is wrong,
/// and every finding, errors and warnings, in no particular order.
pub fn build(pipeline: &Pipeline) -> (Option<Graph>, Vec<Diagnostic>) {
    build::build(pipeline)
}
