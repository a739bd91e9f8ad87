//! Values and records written as JSON, into bytes: the sinks' lines.
//!
//! A line is written into room made at the end of the output once, not
//! grown piece by piece: short pieces (a field's name with its colon and
//! comma, a short text, a time) go in as a move or two of a fixed size,
//! which needs no call to copy them, and the room left over is cut off
//! when the writer is done.

use std::fmt::Write as _;

use super::types::{Kind, RecordType, Type};
use super::value::{Record, Value};
use crate::time::EventTime;

/// Room made at a time: more than most lines take.
const ROOM: usize = 512;

/// The size of a constant piece copied in one move.
const PIECE: usize = 32;

/// Copies `bytes` to the start of `room`, which is at least as long: up to
/// 32 in two moves of a fixed size that overlap, without a call.
#[allow(clippy::inline_always)] // A call would cost as much as the copy.
#[inline(always)]
fn copy(room: &mut [u8], bytes: &[u8]) {
    let n = bytes.len();
    match n {
        0 => {}
        1..4 => {
            room[0] = bytes[0];
            room[n / 2] = bytes[n / 2];
            room[n - 1] = bytes[n - 1];
        }
        4..8 => {
            room[..4].copy_from_slice(&bytes[..4]);
            room[n - 4..n].copy_from_slice(&bytes[n - 4..]);
        }
        8..=16 => {
            room[..8].copy_from_slice(&bytes[..8]);
            room[n - 8..n].copy_from_slice(&bytes[n - 8..]);
        }
        17..=32 => {
            room[..16].copy_from_slice(&bytes[..16]);
            room[n - 16..n].copy_from_slice(&bytes[n - 16..]);
        }
        _ => room[..n].copy_from_slice(bytes),
    }
}

/// A constant piece of JSON (`,"amount":`), kept to be copied in one move
/// of `PIECE` bytes when it is no longer.
#[derive(Clone, Debug)]
pub enum Piece {
    /// The piece, padded, and how long it is.
    Short([u8; PIECE], u8),
    /// A longer one.
    Long(Box<[u8]>),
}

impl Piece {
    /// The piece `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= PIECE => {
                let mut padded = [0; PIECE];
                padded[..bytes.len()].copy_from_slice(bytes);
                Self::Short(padded, len)
            }
            _ => Self::Long(bytes.into()),
        }
    }
}

/// Writes JSON at the end of a byte buffer.
pub struct JsonWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Where the next byte goes: `out` is longer, by the room made.
    at: usize,
}

impl<'a> JsonWriter<'a> {
    /// Writes after what `out` holds.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        let at = out.len();
        Self { out, at }
    }

    /// The room after what is written, at least `n` bytes of it.
    #[inline]
    fn room(&mut self, n: usize) -> &mut [u8] {
        if self.out.len() - self.at < n {
            self.grow(n);
        }
        &mut self.out[self.at..]
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, n: usize) {
        let len = self.at + n.max(ROOM);
        self.out.resize(len, 0);
    }

    /// Appends one byte.
    #[inline]
    pub fn byte(&mut self, byte: u8) {
        self.room(1)[0] = byte;
        self.at += 1;
    }

    /// Appends `bytes` as they are.
    #[allow(clippy::inline_always)] // Called per piece: left a call, 20% of the writing.
    #[inline(always)]
    pub fn bytes(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        copy(self.room(n), bytes);
        self.at += n;
    }

    /// Appends a constant piece in one move.
    #[allow(clippy::inline_always)] // Called per field: left a call, 3% of the writing.
    #[inline(always)]
    pub fn piece(&mut self, piece: &Piece) {
        match piece {
            Piece::Short(bytes, len) => {
                self.room(PIECE)[..PIECE].copy_from_slice(bytes);
                self.at += usize::from(*len);
            }
            Piece::Long(bytes) => self.bytes(bytes),
        }
    }

    /// Appends `text` as a JSON string: quoted, escaped where it must be.
    #[allow(clippy::inline_always)] // Called per field: left a call, 3% of the writing.
    #[inline(always)]
    pub fn string(&mut self, text: &str) {
        let bytes = text.as_bytes();
        if needs_escape(bytes) {
            self.byte(b'"');
            self.escaped(bytes);
            self.byte(b'"');
            return;
        }
        // The quotes and the text in the room made once.
        let n = bytes.len();
        let room = self.room(n + 2);
        room[0] = b'"';
        copy(&mut room[1..], bytes);
        room[n + 1] = b'"';
        self.at += n + 2;
    }

    /// Appends `bytes` escaped: runs that need no escape are copied whole.
    #[cold]
    fn escaped(&mut self, bytes: &[u8]) {
        let mut start = 0;
        for (at, &byte) in bytes.iter().enumerate() {
            let escape: &[u8] = match byte {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..0x20 => b"",
                _ => continue,
            };
            self.bytes(&bytes[start..at]);
            if escape.is_empty() {
                let mut code = String::new();
                let _ = write!(code, "\\u{byte:04x}");
                self.bytes(code.as_bytes());
            } else {
                self.bytes(escape);
            }
            start = at + 1;
        }
        self.bytes(&bytes[start..]);
    }

    /// Appends an integer.
    #[inline]
    pub fn int(&mut self, i: i64) {
        self.bytes(itoa::Buffer::new().format(i).as_bytes());
    }

    /// Appends a time as a JSON string, in its RFC 3339 text.
    #[inline]
    pub fn time(&mut self, time: EventTime) {
        match time.rfc3339_kept() {
            Some(text) => {
                let (bytes, len) = text.quoted();
                self.room(bytes.len())[..bytes.len()].copy_from_slice(bytes);
                self.at += len;
            }
            None => self.string(&time.to_string()),
        }
    }

    /// Appends `value` as JSON, naming a record's fields by `ty`. Times and
    /// durations become strings in their text form; floats that JSON
    /// cannot hold (NaN, infinities) become `null`.
    pub fn value(&mut self, value: &Value, ty: &Type) {
        match (value, &ty.kind) {
            (Value::Str(text), _) => self.string(text),
            (Value::Int(i), _) => self.int(*i),
            (Value::Timestamp(time), _) => self.time(*time),
            (Value::Bool(b), _) => self.bytes(if *b { b"true" } else { b"false" }),
            (Value::Float(x), _) if x.is_finite() => {
                let mut text = String::new();
                let _ = write!(text, "{x:?}");
                self.bytes(text.as_bytes());
            }
            (Value::Null | Value::Float(_), _) => self.bytes(b"null"),
            (Value::Duration(_), _) => self.string(&value.to_string()),
            (Value::Record(record), Kind::Record(layout)) => {
                self.byte(b'{');
                for (i, (field, value)) in layout.fields.iter().zip(record.values()).enumerate() {
                    if i > 0 {
                        self.byte(b',');
                    }
                    self.string(&field.name);
                    self.byte(b':');
                    self.value(value, &field.ty);
                }
                self.byte(b'}');
            }
            // A record without a layout cannot name its fields; a list is
            // the faithful rendering.
            (Value::Record(record), _) => {
                self.byte(b'[');
                for (i, value) in record.values().iter().enumerate() {
                    if i > 0 {
                        self.byte(b',');
                    }
                    self.value(value, &Type::UNKNOWN);
                }
                self.byte(b']');
            }
        }
    }
}

