//! Codecs: lines of input to records, by schema.
//!
//! Takes one line of a file or stream (without its line break) and the
//! source's [`RecordType`]; produces a [`Record`] laid out in field order,
//! or the reason the line is malformed. Strict where guessing would hide a
//! mistake: a number where text is declared, a missing field that cannot
//! be null, a field given twice. Fields a schema does not declare are
//! ignored, so a source may carry more than a pipeline reads. Nothing here
//! does I/O.

mod csv;
mod json;

use std::sync::Arc;

pub use self::csv::write_field as write_csv_field;

use crate::config::Format;
use crate::expr::{Record, RecordType, Type, Value, parse_timestamp};
use crate::time::EventTime;

/// Reads the lines of one source.
#[derive(Debug)]
pub struct Decoder {
    layout: Arc<RecordType>,
    format: Inner,
    /// Values of the record being read, reused from line to line.
    scratch: Vec<Value>,
}

#[derive(Debug)]
enum Inner {
    /// Whether each field's name is [`json::plain`].
    Json(Vec<bool>),
    Csv(csv::Reader),
}

/// What a line was.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// A record.
    Record(Record),
    /// A CSV header, read for its column names.
    Header,
}

impl Decoder {
    /// A decoder for lines in `format` of records laid out by `layout`.
    pub fn new(format: &Format, layout: Arc<RecordType>) -> Self {
        let format = match format {
            Format::Jsonl => Inner::Json(json::plain(&layout)),
            Format::Csv(csv) => Inner::Csv(csv::Reader::new(csv, &layout)),
        };
        Self {
            scratch: Vec::with_capacity(layout.fields.len()),
            layout,
            format,
        }
    }

    /// Whether each file starts with a header this decoder reads.
    pub fn reads_header(&self) -> bool {
        matches!(&self.format, Inner::Csv(reader) if reader.header())
    }

    /// A new file begins: a CSV input expects its header again.
    pub fn start_file(&mut self) {
        if let Inner::Csv(reader) = &mut self.format {
            reader.start_file();
        }
    }

    /// Reads one line, without its line break.
    ///
    /// # Errors
    ///
    /// Why the line is malformed, for people to read.
    pub fn decode(&mut self, line: &str) -> Result<Line, String> {
        match &mut self.format {
            Inner::Json(plain) => {
                json::decode(line, &self.layout, plain, &mut self.scratch).map(Line::Record)
            }
            Inner::Csv(reader) => reader.decode(line, &self.layout, &mut self.scratch),
        }
    }
}

/// A field's place in messages: `amount`, `payer.id`.
#[derive(Clone, Copy, Debug)]
struct Path<'a> {
    name: &'a str,
    parent: Option<&'a Path<'a>>,
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(parent) = self.parent {
            write!(f, "{parent}.")?;
        }
        f.write_str(self.name)
    }
}

/// A timestamp field's value from text: RFC 3339, or milliseconds since
/// the epoch.
fn timestamp(text: &str, path: Path<'_>) -> Result<Value, String> {
    // The usual shape first: no number reads as one.
    if let Some(time) = EventTime::parse_rfc3339(text) {
        return Ok(Value::Timestamp(time));
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(Value::Timestamp(EventTime::from_millis(ms)));
    }
    parse_timestamp(text, None)
        .map(Value::Timestamp)
        .map_err(|problem| format!("`{path}`: {problem}"))
}

/// The message for a field that is null but may not be.
fn not_null(path: Path<'_>, ty: &Type) -> String {
    format!("`{path}` is null, but its type `{ty}` does not allow null")
}

