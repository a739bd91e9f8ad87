//! The sections of a pipeline file, read from the node tree.

use std::sync::Arc;

use super::node::{Node, Value};
use super::reader::Reader;
use super::{
    ConnectConfig, Name, OutcomeKind, OutputConfig, Pipeline, SinkConfig, SinkKind, SourceConfig,
    SourceKind, Spanned, WaitConfig,
};
use crate::diagnostic::{Code, Diagnostic, Span, did_you_mean};
use crate::expr::{Field, RecordType, SCALAR_TYPES, Type};

/// Source types, in the order of [`SourceKind`]'s variants.
const SOURCE_TYPES: &[&str] = &["inline"];
/// Sink types, in the order of [`SinkKind`]'s variants.
const SINK_TYPES: &[&str] = &["stdout"];

/// Reads the whole pipeline, reporting every problem.
pub(super) fn read(root: &Node, text: &str) -> Result<Pipeline, Vec<Diagnostic>> {
    let mut reader = Reader::new(text);
    let pipeline = pipeline(&mut reader, root);
    crate::diagnostic::conclude(pipeline, reader.diagnostics)
}

/// The top level. Every section is read even when another is broken, so one
/// run reports the problems of all of them; the pipeline exists only if
/// every required section could be read.
fn pipeline(r: &mut Reader<'_>, root: &Node) -> Option<Pipeline> {
    if root.value == Value::Null {
        r.report(
            Diagnostic::error(
                Code::WrongShape,
                "the pipeline file has no content",
                Span::new(0, 0),
            )
            .help(
                "a pipeline declares `sources`, `connect`, `match`, `sinks` and `outputs`"
                    .to_string(),
            ),
        );
        return None;
    }
    let mut top = r.map(root, Span::new(0, 0), "the pipeline")?;
    let name = top
        .optional("name")
        .and_then(|(_, value)| r.string(value, "`name`"));
    let sources = top
        .required(r, "sources")
        .map(|(key, value)| sources(r, key.span, value));
    let connect = top
        .required(r, "connect")
        .map(|(key, value)| (key.span, connect(r, key.span, value)));
    let matching = top
        .required(r, "match")
        .map(|(key, value)| (key.span, matching(r, key.span, value)));
    let sinks = top
        .required(r, "sinks")
        .map(|(key, value)| sinks(r, key.span, value));
    let outputs = top
        .required(r, "outputs")
        .map(|(_, value)| outputs(r, value));
    top.finish(r);
    let (connect_span, connect) = connect?;
    let (match_span, (wait, condition)) = matching?;
    Some(Pipeline {
        name,
        sources: sources?,
        connect,
        connect_span,
        wait,
        condition,
        match_span,
        sinks: sinks?,
        outputs: outputs?,
    })
}

/// `sources`: a mapping from source name to source, in the order written.
/// A source that cannot be read is left out after its problems are
/// reported, and the rest are still read.
fn sources(r: &mut Reader<'_>, at: Span, node: &Node) -> Vec<SourceConfig> {
    let Some(mut fields) = r.map(node, at, "`sources`") else {
        return Vec::new();
    };
    let entries: Vec<_> = fields.all().collect();
    entries
        .into_iter()
        .filter_map(|(key, name, value)| {
            let name = r.name(key, name, "source", true)?;
            source(r, name, value)
        })
        .collect()
}

