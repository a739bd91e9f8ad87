//! CSV lines: one record per line, fields found by the header's column
//! names or by the columns the pipeline declares.
//!
//! Quoting follows RFC 4180 (`"a, b"`, `""` for a quote inside quotes), and
//! strictly: a quote in the middle of an unquoted field, or text after a
//! closing quote, is a malformed line rather than a guess. A quoted field
//! cannot hold a line break, since every line is a record.

use super::{Line, Path, missing, not_null, timestamp};
use crate::config::CsvFormat;
use crate::expr::{Kind, Record, RecordType, Type, Value};

/// The state of one CSV input.
#[derive(Debug)]
pub(super) struct Reader {
    delimiter: u8,
    /// Whether each file starts with a header.
    header: bool,
    /// Whether the pipeline names the columns, so a header is skipped.
    declared: bool,
    /// Whether the next line is the first of a file.
    at_start: bool,
    /// Where each field of the layout is: its column, if the columns name
    /// it. `None` until a header is read, for inputs that have one.
    columns: Option<Vec<Option<usize>>>,
    /// How many columns a line has.
    width: usize,
    /// What is wrong with the header of this file, if anything.
    header_problem: Option<String>,
    /// The fields of the current line, unquoted, end to end.
    text: String,
    /// Where each field of `text` starts and ends.
    spans: Vec<(usize, usize)>,
}

impl Reader {
    pub(super) fn new(format: &CsvFormat, layout: &RecordType) -> Self {
        let declared = format.columns.as_ref().map(|columns| {
            let names: Vec<&str> = columns.iter().map(|c| c.value.as_str()).collect();
            (positions(&names, layout), names.len())
        });
        let (columns, width) = match declared {
            Some((positions, width)) => (Some(positions), width),
            None => (None, 0),
        };
        Self {
            delimiter: format.delimiter,
            header: format.header,
            declared: format.columns.is_some(),
            at_start: true,
            columns,
            width,
            header_problem: None,
            text: String::new(),
            spans: Vec::new(),
        }
    }

    pub(super) fn header(&self) -> bool {
        self.header
    }

    pub(super) fn start_file(&mut self) {
        self.at_start = true;
    }

    pub(super) fn decode(
        &mut self,
        line: &str,
        layout: &RecordType,
        values: &mut Vec<Value>,
    ) -> Result<Line, String> {
        split(line, self.delimiter, &mut self.text, &mut self.spans)?;
        if std::mem::take(&mut self.at_start) && self.header {
            return self.read_header(layout);
        }
        if let Some(problem) = &self.header_problem {
            return Err(problem.clone());
        }
        let Some(columns) = &self.columns else {
            unreachable!("a reader without declared columns reads a header first")
        };
        if self.spans.len() != self.width {
            return Err(format!(
                "{} columns, expected {}",
                self.spans.len(),
                self.width
            ));
        }
        values.clear();
        for (field, column) in layout.fields.iter().zip(columns) {
            let path = Path {
                name: &field.name,
                parent: None,
            };
            let value = match column {
                Some(column) => cell(self.field(*column), &field.ty, path)?,
                None if field.ty.nullable => Value::Null,
                None => return Err(missing(path, &field.ty)),
            };
            values.push(value);
        }
        Ok(Line::Record(Record::from_exact(values.drain(..))))
    }

    /// The text of field `index` of the current line.
    fn field(&self, index: usize) -> &str {
        let (start, end) = self.spans[index];
        &self.text[start..end]
    }

