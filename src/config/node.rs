//! YAML text to a tree of spanned nodes.
//!
//! serde-saphyr parses the YAML; this module keeps every node together with
//! the byte range it was written at, so later checks can point at any key or
//! value. Typed reading happens in `reader`, which collects every
//! problem instead of stopping at the first as a derived `Deserialize` would.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use serde_saphyr::budget::{Budget, BudgetBreach};
use serde_saphyr::options::{DuplicateKeyPolicy, Options};

use crate::diagnostic::{Code, Diagnostic, Span};

/// A YAML value with the span it was written at.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What the value is.
    pub value: Value,
    /// Where: the whole scalar including quotes; for collections, only their
    /// first character.
    pub span: Span,
}

/// The kinds of YAML value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false` (YAML 1.2: no `yes`, `no`, `on`, `off`).
    Bool(bool),
    /// An integer that fits 64 bits signed.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A string, quoted or not.
    Str(String),
    /// A sequence.
    List(Vec<Node>),
    /// A mapping, in the order written.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// What kind of value this is, for messages: "a mapping", "a string".
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Int(_) => "an integer",
            Self::Float(_) => "a number",
            Self::Str(_) => "a string",
            Self::List(_) => "a list",
            Self::Map(_) => "a mapping",
        }
    }
}

/// Parses `text` into a node tree.
///
/// # Errors
///
/// A diagnostic at the position where the YAML stops making sense.
pub fn parse(text: &str) -> Result<Node, Diagnostic> {
    let mut options = Options::default();
    // YAML 1.2 booleans only: `n`, `no` and `off` stay strings.
    options.strict_booleans = true;
    // Identifiers such as `007` stay strings instead of becoming the number 7.
    options.leading_zero_numbers_as_strings = true;
    options.underscored_numbers_as_strings = true;
    // Duplicate keys reach the reader, which reports both places.
    options.duplicate_keys = DuplicateKeyPolicy::PassThrough;
    options.with_snippet = false;
    // The default budget guards against YAML bombs but stops at 250,000
    // nodes; inline records may take more. Aliases stay tightly limited.
    let mut budget = Budget::default();
    budget.max_nodes = 2_500_000;
    budget.max_events = 10_000_000;
    // Nothing in a pipeline nests deeply; a low cap keeps reading, which
    // recurses, far from the end of any thread's stack.
    budget.max_depth = 24;
    options.budget = Some(budget);
    serde_saphyr::from_str_with_options::<Spanned<Raw>>(text, options)
        .map(|raw| into_node(raw, text))
        .map_err(|error| yaml_error(&error, text))
}

fn yaml_error(error: &serde_saphyr::Error, text: &str) -> Diagnostic {
    use serde_saphyr::MessageFormatter as _;
    let message = serde_saphyr::DefaultMessageFormatter.format_message(error);
    // Line and column are reliable for every error kind; byte offsets are
    // not filled in for parser errors.
    let offset = error.location().map_or(0, |location| {
        offset_of(text, location.line(), location.column())
    });
    // The usual cause inside a pipeline: an expression with `: ` or ` #`
    // written as a plain scalar, where YAML reads a mapping or a comment.
    if let serde_saphyr::Error::Budget { breach, .. } = error {
        let why = match breach {
            BudgetBreach::Nodes { nodes } => format!("it has more than {} values", nodes - 1),
            BudgetBreach::Depth { depth } => format!("it nests deeper than {} levels", depth - 1),
            other => format!("{other:?}"),
        };
        return Diagnostic::error(
            Code::YamlSyntax,
            format!("the pipeline file is too large to read safely: {why}"),
            Span::new(offset, offset),
        )
        .label("reading stopped here")
        .help(
            "keep inline records for small examples; large data sets belong in data files"
                .to_string(),
        );
    }
    let help = if message.contains("mapping values are not allowed") {
        Some(
            "a `: ` inside an unquoted value starts a mapping; put the whole expression in single \
             quotes, or use a block scalar (`|`)"
                .to_string(),
        )
    } else if message.contains("unexpected character") && text[offset..].starts_with(['`', '@']) {
        Some(
            "YAML values cannot start with `` ` `` or `@` unquoted: put the value in single quotes"
                .to_string(),
        )
    } else {
        None
    };
    let diagnostic = Diagnostic::error(
        Code::YamlSyntax,
        format!("invalid YAML: {}", printable(&message)),
        Span::new(offset, offset),
    );
    match unclosed_bracket(text, offset) {
        Some(open) => {
            let bracket = &text[open..=open];
            let close = if bracket == "{" { "}" } else { "]" };
            diagnostic
                .secondary(
                    Span::new(open, open + 1),
                    format!("this `{bracket}` is never closed"),
                )
                .help(format!(
                    "close it with `{close}`, on the same line for a one-line value"
                ))
        }
        None => diagnostic.help(help),
    }
}

