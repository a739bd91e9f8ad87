//! Runtime values: what expressions compute and records hold.

use std::fmt::{self, Write as _};
use triomphe::ThinArc;

use super::text::Text;
use super::types::{Kind, RecordType, Type};
use crate::time::{Duration, EventTime};

/// A value computed by an expression or held in a record field.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Absent.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A 64-bit signed integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// UTF-8 text: short text inline, long text shared.
    Str(Text),
    /// A point in time.
    Timestamp(EventTime),
    /// A span of time.
    Duration(Duration),
    /// A record: a row of values laid out by a schema.
    Record(Record),
}

/// A row of values in the order of its schema's fields; cheap to clone.
///
/// One pointer wide: the count of values is in the allocation, beside them
/// and the reference count (a pending key holds a record per side).
#[derive(Clone)]
pub struct Record(ThinArc<(), Value>);

impl Record {
    /// A record holding `values`, which must follow the schema's field order.
    pub fn new(values: Vec<Value>) -> Self {
        Self::from_exact(values.into_iter())
    }

    /// A record of the values `values` yields, in one allocation.
    pub fn from_exact(values: impl ExactSizeIterator<Item = Value>) -> Self {
        Self(ThinArc::from_header_and_iter((), values))
    }

    /// The field at `index`; [`Value::Null`] past the end.
    pub fn get(&self, index: usize) -> &Value {
        self.0.slice.get(index).unwrap_or(&Value::Null)
    }

    /// The fields in order.
    pub fn values(&self) -> &[Value] {
        &self.0.slice
    }
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.values() == other.values()
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Record").field(&self.values()).finish()
    }
}

impl FromIterator<Value> for Record {
    fn from_iter<I: IntoIterator<Item = Value>>(values: I) -> Self {
        Self::new(values.into_iter().collect())
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Self::Str(text.into())
    }
}

impl fmt::Display for Value {
    /// The text form used by `concat`, `to_string` and templates. Strings are
    /// written as they are and records as tuples, the way Flink prints them:
    /// `(order-1,app,1000)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write_float(f, *x),
            Self::Str(s) => f.write_str(s),
            Self::Timestamp(t) => write!(f, "{t}"),
            Self::Duration(d) => write!(f, "{d}"),
            Self::Record(record) => {
                f.write_char('(')?;
                for (i, value) in record.values().iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{value}")?;
                }
                f.write_char(')')
            }
        }
    }
}

/// Floats always show they are floats (`3.0`, not `3`); non-finite values
/// print as `NaN`, `inf` and `-inf`.
fn write_float(f: &mut fmt::Formatter<'_>, x: f64) -> fmt::Result {
    if x.is_finite() {
        write!(f, "{x:?}")
    } else {
        write!(f, "{x}")
    }
}

impl Value {
    /// Appends this value as JSON, using `ty` for record field names.
    /// Timestamps and durations become strings in their text form; floats
    /// that JSON cannot hold (NaN, infinities) become `null`.
    pub fn write_json(&self, ty: &Type, out: &mut String) {
        match (self, &ty.kind) {
            (Self::Bool(b), _) => out.push_str(if *b { "true" } else { "false" }),
            (Self::Int(i), _) => out.push_str(itoa::Buffer::new().format(*i)),
            (Self::Timestamp(time), _) => {
                out.push('"');
                time.write_to(out);
                out.push('"');
            }
            (Self::Float(x), _) if x.is_finite() => {
                let _ = write!(out, "{x:?}");
            }
            // JSON has no NaN or infinities.
            (Self::Null | Self::Float(_), _) => out.push_str("null"),
            (Self::Str(s), _) => write_json_string(s, out),
            (Self::Duration(_), _) => write_json_string(&self.to_string(), out),
            (Self::Record(record), Kind::Record(layout)) => {
                out.push('{');
                for (i, (field, value)) in layout.fields.iter().zip(record.values()).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(&field.name, out);
                    out.push(':');
                    value.write_json(&field.ty, out);
                }
                out.push('}');
            }
            // A record without a layout cannot name its fields; a list is
            // the faithful rendering.
            (Self::Record(record), _) => {
                out.push('[');
                for (i, value) in record.values().iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    value.write_json(&Type::UNKNOWN, out);
                }
                out.push(']');
            }
        }
    }
}

/// How records of one type are written as JSON, worked out once: each
/// field's name already quoted and followed by its colon.
#[derive(Clone, Debug)]
pub struct JsonLayout {
    fields: Vec<(String, Field)>,
}

#[derive(Clone, Debug)]
enum Field {
    Scalar,
    Record(JsonLayout),
}

impl JsonLayout {
    /// The layout of records of `record`.
    pub fn new(record: &RecordType) -> Self {
        let fields = record
            .fields
            .iter()
            .map(|field| {
                let mut name = String::new();
                write_json_string(&field.name, &mut name);
                name.push(':');
                let shape = match &field.ty.kind {
                    Kind::Record(nested) => Field::Record(Self::new(nested)),
                    _ => Field::Scalar,
                };
                (name, shape)
            })
            .collect();
        Self { fields }
    }

