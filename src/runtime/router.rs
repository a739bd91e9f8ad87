//! Routing: each outcome to the sinks whose outputs ask for it, rendered by
//! the output's template or as one JSON object.

use std::fmt::Write as _;

use std::sync::Arc;

use super::columns::{self, Column};
use super::error::RunError;
use super::operator::{Detail, Outcome};
use crate::codec::write_csv_field;
use crate::config::{OutcomeKind, SinkFormat, SinkKind};
use crate::expr::{Env, JsonLayout, Record, Type, Value, write_json_string};
use crate::plan::{Bound, MatchNode, Route, Side, SinkNode, Variable};
use crate::time::EventTime;

/// Renders outcomes for their routes.
pub(crate) struct Router {
    routes: Vec<Route>,
    /// The sink target each route writes to.
    targets: Vec<usize>,
    /// For each route to a CSV sink, the sink's columns.
    csv: Vec<Option<Arc<[Column]>>>,
    /// Each side's name as a value, for the variables that name sides.
    names: Vec<Value>,
    /// How each side's records are written as JSON.
    layouts: Vec<JsonLayout>,
    /// Each side's name as a JSON key: `"app":`.
    side_keys: Vec<String>,
    key_type: Type,
}

impl Router {
    /// A router for `routes` to `sinks`; `target_of` maps a sink to its
    /// target. Also returns, per sink, what it writes before any outcome:
    /// the header of a CSV sink.
    pub(crate) fn new(
        matcher: &MatchNode,
        routes: Vec<Route>,
        sinks: &[SinkNode],
        target_of: impl Fn(usize) -> usize,
    ) -> (Self, Vec<String>) {
        let mut headers = vec![String::new(); sinks.len()];
        let mut sink_columns: Vec<Option<Arc<[Column]>>> = vec![None; sinks.len()];
        for (index, sink) in sinks.iter().enumerate() {
            if !matches!(
                sink.kind,
                SinkKind::File {
                    format: SinkFormat::Csv,
                    ..
                }
            ) {
                continue;
            }
            let kinds: Vec<OutcomeKind> = routes
                .iter()
                .filter(|route| route.sink.0 == index)
                .map(|route| route.outcome)
                .collect();
            let named = columns::columns(&kinds, &matcher.sides);
            for (i, (name, _)) in named.iter().enumerate() {
                if i > 0 {
                    headers[index].push(',');
                }
                write_csv_field(name, &mut headers[index]);
            }
            headers[index].push('\n');
            sink_columns[index] = Some(named.into_iter().map(|(_, column)| column).collect());
        }
        let built = Self {
            targets: routes.iter().map(|route| target_of(route.sink.0)).collect(),
            csv: routes
                .iter()
                .map(|route| sink_columns[route.sink.0].clone())
                .collect(),
            routes,
            names: matcher
                .sides
                .iter()
                .map(|side| Value::from(side.name.as_str()))
                .collect(),
            layouts: matcher
                .sides
                .iter()
                .map(|side| JsonLayout::new(&side.layout))
                .collect(),
            side_keys: matcher
                .sides
                .iter()
                .map(|side| {
                    let mut json = String::new();
                    write_json_string(&side.name, &mut json);
                    json.push(':');
                    json
                })
                .collect(),
            key_type: matcher.key_type.clone(),
        };
        (built, headers)
    }

