//! The sections of a pipeline file, read from the node tree.

use std::sync::Arc;

use super::node::{Node, Value};
use super::reader::Reader;
use super::{
    Connect, ConnectConfig, Declared, Expected, Match, Name, OutcomeKind, OutputConfig, Pipeline,
    RuleConfig, SinkConfig, SinkKind, SourceConfig, SourceKind, Spanned, TestCase, WaitConfig,
};
use crate::diagnostic::{Code, Diagnostic, Span, did_you_mean};
use crate::expr::{Field, RecordType, SCALAR_TYPES, Type};

/// Source types, in the order of [`SourceKind`]'s variants.
const SOURCE_TYPES: &[&str] = &["inline"];
/// Sink types, in the order of [`SinkKind`]'s variants.
const SINK_TYPES: &[&str] = &["stdout"];

/// Reads the whole pipeline, reporting every problem.
pub(super) fn read(root: &Node, text: &str) -> (Option<Pipeline>, Vec<Diagnostic>) {
    let mut reader = Reader::new(text);
    let pipeline = pipeline(&mut reader, root);
    (pipeline, reader.diagnostics)
}

/// The top level. Every section is read even when another is broken, so one
/// run reports the problems of all of them.
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
        .map_or_else(Declared::default, |(key, value)| {
            sources(r, key.span, value)
        });
    let connect = top
        .required(r, "connect")
        .and_then(|(key, value)| connect(r, key.span, value));
    let matching = top
        .required(r, "match")
        .and_then(|(key, value)| matching(r, key.span, value));
    let sinks = top
        .required(r, "sinks")
        .map_or_else(Declared::default, |(key, value)| sinks(r, key.span, value));
    let (outputs, outputs_complete, outputs_span) =
        top.required(r, "outputs")
            .map_or((Vec::new(), false, Span::new(0, 0)), |(key, value)| {
                let (outputs, complete) = outputs(r, value);
                (outputs, complete, key.span)
            });
    let tests = top
        .optional("tests")
        .map_or_else(Vec::new, |(_, value)| tests(r, value));
    top.finish(r);
    Some(Pipeline {
        name,
        sources,
        connect,
        matching,
        sinks,
        outputs,
        outputs_complete,
        outputs_span,
        tests,
    })
}

/// `sources`: a mapping from source name to source, in the order written.
/// A source that cannot be read is left out after its problems are
/// reported; its name stays declared, and the rest are still read.
fn sources(r: &mut Reader<'_>, at: Span, node: &Node) -> Declared<SourceConfig> {
    let mut schemas = Vec::new();
    let mut declared = declared(r, at, node, "`sources`", |r, key, name, value| {
        let name = r.name(key, name, "source", true)?;
        let (source, schema) = source(r, name.clone(), value);
        schemas.extend(schema.map(|schema| (name.value, schema)));
        source
    });
    declared.schemas = schemas;
    declared
}

