//! `runner` reconciles event streams declaratively.
//!
//! A pipeline file (YAML) declares sources of events, how each source's
//! event time and watermark are read, how the sources are connected and
//! keyed, how long each side waits for the others, what a match must
//! satisfy, and what each outcome emits where. Small expressions inside the
//! file are parsed, type-checked and compiled once; the result runs as a
//! generic connect-and-match operator on tokio.
//!
//! # How one event travels
//!
//! 1. [`config`] reads the YAML into a typed, spanned
//!    [`Pipeline`](config::Pipeline): names, durations and expression text,
//!    each with the place it was written.
//! 2. [`expr`] parses each expression (pest, Pratt precedence), checks it
//!    against the declared schemas, and compiles it into a closure whose field
//!    reads are indexes.
//! 3. [`plan`] resolves names to ids and builds the operator
//!    [`Graph`](plan::Graph): sources with their timestamp assigners and
//!    key-bys, the match with its wait rules, routes and sinks.
//! 4. [`runtime`] runs it: a source reads lines of files or standard input
//!    (or takes inline records), [`codec`] decodes each line by the schema,
//!    and the source turns the record into an [`Event`](runtime::Event)
//!    (side, event time, key, record), or a line that cannot be read into a
//!    malformed outcome; the driver merges inputs in event-time order,
//!    advances watermarks (idle inputs left out) and waits on the wall clock
//!    where it must; the [`Matcher`](runtime::Matcher) groups events by key
//!    and emits matched, mismatched, timed-out, duplicate, late and resolved
//!    [`Outcome`](runtime::Outcome)s; the router renders each (template,
//!    JSON or CSV row) to its sinks.
//!
//! Every stage reports problems as [`Diagnostic`]s
//! located in the pipeline file, also inside expression strings.
//!
//! # Example
//!
//! ```
//! use runner::diagnostic::SourceFile;
//! use runner::runtime::{Outputs, SharedBuffer};
//!
//! let file = SourceFile::new("payments.yaml", r#"
//! sources:
//!   app:
//!     type: inline
//!     schema: {order: string, ts: int}
//!     event_time: ts
//!     watermark_lag: 0s
//!     records:
//!       - {order: a, ts: 1000}
//!       - {order: b, ts: 2000}
//!   bank:
//!     type: inline
//!     schema: {order: string, ts: int}
//!     event_time: ts
//!     watermark_lag: 0s
//!     records:
//!       - {order: a, ts: 1500}
//! connect:
//!   app: order
//!   bank: order
//! match:
//!   wait: 5s
//! sinks:
//!   out: {type: stdout}
//! outputs:
//!   - {outcome: matched, sink: out, template: 'concat("ok ", key)'}
//!   - {outcome: timed_out, sink: out, template: 'concat("missing ", missing, " for ", key)'}
//! "#);
//! let graph = runner::compile(&file).expect("a valid pipeline");
//! let stdout = SharedBuffer::new();
//! runner::runtime::run_blocking(graph, Outputs::stdout_to(stdout.clone()))?;
//! assert_eq!(stdout.contents(), "ok a\nmissing bank for b\n");
//! # Ok::<(), runner::runtime::RunError>(())
//! ```

pub mod checkpoint;
pub mod codec;

pub mod config;

pub mod diagnostic;
pub mod expr;
pub mod generate;
pub mod plan;
pub mod runtime;
pub mod testing;
pub mod time;

use diagnostic::{Diagnostic, SourceFile};

/// Checks a pipeline file completely: YAML, names, expressions, inline
/// records and the warnings. Returns the graph when there is no error, and
/// every finding, errors and warnings, sorted by position.
pub fn check(file: &SourceFile) -> (Option<plan::Graph>, Vec<Diagnostic>) {
    let (_, graph, diagnostics) = check_pipeline(file);
    (graph, diagnostics)
}

/// As [`check`], also returning the pipeline as read.
fn check_pipeline(
    file: &SourceFile,
) -> (
    Option<config::Pipeline>,
    Option<plan::Graph>,
    Vec<Diagnostic>,
) {
    let (pipeline, mut diagnostics) = config::parse(file.text());
    let graph = pipeline.as_ref().and_then(|pipeline| {
        let (graph, found) = plan::build(pipeline);
        diagnostics.extend(found);
        graph
    });
    diagnostic::sort(&mut diagnostics);
    let valid = !diagnostics.iter().any(diagnostic::Diagnostic::is_error);
    (pipeline, graph.filter(|_| valid), diagnostics)
}

/// The graph of a pipeline file, ignoring warnings.
///
/// # Errors
///
/// Every finding, sorted by position in the file, when there is an error.
pub fn compile(file: &SourceFile) -> Result<plan::Graph, Vec<Diagnostic>> {
    match check(file) {
        (Some(graph), _) => Ok(graph),
        (None, diagnostics) => Err(diagnostics),
    }
}
