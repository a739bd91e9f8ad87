//! Routing: each outcome to the sinks whose outputs ask for it, rendered by
//! the output's template or as one JSON object.

use std::fmt::Write as _;

use std::sync::Arc;

use super::columns::{self, Column};
use super::error::RunError;
use super::operator::{Detail, Outcome};
use crate::codec::write_csv_field;
use crate::config::{OutcomeKind, SinkFormat, SinkKind};
use crate::expr::{Env, JsonLayout, JsonWriter, Piece, Record, Type, Value, write_json_string};
use crate::plan::{Bound, MatchNode, Route, Side, SinkNode, Variable};

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
    /// What comes before each side's record: `,"app":`.
    side_keys: Vec<Piece>,
    /// What comes before each side's event time: `,"times":{"app":` for
    /// the first, `,"bank":` for the others.
    time_keys: Vec<Piece>,
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
                    let mut json = ",".to_string();
                    write_json_string(&side.name, &mut json);
                    json.push(':');
                    Piece::new(json.as_bytes())
                })
                .collect(),
            time_keys: matcher
                .sides
                .iter()
                .enumerate()
                .map(|(i, side)| {
                    let mut json = if i == 0 { ",\"times\":{" } else { "," }.to_string();
                    write_json_string(&side.name, &mut json);
                    json.push(':');
                    Piece::new(json.as_bytes())
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
        out: &mut Vec<u8>,
    ) -> Result<(), RunError> {
        match (&self.routes[route].template, &self.csv[route]) {
            (Some(template), _) => {
                let values = self.values(outcome);
                render_template(template, outcome, &values, out)?;
            }
            (None, Some(columns)) => {
                let mut row = String::new();
                self.csv(columns, outcome, &mut row);
                out.extend_from_slice(row.as_bytes());
            }
            (None, None) => self.json(outcome, &mut JsonWriter::new(out)),
        }
        out.push(b'\n');
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
    fn json(&self, outcome: &Outcome, out: &mut JsonWriter<'_>) {
        out.bytes(b"{\"outcome\":");
        out.string(outcome.kind().name());
        let side_name =
            |side: Side, out: &mut JsonWriter<'_>| out.value(&self.names[side.0], &Type::STRING);
        match &outcome.detail {
            Detail::Malformed(line) => {
                out.bytes(b",\"source\":");
                out.string(&line.source);
                out.bytes(b",\"file\":");
                out.string(&line.file);
                out.bytes(b",\"line\":");
                out.int(i64::try_from(line.line).unwrap_or(i64::MAX));
                out.bytes(b",\"raw\":");
                out.string(&line.raw);
                out.bytes(b",\"reason\":");
                out.string(&line.reason);
                out.byte(b'}');
                return;
            }
            Detail::Matched => self.key(outcome, out),
            Detail::Mismatched { failed } => {
                self.key(outcome, out);
                out.bytes(b",\"failed\":[");
                for (i, rule) in failed.iter().enumerate() {
                    if i > 0 {
                        out.byte(b',');
                    }
                    out.string(rule);
                }
                out.byte(b']');
            }
            Detail::TimedOut { expired } => {
                self.key(outcome, out);
                out.bytes(b",\"expired\":");
                side_name(*expired, out);
                out.bytes(b",\"missing\":");
                self.side_list(outcome.missing(), out);
            }
            Detail::Duplicate { side, of } => {
                self.key(outcome, out);
                out.bytes(b",\"side\":");
                side_name(*side, out);
                out.bytes(b",\"of\":");
                out.string(of.name());
            }
            Detail::Late { side } => {
                self.key(outcome, out);
                out.bytes(b",\"side\":");
                side_name(*side, out);
            }
            Detail::Resolved {
                expired,
                deadline,
                arrived,
            } => {
                self.key(outcome, out);
                out.bytes(b",\"expired\":");
                side_name(*expired, out);
                out.bytes(b",\"deadline\":");
                out.time(*deadline);
                out.bytes(b",\"arrived\":");
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
        for ((record, before), layout) in (outcome.records.iter())
            .zip(&self.side_keys)
            .zip(&self.layouts)
        {
            out.piece(before);
            match record {
                Some(record) => layout.write(record, out),
                None => out.bytes(b"null"),
            }
        }
        for ((record, before), time) in (outcome.records.iter())
            .zip(&self.time_keys)
            .zip(&outcome.times)
        {
            out.piece(before);
            match record {
                Some(_) => out.time(*time),
                None => out.bytes(b"null"),
            }
        }
        out.bytes(b"}}");
    }

    fn key(&self, outcome: &Outcome, out: &mut JsonWriter<'_>) {
        out.bytes(b",\"key\":");
        out.value(outcome.key.value(), &self.key_type);
    }

    fn side_list(&self, sides: impl Iterator<Item = Side>, out: &mut JsonWriter<'_>) {
        out.byte(b'[');
        for (i, side) in sides.enumerate() {
            if i > 0 {
                out.byte(b',');
            }
            out.value(&self.names[side.0], &Type::STRING);
        }
        out.byte(b']');
    }
}

/// Appends the rendering of `template` for `outcome`.
fn render_template(
    template: &Bound,
    outcome: &Outcome,
    values: &[Value],
    out: &mut Vec<u8>,
) -> Result<(), RunError> {
    match evaluate(template, outcome, values, "render")? {
        Value::Str(text) => out.extend_from_slice(text.as_bytes()),
        value => out.extend_from_slice(value.to_string().as_bytes()),
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
