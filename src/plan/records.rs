//! Inline records: YAML mappings to rows laid out by the source's schema.

use crate::config::node::{Node, Value as Yaml};
use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::expr::{Kind, Record, RecordType, Type, Value, parse_timestamp};
use crate::time::EventTime;

use super::graph::InlineRecord;

/// Converts every record, reporting each problem; `None` if any record is
/// wrong.
pub(super) fn convert(
    records: &[Node],
    layout: &RecordType,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Vec<InlineRecord>> {
    let before = diagnostics.len();
    let converted: Vec<InlineRecord> = records
        .iter()
        .filter_map(|node| {
            record(node, layout, diagnostics).map(|record| InlineRecord {
                record,
                span: node.span,
            })
        })
        .collect();
    (diagnostics.len() == before).then_some(converted)
}

/// One record: every key must be a field of the layout, and every field that
/// is not nullable must be given. Values are laid out in field order, which
/// is what compiled field reads index into.
fn record(node: &Node, layout: &RecordType, diagnostics: &mut Vec<Diagnostic>) -> Option<Record> {
    let Yaml::Map(entries) = &node.value else {
        diagnostics.push(Diagnostic::error(
            Code::InvalidRecord,
            format!(
                "a record of `{}` must be a mapping of fields, found {}",
                layout.name,
                node.value.describe()
            ),
            node.span,
        ));
        return None;
    };
    let mut complete = true;
    for (key, _) in entries {
        let known = matches!(&key.value, Yaml::Str(name) if layout.field(name).is_some());
        if !known {
            let name = match &key.value {
                Yaml::Str(name) => name.clone(),
                other => other.describe().to_string(),
            };
            let help = did_you_mean(&name, layout.field_names()).map_or_else(
                || {
                    format!(
                        "the schema of `{}` declares {}",
                        layout.name,
                        field_list(layout)
                    )
                },
                |s| format!("did you mean `{s}`?"),
            );
            diagnostics.push(
                Diagnostic::error(
                    Code::InvalidRecord,
                    format!("`{}` has no field `{name}`", layout.name),
                    key.span,
                )
                .label("not in the schema")
                .help(help),
            );
            complete = false;
        }
    }
    let mut values = Vec::with_capacity(layout.fields.len());
    for field in &layout.fields {
        let given = entries
            .iter()
            .find(|(key, _)| matches!(&key.value, Yaml::Str(name) if *name == field.name));
        let value = match given {
            Some((_, value)) => scalar(
                value,
                &field.ty,
                &format!("{}.{}", layout.name, field.name),
                diagnostics,
            ),
            None if field.ty.nullable => Some(Value::Null),
            None => {
                diagnostics.push(
                    Diagnostic::error(
                        Code::InvalidRecord,
                        format!(
                            "record of `{}` is missing field `{}`",
                            layout.name, field.name
                        ),
                        node.span,
                    )
                    .help(format!(
                        "declare it as `{}?` in the schema if it may be absent",
                        field.ty
                    )),
                );
                None
            }
        };
        match value {
            Some(value) => values.push(value),
            None => complete = false,
        }
    }
    complete.then(|| Record::new(values))
}

/// One field's value. The rules are strict where YAML guesses: a quoted
/// number is text and an unquoted one a number, so a `string` field given
/// `7` asks for quotes rather than silently taking the text.
fn scalar(node: &Node, ty: &Type, path: &str, diagnostics: &mut Vec<Diagnostic>) -> Option<Value> {
    let value = match (&ty.kind, &node.value) {
        (_, Yaml::Null) if ty.nullable => Ok(Value::Null),
        (Kind::String, Yaml::Str(s)) => Ok(Value::Str(s.as_str().into())),
        // A number or boolean where text is declared: the text as written.
        (Kind::String, Yaml::Int(_) | Yaml::Float(_) | Yaml::Bool(_)) => Err(format!(
            "`{path}` is a `string`; quote the value to make it text"
        )),
        (Kind::Int, Yaml::Int(i)) => Ok(Value::Int(*i)),
        (Kind::Int, Yaml::Float(_)) => Err(format!(
            "`{path}` is an `int`; this is not a 64-bit integer"
        )),
        (Kind::Float, Yaml::Float(x)) => Ok(Value::Float(*x)),
        #[allow(clippy::cast_precision_loss)] // The nearest float, as YAML readers do.
        (Kind::Float, Yaml::Int(i)) => Ok(Value::Float(*i as f64)),
        (Kind::Bool, Yaml::Bool(b)) => Ok(Value::Bool(*b)),
        (Kind::Timestamp, Yaml::Int(ms)) => Ok(Value::Timestamp(EventTime::from_millis(*ms))),
        (Kind::Timestamp, Yaml::Str(text)) => parse_timestamp(text, None)
            .map(Value::Timestamp)
            .map_err(|problem| format!("`{path}`: {problem}")),
        (Kind::Record(layout), Yaml::Map(_)) => {
            return record(node, layout, diagnostics).map(Value::Record);
        }
        (_, Yaml::Null) => Err(format!(
            "`{path}` is `{ty}` and cannot be null; declare it `{ty}?` to allow null"
        )),
        (_, other) => Err(format!("`{path}` is `{ty}`, found {}", other.describe())),
    };
    value
        .map_err(|message| {
            diagnostics.push(
                Diagnostic::error(Code::InvalidRecord, message, node.span)
                    .label(format!("expected `{ty}`")),
            );
        })
        .ok()
}

/// The field names of `layout`, for help lines.
fn field_list(layout: &RecordType) -> String {
    layout
        .field_names()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
