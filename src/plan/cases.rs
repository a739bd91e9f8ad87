//! Test cases: checked like the rest of the pipeline, so `runner validate`
//! reports a broken test before `runner test` tries to run it.

use super::build::Builder;
use super::records;
use super::sides::Sides;
use crate::config::{Expected, Name, OutcomeKind, TestCase};
use crate::diagnostic::{Code, Diagnostic, Span, did_you_mean};

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

    /// The rules an expected `mismatched` names as failed must be declared.
    fn failed_rules(&mut self, expected: &Expected) {
        if let Some(matching) = self.pipeline.matching.as_ref().filter(|m| m.rules_complete) {
            for rule in expected.failed.iter().flatten() {
                if !matching.rules.iter().any(|r| r.name.value == rule.value) {
                    let help = did_you_mean(
                        &rule.value,
                        matching.rules.iter().map(|r| r.name.value.as_str()),
                    )
                    .map(|s| format!("did you mean `{s}`?"));
                    self.report(
                        Diagnostic::error(
                            Code::InvalidTest,
                            format!("`{}` is not a rule", rule.value),
                            rule.span,
                        )
                        .help(help),
                    );
                }
            }
        }
    }

    /// An expected outcome may give only what its kind carries, and name
    /// only connected sides and declared rules.
    fn expectation(&mut self, expected: &Expected, sides: &Sides<'_>) {
        use OutcomeKind::{Duplicate, Late, Malformed, Mismatched, Resolved, TimedOut};
        let kind = expected.outcome.value;
        if kind == Malformed {
            self.report(
                Diagnostic::error(
                    Code::InvalidTest,
                    "a test cannot expect `malformed`",
                    expected.outcome.span,
                )
                .help(
                    "test records are written in the pipeline, so they are never malformed"
                        .to_string(),
                ),
            );
        }
        let fields: [(&str, Option<Span>, &[OutcomeKind]); 4] = [
            (
                "expired",
                expected.expired.as_ref().map(|n| n.span),
                &[TimedOut, Resolved],
            ),
            (
                "missing",
                expected
                    .missing
                    .as_ref()
                    .and_then(|m| m.first())
                    .map(|n| n.span),
                &[TimedOut],
            ),
            (
                "failed",
                expected
                    .failed
                    .as_ref()
                    .and_then(|f| f.first())
                    .map(|n| n.span),
                &[Mismatched],
            ),
            (
                "side",
                expected.side.as_ref().map(|n| n.span),
                &[Duplicate, Late],
            ),
        ];
        for (field, span, kinds) in fields {
            let Some(span) = span.filter(|_| !kinds.contains(&kind)) else {
                continue;
            };
            let owners: Vec<String> = kinds.iter().map(|k| format!("`{}`", k.name())).collect();
            self.report(
                Diagnostic::error(
                    Code::InvalidTest,
                    format!(
                        "`{field}` belongs to {} outcomes, not `{}`",
                        owners.join(" and "),
                        kind.name()
                    ),
                    expected.outcome.span,
                )
                .secondary(span, "given here"),
            );
        }
        self.failed_rules(expected);
        if !sides.complete {
            return;
        }
        let named = expected
            .expired
            .iter()
            .chain(expected.missing.iter().flatten())
            .chain(expected.side.iter());
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
                self.report(diagnostic);
            }
        }
    }
}
