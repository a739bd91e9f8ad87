//! Warnings: pipelines that are legal but likely not what was meant.

use super::build::Builder;
use super::sides::Sides;
use crate::config::{Clock, OutcomeKind, SourceKind, WaitConfig};
use crate::diagnostic::{Code, Diagnostic};
use crate::time::Duration;

impl Builder<'_> {
    /// Warns about waits and lags that defeat each other, and about outcomes
    /// that are written nowhere or can never happen.
    pub(super) fn warnings(&mut self, sides: &Sides<'_>) {
        let mut zero_waits = Vec::new();
        for side in &sides.connected {
            let Some(wait) = side.wait else { continue };
            let name = &side.config.name.value;
            // One `wait: 0s` for every side is one mistake, reported once.
            if wait.value == Duration::ZERO && !zero_waits.contains(&wait.span) {
                zero_waits.push(wait.span);
                let every_side = matches!(
                    self.pipeline.matching.as_ref().map(|m| &m.wait),
                    Some(WaitConfig::All(_))
                );
                let message = if every_side {
                    "every side waits 0s for the others".to_string()
                } else {
                    format!("`{name}` waits 0s for the other sides")
                };
                self.report(
                    Diagnostic::warning(Code::ZeroWait, message, wait.span)
                        .label("no wait")
                        .help("only counterparts at exactly the same event time can match; give the time they need to arrive".to_string()),
                );
            }
            let Some(lag) = side.config.watermark_lag else {
                continue;
            };
            if lag.value > wait.value {
                self.report(
                    Diagnostic::warning(
                        Code::LagOverWait,
                        format!("the watermark of `{name}` lags {}, longer than its {} wait", lag.value, wait.value),
                        lag.span,
                    )
                    .label("watermark lag")
                    .secondary(wait.span, "wait")
                    .help(format!(
                        "a timeout fires when the watermark passes the deadline, so alerts for `{name}` come up to {} \
                         after its wait ends",
                        lag.value
                    )),
                );
            }
        }
        self.routing_warnings(sides);
        self.idle_warnings();
    }

    /// Warns about a followed source that can hold every other source back
    /// for good, and about an `idle_grace` that can never apply.
    fn idle_warnings(&mut self) {
        let pipeline = self.pipeline;
        let processing = pipeline
            .matching
            .as_ref()
            .is_some_and(|m| m.clock.value == Clock::Processing);
        let sources = &pipeline.sources.items;
        if !processing {
            for source in sources {
                let live = match &source.kind {
                    SourceKind::File { follow, .. } => *follow,
                    SourceKind::Kafka(kafka) => !kafka.bounded,
                    SourceKind::Inline { .. } | SourceKind::Stdin { .. } => false,
                };
                if live && source.idle_timeout.is_none() {
                    let (what, partitions) = match source.kind {
                        SourceKind::Kafka(_) => (
                            "reads Kafka",
                            "; a partition without messages holds the watermark back until then",
                        ),
                        _ => ("is followed", ""),
                    };
                    self.report(
                        Diagnostic::warning(
                            Code::FollowNotIdle,
                            format!("`{}` {what} but has no `idle_timeout`", source.name.value),
                            source.name.span,
                        )
                        .label("may fall silent")
                        .help(format!("events are matched in event-time order, so while this source is silent the others' events wait{partitions}; \
                               declare how long a silence may last, e.g. `idle_timeout: 30s`")),
                    );
                }
            }
        }
        let Some(grace) = pipeline.matching.as_ref().and_then(|m| m.idle_grace) else {
            return;
        };
        let idles = sources.iter().any(|source| source.idle_timeout.is_some());
        if processing || !idles {
            let why = if processing {
                "with `clock: processing`, deadlines follow the wall clock anyway"
            } else {
                "it applies once every live source is idle, and no source declares `idle_timeout`"
            };
            self.report(
                Diagnostic::warning(Code::Unused, "`idle_grace` has no effect", grace.span)
                    .label("never applies")
                    .help(why.to_string()),
            );
        }
    }

    fn routing_warnings(&mut self, sides: &Sides<'_>) {
        let pipeline = self.pipeline;
        let matching = pipeline.matching.as_ref();
        let no_rules = matching.is_some_and(|m| m.rules.is_empty() && m.rules_complete);
        let has_rules = matching.is_some_and(|m| !m.rules.is_empty());
        let no_retention = matching
            .and_then(|m| m.retention)
            .is_some_and(|r| r.value == Duration::ZERO);
        for output in &pipeline.outputs {
            let never = match output.outcome.value {
                OutcomeKind::Mismatched if no_rules => Some((
                    "`mismatched` never happens: `match` has no `condition` or `rules`",
                    "a complete match is `mismatched` when one of its rules does not hold",
                )),
                OutcomeKind::Resolved if no_retention => Some((
                    "`resolved` never happens with a `retention` of 0s",
                    "a late event resolves a timeout only while the timed-out key is remembered",
                )),
                _ => None,
            };
            if let Some((message, help)) = never {
                self.report(
                    Diagnostic::warning(Code::OutcomeNever, message, output.outcome.span)
                        .help(help.to_string()),
                );
            }
        }
        // With an output unreadable (reported), what it would have covered is
        // unknown.
        if !pipeline.outputs_complete {
            return;
        }
        let routed = |kind: OutcomeKind, side: Option<&str>| {
            pipeline.outputs.iter().any(|output| {
                output.outcome.value == kind
                    && output
                        .side
                        .as_ref()
                        .is_none_or(|s| side.is_none_or(|side| s.value == side))
            })
        };
        let mut nowhere = Vec::new();
        if !routed(OutcomeKind::Matched, None) {
            nowhere.push("`matched` outcomes go nowhere".to_string());
        }
        if has_rules && !routed(OutcomeKind::Mismatched, None) {
            nowhere.push("`mismatched` outcomes go nowhere".to_string());
        }
        if sides.complete {
            let unrouted: Vec<&str> = sides
                .scopes
                .iter()
                .map(|side| side.name.as_str())
                .filter(|side| !routed(OutcomeKind::TimedOut, Some(side)))
                .collect();
            if unrouted.len() == sides.scopes.len() && !unrouted.is_empty() {
                nowhere.push("`timed_out` outcomes go nowhere".to_string());
            } else {
                nowhere.extend(unrouted.iter().map(|side| {
                    format!("`timed_out` outcomes where `{side}`'s wait runs out go nowhere")
                }));
            }
        }
        for message in nowhere {
            self.report(
                Diagnostic::warning(Code::OutcomeNowhere, message, pipeline.outputs_span)
                    .label("no output takes them")
                    .help(
                        "add an output for them; outcomes no output takes are not written anywhere"
                            .to_string(),
                    ),
            );
        }
    }
}
