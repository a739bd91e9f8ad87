//! JSON lines: one object per line, read straight into a record by schema,
//! without building a JSON tree first.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Path, missing, not_null, timestamp};
use crate::expr::{Kind, Record, RecordType, Type, Value};
use crate::time::EventTime;

/// Reads `line` as a JSON object of the fields of `layout`, whose names
/// are [`plain`] or not; `scratch` holds the values while they are read.
pub(super) fn decode(
    line: &str,
    layout: &RecordType,
    plain: &[bool],
    scratch: &mut Vec<Value>,
) -> Result<Record, String> {
    match flat(line, layout, plain, scratch) {
        Some(record) => Ok(record),
        None => full(line, layout, scratch),
    }
}

/// Reads `line` with the full JSON reader, which explains what is wrong.
fn full(line: &str, layout: &RecordType, scratch: &mut Vec<Value>) -> Result<Record, String> {
    let mut deserializer = serde_json::Deserializer::from_str(line);
    let record = RecordSeed {
        layout,
        path: None,
        scratch: Some(scratch),
    }
    .deserialize(&mut deserializer)
    .and_then(|record| deserializer.end().map(|()| record));
    record.map_err(|error| reason(&error))
}

/// Reads the usual line fast: one object of scalars, strings without
/// escapes, whole numbers. `None` for anything else (floats, escapes,
/// nesting, any mistake), which the full reader reads, or explains, the
/// same way.
fn flat(
    line: &str,
    layout: &RecordType,
    plain: &[bool],
    values: &mut Vec<Value>,
) -> Option<Record> {
    let fields = &layout.fields;
    if fields.len() > 64 {
        return None;
    }
    let bytes = line.as_bytes();
    // Values are pushed while fields come in schema order; the first out of
    // order makes room for all of them.
    values.clear();
    let mut given = 0_u64;
    let mut at = blank(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = blank(bytes, at + 1);
    // Fields usually come in schema order: the one after the last is
    // tried first.
    let mut next = 0;
    if bytes.get(at) == Some(&b'}') {
        at += 1;
    } else {
        loop {
            let (index, end) = match fields.get(next) {
                // The name expected next, compared where it stands: no
                // scan for the string's end.
                Some(field) if plain[next] && named(bytes, at, field.name.as_bytes()) => {
                    (Some(next), at + field.name.len() + 2)
                }
                _ => {
                    let (start, end) = string(bytes, at)?;
                    let name = &bytes[start..end - 1];
                    let index = match fields.get(next) {
                        Some(field) if same(field.name.as_bytes(), name) => Some(next),
                        _ => (fields.iter()).position(|field| same(field.name.as_bytes(), name)),
                    };
                    (index, end)
                }
            };
            at = blank(bytes, end);
            if bytes.get(at) != Some(&b':') {
                return None;
            }
            at = blank(bytes, at + 1);
            let (value, end) = scalar(line, at)?;
            if let Some(index) = index {
                if given & (1 << index) != 0 {
                    return None;
                }
                given |= 1 << index;
                let field = &fields[index];
                let value = value.typed(&field.ty, &field.name)?;
                if index == values.len() {
                    values.push(value);
                } else {
                    values.resize(fields.len(), Value::Null);
                    values[index] = value;
                }
                next = index + 1;
            }
            at = blank(bytes, end);
            match bytes.get(at) {
                Some(b',') => at = blank(bytes, at + 1),
                Some(b'}') => {
                    at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    let complete = fields
        .iter()
        .enumerate()
        .all(|(index, field)| given & (1 << index) != 0 || field.ty.nullable);
    // Absent nullable fields at the end are null (a call, even for none).
    if values.len() < fields.len() {
        values.resize(fields.len(), Value::Null);
    }
    (blank(bytes, at) == bytes.len() && complete).then(|| Record::from_exact(values.drain(..)))
}

/// A JSON scalar as the fast reader takes it.
enum Scalar<'a> {
    Text(&'a str),
    Int(i64),
    Bool(bool),
    Null,
}

impl Scalar<'_> {
    /// The value for a field of type `ty`; `None` where the full reader
    /// has something to say.
    #[allow(clippy::inline_always)] // Called per field: ~2% of a source thread.
    #[inline(always)]
    fn typed(self, ty: &Type, name: &str) -> Option<Value> {
        Some(match (self, &ty.kind) {
            (Self::Null, _) if ty.nullable => Value::Null,
            (Self::Text(text), Kind::String) => Value::Str(text.into()),
            (Self::Text(text), Kind::Timestamp) => {
                let path = Path { name, parent: None };
                timestamp(text, path).ok()?
            }
            (Self::Int(i), Kind::Int) => Value::Int(i),
            #[allow(clippy::cast_precision_loss)] // The nearest float, as JSON readers do.
            (Self::Int(i), Kind::Float) => Value::Float(i as f64),
            (Self::Int(i), Kind::Timestamp) => Value::Timestamp(EventTime::from_millis(i)),
            (Self::Bool(b), Kind::Bool) => Value::Bool(b),
            _ => return None,
        })
    }
}

/// The scalar at `at` and where it ends: a string without escapes, a
/// whole number in `i64` written the one way JSON allows, `true`, `false`
/// or `null`.
#[allow(clippy::inline_always)] // Called per token: ~2% of a source thread.
#[inline(always)]
fn scalar(line: &str, at: usize) -> Option<(Scalar<'_>, usize)> {
    let bytes = line.as_bytes();
    let literal = |word: &[u8], scalar| {
        bytes[at..]
            .starts_with(word)
            .then_some((scalar, at + word.len()))
    };
    match *bytes.get(at)? {
        b'"' => {
            let (start, end) = string(bytes, at)?;
            Some((Scalar::Text(line.get(start..end - 1)?), end))
        }
        b't' => literal(b"true", Scalar::Bool(true)),
        b'f' => literal(b"false", Scalar::Bool(false)),
        b'n' => literal(b"null", Scalar::Null),
        _ => {
            let negative = bytes[at] == b'-';
            let start = at + usize::from(negative);
            let digits = bytes[start..]
                .iter()
                .position(|byte| !byte.is_ascii_digit())
                .unwrap_or(bytes.len() - start);
            let end = start + digits;
            // No leading zero (and no `-0`, a float to JSON readers), no
            // fraction or exponent.
            let whole = match bytes[start..end] {
                [] => false,
                [b'0'] => !negative,
                [first, ..] => first != b'0',
            };
            if !whole || matches!(bytes.get(end), Some(b'.' | b'e' | b'E')) {
                return None;
            }
            let mut value: i64 = 0;
            for &digit in &bytes[start..end] {
                let digit = i64::from(digit - b'0');
                value = value.checked_mul(10)?;
                value = if negative {
                    value.checked_sub(digit)?
                } else {
                    value.checked_add(digit)?
                };
            }
            Some((Scalar::Int(value), end))
        }
    }
}

/// Whether the JSON string at `at` is `name` as it stands: its bytes
/// between quotes. Exact for a name without a quote, a backslash or a
/// control character ([`plain`]), which a JSON string cannot hold as they
/// are.
#[allow(clippy::inline_always)] // Called per field: a call costs as much.
#[inline(always)]
fn named(bytes: &[u8], at: usize, name: &[u8]) -> bool {
    let close = at + 1 + name.len();
    bytes.get(close) == Some(&b'"') && bytes[at] == b'"' && same(&bytes[at + 1..close], name)
}

/// Whether each of `layout`'s field names can be compared where it stands
/// in a line ([`named`]): no quote, backslash or control character in it.
pub(super) fn plain(layout: &RecordType) -> Vec<bool> {
    (layout.fields.iter())
        .map(|field| !(field.name.bytes()).any(|byte| byte == b'"' || byte == b'\\' || byte < 0x20))
        .collect()
}

/// Whether two names are the same bytes: the usual short field names
/// compared in one or two words, without a call to compare memory.
#[allow(clippy::inline_always)] // Called per field: a call costs as much.
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    match (a.first_chunk::<8>(), b.first_chunk::<8>()) {
        // Eight to sixteen bytes: the first eight and the last eight.
        (Some(a_first), Some(b_first)) if a.len() <= 16 => {
            a_first == b_first && a.last_chunk::<8>() == b.last_chunk::<8>()
        }
        (None, None) => match (a.first_chunk::<4>(), b.first_chunk::<4>()) {
            (Some(a_first), Some(b_first)) => {
                a_first == b_first && a.last_chunk::<4>() == b.last_chunk::<4>()
            }
            _ => a == b,
        },
        _ => a == b,
    }
}

/// Where the text of the string whose opening quote is at `at` starts,
/// and where the string ends, after its closing quote: `None` unless it
/// is closed before any escape or control character.
#[allow(clippy::inline_always)] // Called per token: ~2% of a source thread.
#[inline(always)]
fn string(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const LOWS: u64 = u64::from_le_bytes([0x7f; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // The high bit of each zero byte of `word`, exactly.
    let zero = |word: u64| !(((word & LOWS) + LOWS) | word) & HIGHS;
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let start = at + 1;
    let mut base = start;
    // The first quote, backslash or control character: eight bytes at a
    // time, then byte by byte.
    let stop = loop {
        let Some(word) = bytes.get(base..).and_then(<[u8]>::first_chunk::<8>) else {
            break base
                + bytes[base..]
                    .iter()
                    .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)?;
        };
        let word = u64::from_le_bytes(*word);
        let found = zero(word ^ (ONES * u64::from(b'"')))
            | zero(word ^ (ONES * u64::from(b'\\')))
            | zero(word & !(ONES * 0x1f));
        if found != 0 {
            break base + found.trailing_zeros() as usize / 8;
        }
        base += 8;
    };
    (bytes[stop] == b'"').then_some((start, stop + 1))
}

/// Where the JSON whitespace from `at` ends.
#[allow(clippy::inline_always)] // Called per token: ~2% of a source thread.
#[inline(always)]
fn blank(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// A reason for people: `serde_json`'s message, with the column but without
/// the line (always 1 here).
fn reason(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let location = format!(" at line {} column {}", error.line(), error.column());
    let message = text.strip_suffix(&location).unwrap_or(&text);
    let column = error.column().max(1);
    match error.classify() {
        serde_json::error::Category::Data => format!("{message} (column {column})"),
        _ => format!("not JSON: {message} at column {column}"),
    }
}

/// A record of `layout`. The top-level record reuses `scratch`.
struct RecordSeed<'a, 's> {
    layout: &'a RecordType,
    path: Option<&'a Path<'a>>,
    scratch: Option<&'s mut Vec<Value>>,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, '_> {
    type Value = Record;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Record, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, '_> {
    type Value = Record;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path {
            Some(path) => write!(f, "an object for `{path}`"),
            None => f.write_str("a JSON object"),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
        let fields = &self.layout.fields;
        let mut own = Vec::new();
        let values = self.scratch.unwrap_or(&mut own);
        values.clear();
        values.resize(fields.len(), Value::Null);
        let mut given = Given::new(fields.len());
        while let Some(index) = map.next_key_seed(FieldSeed(self.layout))? {
            let Some(index) = index else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let field = &fields[index];
            let path = Path {
                name: &field.name,
                parent: self.path,
            };
            if given.contains(index) {
                return Err(de::Error::custom(format!("field `{path}` is given twice")));
            }
            given.insert(index);
            values[index] = map.next_value_seed(ValueSeed {
                ty: &field.ty,
                path: &path,
            })?;
        }
        if let Some(field) = fields.iter().enumerate().find_map(|(index, field)| {
            (!given.contains(index) && !field.ty.nullable).then_some(field)
        }) {
            let path = Path {
                name: &field.name,
                parent: self.path,
            };
            return Err(de::Error::custom(missing(path, &field.ty)));
        }
        Ok(Record::from_exact(values.drain(..)))
    }
}

/// Which fields of a record were given: bits in a word for the usual
/// schema, a vector beyond 64 fields.
enum Given {
    Word(u64),
    Many(Vec<bool>),
}

impl Given {
    fn new(fields: usize) -> Self {
        if fields <= 64 {
            Self::Word(0)
        } else {
            Self::Many(vec![false; fields])
        }
    }

    fn contains(&self, index: usize) -> bool {
        match self {
            Self::Word(bits) => bits & (1 << index) != 0,
            Self::Many(given) => given[index],
        }
    }

    fn insert(&mut self, index: usize) {
        match self {
            Self::Word(bits) => *bits |= 1 << index,
            Self::Many(given) => given[index] = true,
        }
    }
}

/// An object key: the index of the field it names, `None` for a field the
/// schema does not declare.
struct FieldSeed<'a>(&'a RecordType);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldSeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Option<usize>, E> {
        Ok(self.0.fields.iter().position(|field| field.name == name))
    }
}

/// The value of one field, of type `ty`.
struct ValueSeed<'a> {
    ty: &'a Type,
    path: &'a Path<'a>,
}

impl ValueSeed<'_> {
    fn wrong<E: de::Error>(&self, found: fmt::Arguments<'_>) -> E {
        E::custom(format!("`{}` is `{}`, found {found}", self.path, self.ty))
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a `{}` for `{}`", self.ty, self.path)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        if self.ty.nullable {
            Ok(Value::Null)
        } else {
            Err(E::custom(not_null(*self.path, self.ty)))
        }
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        match self.ty.kind {
            Kind::Bool => Ok(Value::Bool(b)),
            _ => Err(self.wrong(format_args!("`{b}`"))),
        }
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        match self.ty.kind {
            Kind::Int => Ok(Value::Int(i)),
            #[allow(clippy::cast_precision_loss)] // The nearest float, as JSON readers do.
            Kind::Float => Ok(Value::Float(i as f64)),
            Kind::Timestamp => Ok(Value::Timestamp(EventTime::from_millis(i))),
            Kind::String => {
                Err(self.wrong(format_args!("the number `{i}`; quote it to make it text")))
            }
            _ => Err(self.wrong(format_args!("the number `{i}`"))),
        }
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        match i64::try_from(u) {
            Ok(i) => self.visit_i64(i),
            #[allow(clippy::cast_precision_loss)] // The nearest float, as JSON readers do.
            Err(_) if self.ty.kind == Kind::Float => Ok(Value::Float(u as f64)),
            Err(_) => Err(self.wrong(format_args!(
                "`{u}`, which is beyond a 64-bit signed integer"
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Value, E> {
        match self.ty.kind {
            Kind::Float => Ok(Value::Float(x)),
            // `-0` is a whole number JSON readers take for a float (keeping
            // its sign); CSV reads it as 0 too.
            Kind::Int | Kind::Timestamp if x == 0.0 => self.visit_i64(0),
            Kind::Int | Kind::Timestamp if x.fract() != 0.0 => {
                Err(self.wrong(format_args!("`{x}`, which is not a whole number")))
            }
            // 2^63: the float holds every whole number beyond `i64` exactly.
            Kind::Int | Kind::Timestamp if x.abs() >= 9_223_372_036_854_775_808.0 => Err(self
                .wrong(format_args!(
                    "`{x}`, which is beyond a 64-bit signed integer"
                ))),
            Kind::Int | Kind::Timestamp => Err(self.wrong(format_args!(
                "the float `{x:?}`: write a whole number without a fraction or exponent"
            ))),
            _ => Err(self.wrong(format_args!("the number `{x}`"))),
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Value, E> {
        match self.ty.kind {
            Kind::String => Ok(Value::Str(text.into())),
            Kind::Timestamp => timestamp(text, *self.path).map_err(E::custom),
            _ => Err(self.wrong(format_args!("the text {text:?}"))),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        match &self.ty.kind {
            Kind::Record(layout) => RecordSeed {
                layout,
                path: Some(self.path),
                scratch: None,
            }
            .visit_map(map)
            .map(Value::Record),
            _ => Err(self.wrong(format_args!("an object"))),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        Err(self.wrong(format_args!("a list")))
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::sync::Arc;

    use super::*;
    use crate::expr::Field;

    fn layout() -> RecordType {
        let payer = Arc::new(RecordType {
            name: "t.payer".into(),
            fields: vec![Field {
                name: "id".into(),
                ty: Type::INT,
            }],
        });
        let fields = [
            ("id", Type::STRING),
            ("n", Type::INT),
            ("x", Type::FLOAT.or_null()),
            ("ok", Type::BOOL),
            ("ts", Type::TIMESTAMP),
            ("note", Type::STRING.or_null()),
            ("payer", Type::record(payer).or_null()),
        ];
        RecordType {
            name: "t".into(),
            fields: fields
                .into_iter()
                .map(|(name, ty)| Field {
                    name: name.into(),
                    ty,
                })
                .collect(),
        }
    }

    #[test]
    fn names_are_the_same_only_byte_for_byte_at_every_length() {
        for len in 0..40 {
            let name: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same(&name, &name.clone()));
            for at in 0..len {
                let mut other = name.clone();
                other[at] = b'_';
                assert!(!same(&name, &other), "{len} {at}");
            }
            assert!(!same(&name, &[&name[..], b"a"].concat()));
        }
    }

    /// Lines the fast reader takes must read the same with the full one;
    /// the usual lines must take the fast way.
    #[test]
    fn the_fast_reading_is_the_full_readers() {
        const VALUES: &[&str] = &[
            r#""o-1""#,
            r#""""#,
            r#""café""#,
            r#""café ✓""#,
            r#""a\"b""#,
            "\"tab\tin\"",
            "\"\t\"",
            r#""2026-11-01T10:00:00.5Z""#,
            r#""2026-11-01T10:00:00+01:00""#,
            r#""yesterday""#,
            r#""1500""#,
            "0",
            "-0",
            "12",
            "-12",
            "007",
            "1.5",
            "1.0",
            "1e3",
            "-",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "true",
            "false",
            "null",
            "nul",
            r#"{"id": 7}"#,
            "[1]",
        ];
        const NAMES: &[&str] = &[
            "id", "n", "x", "ok", "ts", "note", "payer", "extra", r"i\u0064", "i", "idd", r#"i"d"#,
        ];
        const BLANKS: &[&str] = &["", "", " ", "\t", "  \r\n"];
        let layout = layout();
        let plain = plain(&layout);
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut random = |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        let (mut fast, mut total) = (0, 0);
        let mut scratch = Vec::new();
        for _ in 0..50_000 {
            let mut line = String::from(BLANKS[random(BLANKS.len())]);
            line.push('{');
            // Mostly the schema's fields in order with values of their
            // type, sometimes anything anywhere.
            // Mostly the schema's fields with values of their type, in
            // order or shuffled, sometimes with a note; sometimes anything.
            let wild = random(4) == 0;
            let usual = [
                r#""o-1""#,
                "12",
                "2",
                "true",
                r#""2026-11-01T10:00:00.5Z""#,
                r#""hi""#,
            ];
            let mut order: Vec<usize> = (0..5 + random(2)).collect();
            if random(2) == 0 {
                for at in (1..order.len()).rev() {
                    order.swap(at, random(at + 1));
                }
            }
            let count = if wild { random(9) } else { order.len() };
            for at in 0..count {
                if at > 0 {
                    line.push(',');
                }
                line.push_str(BLANKS[random(BLANKS.len())]);
                let (name, value) = if wild {
                    (NAMES[random(NAMES.len())], VALUES[random(VALUES.len())])
                } else {
                    (NAMES[order[at]], usual[order[at]])
                };
                let _ = write!(line, "\"{name}\"{}:", BLANKS[random(BLANKS.len())]);
                line.push_str(BLANKS[random(BLANKS.len())]);
                line.push_str(if random(8) == 0 {
                    VALUES[random(VALUES.len())]
                } else {
                    value
                });
            }
            line.push('}');
            if random(20) == 0 {
                line.push_str([" x", ",", "}", " "][random(4)]);
            }
            total += 1;
            if let Some(record) = flat(&line, &layout, &plain, &mut scratch) {
                fast += 1;
                assert_eq!(full(&line, &layout, &mut scratch), Ok(record), "{line}");
            }
        }
        assert!(fast * 4 > total, "{fast} of {total} lines read fast");
    }
}
