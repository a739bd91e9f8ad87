//! The sections of a pipeline file, read from the node tree.

use std::sync::Arc;

use super::node::{Node, Value};
use super::reader::Reader;
use super::{
    CheckpointConfig, Clock, Connect, ConnectConfig, CsvFormat, Declared, Expected, Format,
    KafkaSink, KafkaSource, Match, Name, OutcomeKind, OutputConfig, Pipeline, RuleConfig,
    SinkConfig, SinkFormat, SinkKind, SourceConfig, SourceKind, Spanned, StartAt, TestCase,
    WaitConfig,
};
use crate::diagnostic::{Code, Diagnostic, Span, did_you_mean};
use crate::expr::{Field, Kind, RecordType, SCALAR_TYPES, Type};

/// Source types, in the order of [`SourceKind`]'s variants.
const SOURCE_TYPES: &[&str] = &["inline", "file", "stdin", "kafka"];
/// Sink types, in the order of [`SinkKind`]'s variants.
const SINK_TYPES: &[&str] = &["stdout", "stderr", "file", "kafka"];
/// Clocks, in the order of [`Clock`]'s variants.
const CLOCKS: &[&str] = &["event", "processing"];
/// Input formats, in the order of [`Format`]'s variants.
const FORMATS: &[&str] = &["jsonl", "csv"];
/// Keys that only some source types take, and which.
const SOURCE_OPTIONS: &[(&str, &[&str])] = &[
    ("records", &["inline"]),
    ("path", &["file"]),
    ("follow", &["file"]),
    ("format", &["file", "stdin", "kafka"]),
    ("header", &["file", "stdin"]),
    ("columns", &["file", "stdin", "kafka"]),
    ("delimiter", &["file", "stdin", "kafka"]),
    ("brokers", &["kafka"]),
    ("topic", &["kafka"]),
    ("group", &["kafka"]),
    ("start", &["kafka"]),
    ("bounded", &["kafka"]),
    ("properties", &["kafka"]),
];
/// Where a Kafka source may start, in the order of [`StartAt`]'s variants.
const STARTS: &[&str] = &["earliest", "latest"];
/// Keys that only CSV inputs take.
const CSV_OPTIONS: &[&str] = &["header", "columns", "delimiter"];

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
    let checkpoint = top
        .optional("checkpoint")
        .and_then(|(key, value)| checkpoint(r, key.span, value));
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
        checkpoint,
    })
}

