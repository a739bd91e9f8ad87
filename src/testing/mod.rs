//! `runner test`: a pipeline's own test cases, run through the real runtime.
//!
//! Takes a pipeline file; checks it like `runner validate`, then runs each
//! case of its `tests` section: the case's records replace every source's
//! input, every sink writes to a buffer of its own, and what comes out is
//! compared with what the case expects. Produces a [`CaseResult`] per case,
//! with a readable diff for each failure.

mod diff;

use std::fmt::Write as _;

use diff::{Change, diff};

use crate::config::{Expected, Name, Pipeline, SourceKind, TestCase};
use crate::diagnostic::{Diagnostic, SourceFile, Span, Style, render};
use crate::plan;
use crate::plan::Side;
use crate::runtime::{self, Detail, Outcome, Outputs};

/// How one test case went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Where the case is written.
    pub span: Span,
    /// Why it failed: a diff of expected against actual, or the error that
    /// stopped the run. `None` when it passed.
    pub failure: Option<String>,
}

/// Runs every test case of `file`.
///
/// # Errors
///
/// Every finding, when the pipeline has errors and so cannot run.
pub fn run(file: &SourceFile) -> Result<Vec<CaseResult>, Vec<Diagnostic>> {
    let (pipeline, graph, diagnostics) = crate::check_pipeline(file);
    let (Some(pipeline), Some(_)) = (pipeline, graph) else {
        return Err(diagnostics);
    };
    Ok(pipeline
        .tests
        .iter()
        .map(|case| CaseResult {
            name: case.name.value.clone(),
            span: case.name.span,
            failure: run_case(&pipeline, case, file).err(),
        })
        .collect())
}

/// Runs one case: its records as every source's input.
fn run_case(pipeline: &Pipeline, case: &TestCase, file: &SourceFile) -> Result<(), String> {
    let mut variant = pipeline.clone();
    variant.tests.clear();
    for source in &mut variant.sources.items {
        let records = case
            .records
            .iter()
            .find(|(name, _)| name.value == source.name.value);
        source.kind = SourceKind::Inline {
            records: records
                .map(|(_, records)| records.clone())
                .unwrap_or_default(),
        };
    }
    let (graph, diagnostics) = plan::build(&variant);
    // The pipeline and its cases were checked; this is only for safety.
    let Some(graph) = graph else {
        return Err(render(&diagnostics, file, Style::Plain));
    };
    let sinks: Vec<String> = graph.sinks.iter().map(|sink| sink.name.clone()).collect();
    let sides: Vec<String> = graph
        .matcher
        .sides
        .iter()
        .map(|side| side.name.clone())
        .collect();
    let (outputs, buffers) = Outputs::capture(sinks.len());
    let summary = match runtime::run_blocking(graph, outputs.with_log()) {
        Ok(summary) => summary,
        Err(error) => {
            return Err(match error.to_diagnostic() {
                Some(diagnostic) => render(&[diagnostic], file, Style::Plain),
                None => format!("the run failed: {error}"),
            });
        }
    };
    let mut failure = String::new();
    if let Some(expect) = &case.expect {
        let actual = summary.log.unwrap_or_default();
        let changes = diff(expect, &actual, |expected, actual| {
            matches(expected, actual, &sides)
        });
        if changes
            .iter()
            .any(|change| !matches!(change, Change::Same(..)))
        {
            failure.push_str("outcomes expected (-) and actual (+):\n");
            for change in changes {
                let _ = match change {
                    Change::Same(expected, _) => writeln!(failure, "  {}", show_expected(expected)),
                    Change::Missing(expected) => writeln!(failure, "- {}", show_expected(expected)),
                    Change::Extra(actual) => writeln!(failure, "+ {}", show_actual(actual, &sides)),
                };
            }
        }
    }
    for (sink, expected) in case.output.iter().flatten() {
        let Some(index) = sinks.iter().position(|name| *name == sink.value) else {
            continue;
        };
        let written = buffers[index].contents();
        let actual: Vec<&str> = written.lines().collect();
        let changes = diff(expected, &actual, |expected, actual| {
            expected.value == *actual
        });
        if changes
            .iter()
            .any(|change| !matches!(change, Change::Same(..)))
        {
            let _ = writeln!(
                failure,
                "lines of `{}` expected (-) and actual (+):",
                sink.value
            );
            for change in changes {
                let _ = match change {
                    Change::Same(line, _) => writeln!(failure, "  {}", line.value),
                    Change::Missing(line) => writeln!(failure, "- {}", line.value),
                    Change::Extra(line) => writeln!(failure, "+ {line}"),
                };
            }
        }
    }
    if failure.is_empty() {
        Ok(())
    } else {
        Err(failure)
    }
}