/// One source. `type` selects the kind; keys that belong to one kind only
/// (`records`) are taken here and checked against the kind below, so a
/// misspelled kind does not also report its keys as unknown.
fn source(r: &mut Reader<'_>, name: Name, node: &Node) -> Option<SourceConfig> {
    let what = format!("source `{}`", name.value);
    let mut fields = r.map(node, name.span, &what)?;
    let kind = fields
        .required(r, "type")
        .and_then(|(_, value)| r.choice(value, "source type", SOURCE_TYPES));
    let schema = fields
        .required(r, "schema")
        .and_then(|(key, value)| schema(r, &name.value, key.span, value));
    let event_time = fields
        .required(r, "event_time")
        .and_then(|(_, value)| r.expr(value, "`event_time`"));
    let watermark_lag = fields
        .required(r, "watermark_lag")
        .and_then(|(_, value)| r.duration(value, "`watermark_lag`"));
    let idle_timeout = fields
        .optional("idle_timeout")
        .map(|(_, value)| r.duration(value, "`idle_timeout`"));
    let records = fields.optional("records");
    fields.finish(r);
    // A present but invalid value was reported; it must not read as absent.
    let idle_timeout = match idle_timeout {
        Some(parsed) => Some(parsed?),
        None => None,
    };
    let kind = match kind?.value {
        0 => {
            let Some((_, records)) = records else {
                r.report(
                    Diagnostic::error(
                        Code::MissingKey,
                        format!("{what} is missing `records`"),
                        name.span,
                    )
                    .label("an `inline` source lists its `records`"),
                );
                return None;
            };
            SourceKind::Inline {
                records: r.list(records, "`records`")?.to_vec(),
            }
        }
        _ => unreachable!("`choice` returns an index into SOURCE_TYPES"),
    };
    Some(SourceConfig {
        name,
        kind,
        schema: schema?,
        event_time: event_time?,
        watermark_lag: watermark_lag?,
        idle_timeout,
    })
}

/// A schema: field names to types; a nested mapping is a nested record.
/// `path` names the record in messages: `app`, `app.amount`.
fn schema(r: &mut Reader<'_>, path: &str, at: Span, node: &Node) -> Option<Arc<RecordType>> {
    let mut fields = r.map(node, at, &format!("the schema of `{path}`"))?;
    let entries: Vec<_> = fields.all().collect();
    let mut declared = Vec::with_capacity(entries.len());
    let mut complete = true;
    for (key, name, value) in entries {
        let ty = match &value.value {
            Value::Str(text) => scalar_type(r, text, value.span),
            Value::Map(_) => {
                schema(r, &format!("{path}.{name}"), key.span, value).map(Type::record)
            }
            other => {
                r.report(
                    Diagnostic::error(
                        Code::InvalidFieldType,
                        format!("field `{name}` needs a type, found {}", other.describe()),
                        value.span,
                    )
                    .help(type_help()),
                );
                None
            }
        };
        match ty {
            Some(ty) => declared.push(Field {
                name: name.to_string(),
                ty,
            }),
            None => complete = false,
        }
    }
    if declared.is_empty() && complete {
        r.report(
            Diagnostic::error(
                Code::WrongShape,
                format!("the schema of `{path}` declares no fields"),
                node.span,
            )
            .help(type_help()),
        );
        return None;
    }
    complete.then(|| {
        Arc::new(RecordType {
            name: path.to_string(),
            fields: declared,
        })
    })
}

/// A scalar schema type: `string`, `int`, ..., with `?` for nullable.
fn scalar_type(r: &mut Reader<'_>, text: &str, span: Span) -> Option<Type> {
    let (base, nullable) = text
        .strip_suffix('?')
        .map_or((text, false), |base| (base, true));
    if let Some((_, ty)) = SCALAR_TYPES.iter().find(|(name, _)| *name == base) {
        return Some(if nullable {
            ty.clone().or_null()
        } else {
            ty.clone()
        });
    }
    let help = did_you_mean(base, SCALAR_TYPES.iter().map(|(name, _)| *name))
        .map_or_else(type_help, |name| format!("did you mean `{name}`?"));
    r.report(
        Diagnostic::error(
            Code::InvalidFieldType,
            format!("unknown type `{text}`"),
            span,
        )
        .label("not a schema type")
        .help(help),
    );
    None
}

/// What a schema type can be, for messages that have no closer suggestion.
fn type_help() -> String {
    "field types are `string`, `int`, `float`, `bool` and `timestamp`, `?` after one for a value that may be null, \
     or a mapping of fields for a nested record"
        .to_string()
}

/// `connect`: source name to key expression. The names are resolved by the
/// planner, which knows every source; here they are only read.
fn connect(r: &mut Reader<'_>, at: Span, node: &Node) -> Vec<ConnectConfig> {
    let Some(mut fields) = r.map(node, at, "`connect`") else {
        return Vec::new();
    };
    let entries: Vec<_> = fields.all().collect();
    entries
        .into_iter()
        .filter_map(|(key, name, value)| {
            let key_expr = r.expr(value, &format!("the key of `{name}`"))?;
            Some(ConnectConfig {
                source: Spanned {
                    value: name.to_string(),
                    span: key.span,
                },
                key: key_expr,
            })
        })
        .collect()
}

