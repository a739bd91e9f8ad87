//! Routing: each outcome to the sinks whose outputs ask for it, rendered by
//! the output's template or as one JSON object.

use std::fmt::Write as _;

use super::error::RunError;
use super::operator::Outcome;
use crate::config::OutcomeKind;
use crate::expr::{Env, Type, Value, write_json_string};
use crate::plan::{Bound, MatchNode, Route, Side};

/// Renders outcomes for their routes.
pub(crate) struct Router {
    routes: Vec<Route>,
    /// The sink target each route writes to.
    targets: Vec<usize>,
    /// Each side's name as a value, for `expired` and `missing`.
    names: Vec<Value>,
    /// Each side's record type, for JSON.
    layouts: Vec<Type>,
    key_type: Type,
}

impl Router {
    /// A router for `routes`; `target_of` maps a route's sink to its target.
    pub(crate) fn new(
        matcher: &MatchNode,
        routes: Vec<Route>,
        target_of: impl Fn(usize) -> usize,
    ) -> Self {
        Self {
            targets: routes.iter().map(|route| target_of(route.sink.0)).collect(),
            routes,
            names: matcher
                .sides
                .iter()
                .map(|side| Value::from(side.name.as_str()))
                .collect(),
            layouts: matcher
                .sides
                .iter()
                .map(|side| Type::record(side.layout.clone()))
                .collect(),
            key_type: matcher.key_type.clone(),
        }
    }

    /// Appends a line per matching route to that route's target buffer.
    pub(crate) fn render(&self, outcome: &Outcome, buffers: &mut [String]) -> Result<(), RunError> {
        let mut missing: Option<Value> = None;
        for (route, &target) in self.routes.iter().zip(&self.targets) {
            if route.outcome != outcome.kind
                || route.side.is_some_and(|side| outcome.expired != Some(side))
            {
                continue;
            }
            let out = &mut buffers[target];
            match &route.template {
                Some(template) => {
                    let missing = (outcome.kind == OutcomeKind::TimedOut)
                        .then(|| missing.get_or_insert_with(|| self.missing(outcome)) as &Value);
                    self.template(template, outcome, missing, out)?;
                }
                None => self.json(outcome, out),
            }
            out.push('\n');
        }
        Ok(())
    }

    fn missing(&self, outcome: &Outcome) -> Value {
        let names: Vec<String> = outcome
            .missing()
            .map(|side| self.names[side.0].to_string())
            .collect();
        Value::from(names.join(", ").as_str())
    }

    fn template(
        &self,
        template: &Bound,
        outcome: &Outcome,
        missing: Option<&Value>,
        out: &mut String,
    ) -> Result<(), RunError> {
        let env = Env {
            records: &outcome.records,
            key: Some(outcome.key.value()),
            missing,
            expired: outcome.expired.map(|side| &self.names[side.0]),
        };
        match template.compiled.eval(&env) {
            Ok(Value::Str(text)) => out.push_str(&text),
            Ok(value) => {
                let _ = write!(out, "{value}");
            }
            Err(error) => {
                return Err(RunError::Eval {
                    message: format!(
                        "cannot render a `{}` outcome for key `{}`: {error}",
                        outcome.kind.name(),
                        outcome.key.value()
                    ),
                    failing: template.file_span(error.span),
                    record: None,
                });
            }
        }
        Ok(())
    }

    /// `{"outcome":"timed_out","key":"k","expired":"app","missing":["bank"],"app":{...},"bank":null}`
    fn json(&self, outcome: &Outcome, out: &mut String) {
        out.push_str("{\"outcome\":");
        write_json_string(outcome.kind.name(), out);
        out.push_str(",\"key\":");
        outcome.key.value().write_json(&self.key_type, out);
        if let Some(Side(side)) = outcome.expired {
            out.push_str(",\"expired\":");
            self.names[side].write_json(&Type::STRING, out);
        }
        if outcome.kind == OutcomeKind::TimedOut {
            out.push_str(",\"missing\":[");
            for (i, side) in outcome.missing().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                self.names[side.0].write_json(&Type::STRING, out);
            }
            out.push(']');
        }
        if let Some(reason) = &outcome.reason {
            out.push_str(",\"reason\":");
            write_json_string(reason, out);
        }
        for (side, record) in outcome.records.iter().enumerate() {
            out.push(',');
            write_json_string(&self.names[side].to_string(), out);
            out.push(':');
            match record {
                Some(record) => Value::Record(record.clone()).write_json(&self.layouts[side], out),
                None => out.push_str("null"),
            }
        }
        out.push('}');
    }
}