    /// Appends `record` as a JSON object.
    pub fn write(&self, record: &Record, out: &mut String) {
        out.push('{');
        for (i, ((name, shape), value)) in self.fields.iter().zip(record.values()).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(name);
            match (shape, value) {
                (Field::Record(layout), Value::Record(nested)) => layout.write(nested, out),
                // The usual fields, without `write_json`'s look at the type.
                (_, Value::Str(text)) => write_json_string(text, out),
                (_, Value::Int(i)) => out.push_str(itoa::Buffer::new().format(*i)),
                (_, Value::Timestamp(time)) => {
                    out.push('"');
                    time.write_to(out);
                    out.push('"');
                }
                _ => value.write_json(&Type::UNKNOWN, out),
            }
        }
        out.push('}');
    }
}

/// Appends `s` as a JSON string literal.
pub fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    if !needs_escape(s.as_bytes()) {
        out.push_str(s);
        out.push('"');
        return;
    }
    // Runs of bytes that need no escape are copied whole; only ASCII bytes
    // need one, so the text is split at char boundaries.
    let mut start = 0;
    for (at, byte) in s.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..at]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        start = at + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Whether any byte needs an escape in a JSON string: a quote, a
/// backslash or a control character. Eight bytes at a time: these are
/// mostly short ids and codes that need none.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether a byte of `word` is zero (exact: no false positives where
    // no byte is zero, which is all that is asked).
    let zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS != 0;
    let escapes = |word: u64| {
        // Below 0x20: subtracting 0x20 borrows into the high bit of a byte
        // whose high bit was clear.
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
        control || zero(word ^ (ONES * u64::from(b'"'))) || zero(word ^ (ONES * u64::from(b'\\')))
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        if escapes(u64::from_ne_bytes(word)) {
            return true;
        }
    }
    if chunks.remainder().is_empty() {
        return false;
    }
    // The rest in one word: the last eight bytes, overlapping what was
    // checked, or the first four and the last four of a shorter text.
    let word = match (bytes.last_chunk::<8>(), bytes.first_chunk::<4>()) {
        (Some(last), _) => *last,
        (None, Some(first)) => {
            let mut word = [0; 8];
            word[..4].copy_from_slice(first);
            word[4..].copy_from_slice(bytes.last_chunk::<4>().unwrap_or(first));
            word
        }
        (None, None) => {
            return bytes
                .iter()
                .any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\');
        }
    };
    escapes(u64::from_ne_bytes(word))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::expr::types::{Field, RecordType};

    #[test]
    fn records_print_as_flink_tuples() {
        let inner = Value::Record(Record::new(vec![Value::Int(5), Value::Null]));
        let record = Record::new(vec![
            "order-1".into(),
            Value::Float(3.0),
            inner,
            Value::Bool(true),
        ]);
        assert_eq!(
            Value::Record(record).to_string(),
            "(order-1,3.0,(5,null),true)"
        );
    }

    #[test]
    fn strings_are_escaped_wherever_the_byte_is() {
        // Every length, since texts are read eight bytes at a time and
        // what is left in one overlapping word.
        for special in ['"', '\\', '\n', '\u{1f}', '\u{0}'] {
            for len in 1..20 {
                for at in 0..len {
                    let text: String = (0..len)
                        .map(|i| if i == at { special } else { 'a' })
                        .collect();
                    assert!(needs_escape(text.as_bytes()), "{text:?}");
                }
            }
        }
        for len in 0..20 {
            let plain = "~".repeat(len);
            assert!(!needs_escape(plain.as_bytes()), "{plain:?}");
        }
        for plain in [
            "",
            "A-000001",
            "0123456789 ~!#$%&'()*+,-./",
            "é对账\u{7f}",
            "\u{20}",
        ] {
            assert!(!needs_escape(plain.as_bytes()), "{plain:?}");
        }
        let mut out = String::new();
        write_json_string("a\"b\\c\u{1}d", &mut out);
        assert_eq!(out, r#""a\"b\\c\u0001d""#);
    }

    #[test]
    fn json_names_fields_and_escapes_strings() {
        let layout = Arc::new(RecordType {
            name: "app".into(),
            fields: vec![
                Field {
                    name: "id".into(),
                    ty: Type::STRING,
                },
                Field {
                    name: "amount".into(),
                    ty: Type::FLOAT,
                },
                Field {
                    name: "note".into(),
                    ty: Type::STRING.or_null(),
                },
            ],
        });
        let record = Record::new(vec!["a\"b\n对".into(), Value::Float(f64::NAN), Value::Null]);
        let mut out = String::new();
        Value::Record(record).write_json(&Type::record(layout), &mut out);
        assert_eq!(out, r#"{"id":"a\"b\n对","amount":null,"note":null}"#);
    }
}
