//! Planning: a [`Pipeline`](crate::config::Pipeline) to an operator [`Graph`].
//!
//! Takes inert config; resolves every name to an id exactly once, parses,
//! checks and compiles every expression, converts inline records to rows,
//! and reports every problem it finds. The [`Graph`] it produces holds ids,
//! compiled closures and plain values; `Display` renders it for
//! `runner explain`. Nothing here reads YAML or runs anything.

mod build;
mod explain;
mod graph;
mod records;

pub use graph::{
    Bound, Graph, InlineRecord, Input, MatchNode, Route, Side, SideNode, SinkId, SinkNode,
    SourceNode,
};

use crate::config::Pipeline;
use crate::diagnostic::Diagnostic;

/// Builds the operator graph of `pipeline`.
///
/// # Errors
///
/// Every problem found, sorted by position in the pipeline file.
pub fn build(pipeline: &Pipeline) -> Result<Graph, Vec<Diagnostic>> {
    build::build(pipeline)
}