/// `checkpoint`: whether and how often a run writes checkpoints.
fn checkpoint(r: &mut Reader<'_>, at: Span, node: &Node) -> Option<CheckpointConfig> {
    let mut fields = r.map(node, at, "`checkpoint`")?;
    let enabled = fields
        .optional("enabled")
        .and_then(|(_, value)| r.boolean(value, "`enabled`"));
    let interval = fields
        .optional("interval")
        .and_then(|(_, value)| r.duration(value, "`interval`"));
    let transactions = fields
        .optional("transactions")
        .and_then(|(_, value)| r.boolean(value, "`transactions`"));
    let state_topic = fields
        .optional("state_topic")
        .and_then(|(_, value)| r.string(value, "`state_topic`"));
    fields.finish(r);
    if let Some(interval) = interval.filter(|i| i.value <= crate::time::Duration::ZERO) {
        r.report(
            Diagnostic::error(
                Code::InvalidDuration,
                "a checkpoint interval must be longer than 0s",
                interval.span,
            )
            .help("turn checkpoints off with `enabled: false`".to_string()),
        );
    }
    Some(CheckpointConfig {
        enabled,
        interval,
        transactions,
        state_topic,
        span: at,
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
        .optional("event_time")
        .map(|(_, value)| r.expr(value, "`event_time`"));
    let watermark_lag = fields
        .optional("watermark_lag")
        .map(|(_, value)| r.duration(value, "`watermark_lag`"));
    let idle_timeout = fields
        .optional("idle_timeout")
        .map(|(_, value)| r.duration(value, "`idle_timeout`"));
    let options: Vec<_> = SOURCE_OPTIONS
        .iter()
        .filter_map(|(key, _)| fields.optional(key).map(|(k, value)| (*key, k, value)))
        .collect();
    fields.finish(r);
    // A present but invalid value was reported; it must not read as absent.
    let idle_timeout = match idle_timeout {
        Some(parsed) => Some(parsed?),
        None => None,
    };
    let event_time = match event_time {
        Some(parsed) => Some(parsed?),
        None => None,
    };
    let watermark_lag = match watermark_lag {
        Some(parsed) => Some(parsed?),
        None => None,
    };
    let kind = source_kind(r, &name, kind?.value, &options);
    let schema = schema?;
    if let Some(
        SourceKind::File {
            format: Format::Csv(csv),
            ..
        }
        | SourceKind::Stdin {
            format: Format::Csv(csv),
        }
        | SourceKind::Kafka(KafkaSource {
            format: Format::Csv(csv),
            ..
        }),
    ) = &kind
    {
        csv_schema(r, &name, csv, &schema);
    }
    Some(SourceConfig {
        name,
        kind: kind?,
        schema,
        event_time,
        watermark_lag,
        idle_timeout,
    })
}

/// What a source of type `SOURCE_TYPES[kind]` reads, from the keys of
/// [`SOURCE_OPTIONS`] it was given.
fn source_kind(
    r: &mut Reader<'_>,
    name: &Name,
    kind: usize,
    options: &[(&str, &Node, &Node)],
) -> Option<SourceKind> {
    let type_name = SOURCE_TYPES[kind];
    let mut fits = true;
    for (key, key_node, _) in options {
        let (_, takes) = SOURCE_OPTIONS
            .iter()
            .find(|(option, _)| option == key)
            .expect("options are keys of SOURCE_OPTIONS");
        if !takes.contains(&type_name) {
            let owners: Vec<String> = takes.iter().map(|t| format!("`{t}`")).collect();
            r.report(
                Diagnostic::error(
                    Code::UnknownKey,
                    format!("`{key}` is not an option of `{type_name}` sources"),
                    key_node.span,
                )
                .label(format!("applies to {} sources", owners.join(" and "))),
            );
            fits = false;
        }
    }
    let option = |key: &str| {
        options
            .iter()
            .find(|(option, _, _)| *option == key)
            .map(|(_, _, value)| *value)
    };
    let missing = |r: &mut Reader<'_>, key: &str, label: &str| {
        r.report(
            Diagnostic::error(
                Code::MissingKey,
                format!("source `{}` is missing `{key}`", name.value),
                name.span,
            )
            .label(label.to_string()),
        );
    };
    let kind = match kind {
        0 => {
            let Some(records) = option("records") else {
                missing(r, "records", "an `inline` source lists its `records`");
                return None;
            };
            SourceKind::Inline {
                records: r.list(records, "`records`")?.to_vec(),
            }
        }
        1 => {
            let Some(path) = option("path") else {
                missing(
                    r,
                    "path",
                    "a `file` source reads the file or glob at its `path`",
                );
                return None;
            };
            let path = r.string(path, "`path`")?;
            let follow = match option("follow") {
                Some(follow) => r.boolean(follow, "`follow`")?.value,
                None => false,
            };
            let format = format(r, name, Some(&path), options);
            SourceKind::File {
                format: format?,
                path,
                follow,
            }
        }
        2 => SourceKind::Stdin {
            format: format(r, name, None, options)?,
        },
        3 => kafka_source(r, name, option)?,
        _ => unreachable!("`choice` returns an index into SOURCE_TYPES"),
    };
    fits.then_some(kind)
}

/// A `kafka` source: `brokers`, `topic`, `group` and `format` (required),
/// `start`, `bounded` and `properties`. A message value has no header
/// line, so CSV values name their `columns`.
fn kafka_source<'n>(
    r: &mut Reader<'_>,
    name: &Name,
    option: impl Fn(&str) -> Option<&'n Node>,
) -> Option<SourceKind> {
    let owner = format!("source `{}`", name.value);
    let what = "a `kafka` source";
    let brokers = kafka_text(
        r,
        (&owner, name.span, what),
        option("brokers"),
        "brokers",
        "the bootstrap servers, `host:port`",
    );
    let topic = kafka_text(
        r,
        (&owner, name.span, what),
        option("topic"),
        "topic",
        "the topic to read",
    );
    let group = kafka_text(
        r,
        (&owner, name.span, what),
        option("group"),
        "group",
        "the consumer group its offsets are committed for",
    );
    let format = kafka_format(r, name, &option);
    let start = match option("start") {
        Some(value) => match r.choice(value, "start", STARTS)?.value {
            0 => StartAt::Earliest,
            _ => StartAt::Latest,
        },
        None => StartAt::Earliest,
    };
    let bounded = match option("bounded") {
        Some(value) => r.boolean(value, "`bounded`")?.value,
        None => false,
    };
    let properties = match option("properties") {
        Some(value) => properties(r, value.span, value)?,
        None => Vec::new(),
    };
    Some(SourceKind::Kafka(KafkaSource {
        brokers: brokers?,
        topic: topic?,
        group: group?,
        format: format?,
        start,
        bounded,
        properties,
    }))
}