impl Drop for JsonWriter<'_> {
    /// Cuts off the room not written to.
    fn drop(&mut self) {
        self.out.truncate(self.at);
    }
}

/// How records of one type are written as JSON, worked out once: what
/// comes before each field's value (its name quoted and followed by its
/// colon, after a comma but for the first).
#[derive(Clone, Debug)]
pub struct JsonLayout {
    fields: Vec<(Piece, Field)>,
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
            .enumerate()
            .map(|(i, field)| {
                let mut before = Vec::new();
                let mut writer = JsonWriter::new(&mut before);
                if i > 0 {
                    writer.byte(b',');
                }
                writer.string(&field.name);
                writer.byte(b':');
                drop(writer);
                let shape = match &field.ty.kind {
                    Kind::Record(nested) => Field::Record(Self::new(nested)),
                    _ => Field::Scalar,
                };
                (Piece::new(&before), shape)
            })
            .collect();
        Self { fields }
    }

    /// Appends `record` as a JSON object.
    pub fn write(&self, record: &Record, out: &mut JsonWriter<'_>) {
        out.byte(b'{');
        for ((before, shape), value) in self.fields.iter().zip(record.values()) {
            out.piece(before);
            match (shape, value) {
                (Field::Record(layout), Value::Record(nested)) => layout.write(nested, out),
                // The usual fields, without `value`'s look at the type.
                (_, Value::Str(text)) => out.string(text),
                (_, Value::Int(i)) => out.int(*i),
                (_, Value::Timestamp(time)) => out.time(*time),
                _ => out.value(value, &Type::UNKNOWN),
            }
        }
        out.byte(b'}');
    }
}

/// Appends `text` as a JSON string literal.
pub fn write_json_string(text: &str, out: &mut String) {
    let mut bytes = Vec::new();
    JsonWriter::new(&mut bytes).string(text);
    out.push_str(&String::from_utf8_lossy(&bytes));
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
    fn texts_of_every_length_are_copied_whole() {
        // The moves of a fixed size overlap differently at each length,
        // and the room made runs out at some point along the line.
        let mut out = b"head ".to_vec();
        let mut expected = "head ".to_string();
        let mut writer = JsonWriter::new(&mut out);
        for len in 0..600 {
            let text: String = "abcdefghijklmnopqrstuvwxyz"
                .chars()
                .cycle()
                .take(len)
                .collect();
            writer.string(&text);
            writer.byte(b' ');
            expected.push('"');
            expected.push_str(&text);
            expected.push_str("\" ");
        }
        drop(writer);
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn a_writer_leaves_only_what_it_wrote() {
        let mut out = Vec::new();
        {
            let mut writer = JsonWriter::new(&mut out);
            writer.int(-42);
            writer.byte(b',');
            writer.time(EventTime::from_millis(1_500));
            writer.byte(b',');
            writer.time(EventTime::from_millis(i64::MAX));
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                r#"-42,"1970-01-01T00:00:01.5Z","{}""#,
                EventTime::from_millis(i64::MAX)
            )
        );
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
                // Longer than a piece copied in one move.
                Field {
                    name: "when_the_platform_said_it_was_settled".into(),
                    ty: Type::TIMESTAMP,
                },
            ],
        });
        let record = Record::new(vec![
            "a\"b\n对".into(),
            Value::Float(f64::NAN),
            Value::Null,
            Value::Timestamp(EventTime::from_millis(0)),
        ]);
        let expected = r#"{"id":"a\"b\n对","amount":null,"note":null,"when_the_platform_said_it_was_settled":"1970-01-01T00:00:00Z"}"#;
        let mut out = Vec::new();
        JsonWriter::new(&mut out).value(
            &Value::Record(record.clone()),
            &Type::record(layout.clone()),
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        let mut out = Vec::new();
        JsonLayout::new(&layout).write(&record, &mut JsonWriter::new(&mut out));
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