/// The message for a field that is absent but may not be.
fn missing(path: Path<'_>, ty: &Type) -> String {
    format!("missing field `{path}` (its type `{ty}` does not allow null)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CsvFormat, Spanned};
    use crate::diagnostic::Span;
    use crate::expr::Field;

    fn layout() -> Arc<RecordType> {
        let payer = Arc::new(RecordType {
            name: "app.payer".into(),
            fields: vec![Field {
                name: "id".into(),
                ty: Type::INT,
            }],
        });
        Arc::new(RecordType {
            name: "app".into(),
            fields: vec![
                Field {
                    name: "order".into(),
                    ty: Type::STRING,
                },
                Field {
                    name: "amount".into(),
                    ty: Type::INT,
                },
                Field {
                    name: "rate".into(),
                    ty: Type::FLOAT.or_null(),
                },
                Field {
                    name: "ok".into(),
                    ty: Type::BOOL,
                },
                Field {
                    name: "ts".into(),
                    ty: Type::TIMESTAMP,
                },
                Field {
                    name: "payer".into(),
                    ty: Type::record(payer).or_null(),
                },
            ],
        })
    }

    fn json(line: &str) -> Result<Vec<Value>, String> {
        match Decoder::new(&Format::Jsonl, layout()).decode(line)? {
            Line::Record(record) => Ok(record.values().to_vec()),
            Line::Header => Err("a header".into()),
        }
    }

    #[test]
    fn json_lines_are_read_by_schema() {
        let values = json(
            r#"{"ts": "2026-01-01T00:00:01Z", "order": "o-1", "amount": 5, "ok": true, "extra": {"x": [1]}, "payer": {"id": 7}}"#,
        )
        .expect("a record");
        assert_eq!(values[0], Value::from("o-1"));
        assert_eq!(values[1], Value::Int(5));
        assert_eq!(values[2], Value::Null, "an absent nullable field is null");
        assert_eq!(values[3], Value::Bool(true));
        assert_eq!(
            values[4],
            Value::Timestamp(EventTime::from_millis(1_767_225_601_000))
        );
        assert_eq!(values[5], Value::Record(Record::new(vec![Value::Int(7)])));
        let millis = json(r#"{"order": "o", "amount": 1, "rate": 2, "ok": false, "ts": 1500}"#)
            .expect("a record");
        assert_eq!(
            millis[2],
            Value::Float(2.0),
            "an int is a float where one is declared"
        );
        assert_eq!(millis[4], Value::Timestamp(EventTime::from_millis(1500)));
        let zero = json(r#"{"order": "o", "amount": -0, "ok": false, "ts": -0}"#)
            .expect("`-0` is a whole number");
        assert_eq!(zero[1], Value::Int(0));
        assert_eq!(zero[4], Value::Timestamp(EventTime::from_millis(0)));
    }

    #[test]
    fn json_lines_that_do_not_fit_say_why() {
        let base = r#""order": "o", "ok": true, "ts": 1"#;
        let mut wrong = Vec::new();
        for (line, reason) in [
            ("not json", "not JSON: expected ident at column 2"),
            (
                "[1, 2]",
                "invalid type: sequence, expected a JSON object (column 1)",
            ),
            (
                &format!(r#"{{{base}, "amount": "5"}}"#),
                "`amount` is `int`, found the text \"5\" (column 49)",
            ),
            (
                &format!(r#"{{{base}, "amount": 5.5}}"#),
                "`amount` is `int`, found `5.5`, which is not a whole number (column 49)",
            ),
            (
                &format!(r#"{{{base}, "amount": 5.0}}"#),
                "`amount` is `int`, found the float `5.0`: write a whole number without a fraction or exponent (column 49)",
            ),
            (
                &format!(r#"{{{base}, "amount": 3e20}}"#),
                "`amount` is `int`, found `300000000000000000000`, which is beyond a 64-bit signed integer (column 50)",
            ),
            (
                &format!("{{{base}}}"),
                "missing field `amount` (its type `int` does not allow null) (column 35)",
            ),
            (
                &format!(r#"{{{base}, "amount": null}}"#),
                "`amount` is null, but its type `int` does not allow null (column 50)",
            ),
            (
                &format!(r#"{{{base}, "amount": 1, "amount": 2}}"#),
                "field `amount` is given twice (column 57)",
            ),
            (
                &format!(r#"{{{base}, "amount": 1, "payer": {{"id": "x"}}}}"#),
                "`payer.id` is `int`, found the text \"x\" (column 68)",
            ),
            (
                &format!(r#"{{{base}, "amount": 1}} trailing"#),
                "not JSON: trailing characters at column 50",
            ),
            (
                r#"{"order": "o", "ok": true, "amount": 1, "ts": "yesterday"}"#,
                "`ts`: cannot parse \"yesterday\" as an RFC 3339 timestamp",
            ),
        ] {
            let error = json(line).expect_err(line);
            if !error.starts_with(reason) {
                wrong.push(format!("{line}\n  got:  {error}\n  want: {reason}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn json_field_names_with_quotes_or_backslashes_are_read_as_json_has_them() {
        let layout = Arc::new(RecordType {
            name: "odd".into(),
            fields: ["a\"b", "c\\d", "e"]
                .into_iter()
                .map(|name| Field {
                    name: name.into(),
                    ty: Type::INT,
                })
                .collect(),
        });
        let read = |line: &str| match Decoder::new(&Format::Jsonl, layout.clone()).decode(line) {
            Ok(Line::Record(record)) => Ok(record.values().to_vec()),
            Ok(Line::Header) => Err("a header".to_string()),
            Err(error) => Err(error),
        };
        assert_eq!(
            read(r#"{"a\"b": 1, "c\\d": 2, "e": 3}"#),
            Ok(vec![Value::Int(1), Value::Int(2), Value::Int(3)])
        );
        // As they are, a quote ends the name and a backslash escapes.
        assert!(read(r#"{"a"b": 1, "c\\d": 2, "e": 3}"#).is_err());
        assert!(read(r#"{"a\"b": 1, "c\d": 2, "e": 3}"#).is_err());
    }

    #[test]
    fn wide_json_records_are_read_and_checked_the_same() {
        let layout = Arc::new(RecordType {
            name: "wide".into(),
            fields: (0..70)
                .map(|n| Field {
                    name: format!("f{n}"),
                    ty: Type::INT,
                })
                .collect(),
        });
        let fields: Vec<String> = (0..70).map(|n| format!("\"f{n}\": {n}")).collect();
        let line = format!("{{{}}}", fields.join(", "));
        let mut decoder = Decoder::new(&Format::Jsonl, layout);
        let Ok(Line::Record(record)) = decoder.decode(&line) else {
            panic!("a record")
        };
        assert_eq!(record.get(69), &Value::Int(69));
        let twice = format!("{{{}, \"f68\": 0}}", fields.join(", "));
        assert!(
            decoder
                .decode(&twice)
                .unwrap_err()
                .starts_with("field `f68` is given twice")
        );
        let short = format!("{{{}}}", fields[..69].join(", "));
        assert!(
            decoder
                .decode(&short)
                .unwrap_err()
                .starts_with("missing field `f69`")
        );
    }

    fn csv(format: CsvFormat, lines: &[&str]) -> Vec<Result<Line, String>> {
        let layout = Arc::new(RecordType {
            name: "bank".into(),
            fields: vec![
                Field {
                    name: "order".into(),
                    ty: Type::STRING,
                },
                Field {
                    name: "amount".into(),
                    ty: Type::INT,
                },
                Field {
                    name: "note".into(),
                    ty: Type::STRING.or_null(),
                },
            ],
        });
        let mut decoder = Decoder::new(&Format::Csv(format), layout);
        lines.iter().map(|line| decoder.decode(line)).collect()
    }

    fn header() -> CsvFormat {
        CsvFormat {
            header: true,
            columns: None,
            delimiter: b',',
        }
    }

    fn record(values: &[Value]) -> Line {
        Line::Record(Record::new(values.to_vec()))
    }

    #[test]
    fn csv_columns_come_from_the_header_in_any_order() {
        let read = csv(
            header(),
            &[
                "amount,extra,order",
                "5,x,o-1",
                r#" 7 ,"a, ""quoted"" b","o-2""#,
                "6,,",
                "1,2",
                "x,,o-3",
            ],
        );
        assert_eq!(read[0], Ok(Line::Header));
        assert_eq!(
            read[1],
            Ok(record(&[Value::from("o-1"), Value::Int(5), Value::Null]))
        );
        assert_eq!(
            read[2],
            Ok(record(&[Value::from("o-2"), Value::Int(7), Value::Null]))
        );
        assert_eq!(
            read[3],
            Ok(record(&[Value::from(""), Value::Int(6), Value::Null])),
            "an empty cell is the empty string for a `string`"
        );
        assert_eq!(read[4], Err("2 columns, expected 3".into()));
        assert_eq!(
            read[5],
            Err("`amount` is `int`, found \"x\", which is not a 64-bit integer".into())
        );
    }

    #[test]
    fn a_header_without_a_needed_column_makes_its_rows_malformed() {
        let read = csv(header(), &["order,note", "o-1,hi"]);
        assert_eq!(read[0], Err("the header has no column `amount`".into()));
        assert_eq!(
            read[1],
            Err("unusable header: the header has no column `amount`".into())
        );
    }

    #[test]
    fn declared_columns_read_files_without_a_header() {
        let columns = ["order", "amount", "note"]
            .iter()
            .map(|name| Spanned {
                value: (*name).to_string(),
                span: Span::new(0, 0),
            })
            .collect();
        let format = CsvFormat {
            header: false,
            columns: Some(columns),
            delimiter: b';',
        };
        let read = csv(format, &["o-1;5;note", "o-2;;", "\"o-3;4", "o\"4;1;"]);
        assert_eq!(
            read[0],
            Ok(record(&[
                Value::from("o-1"),
                Value::Int(5),
                Value::from("note")
            ]))
        );
        assert_eq!(
            read[1],
            Err("`amount` is empty, but its type `int` does not allow null".into())
        );
        assert_eq!(
            read[2],
            Err(
                "the quote at column 1 is never closed (a quoted field cannot hold a line break)"
                    .into()
            )
        );
        assert_eq!(
            read[3],
            Err("a quote inside an unquoted field at column 2; quote the field and double the quote".into())
        );
    }

    #[test]
    fn csv_fields_are_quoted_when_they_must_be() {
        let mut out = String::new();
        for value in ["plain", "a,b", "say \"hi\"", " padded", "two\nlines", ""] {
            write_csv_field(value, &mut out);
            out.push('|');
        }
        assert_eq!(
            out,
            "plain|\"a,b\"|\"say \"\"hi\"\"\"|\" padded\"|\"two\nlines\"||"
        );
    }
}