/// The `format` of a Kafka source's message values: `columns` (and a
/// `delimiter`) for CSV, since a value has no header line.
fn kafka_format<'n>(
    r: &mut Reader<'_>,
    name: &Name,
    option: &impl Fn(&str) -> Option<&'n Node>,
) -> Option<Format> {
    let owner = format!("source `{}`", name.value);
    let format = match option("format") {
        None => {
            r.report(
                Diagnostic::error(
                    Code::MissingKey,
                    format!("{owner} is missing `format`"),
                    name.span,
                )
                .label("`jsonl` or `csv`: how each message's value is read"),
            );
            None
        }
        Some(value) => match r.choice(value, "format", FORMATS)?.value {
            0 => Some(Format::Jsonl),
            _ => {
                if let Some(columns_node) = option("columns") {
                    Some(Format::Csv(CsvFormat {
                        header: false,
                        columns: Some(columns(r, columns_node)?),
                        delimiter: match option("delimiter") {
                            Some(value) => csv_delimiter(r, value)?,
                            None => b',',
                        },
                    }))
                } else {
                    r.report(
                        Diagnostic::error(
                            Code::MissingKey,
                            format!("{owner} is missing `columns`"),
                            name.span,
                        )
                        .label("a message value has no header line: the pipeline names the columns")
                        .help("list them in order: `columns: [order_id, amount, ts]`".to_string()),
                    );
                    None
                }
            }
        },
    };
    if matches!(format, Some(Format::Jsonl)) {
        for key in ["columns", "delimiter"] {
            if let Some(value) = option(key) {
                r.report(
                    Diagnostic::error(
                        Code::UnknownKey,
                        format!("`{key}` is an option of `csv` input, not `jsonl`"),
                        value.span,
                    )
                    .label("applies to `format: csv`"),
                );
                return None;
            }
        }
    }
    format
}

/// A required, non-empty text option `key` of a Kafka source or sink:
/// `owner` names it in messages ("source \`bank\`"), at `span`; `what`
/// says what it is ("a \`kafka\` sink") and `needs` what the option is for.
fn kafka_text(
    r: &mut Reader<'_>,
    (owner, span, what): (&str, Span, &str),
    found: Option<&Node>,
    key: &str,
    needs: &str,
) -> Option<Spanned<String>> {
    let Some(value) = found else {
        r.report(
            Diagnostic::error(
                Code::MissingKey,
                format!("{owner} is missing `{key}`"),
                span,
            )
            .label(format!("{what} needs {needs}")),
        );
        return None;
    };
    let text = r.string(value, &format!("`{key}`"))?;
    if text.value.trim().is_empty() {
        r.report(Diagnostic::error(
            Code::WrongShape,
            format!("`{key}` of {owner} is empty"),
            text.span,
        ));
        return None;
    }
    Some(text)
}