/// The innermost flow `{` or `[` before `offset` that is still open: a
/// likely cause when YAML stops making sense after it. Brackets count only
/// where a flow collection can start (after `:`, `-`, `,`, `[`, `{` or at
/// the start of a line), so `\u{e9}` in text does not; quoted scalars and
/// comments are skipped.
fn unclosed_bracket(text: &str, offset: usize) -> Option<usize> {
    let bytes = &text.as_bytes()[..offset.min(text.len())];
    let mut open = Vec::new();
    let mut previous = b'\n';
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let starts_value = matches!(previous, b'\n' | b':' | b'-' | b',' | b'[' | b'{');
        match byte {
            b'#' if i == 0 || bytes[i - 1].is_ascii_whitespace() => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' if starts_value => {
                i += 1;
                while i < bytes.len() && bytes[i] != byte {
                    i += if byte == b'"' && bytes[i] == b'\\' {
                        2
                    } else {
                        1
                    };
                }
            }
            b'{' | b'[' if starts_value => open.push(i),
            b'}' | b']' => {
                open.pop();
            }
            _ => {}
        }
        if !byte.is_ascii_whitespace() || byte == b'\n' {
            previous = byte;
        }
        i += 1;
    }
    // Only a bracket on an earlier line: one on the error's own line is
    // what the parser's message already points at.
    let line_start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |n| n + 1);
    open.last().copied().filter(|&at| at < line_start)
}

/// `text` with control characters escaped, so a message cannot disturb the
/// terminal; everything else is kept as it is.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The byte offset of one-based `line` and character `column` in `text`.
fn offset_of(text: &str, line: u64, column: u64) -> usize {
    let line_start = text
        .split_inclusive('\n')
        .take(usize::try_from(line.saturating_sub(1)).unwrap_or(usize::MAX))
        .map(str::len)
        .sum::<usize>();
    let rest = &text[line_start..];
    let column = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
    line_start
        + rest
            .char_indices()
            .nth(column)
            .map_or(rest.len(), |(i, _)| i)
}

/// A node as serde-saphyr hands it over, before spans become [`Span`]s.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    /// A number too big for `i64`, or a float.
    Float(f64),
    Str(String),
    List(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

fn into_node(raw: Spanned<Raw>, text: &str) -> Node {
    let location = raw.defined;
    let span = location.span();
    let to_usize = |n: Option<u64>| n.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let start = to_usize(span.byte_offset()).min(text.len());
    let end = (start + to_usize(span.byte_len())).min(text.len());
    let span = Span::new(start, end);
    let value = match raw.value {
        Raw::Null => Value::Null,
        Raw::Bool(b) => Value::Bool(b),
        Raw::Int(i) => Value::Int(i),
        Raw::Float(f) => Value::Float(f),
        Raw::Str(s) => Value::Str(s),
        Raw::List(items) => Value::List(
            items
                .into_iter()
                .map(|item| into_node(item, text))
                .collect(),
        ),
        Raw::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (into_node(k, text), into_node(v, text)))
                .collect(),
        ),
    };
    Node { value, span }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Raw, D::Error> {
        Raw::deserialize(deserializer)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        #[allow(clippy::cast_precision_loss)]
        // Out of `i64` range: kept as a number, reported if used as an integer.
        Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
        #[allow(clippy::cast_precision_loss)]
        Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
        #[allow(clippy::cast_precision_loss)]
        Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Raw::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Value {
        let Value::Map(mut entries) = parse(text).unwrap().value else {
            panic!("not a map")
        };
        entries.remove(0).1.value
    }

    #[test]
    fn yaml_1_2_scalars() {
        assert_eq!(value("a: n"), Value::Str("n".into()));
        assert_eq!(value("a: on"), Value::Str("on".into()));
        assert_eq!(value("a: true"), Value::Bool(true));
        assert_eq!(value("a: 007"), Value::Str("007".into()));
        assert_eq!(value("a: '5'"), Value::Str("5".into()));
        assert_eq!(value("a: -5"), Value::Int(-5));
        assert_eq!(value("a: 1.5"), Value::Float(1.5));
        assert_eq!(value("a:"), Value::Null);
    }

    #[test]
    fn spans_cover_scalars_with_their_quotes() {
        let text = "key: 'it''s'\n";
        let Value::Map(entries) = parse(text).unwrap().value else {
            panic!("not a map")
        };
        let (k, v) = &entries[0];
        assert_eq!(&text[k.span.start..k.span.end], "key");
        assert_eq!(&text[v.span.start..v.span.end], "'it''s'");
    }

    #[test]
    fn duplicate_keys_reach_the_reader() {
        let Value::Map(entries) = parse("a: 1\na: 2\n").unwrap().value else {
            panic!("not a map")
        };
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let nested = |depth: usize| format!("a: {}1{}\n", "[".repeat(depth), "]".repeat(depth));
        let error = parse(&nested(100)).unwrap_err();
        assert_eq!(
            error.message,
            "the pipeline file is too large to read safely: it nests deeper than 24 levels"
        );
        let error = parse(&nested(100_000)).unwrap_err();
        assert_eq!(error.message, "invalid YAML: recursion limit exceeded");
    }

    #[test]
    fn an_unclosed_flow_collection_is_pointed_at() {
        let text = "a:\n  - { x: 1, y: \"}\" \n  - { x: 2 }\nb: 3\n";
        let error = parse(text).unwrap_err();
        assert_eq!(error.secondary.len(), 1, "{error:?}");
        assert_eq!(error.secondary[0].span, Span::new(7, 8));
        assert_eq!(
            unclosed_bracket("a: \"\\u{e9}\"\nb: |\n  x\\u{1}\nc: 1\n", 999),
            None
        );
        assert_eq!(unclosed_bracket("a: [1,\nc: 1\n", 999), Some(3));
    }

    #[test]
    fn syntax_errors_are_located() {
        let error = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(error.code, Code::YamlSyntax);
        assert!(error.primary.span.start > 0, "{error:?}");
    }
}
