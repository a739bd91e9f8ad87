//! Diagnostics: every problem found in a pipeline file, as data.
//!
//! Each stage reports its own error kinds and turns them into [`Diagnostic`]s:
//! a stable [`Code`], a message, a primary [`Label`] with a byte-range [`Span`]
//! into the pipeline file, optional secondary labels and a help line. Offsets
//! become `line:column` only when rendered, in [`render`].

mod code;
mod github;
mod json;
mod render;
mod source_file;

pub use code::Code;
pub use github::render_github;
pub use json::render_json;
pub use render::{Style, render};
pub use source_file::SourceFile;

use std::fmt;

/// A byte range in a text: the pipeline file, or an expression within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// The bytes from `start` up to, not including, `end`.
    pub const fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// This span moved `by` bytes to the right.
    #[must_use]
    pub const fn shift(self, by: usize) -> Self {
        Self::new(self.start + by, self.end + by)
    }

    /// The smallest span covering both.
    #[must_use]
    pub fn to(self, other: Self) -> Self {
        Self::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The pipeline cannot run.
    Error,
    /// Legal, but likely not what was meant.
    Warning,
}

/// A span with a short explanation of what is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// Where, in the pipeline file.
    pub span: Span,
    /// What is wrong or relevant there; may be empty.
    pub message: String,
}

/// One finding about a pipeline file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable identifier, listed in the README.
    pub code: Code,
    /// Lowercase, no trailing period; identifiers in backticks.
    pub message: String,
    /// The place the finding is about.
    pub primary: Label,
    /// Related places, such as an earlier definition.
    pub secondary: Vec<Label>,
    /// A suggestion for the fix.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(code: Code, message: impl Into<String>, span: Span) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            primary: Label {
                span,
                message: String::new(),
            },
            secondary: Vec::new(),
            help: None,
        }
    }

    /// A warning at `span`.
    pub fn warning(code: Code, message: impl Into<String>, span: Span) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, message, span)
        }
    }

    /// Whether this is an error rather than a warning.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The same diagnostic with a label on its primary span.
    #[must_use]
    pub fn label(mut self, message: impl Into<String>) -> Self {
        self.primary.message = message.into();
        self
    }

    /// The same diagnostic with a related place.
    #[must_use]
    pub fn secondary(mut self, span: Span, message: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    /// The same diagnostic with a help line, if there is one.
    #[must_use]
    pub fn help(mut self, help: impl Into<Option<String>>) -> Self {
        self.help = help.into();
        self
    }
}

impl fmt::Display for Diagnostic {
    /// The message alone, for logs; use [`render`] to show it in context.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]: {}", self.severity, self.code, self.message)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
        })
    }
}

/// Sorts findings by position in the file, then by code, so every run reports
/// them in the same order.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        (a.primary.span, a.code, &a.message).cmp(&(b.primary.span, b.code, &b.message))
    });
}

/// A "did you mean" suggestion: the candidate closest to `name`, if it is
/// close enough to be a plausible typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|&(distance, _)| distance <= limit)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Edit distance over characters, case-insensitive, where swapping two
/// neighbours counts as one edit, the commonest typo (`wiat` for `wait`):
/// the optimal string alignment distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    // Three rows of the table: two back, one back, and the current one.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            current[j] = (previous[j - 1] + cost)
                .min(previous[j] + 1)
                .min(current[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                current[j] = current[j].min(before[j - 2] + 1);
            }
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        let fields = ["order_id", "status", "ts"];
        assert_eq!(did_you_mean("odrer_id", fields), Some("order_id"));
        assert_eq!(did_you_mean("Status", fields), Some("status"));
        assert_eq!(did_you_mean("t", fields), Some("ts"));
        assert_eq!(did_you_mean("amount", fields), None);
        assert_eq!(did_you_mean("wiat", ["wait", "condition"]), Some("wait"));
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("订单", "订单号"), 1);
        assert_eq!(edit_distance("wiat", "wait"), 1);
        assert_eq!(edit_distance("ab", "ba"), 1);
    }
}