/// `properties` of a Kafka client: names to strings, numbers or booleans,
/// in the order written.
fn properties(
    r: &mut Reader<'_>,
    at: Span,
    node: &Node,
) -> Option<Vec<(Spanned<String>, Spanned<String>)>> {
    let mut fields = r.map(node, at, "`properties`")?;
    let entries: Vec<_> = fields.all().collect();
    fields.finish(r);
    entries
        .into_iter()
        .map(|(key, name, value)| {
            let text = r.scalar_text(
                value,
                &format!("property `{name}`"),
                "a string, number or boolean",
            )?;
            Some((
                Spanned {
                    value: name.to_string(),
                    span: key.span,
                },
                text,
            ))
        })
        .collect()
}

/// The `format` of a file or stdin source, from its CSV options; told from
/// the file name when not given.
fn format(
    r: &mut Reader<'_>,
    name: &Name,
    path: Option<&Spanned<String>>,
    options: &[(&str, &Node, &Node)],
) -> Option<Format> {
    let option = |key: &str| {
        options
            .iter()
            .find(|(option, _, _)| *option == key)
            .map(|(_, key, value)| (*key, *value))
    };
    let told = path.and_then(|path| format_of(&path.value));
    let (csv, mut delimiter) = if let Some((_, value)) = option("format") {
        (r.choice(value, "format", FORMATS)?.value == 1, b',')
    } else if let Some(told) = told {
        told
    } else {
        let label = match path {
            Some(_) => {
                "`jsonl` or `csv`: the path does not end in `.jsonl`, `.ndjson`, `.json`, `.csv` or `.tsv`"
            }
            None => "`jsonl` or `csv`: standard input has no file name to tell it from",
        };
        r.report(
            Diagnostic::error(
                Code::MissingKey,
                format!("source `{}` is missing `format`", name.value),
                name.span,
            )
            .label(label),
        );
        return None;
    };
    if !csv {
        let given: Vec<_> = CSV_OPTIONS.iter().filter_map(|key| option(key)).collect();
        for (key, _) in &given {
            r.report(
                Diagnostic::error(
                    Code::UnknownKey,
                    format!(
                        "`{}` is an option of `csv` input, not `jsonl`",
                        key_text(key)
                    ),
                    key.span,
                )
                .label("applies to `format: csv`"),
            );
        }
        return given.is_empty().then_some(Format::Jsonl);
    }
    let columns = match option("columns") {
        Some((_, value)) => Some(columns(r, value)?),
        None => None,
    };
    let header = match option("header") {
        Some((_, value)) => r.boolean(value, "`header`")?,
        None => Spanned {
            value: columns.is_none(),
            span: name.span,
        },
    };
    if !header.value && columns.is_none() {
        r.report(
            Diagnostic::error(
                Code::MissingKey,
                format!("source `{}` is missing `columns`", name.value),
                header.span,
            )
            .label("without a header line, the pipeline must name the columns")
            .help("list them in order: `columns: [order_id, amount, ts]`".to_string()),
        );
        return None;
    }
    let header = header.value;
    if let Some((_, value)) = option("delimiter") {
        // Reported when wrong; the rest of the source is still checked.
        delimiter = csv_delimiter(r, value).unwrap_or(delimiter);
    }
    Some(Format::Csv(CsvFormat {
        header,
        columns,
        delimiter,
    }))
}

/// The text of a key node.
fn key_text(key: &Node) -> &str {
    match &key.value {
        Value::Str(text) => text,
        _ => "",
    }
}

/// The format a path's extension names: whether it is CSV, and its
/// delimiter.
fn format_of(path: &str) -> Option<(bool, u8)> {
    let extension = path.rsplit_once('.')?.1.to_ascii_lowercase();
    match extension.as_str() {
        "jsonl" | "ndjson" | "json" => Some((false, b',')),
        "csv" => Some((true, b',')),
        "tsv" => Some((true, b'\t')),
        _ => None,
    }
}