    /// Takes the current line as the header. Unless the pipeline names the
    /// columns, the header says where each field is; a header that lacks a
    /// field that cannot be null makes every line of the file malformed.
    fn read_header(&mut self, layout: &RecordType) -> Result<Line, String> {
        self.header_problem = None;
        if self.declared {
            // The pipeline's columns hold; the header is only checked to
            // be as wide.
            return if self.spans.len() == self.width {
                Ok(Line::Header)
            } else {
                Err(format!(
                    "the header has {} columns, but the pipeline declares {}",
                    self.spans.len(),
                    self.width
                ))
            };
        }
        let names: Vec<&str> = (0..self.spans.len())
            .map(|i| self.field(i).trim())
            .collect();
        if let Some(twice) = names
            .iter()
            .enumerate()
            .find_map(|(i, name)| names[..i].contains(name).then_some(name))
        {
            let problem = format!("the header names column `{twice}` twice");
            self.header_problem = Some(format!("unusable header: {problem}"));
            return Err(problem);
        }
        let positions = positions(&names, layout);
        let absent: Vec<String> = layout
            .fields
            .iter()
            .zip(&positions)
            .filter(|(field, position)| position.is_none() && !field.ty.nullable)
            .map(|(field, _)| format!("`{}`", field.name))
            .collect();
        self.width = names.len();
        self.columns = Some(positions);
        if absent.is_empty() {
            return Ok(Line::Header);
        }
        let problem = format!("the header has no column {}", absent.join(", "));
        self.header_problem = Some(format!("unusable header: {problem}"));
        Err(problem)
    }
}

/// The column of each field of `layout` among `names`.
fn positions(names: &[&str], layout: &RecordType) -> Vec<Option<usize>> {
    layout
        .fields
        .iter()
        .map(|field| names.iter().position(|name| *name == field.name))
        .collect()
}

/// Splits `line` into fields, unquoting them into `text` and recording
/// where each starts and ends.
fn split(
    line: &str,
    delimiter: u8,
    text: &mut String,
    spans: &mut Vec<(usize, usize)>,
) -> Result<(), String> {
    text.clear();
    spans.clear();
    let bytes = line.as_bytes();
    if split_unquoted(bytes, delimiter, spans) {
        // The usual line, without quotes: its fields are as they stand.
        text.push_str(line);
        return Ok(());
    }
    spans.clear();
    let mut at = 0;
    loop {
        let start = text.len();
        if bytes.get(at) == Some(&b'"') {
            // A quoted field: up to the quote not followed by another.
            at += 1;
            loop {
                let Some(offset) = memchr::memchr(b'"', &bytes[at..]) else {
                    return Err(format!(
                        "the quote at column {at} is never closed (a quoted field cannot hold a line break)"
                    ));
                };
                text.push_str(&line[at..at + offset]);
                at += offset + 1;
                if bytes.get(at) == Some(&b'"') {
                    text.push('"');
                    at += 1;
                } else {
                    break;
                }
            }
            spans.push((start, text.len()));
            match bytes.get(at) {
                None => return Ok(()),
                Some(&b) if b == delimiter => at += 1,
                Some(_) => {
                    return Err(format!(
                        "text after the closing quote at column {at}; quote the whole field"
                    ));
                }
            }
        } else {
            let end = memchr::memchr(delimiter, &bytes[at..]).map_or(bytes.len(), |o| at + o);
            let field = &line[at..end];
            if let Some(quote) = field.find('"') {
                return Err(format!(
                    "a quote inside an unquoted field at column {}; quote the field and double the quote",
                    at + quote + 1
                ));
            }
            text.push_str(field);
            spans.push((start, text.len()));
            if end == bytes.len() {
                return Ok(());
            }
            at = end + 1;
        }
    }
}

