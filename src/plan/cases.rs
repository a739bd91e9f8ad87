//! Test cases: checked like the rest of the pipeline, so `runner validate`
//! reports a broken test before `runner test` tries to run it.

use super::build::Builder;
use super::records;
use super::sides::Sides;
use crate::config::{Expected, Name, OutcomeKind, TestCase};
use crate::diagnostic::{Code, Diagnostic, did_you_mean};

impl Builder<'_> {
    /// Checks every test case: its records against their sources' schemas,
    /// and every side and sink it names.
    pub(super) fn test_cases(&mut self, sides: &Sides<'_>) {
        for case in &self.pipeline.tests {
            self.test_case(case, sides);
        }
    }

    fn test_case(&mut self, case: &TestCase, sides: &Sides<'_>) {
        for (source, nodes) in &case.records {
            match sides.scopes.iter().find(|side| side.name == source.value) {
                Some(side) => {
                    let _ = records::convert(nodes, &side.layout, &mut self.diagnostics);
                }
                // A declared source without a readable schema, or an
                // incomplete `connect`, was reported already.
                None if sides.complete && self.pipeline.sources.schema(&source.value).is_some() => {
                    self.report(
                        Diagnostic::error(
                            Code::InvalidTest,
                            format!("records for `{}`, which is not connected", source.value),
                            source.span,
                        )
                        .label("its records would never be read"),
                    );
                }
                None if self.pipeline.sources.names.is_some()
                    && !self.pipeline.sources.declares(&source.value) =>
                {
                    self.unknown_test_source(source, sides);
                }
                None => {}
            }
        }
        for expected in case.expect.iter().flatten() {
            self.expectation(expected, sides);
        }
        for (sink, _) in case.output.iter().flatten() {
            if !self.pipeline.sinks.declares(&sink.value) {
                let help = did_you_mean(
                    &sink.value,
                    self.pipeline
                        .sinks
                        .items
                        .iter()
                        .map(|s| s.name.value.as_str()),
                )
                .map(|s| format!("did you mean `{s}`?"));
                self.report(
                    Diagnostic::error(
                        Code::UnknownSink,
                        format!("unknown sink `{}`", sink.value),
                        sink.span,
                    )
                    .label("not declared under `sinks`")
                    .help(help),
                );
            }
        }
    }

    fn unknown_test_source(&mut self, source: &Name, sides: &Sides<'_>) {
        let help = did_you_mean(
            &source.value,
            sides
                .connected
                .iter()
                .map(|side| side.config.name.value.as_str()),
        )
        .map(|s| format!("did you mean `{s}`?"));
        self.report(
            Diagnostic::error(
                Code::UnknownSource,
                format!("unknown source `{}`", source.value),
                source.span,
            )
            .label("not declared under `sources`")
            .help(help),
        );
    }

    /// An expected outcome may name sides only where its kind has them.
    fn expectation(&mut self, expected: &Expected, sides: &Sides<'_>) {
        let kind = expected.outcome.value;
        let misplaced = |field: &str, belongs: OutcomeKind| {
            Diagnostic::error(
                Code::InvalidTest,
                format!(
                    "`{field}` belongs to `{}` outcomes, not `{}`",
                    belongs.name(),
                    kind.name()
                ),
                expected.outcome.span,
            )
        };
        if kind != OutcomeKind::TimedOut {
            if let Some(expired) = &expected.expired {
                self.report(
                    misplaced("expired", OutcomeKind::TimedOut)
                        .secondary(expired.span, "given here"),
                );
            }
            if let Some(missing) = expected.missing.as_ref().and_then(|m| m.first()) {
                self.report(
                    misplaced("missing", OutcomeKind::TimedOut)
                        .secondary(missing.span, "given here"),
                );
            }
        }
        if kind != OutcomeKind::Mismatched
            && let Some(reason) = &expected.reason
        {
            self.report(
                misplaced("reason", OutcomeKind::Mismatched).secondary(reason.span, "given here"),
            );
        }
        if !sides.complete {
            return;
        }
        let named = expected
            .expired
            .iter()
            .chain(expected.missing.iter().flatten());
        for side in named {
            if !sides.scopes.iter().any(|s| s.name == side.value) {
                let help = did_you_mean(&side.value, sides.scopes.iter().map(|s| s.name.as_str()))
                    .map(|s| format!("did you mean `{s}`?"));
                let diagnostic = Diagnostic::error(
                    Code::InvalidTest,
                    format!("`{}` is not a connected source", side.value),
                    side.span,
                )
                .help(help);
                self.diagnostics.push(diagnostic);
            }
        }
    }
}