    /// The routes that take `outcome`, in the order declared, each with
    /// its target.
    pub(crate) fn routes_for<'a>(
        &'a self,
        outcome: &'a Outcome,
    ) -> impl Iterator<Item = (usize, usize)> + 'a {
        let kind = outcome.kind();
        self.routes
            .iter()
            .zip(&self.targets)
            .enumerate()
            .filter(move |(_, (route, _))| {
                route.outcome == kind && route.side.is_none_or(|side| outcome.side() == Some(side))
            })
            .map(|(index, (_, &target))| (index, target))
    }

    /// Hands `outcome` to every route that takes it, in order, as
    /// `take(route, target, outcome)`: the last route gets it, the others
    /// copies. `hits` is room to work in, kept by the caller so that nothing
    /// is allocated per outcome.
    pub(crate) fn hand_out(
        &self,
        outcome: Outcome,
        hits: &mut Vec<(usize, usize)>,
        mut take: impl FnMut(usize, usize, Outcome),
    ) {
        hits.clear();
        hits.extend(self.routes_for(&outcome));
        let Some((&(route, target), others)) = hits.split_last() else {
            return;
        };
        for &(route, target) in others {
            take(route, target, outcome.clone());
        }
        take(route, target, outcome);
    }

    /// Appends the line route `route` writes for `outcome`.
    ///
    /// # Errors
    ///
    /// A template that fails on the outcome.
    pub(crate) fn render(
        &self,
        route: usize,
        outcome: &Outcome,
        out: &mut String,
    ) -> Result<(), RunError> {
        match (&self.routes[route].template, &self.csv[route]) {
            (Some(template), _) => {
                let values = self.values(outcome);
                render_template(template, outcome, &values, out)?;
            }
            (None, Some(columns)) => self.csv(columns, outcome, out),
            (None, None) => self.json(outcome, out),
        }
        out.push('\n');
        Ok(())
    }

    /// Appends the record key `route` gives `outcome` in a Kafka topic: its
    /// sink's `key`, or else the match key; `false` for a null key, which
    /// makes a record without one.
    ///
    /// # Errors
    ///
    /// A `key` that fails on the outcome.
    pub(crate) fn record_key(
        &self,
        route: usize,
        outcome: &Outcome,
        out: &mut String,
    ) -> Result<bool, RunError> {
        let value = match &self.routes[route].key {
            Some(key) => {
                let values = self.values(outcome);
                evaluate(key, outcome, &values, "key")?
            }
            None => outcome.key.value().clone(),
        };
        match value {
            Value::Null => return Ok(false),
            Value::Str(text) => out.push_str(&text),
            value => {
                let _ = write!(out, "{value}");
            }
        }
        Ok(true)
    }

    /// The values of the outcome's template variables, in `Variable::of`
    /// order.
    fn values(&self, outcome: &Outcome) -> Vec<Value> {
        Variable::of(outcome.kind())
            .iter()
            .map(|variable| self.value(*variable, outcome))
            .collect()
    }

    fn value(&self, variable: Variable, outcome: &Outcome) -> Value {
        let names = |sides: &mut dyn Iterator<Item = Side>| -> Value {
            let names: Vec<String> = sides.map(|side| self.names[side.0].to_string()).collect();
            Value::from(names.join(", ").as_str())
        };
        match (variable, &outcome.detail) {
            (Variable::Key, _) => outcome.key.value().clone(),
            (Variable::Missing, _) => names(&mut outcome.missing()),
            (
                Variable::Expired,
                Detail::TimedOut { expired } | Detail::Resolved { expired, .. },
            )
            | (
                Variable::Side,
                Detail::Duplicate { side: expired, .. } | Detail::Late { side: expired },
            ) => self.names[expired.0].clone(),
            (Variable::Failed, Detail::Mismatched { failed }) => Value::from(
                failed
                    .iter()
                    .map(AsRef::as_ref)
                    .collect::<Vec<&str>>()
                    .join(", ")
                    .as_str(),
            ),
            (Variable::Of, Detail::Duplicate { of, .. }) => Value::from(of.name()),
            (Variable::Arrived, Detail::Resolved { arrived, .. }) => names(
                &mut arrived
                    .iter()
                    .enumerate()
                    .filter(|(_, late)| **late)
                    .map(|(side, _)| Side(side)),
            ),
            (Variable::Deadline, Detail::Resolved { deadline, .. }) => Value::Timestamp(*deadline),
            (Variable::Source, Detail::Malformed(line)) => Value::Str(line.source.clone().into()),
            (Variable::File, Detail::Malformed(line)) => Value::Str(line.file.clone().into()),
            (Variable::Line, Detail::Malformed(line)) => {
                Value::Int(i64::try_from(line.line).unwrap_or(i64::MAX))
            }
            (Variable::Raw, Detail::Malformed(line)) => Value::from(line.raw.as_str()),
            (Variable::Reason, Detail::Malformed(line)) => Value::from(line.reason.as_str()),
            // `Variable::of` gives each kind only the variables it has.
            _ => Value::Null,
        }
    }

    /// A CSV row: a cell per column, empty where the outcome has no value.
    fn csv(&self, columns: &[Column], outcome: &Outcome, out: &mut String) {
        let mut cell = String::new();
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            cell.clear();
            let value = match column {
                Column::Outcome => Value::from(outcome.kind().name()),
                Column::Variable(variable) if Variable::of(outcome.kind()).contains(variable) => {
                    self.value(*variable, outcome)
                }
                Column::Field { side, path } => match &outcome.records[*side] {
                    Some(record) => field(record, path),
                    None => Value::Null,
                },
                Column::Time(side) if outcome.records[*side].is_some() => {
                    Value::Timestamp(outcome.times[*side])
                }
                Column::Variable(_) | Column::Time(_) => Value::Null,
            };
            if value != Value::Null {
                let _ = write!(cell, "{value}");
            }
            write_csv_field(&cell, out);
        }
    }

    /// The default rendering: the outcome, its key, what only its kind
    /// carries, then each side's record and event time (`null` where absent).
    ///
    /// `{"outcome":"timed_out","key":"k","expired":"app","missing":["bank"],
    /// "app":{...},"bank":null,"times":{"app":"...","bank":null}}`
    fn json(&self, outcome: &Outcome, out: &mut String) {
        out.push_str("{\"outcome\":");
        write_json_string(outcome.kind().name(), out);
        let side_name =
            |side: Side, out: &mut String| self.names[side.0].write_json(&Type::STRING, out);
        match &outcome.detail {
            Detail::Malformed(line) => {
                out.push_str(",\"source\":");
                write_json_string(&line.source, out);
                out.push_str(",\"file\":");
                write_json_string(&line.file, out);
                let _ = write!(out, ",\"line\":{}", line.line);
                out.push_str(",\"raw\":");
                write_json_string(&line.raw, out);
                out.push_str(",\"reason\":");
                write_json_string(&line.reason, out);
                out.push('}');
                return;
            }
            Detail::Matched => key(outcome, &self.key_type, out),
            Detail::Mismatched { failed } => {
                key(outcome, &self.key_type, out);
                out.push_str(",\"failed\":[");
                for (i, rule) in failed.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(rule, out);
                }
                out.push(']');
            }
            Detail::TimedOut { expired } => {
                key(outcome, &self.key_type, out);
                out.push_str(",\"expired\":");
                side_name(*expired, out);
                out.push_str(",\"missing\":");
                self.side_list(outcome.missing(), out);
            }
            Detail::Duplicate { side, of } => {
                key(outcome, &self.key_type, out);
                out.push_str(",\"side\":");
                side_name(*side, out);
                out.push_str(",\"of\":");
                write_json_string(of.name(), out);
            }
            Detail::Late { side } => {
                key(outcome, &self.key_type, out);
                out.push_str(",\"side\":");
                side_name(*side, out);
            }
            Detail::Resolved {
                expired,
                deadline,
                arrived,
            } => {
                key(outcome, &self.key_type, out);
                out.push_str(",\"expired\":");
                side_name(*expired, out);
                out.push_str(",\"deadline\":");
                time(*deadline, out);
                out.push_str(",\"arrived\":");
                self.side_list(
                    arrived
                        .iter()
                        .enumerate()
                        .filter(|(_, late)| **late)
                        .map(|(side, _)| Side(side)),
                    out,
                );
            }
        }
        for (side, record) in outcome.records.iter().enumerate() {
            out.push(',');
            out.push_str(&self.side_keys[side]);
            match record {
                Some(record) => self.layouts[side].write(record, out),
                None => out.push_str("null"),
            }
        }
        out.push_str(",\"times\":{");
        for (side, record) in outcome.records.iter().enumerate() {
            if side > 0 {
                out.push(',');
            }
            out.push_str(&self.side_keys[side]);
            match record {
                Some(_) => time(outcome.times[side], out),
                None => out.push_str("null"),
            }
        }
        out.push_str("}}");
    }

    fn side_list(&self, sides: impl Iterator<Item = Side>, out: &mut String) {
        out.push('[');
        for (i, side) in sides.enumerate() {
            if i > 0 {
                out.push(',');
            }
            self.names[side.0].write_json(&Type::STRING, out);
        }
        out.push(']');
    }
}

