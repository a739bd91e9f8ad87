//! Config to graph: resolve names, check and compile expressions, convert
//! inline records, and report every problem found along the way.

use super::graph::{
    Bound, Graph, Input, MatchNode, Route, RuleNode, Side, SideNode, SinkId, SinkNode, SourceNode,
    Variable,
};
use super::records;
use super::sides::{Connected, Sides};
use crate::config::{
    Clock, ExprText, OutcomeKind, OutputConfig, Pipeline, SinkKind, SourceConfig, SourceKind,
};
use crate::diagnostic::{Code, Diagnostic, Span, did_you_mean};
use crate::expr::{self, Kind, Scope, SideScope, Type};
use crate::time::Duration;

pub(super) fn build(pipeline: &Pipeline) -> (Option<Graph>, Vec<Diagnostic>) {
    let mut builder = Builder {
        pipeline,
        diagnostics: Vec::new(),
        keys: Vec::new(),
    };
    let graph = builder.graph();
    (graph, builder.diagnostics)
}

/// Builds the graph, remembering every problem.
pub(super) struct Builder<'p> {
    pub(super) pipeline: &'p Pipeline,
    pub(super) diagnostics: Vec<Diagnostic>,
    /// Each side's key type and where the key is written, for every key
    /// that checked, also when the rest of its source did not.
    keys: Vec<(String, Type, Span)>,
}