/// `match`: the wait rules and the optional condition.
fn matching(r: &mut Reader<'_>, at: Span, node: &Node) -> (WaitConfig, Option<super::ExprText>) {
    let Some(mut fields) = r.map(node, at, "`match`") else {
        return (WaitConfig::Missing, None);
    };
    let wait = match fields.required(r, "wait") {
        Some((key, value)) => wait(r, key.span, value),
        None => WaitConfig::Missing,
    };
    let condition = fields
        .optional("condition")
        .and_then(|(_, value)| r.expr(value, "`condition`"));
    fields.finish(r);
    (wait, condition)
}

/// `wait`: one duration for every side, or a mapping from side to duration.
/// Which sides exist is the planner's to check.
fn wait(r: &mut Reader<'_>, at: Span, node: &Node) -> WaitConfig {
    if !matches!(node.value, Value::Map(_)) {
        return r
            .duration(node, "`wait`")
            .map_or(WaitConfig::Missing, WaitConfig::All);
    }
    let Some(mut fields) = r.map(node, at, "`wait`") else {
        return WaitConfig::Missing;
    };
    let entries: Vec<_> = fields.all().collect();
    let rules = entries
        .into_iter()
        .filter_map(|(key, name, value)| {
            let wait = r.duration(value, &format!("the wait of `{name}`"))?;
            Some((
                Spanned {
                    value: name.to_string(),
                    span: key.span,
                },
                wait,
            ))
        })
        .collect();
    WaitConfig::PerSide(rules)
}

/// `sinks`: sink name to sink, each tagged by `type`.
fn sinks(r: &mut Reader<'_>, at: Span, node: &Node) -> Vec<SinkConfig> {
    let Some(mut fields) = r.map(node, at, "`sinks`") else {
        return Vec::new();
    };
    let entries: Vec<_> = fields.all().collect();
    entries
        .into_iter()
        .filter_map(|(key, name, value)| {
            let name = r.name(key, name, "sink", false)?;
            let mut fields = r.map(value, name.span, &format!("sink `{}`", name.value))?;
            let kind = fields
                .required(r, "type")
                .and_then(|(_, value)| r.choice(value, "sink type", SINK_TYPES));
            fields.finish(r);
            let kind = match kind?.value {
                0 => SinkKind::Stdout,
                _ => unreachable!("`choice` returns an index into SINK_TYPES"),
            };
            Some(SinkConfig { name, kind })
        })
        .collect()
}

/// `outputs`: a list of routes. An output's place in the list is how
/// messages name it (`output 2`), since outputs have no names of their own.
fn outputs(r: &mut Reader<'_>, node: &Node) -> Vec<OutputConfig> {
    let Some(items) = r.list(node, "`outputs`") else {
        return Vec::new();
    };
    let names: Vec<&str> = OutcomeKind::ALL.iter().map(|kind| kind.name()).collect();
    items
        .iter()
        .enumerate()
        .filter_map(|(index, item)| {
            let what = format!("output {}", index + 1);
            let mut fields = r.map(item, item.span, &what)?;
            let outcome = fields
                .required(r, "outcome")
                .and_then(|(_, value)| r.choice(value, "outcome", &names))
                .map(|choice| Spanned {
                    value: OutcomeKind::ALL[choice.value],
                    span: choice.span,
                });
            let side = fields
                .optional("side")
                .map(|(_, value)| r.string(value, "`side`"));
            let sink = fields
                .required(r, "sink")
                .and_then(|(_, value)| r.string(value, "`sink`"));
            let template = fields
                .optional("template")
                .map(|(_, value)| r.expr(value, "`template`"));
            fields.finish(r);
            let side = match side {
                Some(parsed) => Some(parsed?),
                None => None,
            };
            let template = match template {
                Some(parsed) => Some(parsed?),
                None => None,
            };
            Some(OutputConfig {
                outcome: outcome?,
                side,
                sink: sink?,
                template,
                span: item.span,
            })
        })
        .collect()
}