/// Appends the rendering of `template` for `outcome`.
fn render_template(
    template: &Bound,
    outcome: &Outcome,
    values: &[Value],
    out: &mut String,
) -> Result<(), RunError> {
    match evaluate(template, outcome, values, "render")? {
        Value::Str(text) => out.push_str(&text),
        value => {
            let _ = write!(out, "{value}");
        }
    }
    Ok(())
}

/// What `bound` (a template, or a Kafka sink's key) gives for `outcome`;
/// `doing` says what failed (`render`, `key`).
fn evaluate(
    bound: &Bound,
    outcome: &Outcome,
    values: &[Value],
    doing: &str,
) -> Result<Value, RunError> {
    let env = Env {
        records: &outcome.records,
        values,
    };
    bound.compiled.eval(&env).map_err(|error| RunError::Eval {
        message: format!(
            "cannot {doing} a `{}` outcome for key `{}`: {error}",
            outcome.kind().name(),
            outcome.key.value()
        ),
        failing: bound.file_span(error.span),
        record: None,
    })
}

/// The field of `record` at `path`, through nested records.
fn field(record: &Record, path: &[usize]) -> Value {
    let mut value = Value::Record(record.clone());
    for &index in path {
        value = match value {
            Value::Record(record) => record.get(index).clone(),
            _ => return Value::Null,
        };
    }
    value
}

fn key(outcome: &Outcome, key_type: &Type, out: &mut String) {
    out.push_str(",\"key\":");
    outcome.key.value().write_json(key_type, out);
}

fn time(time: EventTime, out: &mut String) {
    out.push('"');
    time.write_to(out);
    out.push('"');
}