/// Whether `actual` is the outcome `expected` describes; fields the
/// expectation leaves out are not compared.
fn matches(expected: &Expected, actual: &Outcome, sides: &[String]) -> bool {
    let names = |names: &Option<Vec<Name>>, actual: &[&str]| {
        names.as_ref().is_none_or(|names| {
            names
                .iter()
                .map(|n| n.value.as_str())
                .eq(actual.iter().copied())
        })
    };
    let side = |name: &Option<Name>| {
        name.as_ref().is_none_or(|name| {
            actual
                .side()
                .is_some_and(|side| sides[side.0] == name.value)
        })
    };
    let missing: Vec<&str> = actual
        .missing()
        .map(|side| sides[side.0].as_str())
        .collect();
    let failed: Vec<&str> = match &actual.detail {
        Detail::Mismatched { failed } => failed.iter().map(|rule| rule_name(rule)).collect(),
        _ => Vec::new(),
    };
    expected.outcome.value == actual.kind()
        && expected.key.value == actual.key.value().to_string()
        && side(&expected.expired)
        && side(&expected.side)
        && names(&expected.missing, &missing)
        && names(&expected.failed, &failed)
}

/// A failed rule's name, without why it could not be evaluated.
fn rule_name(failed: &str) -> &str {
    failed
        .split_once(" (cannot be evaluated")
        .map_or(failed, |(name, _)| name)
}

/// An expectation as it is written: `{outcome: timed_out, key: k, missing: [bank]}`.
fn show_expected(expected: &Expected) -> String {
    let mut text = format!(
        "{{outcome: {}, key: {}",
        expected.outcome.value.name(),
        scalar(&expected.key.value)
    );
    let list = |names: &[Name]| {
        names
            .iter()
            .map(|n| scalar(&n.value))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(side) = &expected.expired {
        let _ = write!(text, ", expired: {}", scalar(&side.value));
    }
    if let Some(missing) = &expected.missing {
        let _ = write!(text, ", missing: [{}]", list(missing));
    }
    if let Some(failed) = &expected.failed {
        let _ = write!(text, ", failed: [{}]", list(failed));
    }
    if let Some(side) = &expected.side {
        let _ = write!(text, ", side: {}", scalar(&side.value));
    }
    text.push('}');
    text
}

/// An outcome in the form an expectation takes, so it can be copied into
/// the test.
fn show_actual(outcome: &Outcome, sides: &[String]) -> String {
    let mut text = format!(
        "{{outcome: {}, key: {}",
        outcome.kind().name(),
        scalar(&outcome.key.value().to_string())
    );
    let name = |side: Side| scalar(&sides[side.0]);
    match &outcome.detail {
        Detail::TimedOut { expired } => {
            let missing: Vec<String> = outcome.missing().map(name).collect();
            let _ = write!(
                text,
                ", expired: {}, missing: [{}]",
                name(*expired),
                missing.join(", ")
            );
        }
        Detail::Resolved { expired, .. } => {
            let _ = write!(text, ", expired: {}", name(*expired));
        }
        Detail::Mismatched { failed } => {
            let failed: Vec<String> = failed.iter().map(|rule| scalar(rule_name(rule))).collect();
            let _ = write!(text, ", failed: [{}]", failed.join(", "));
        }
        Detail::Duplicate { side, .. } | Detail::Late { side } => {
            let _ = write!(text, ", side: {}", name(*side));
        }
        Detail::Matched | Detail::Malformed(_) => {}
    }
    text.push('}');
    text
}

/// `text` as a YAML flow scalar: bare when that reads back as the same
/// text, double-quoted otherwise.
fn scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || "-_./@".contains(c))
        && !text.starts_with(['-', '@', '.'])
        && !["true", "false", "null", "~"].contains(&text)
        && text.parse::<f64>().is_err();
    if plain {
        return text.to_string();
    }
    let mut quoted = String::new();
    crate::expr::write_json_string(text, &mut quoted);
    quoted
}

#[cfg(test)]
mod tests {
    use super::scalar;

    #[test]
    fn scalars_are_quoted_only_when_needed() {
        assert_eq!(scalar("order-1"), "order-1");
        assert_eq!(scalar("对账"), "对账");
        assert_eq!(scalar("007"), "\"007\"");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("a: b"), "\"a: b\"");
        assert_eq!(scalar("`x` does not hold"), "\"`x` does not hold\"");
        assert_eq!(scalar(""), "\"\"");
    }
}