impl Builder<'_> {
    pub(super) fn report(&mut self, diagnostic: Diagnostic) {
        // A Kafka sink's key is checked for every output to the sink: a
        // mistake in it is told once.
        if !self.diagnostics.contains(&diagnostic) {
            self.diagnostics.push(diagnostic);
        }
    }

    /// Checks every part whose inputs are sound, then assembles the graph
    /// if nothing was wrong.
    fn graph(&mut self) -> Option<Graph> {
        let mut sides = self.sides();
        self.waits(&mut sides);
        let sources: Vec<Option<SourceNode>> = sides
            .connected
            .iter()
            .enumerate()
            .map(|(side, c)| self.source(c, Side(side)))
            .collect();
        let key_type = self.key_type();
        let scopes = &sides.scopes;
        let rules = self.rules(&sides, &key_type);
        let sinks: Vec<SinkNode> = self
            .pipeline
            .sinks
            .items
            .iter()
            .map(|sink| SinkNode {
                name: sink.name.value.clone(),
                kind: sink.kind.clone(),
            })
            .collect();
        self.file_conflicts();
        let routes = self.routes(sides.complete.then_some(&scopes[..]), &key_type, &sinks);
        self.warnings(&sides);
        self.test_cases(&sides);
        if self.diagnostics.iter().any(Diagnostic::is_error) {
            return None;
        }
        let sources: Vec<SourceNode> = sources.into_iter().collect::<Option<_>>()?;
        let waits: Vec<Duration> = sides
            .connected
            .iter()
            .map(|c| c.wait.map_or(Duration::ZERO, |wait| wait.value))
            .collect();
        let longest = waits.iter().copied().max().unwrap_or(Duration::ZERO);
        let matching = self.pipeline.matching.as_ref();
        let retention = matching
            .and_then(|m| m.retention)
            .map_or(longest, |r| r.value);
        let matcher = MatchNode {
            sides: sources
                .iter()
                .zip(&sides.connected)
                .map(|(source, c)| SideNode {
                    name: source.name.clone(),
                    wait: c.wait.map_or(Duration::ZERO, |wait| wait.value),
                    layout: source.layout.clone(),
                })
                .collect(),
            key_type,
            rules: rules?,
            retention,
            clock: matching.map_or(Clock::Event, |m| m.clock.value),
            idle_grace: matching.and_then(|m| m.idle_grace).map(|g| g.value),
        };
        let checkpoint = self.checkpoint_interval(&sources);
        let transactions = self.transactions(checkpoint.is_some());
        let state_topic = self.state_topic(transactions);
        Some(Graph {
            name: self.pipeline.name.as_ref().map(|n| n.value.clone()),
            sources,
            matcher,
            routes: routes?,
            sinks,
            checkpoint,
            transactions,
            state_topic,
        })
    }

    /// One connected source: its event time and key are checked in the
    /// source's own scope, and its inline records against its schema. Every
    /// part is checked even when another fails.
    fn source(&mut self, connected: &Connected<'_>, side: Side) -> Option<SourceNode> {
        let config = connected.config;
        let scope = Scope::source(&config.name.value, config.schema.clone());
        let timing = self.event_time(config, &scope);
        let what = format!("the key of `{}`", config.name.value);
        let key = connected.key.and_then(|key| {
            self.bind(
                key,
                &scope,
                &what,
                |ty| {
                    matches!(
                        ty.kind,
                        Kind::String | Kind::Int | Kind::Bool | Kind::Timestamp | Kind::Unknown
                    )
                },
                "`string`, `int`, `bool` or `timestamp`",
            )
        });
        if let Some(key) = &key {
            self.keys
                .push((config.name.value.clone(), key.ty.clone(), key.text.span));
        }
        let input = match &config.kind {
            SourceKind::Inline { records } => {
                let converted = records::convert(records, &config.schema, &mut self.diagnostics);
                Input::Inline(converted?)
            }
            SourceKind::File {
                path,
                format,
                follow,
            } => Input::Files {
                path: path.value.clone(),
                span: path.span,
                format: format.clone(),
                follow: *follow,
            },
            SourceKind::Stdin { format } => Input::Stdin {
                format: format.clone(),
            },
            SourceKind::Kafka(kafka) => Input::Kafka(kafka.clone()),
        };
        let (event_time, watermark_lag) = timing?;
        Some(SourceNode {
            name: config.name.value.clone(),
            side,
            layout: config.schema.clone(),
            input,
            event_time,
            watermark_lag,
            idle_timeout: config.idle_timeout.as_ref().map(|t| t.value),
            key: key?,
        })
    }

    /// The event time and watermark lag of a source: required with event
    /// time, not used with processing time (warned). `None` when something
    /// is wrong (reported).
    fn event_time(
        &mut self,
        config: &SourceConfig,
        scope: &Scope,
    ) -> Option<(Option<Bound>, Duration)> {
        let clock = self
            .pipeline
            .matching
            .as_ref()
            .map_or(Clock::Event, |m| m.clock.value);
        let name = &config.name;
        if clock == Clock::Processing {
            let unused = [
                ("event_time", config.event_time.as_ref().map(|e| e.span)),
                ("watermark_lag", config.watermark_lag.map(|l| l.span)),
                ("idle_timeout", config.idle_timeout.map(|t| t.span)),
            ];
            for (key, span) in unused {
                if let Some(span) = span {
                    self.report(
                        Diagnostic::warning(
                            Code::Unused,
                            format!("`{key}` of `{}` is not used with `clock: processing`", name.value),
                            span,
                        )
                        .label("not used")
                        .help("with processing time, each record's time is when it is read, and deadlines follow the wall clock".to_string()),
                    );
                }
            }
            return Some((None, Duration::ZERO));
        }
        // A Kafka source's records have a time of their own: the message's
        // timestamp, unless `event_time` says otherwise.
        let kafka = matches!(config.kind, SourceKind::Kafka(_));
        for (key, given) in [
            ("event_time", config.event_time.is_some() || kafka),
            ("watermark_lag", config.watermark_lag.is_some()),
        ] {
            if !given {
                self.report(
                    Diagnostic::error(
                        Code::MissingKey,
                        format!("source `{}` is missing `{key}`", name.value),
                        name.span,
                    )
                    .label(format!("`{key}` is required here"))
                    .help("event-time matching (`clock: event`, the default) reads each record's time with `event_time` and trails it by `watermark_lag`".to_string()),
                );
            }
        }
        let what = format!("the `event_time` of `{}`", name.value);
        let event_time = match &config.event_time {
            Some(text) => Some(self.bind(
                text,
                scope,
                &what,
                |ty| matches!(ty.kind, Kind::Int | Kind::Timestamp | Kind::Unknown),
                "`int` (milliseconds since the epoch) or `timestamp`",
            )),
            None if kafka => None,
            None => Some(None),
        };
        let event_time = match event_time {
            Some(bound) => Some(bound?),
            None => None,
        };
        Some((event_time, config.watermark_lag?.value))
    }

    /// The one key type of all sides, from those whose key checked out;
    /// reports sides that differ. Unknown when none can tell.
    fn key_type(&mut self) -> Type {
        let Some((first_name, first, first_span)) = self.keys.first().cloned() else {
            return Type::UNKNOWN;
        };
        for (name, ty, span) in self.keys.clone().into_iter().skip(1) {
            if ty.kind != first.kind {
                self.report(
                    Diagnostic::error(
                        Code::KeyTypeMismatch,
                        format!("the key of `{name}` is `{ty}` but the key of `{first_name}` is `{first}`"),
                        span,
                    )
                    .label(format!("`{ty}`"))
                    .secondary(first_span, format!("`{first}`"))
                    .help("keys are compared for equality, so every side's key must have the same type".to_string()),
                );
            }
        }
        first
    }

    /// The match rules, each a `bool` over the sides; checked only when
    /// every side has a schema.
    fn rules(&mut self, sides: &Sides<'_>, key_type: &Type) -> Option<Vec<RuleNode>> {
        let Some(matching) = self.pipeline.matching.as_ref() else {
            return Some(Vec::new());
        };
        if !sides.complete {
            return None;
        }
        let scope = Scope::outcome(&sides.scopes, &[(Variable::Key.name(), key_type.clone())]);
        let mut rules = Vec::with_capacity(matching.rules.len());
        let mut complete = true;
        for rule in &matching.rules {
            let what = format!("rule `{}`", rule.name.value);
            match self.bind(
                &rule.expr,
                &scope,
                &what,
                |ty| ty.kind == Kind::Bool || ty.is_unknown(),
                "`bool`",
            ) {
                Some(bound) => rules.push(RuleNode {
                    name: rule.name.value.clone(),
                    rule: bound,
                }),
                None => complete = false,
            }
        }
        complete.then_some(rules)
    }

    /// The routes of every output. Sinks and the use of `side` are checked
    /// always; side names and templates only when every side is known
    /// (`sides` is `None` when `connect` names an unknown source).
    fn routes(
        &mut self,
        sides: Option<&[SideScope]>,
        key_type: &Type,
        sinks: &[SinkNode],
    ) -> Option<Vec<Route>> {
        let mut routes = Vec::new();
        let mut complete = true;
        for output in &self.pipeline.outputs {
            let outcome = output.outcome.value;
            let sink = self.sink(output, sinks);
            let side = self.side(output, sides);
            let template = match (&output.template, &side) {
                (None, _) => Some(None),
                (Some(_), Err(())) => None,
                (Some(text), Ok(side)) => {
                    let what = format!("the template of a `{}` output", outcome.name());
                    self.in_outcome(text, outcome, *side, sides, key_type, &what)
                        .map(Some)
                }
            };
            // A Kafka sink's record key, in the scope of each output to it.
            let key_text = sink.and_then(|sink| match &sinks[sink.0].kind {
                SinkKind::Kafka(kafka) => kafka.key.as_ref(),
                _ => None,
            });
            let key = match (key_text, &side) {
                (None, _) => Some(None),
                (Some(_), Err(())) => None,
                (Some(text), Ok(side)) => {
                    // Not naming the output: a mistake is told once for
                    // all of them.
                    let what = format!("the key of sink `{}`", output.sink.value);
                    self.in_outcome(text, outcome, *side, sides, key_type, &what)
                        .map(Some)
                }
            };
            match (sink, side, template, key) {
                (Some(sink), Ok(side), Some(template), Some(key)) => routes.push(Route {
                    outcome,
                    side,
                    sink,
                    template,
                    key,
                }),
                _ => complete = false,
            }
        }
        complete.then_some(routes)
    }

    /// An output's template (or its Kafka sink's key), in the scope of its
    /// outcome: the sides (those that may be absent nullable, the filtered
    /// side not) and the outcome's variables. Not checked when a side is
    /// unknown (`sides` is `None`); `what` names it in messages.
    fn in_outcome(
        &mut self,
        text: &ExprText,
        outcome: OutcomeKind,
        side: Option<Side>,
        sides: Option<&[SideScope]>,
        key_type: &Type,
        what: &str,
    ) -> Option<Bound> {
        let records: Vec<SideScope> = match outcome {
            OutcomeKind::Malformed => Vec::new(),
            _ => sides?
                .iter()
                .enumerate()
                .map(|(index, s)| {
                    let partial = matches!(
                        outcome,
                        OutcomeKind::TimedOut | OutcomeKind::Duplicate | OutcomeKind::Late
                    );
                    SideScope {
                        nullable: partial && side != Some(Side(index)),
                        ..s.clone()
                    }
                })
                .collect(),
        };
        let variables: Vec<(&'static str, Type)> = Variable::of(outcome)
            .iter()
            .map(|variable| (variable.name(), variable.ty(key_type)))
            .collect();
        let scope = Scope::outcome(&records, &variables);
        self.bind(text, &scope, what, |_| true, "")
    }

    /// The sink an output names.
    fn sink(&mut self, output: &OutputConfig, sinks: &[SinkNode]) -> Option<SinkId> {
        if let Some(index) = sinks.iter().position(|s| s.name == output.sink.value) {
            return Some(SinkId(index));
        }
        if self.pipeline.sinks.declares(&output.sink.value) {
            // Declared but unreadable: reported already.
            return None;
        }
        let help = did_you_mean(&output.sink.value, sinks.iter().map(|s| s.name.as_str()))
            .map_or_else(
                || "declare it under `sinks`, e.g. `console: {type: stdout}`".to_string(),
                |s| format!("did you mean `{s}`?"),
            );
        self.report(
            Diagnostic::error(
                Code::UnknownSink,
                format!("unknown sink `{}`", output.sink.value),
                output.sink.span,
            )
            .label("not declared under `sinks`")
            .help(help),
        );
        None
    }

    /// The output's `side`, if it has one; `Err` when it is wrong (and
    /// reported) or cannot be checked.
    fn side(
        &mut self,
        output: &OutputConfig,
        sides: Option<&[SideScope]>,
    ) -> Result<Option<Side>, ()> {
        let Some(side) = &output.side else {
            return Ok(None);
        };
        let outcome = output.outcome.value;
        let has_side = matches!(
            outcome,
            OutcomeKind::TimedOut
                | OutcomeKind::Duplicate
                | OutcomeKind::Late
                | OutcomeKind::Resolved
        );
        if !has_side {
            self.report(
                Diagnostic::error(
                    Code::InvalidSide,
                    format!(
                        "`side` applies only to `timed_out`, `duplicate`, `late` and `resolved`, not to `{}`",
                        outcome.name()
                    ),
                    side.span,
                )
                .secondary(output.outcome.span, "this output is for this outcome"),
            );
            return Err(());
        }
        let sides = sides.ok_or(())?;
        if let Some(index) = sides.iter().position(|s| s.name == side.value) {
            return Ok(Some(Side(index)));
        }
        let help = did_you_mean(&side.value, sides.iter().map(|s| s.name.as_str()))
            .map(|s| format!("did you mean `{s}`?"));
        self.report(
            Diagnostic::error(
                Code::InvalidSide,
                format!("`{}` is not a connected source", side.value),
                side.span,
            )
            .label("`side` names the source whose wait ran out")
            .help(help),
        );
        Err(())
    }

    /// Parses, checks and compiles `text` in `scope`; the result must be
    /// non-null and satisfy `accepts`, described by `expected`.
    fn bind(
        &mut self,
        text: &ExprText,
        scope: &Scope,
        what: &str,
        accepts: impl Fn(&Type) -> bool,
        expected: &str,
    ) -> Option<Bound> {
        let place = |span: Span| text.file_span(span);
        let expr = match expr::parse(&text.text) {
            Ok(expr) => expr,
            Err(error) => {
                self.report(error.to_diagnostic(place));
                return None;
            }
        };
        let typed = match expr::check(&expr, scope) {
            Ok(typed) => typed,
            Err(errors) => {
                for error in &errors {
                    self.report(error.to_diagnostic(place));
                }
                return None;
            }
        };
        let ty = typed.ty().clone();
        if !accepts(&ty) {
            self.report(
                Diagnostic::error(Code::TypeMismatch, format!("{what} must be {expected}, found `{ty}`"), place(expr.span))
                    .label(format!("this is `{ty}`"))
                    .help((ty.kind == Kind::String && expected.contains("timestamp")).then(|| {
                        "parse text with `parse_timestamp(field)` (RFC 3339) or `parse_timestamp(field, \"%Y-%m-%d %H:%M:%S\")`"
                            .to_string()
                    })),
            );
            return None;
        }
        if ty.nullable && !ty.is_unknown() {
            self.report(
                Diagnostic::error(
                    Code::NullableValue,
                    format!("{what} may be null"),
                    place(expr.span),
                )
                .label(format!("this is `{ty}`"))
                .help(format!("give a default with `coalesce({expr}, ...)`")),
            );
            return None;
        }
        let compiled = expr::compile(&typed);
        Some(Bound {
            expr,
            ty,
            compiled,
            text: text.clone(),
        })
    }
}