/// A mapping from user-chosen names to items read by `read`: the items that
/// could be read, and every name declared.
fn declared<T>(
    r: &mut Reader<'_>,
    at: Span,
    node: &Node,
    what: &str,
    mut read: impl FnMut(&mut Reader<'_>, &Node, &str, &Node) -> Option<T>,
) -> Declared<T> {
    let Some(mut fields) = r.map(node, at, what) else {
        return Declared::default();
    };
    let entries: Vec<_> = fields.all().collect();
    let names = entries
        .iter()
        .map(|(key, name, _)| Spanned {
            value: (*name).to_string(),
            span: key.span,
        })
        .collect();
    let items = entries
        .into_iter()
        .filter_map(|(key, name, value)| read(r, key, name, value))
        .collect();
    Declared {
        items,
        names: Some(names),
        schemas: Vec::new(),
    }
}

/// One source, and its schema when that could be read, whatever else could
/// not: expressions over the source's records can then still be checked.
fn source(
    r: &mut Reader<'_>,
    name: Name,
    node: &Node,
) -> (Option<SourceConfig>, Option<Arc<RecordType>>) {
    let mut schema = None;
    let source = read_source(r, name, node, &mut schema);
    (source, schema)
}

/// One source. `type` selects the kind; keys that belong to one kind only
/// (`records`) are taken here and checked against the kind below, so a
/// misspelled kind does not also report its keys as unknown.
fn read_source(
    r: &mut Reader<'_>,
    name: Name,
    node: &Node,
    schema_read: &mut Option<Arc<RecordType>>,
) -> Option<SourceConfig> {
    let what = format!("source `{}`", name.value);
    let mut fields = r.map(node, name.span, &what)?;
    let kind = fields
        .required(r, "type")
        .and_then(|(_, value)| r.choice(value, "source type", SOURCE_TYPES));
    let schema = fields
        .required(r, "schema")
        .and_then(|(key, value)| schema(r, &name.value, key.span, value));
    schema_read.clone_from(&schema);
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
    // Names other languages use for the same types.
    let synonym = match base {
        "integer" | "long" | "i64" | "number" => Some("int"),
        "double" | "f64" | "decimal" => Some("float"),
        "boolean" => Some("bool"),
        "str" | "text" | "varchar" => Some("string"),
        "datetime" | "date" | "time" | "instant" => Some("timestamp"),
        _ => None,
    };
    let help = synonym
        .or_else(|| did_you_mean(base, SCALAR_TYPES.iter().map(|(name, _)| *name)))
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
fn connect(r: &mut Reader<'_>, at: Span, node: &Node) -> Option<Connect> {
    let mut fields = r.map(node, at, "`connect`")?;
    let entries: Vec<_> = fields.all().collect();
    let sides = entries
        .into_iter()
        .map(|(key, name, value)| ConnectConfig {
            source: Spanned {
                value: name.to_string(),
                span: key.span,
            },
            key: r.expr(value, &format!("the key of `{name}`")),
        })
        .collect();
    Some(Connect { sides, span: at })
}

/// `match`: the wait rules and the optional condition.
fn matching(r: &mut Reader<'_>, at: Span, node: &Node) -> Option<Match> {
    let mut fields = r.map(node, at, "`match`")?;
    let wait = match fields.required(r, "wait") {
        Some((key, value)) => wait(r, key.span, value),
        None => WaitConfig::Missing,
    };
    let mut rules = Vec::new();
    let mut rules_complete = true;
    if let Some((key, value)) = fields.optional("condition") {
        match r.expr(value, "`condition`") {
            Some(expr) => rules.push(RuleConfig {
                name: Spanned {
                    value: "condition".to_string(),
                    span: key.span,
                },
                expr,
            }),
            None => rules_complete = false,
        }
    }
    if let Some((key, value)) = fields.optional("rules") {
        let read = declared(r, key.span, value, "`rules`", |r, key, name, value| {
            let expr = r.expr(value, &format!("rule `{name}`"))?;
            Some(RuleConfig {
                name: Spanned {
                    value: name.to_string(),
                    span: key.span,
                },
                expr,
            })
        });
        rules_complete &= read
            .names
            .as_ref()
            .is_some_and(|names| names.len() == read.items.len());
        rules.extend(read.items);
    }
    // An unreadable retention is reported; the rest of `match` still counts.
    let retention = fields
        .optional("retention")
        .and_then(|(_, value)| r.duration(value, "`retention`"));
    fields.finish(r);
    Some(Match {
        wait,
        rules,
        rules_complete,
        retention,
        span: at,
    })
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
        .map(|(key, name, value)| {
            let wait = r.duration(value, &format!("the wait of `{name}`"));
            (
                Spanned {
                    value: name.to_string(),
                    span: key.span,
                },
                wait,
            )
        })
        .collect();
    WaitConfig::PerSide(rules)
}

/// `sinks`: sink name to sink, each tagged by `type`.
fn sinks(r: &mut Reader<'_>, at: Span, node: &Node) -> Declared<SinkConfig> {
    declared(r, at, node, "`sinks`", |r, key, name, value| {
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
}

/// `outputs`: a list of routes. An output's place in the list is how
/// messages name it (`output 2`), since outputs have no names of their own.
/// Also says whether every output could be read.
fn outputs(r: &mut Reader<'_>, node: &Node) -> (Vec<OutputConfig>, bool) {
    let Some(items) = r.list(node, "`outputs`") else {
        return (Vec::new(), false);
    };
    let names: Vec<&str> = OutcomeKind::ALL.iter().map(|kind| kind.name()).collect();
    let outputs: Vec<OutputConfig> = items
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
        .collect();
    let complete = outputs.len() == items.len();
    (outputs, complete)
}

/// `tests`: a list of test cases. A case that cannot be read is left out
/// after its problems are reported.
fn tests(r: &mut Reader<'_>, node: &Node) -> Vec<TestCase> {
    let Some(items) = r.list(node, "`tests`") else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(index, item)| test_case(r, index, item))
        .collect()
}

fn test_case(r: &mut Reader<'_>, index: usize, item: &Node) -> Option<TestCase> {
    let what = format!("test {}", index + 1);
    let mut fields = r.map(item, item.span, &what)?;
    let name = fields
        .required(r, "name")
        .and_then(|(_, value)| r.string(value, "a test's `name`"));
    let records = fields.required(r, "records").and_then(|(key, value)| {
        let mut sources = r.map(value, key.span, "a test's `records`")?;
        let entries: Vec<_> = sources.all().collect();
        let read: Vec<_> = entries
            .into_iter()
            .map(|(key, source, value)| {
                let records = r
                    .list(value, &format!("the records of `{source}`"))?
                    .to_vec();
                Some((
                    Spanned {
                        value: source.to_string(),
                        span: key.span,
                    },
                    records,
                ))
            })
            .collect();
        read.into_iter().collect::<Option<Vec<_>>>()
    });
    let expect = fields.optional("expect").map(|(_, value)| {
        let items = r.list(value, "`expect`")?;
        items
            .iter()
            .map(|item| expected(r, item))
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Option<Vec<_>>>()
    });
    let output = fields
        .optional("output")
        .map(|(key, value)| output(r, key.span, value));
    fields.finish(r);
    if expect.is_none() && output.is_none() {
        r.report(
            Diagnostic::error(Code::MissingKey, format!("{what} has neither `expect` nor `output`"), item.span)
                .help("say what must come out: the outcomes under `expect`, or each sink's lines under `output`".to_string()),
        );
        return None;
    }
    Some(TestCase {
        name: name?,
        records: records?,
        expect: expect.map_or(Some(None), |expect| expect.map(Some))?,
        output: output.map_or(Some(None), |output| output.map(Some))?,
        span: item.span,
    })
}

/// One expected outcome: `{outcome: timed_out, key: order-2, missing: [bank]}`.
fn expected(r: &mut Reader<'_>, node: &Node) -> Option<Expected> {
    let mut fields = r.map(node, node.span, "an expected outcome")?;
    let kinds: Vec<&str> = OutcomeKind::ALL.iter().map(|kind| kind.name()).collect();
    let outcome = fields
        .required(r, "outcome")
        .and_then(|(_, value)| r.choice(value, "outcome", &kinds))
        .map(|choice| Spanned {
            value: OutcomeKind::ALL[choice.value],
            span: choice.span,
        });
    let key = fields
        .required(r, "key")
        .and_then(|(_, value)| r.scalar_text(value, "an expected `key`", "a single value"));
    let expired = fields
        .optional("expired")
        .map(|(_, value)| r.string(value, "`expired`"));
    let missing = fields
        .optional("missing")
        .map(|(_, value)| names(r, value, "`missing`", "a missing side"));
    let failed = fields
        .optional("failed")
        .map(|(_, value)| names(r, value, "`failed`", "a rule name"));
    let side = fields
        .optional("side")
        .map(|(_, value)| r.string(value, "`side`"));
    fields.finish(r);
    Some(Expected {
        outcome: outcome?,
        key: key?,
        expired: expired.map_or(Some(None), |expired| expired.map(Some))?,
        missing: missing.map_or(Some(None), |missing| missing.map(Some))?,
        failed: failed.map_or(Some(None), |failed| failed.map(Some))?,
        side: side.map_or(Some(None), |side| side.map(Some))?,
        span: node.span,
    })
}

/// A list of names: `[bank, settlements]`.
fn names(r: &mut Reader<'_>, node: &Node, what: &str, item: &str) -> Option<Vec<Name>> {
    let items = r.list(node, what)?;
    let read: Vec<Option<Name>> = items.iter().map(|node| r.string(node, item)).collect();
    read.into_iter().collect()
}

/// A test's `output`: sink name to the lines it writes.
fn output(r: &mut Reader<'_>, at: Span, node: &Node) -> Option<Vec<(Name, Vec<Spanned<String>>)>> {
    let mut sinks = r.map(node, at, "a test's `output`")?;
    let entries: Vec<_> = sinks.all().collect();
    let read: Vec<_> = entries
        .into_iter()
        .map(|(key, sink, value)| {
            let items = r.list(value, &format!("the lines of `{sink}`"))?;
            let lines: Vec<_> = items
                .iter()
                .map(|item| r.string(item, "a line of output"))
                .collect();
            Some((
                Spanned {
                    value: sink.to_string(),
                    span: key.span,
                },
                lines.into_iter().collect::<Option<Vec<_>>>()?,
            ))
        })
        .collect();
    read.into_iter().collect()
}