/// Records where each field of `bytes` starts and ends, eight bytes at a
/// time, if the line has no quote; `false` (with `spans` partly filled)
/// at the first quote.
fn split_unquoted(bytes: &[u8], delimiter: u8, spans: &mut Vec<(usize, usize)>) -> bool {
    const LOWS: u64 = u64::from_le_bytes([0x7f; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // The high bit of each byte of `word` that is `byte`, and no other bit:
    // adding 0x7f to the low seven bits sets the high bit of every nonzero
    // byte without carrying into the next.
    let equal = |word: u64, byte: u8| {
        let diff = word ^ u64::from_le_bytes([byte; 8]);
        !(((diff & LOWS) + LOWS) | diff) & HIGHS
    };
    let mut start = 0;
    let mut base = 0;
    let mut rest = bytes;
    while let Some((word, tail)) = rest.split_first_chunk::<8>() {
        let word = u64::from_le_bytes(*word);
        if equal(word, b'"') != 0 {
            return false;
        }
        let mut found = equal(word, delimiter);
        while found != 0 {
            let end = base + found.trailing_zeros() as usize / 8;
            spans.push((start, end));
            start = end + 1;
            found &= found - 1;
        }
        base += 8;
        rest = tail;
    }
    for (at, &byte) in rest.iter().enumerate() {
        if byte == b'"' {
            return false;
        }
        if byte == delimiter {
            spans.push((start, base + at));
            start = base + at + 1;
        }
    }
    spans.push((start, bytes.len()));
    true
}

/// A field's value from its cell. An empty cell is null where the type
/// allows it, and the empty string for a `string`.
fn cell(text: &str, ty: &Type, path: Path<'_>) -> Result<Value, String> {
    if ty.kind == Kind::String && !(ty.nullable && text.is_empty()) {
        return Ok(Value::Str(text.into()));
    }
    // Trimming is skipped for the usual cell, printable ASCII at both ends.
    let printable = |byte: Option<&u8>| byte.is_some_and(u8::is_ascii_graphic);
    let trimmed = if printable(text.as_bytes().first()) && printable(text.as_bytes().last()) {
        text
    } else {
        text.trim()
    };
    if trimmed.is_empty() {
        return if ty.nullable {
            Ok(Value::Null)
        } else {
            Err(not_null(path, ty).replace("is null", "is empty"))
        };
    }
    let wrong = |what: &str| format!("`{path}` is `{ty}`, found {trimmed:?}{what}");
    match ty.kind {
        Kind::Int => trimmed
            .parse()
            .map(Value::Int)
            .map_err(|_| wrong(", which is not a 64-bit integer")),
        Kind::Float => match trimmed.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Value::Float(x)),
            _ => Err(wrong(", which is not a finite number")),
        },
        Kind::Bool => {
            if trimmed.eq_ignore_ascii_case("true") {
                Ok(Value::Bool(true))
            } else if trimmed.eq_ignore_ascii_case("false") {
                Ok(Value::Bool(false))
            } else {
                Err(wrong(", which is neither `true` nor `false`"))
            }
        }
        Kind::Timestamp => timestamp(trimmed, path),
        _ => Err(wrong("")),
    }
}

/// Appends `value` as one CSV field: quoted when it holds a comma, a
/// quote, a line break or surrounding spaces.
pub fn write_field(value: &str, out: &mut String) {
    let quote = value
        .bytes()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
        || value.starts_with(' ')
        || value.ends_with(' ');
    if quote {
        out.push('"');
        for c in value.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_eight_bytes_at_a_time_as_byte_by_byte() {
        // Every length up to three words, a delimiter or a quote at every
        // position, beside bytes that differ from them in one bit and
        // multibyte characters.
        let fill = ['a', '-', ',', ';', 'é', '€', '\u{7f}', '\u{ac}'];
        for len in 0..26 {
            for at in 0..len {
                for (mark, other) in [(';', ','), ('"', 'x'), (';', '\u{bb}')] {
                    let line: String = (0..len)
                        .map(|i| match i {
                            i if i == at || i % 7 == 3 => mark,
                            i if i % 5 == 1 => other,
                            i => fill[i % fill.len()],
                        })
                        .collect();
                    let mut spans = Vec::new();
                    let unquoted = split_unquoted(line.as_bytes(), b';', &mut spans);
                    assert_eq!(unquoted, !line.contains('"'), "{line:?}");
                    if unquoted {
                        let mut start = 0;
                        let mut want = Vec::new();
                        for (end, _) in line.match_indices(';') {
                            want.push((start, end));
                            start = end + 1;
                        }
                        want.push((start, line.len()));
                        assert_eq!(spans, want, "{line:?}");
                    }
                }
            }
        }
    }
}