/// `columns`: the column names of a CSV input, in order, each once.
fn columns(r: &mut Reader<'_>, node: &Node) -> Option<Vec<Name>> {
    let items = r.list(node, "`columns`")?;
    let mut names: Vec<Name> = Vec::with_capacity(items.len());
    let mut complete = true;
    for item in items {
        let Some(name) = r.string(item, "a column name") else {
            complete = false;
            continue;
        };
        if let Some(first) = names.iter().find(|n| n.value == name.value) {
            r.report(
                Diagnostic::error(
                    Code::DuplicateKey,
                    format!("column `{}` is named twice", name.value),
                    name.span,
                )
                .label("named again here")
                .secondary(first.span, "first named here"),
            );
            complete = false;
            continue;
        }
        names.push(name);
    }
    if names.is_empty() && complete {
        r.report(Diagnostic::error(
            Code::WrongShape,
            "`columns` names no columns",
            node.span,
        ));
        return None;
    }
    complete.then_some(names)
}

/// `delimiter`: one ASCII character other than a quote or a line break.
fn csv_delimiter(r: &mut Reader<'_>, node: &Node) -> Option<u8> {
    let text = r.string(node, "`delimiter`")?;
    match text.value.as_bytes() {
        [byte] if byte.is_ascii() && !matches!(byte, b'"' | b'\n' | b'\r') => Some(*byte),
        _ => {
            r.report(
                Diagnostic::error(
                    Code::WrongShape,
                    format!("`delimiter` must be one character, found {:?}", text.value),
                    text.span,
                )
                .label("one ASCII character other than `\"` or a line break")
                .help("write a tab as `\"\\t\"`".to_string()),
            );
            None
        }
    }
}

/// A CSV input's schema must be flat, and the columns a pipeline names must
/// give every field that cannot be null.
fn csv_schema(r: &mut Reader<'_>, name: &Name, csv: &CsvFormat, schema: &RecordType) {
    for field in &schema.fields {
        if matches!(field.ty.kind, Kind::Record(_)) {
            r.report(
                Diagnostic::error(
                    Code::InvalidSource,
                    format!(
                        "source `{}` reads CSV, so its schema cannot nest records",
                        name.value
                    ),
                    name.span,
                )
                .label(format!("field `{}` is a record", field.name))
                .help("declare the nested fields as columns of their own".to_string()),
            );
        }
    }
    let Some(columns) = &csv.columns else {
        return;
    };
    let (Some(first), Some(last)) = (columns.first(), columns.last()) else {
        return;
    };
    let listed = Span::new(first.span.start, last.span.end);
    for field in &schema.fields {
        if !field.ty.nullable && !columns.iter().any(|c| c.value == field.name) {
            r.report(
                Diagnostic::error(
                    Code::InvalidSource,
                    format!(
                        "the `columns` of `{}` do not include `{}`",
                        name.value, field.name
                    ),
                    listed,
                )
                .label(format!(
                    "no `{}` here, which every record needs",
                    field.name
                ))
                .help(format!(
                    "add `{}` to `columns`, or declare it `{}?` in the schema",
                    field.name, field.ty
                )),
            );
        }
    }
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
    let clock = fields
        .optional("clock")
        .and_then(|(_, value)| r.choice(value, "clock", CLOCKS))
        .map_or(
            Spanned {
                value: Clock::Event,
                span: at,
            },
            |choice| Spanned {
                value: if choice.value == 0 {
                    Clock::Event
                } else {
                    Clock::Processing
                },
                span: choice.span,
            },
        );
    let idle_grace = fields
        .optional("idle_grace")
        .and_then(|(_, value)| r.duration(value, "`idle_grace`"));
    fields.finish(r);
    Some(Match {
        wait,
        rules,
        rules_complete,
        retention,
        clock,
        idle_grace,
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
        let path = fields.optional("path");
        let format = fields.optional("format");
        let kafka = [
            fields.optional("brokers"),
            fields.optional("topic"),
            fields.optional("key"),
            fields.optional("properties"),
        ];
        fields.finish(r);
        let kind = kind?.value;
        // Options of one type of sink given to another.
        let file_options = [path, format];
        for (owner, options) in [(2, &file_options[..]), (3, &kafka[..])] {
            if kind == owner {
                continue;
            }
            for (key, _) in options.iter().flatten() {
                r.report(
                    Diagnostic::error(
                        Code::UnknownKey,
                        format!(
                            "`{}` is not an option of `{}` sinks",
                            key_text(key),
                            SINK_TYPES[kind]
                        ),
                        key.span,
                    )
                    .label(format!("applies to `{}` sinks", SINK_TYPES[owner])),
                );
            }
        }
        let kind = match kind {
            0 if path.is_none() && format.is_none() => SinkKind::Stdout,
            1 if path.is_none() && format.is_none() => SinkKind::Stderr,
            2 => file_sink(r, &name, path, format)?,
            3 if path.is_none() && format.is_none() => kafka_sink(r, &name, kafka)?,
            0 | 1 | 3 => return None,
            _ => unreachable!("`choice` returns an index into SINK_TYPES"),
        };
        Some(SinkConfig { name, kind })
    })
}

/// A `file` sink: its `path`, and its `format`, told from the path when not
/// given.
fn file_sink(
    r: &mut Reader<'_>,
    name: &Name,
    path: Option<(&Node, &Node)>,
    format: Option<(&Node, &Node)>,
) -> Option<SinkKind> {
    let Some((_, path)) = path else {
        r.report(
            Diagnostic::error(
                Code::MissingKey,
                format!("sink `{}` is missing `path`", name.value),
                name.span,
            )
            .label("a `file` sink writes to the file at its `path`"),
        );
        return None;
    };
    let path = r.string(path, "`path`");
    let format = if let Some((_, value)) = format {
        r.choice(value, "format", FORMATS).map(|f| f.value == 1)
    } else {
        let told = path
            .as_ref()
            .and_then(|path| format_of(&path.value))
            // A sink writes comma-separated CSV only.
            .filter(|(_, delimiter)| *delimiter == b',')
            .map(|(csv, _)| csv);
        if told.is_none() && path.is_some() {
            r.report(
                Diagnostic::error(
                    Code::MissingKey,
                    format!("sink `{}` is missing `format`", name.value),
                    name.span,
                )
                .label("`jsonl` or `csv`: the path does not end in `.jsonl`, `.ndjson`, `.json` or `.csv`"),
            );
        }
        told
    };
    Some(SinkKind::File {
        path: path?,
        format: if format? {
            SinkFormat::Csv
        } else {
            SinkFormat::Jsonl
        },
    })
}

/// A `kafka` sink: `brokers` and `topic` (required), `key` and
/// `properties`.
fn kafka_sink(
    r: &mut Reader<'_>,
    name: &Name,
    [brokers, topic, key, properties]: [Option<(&Node, &Node)>; 4],
) -> Option<SinkKind> {
    let owner = format!("sink `{}`", name.value);
    let at = (owner.as_str(), name.span, "a `kafka` sink");
    let brokers = kafka_text(
        r,
        at,
        brokers.map(|(_, value)| value),
        "brokers",
        "the bootstrap servers, `host:port`",
    );
    let topic = kafka_text(
        r,
        at,
        topic.map(|(_, value)| value),
        "topic",
        "the topic to write to",
    );
    let key = match key {
        Some((_, value)) => Some(r.expr(value, "`key`")?),
        None => None,
    };
    let properties = match properties {
        Some((key, value)) => self::properties(r, key.span, value)?,
        None => Vec::new(),
    };
    Some(SinkKind::Kafka(KafkaSink {
        brokers: brokers?,
        topic: topic?,
        key,
        properties,
    }))
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
