//! Expression text from a YAML scalar, with the way back into the file.
//!
//! An expression is the *decoded* value of a YAML scalar: quotes removed,
//! escapes resolved, block indentation stripped and lines folded. To point at
//! a position inside it, each decoded byte keeps the file offset it came from.
//! The map is built by walking the raw scalar alongside the decoded text, so
//! it is exact for every style: plain, single-quoted, double-quoted with
//! escapes, and literal or folded block scalars.

use crate::diagnostic::Span;

/// The text of one expression and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprText {
    /// The decoded text, as the expression parser sees it.
    pub text: String,
    /// The whole scalar in the file.
    pub span: Span,
    /// For each byte of `text`, plus one entry for the end: the file range of
    /// the raw token it was decoded from. Empty when the raw scalar could not
    /// be aligned, in which case every position maps to the scalar's start.
    offsets: Vec<(usize, usize)>,
}

impl ExprText {
    /// The expression `text`, decoded from the scalar at `span` in `file`.
    pub fn new(text: String, span: Span, file: &str) -> Self {
        let raw = file.get(span.start..span.end).unwrap_or("");
        let offsets = align(&text, raw).map_or_else(Vec::new, |offsets| {
            offsets
                .into_iter()
                .map(|(start, end)| (start + span.start, end + span.start))
                .collect()
        });
        Self {
            text,
            span,
            offsets,
        }
    }

    /// The file span of `span`, a byte range of [`ExprText::text`].
    pub fn file_span(&self, span: Span) -> Span {
        if self.offsets.is_empty() {
            return Span::new(self.span.start, self.span.start);
        }
        let at = |i: usize| self.offsets[i.min(self.offsets.len() - 1)];
        let start = at(span.start).0;
        if span.end <= span.start {
            return Span::new(start, start);
        }
        // The end of the last byte's token, so an escape such as `\u00e9` is
        // covered whole.
        Span::new(start, at(span.end - 1).1)
    }
}

/// What a raw token of the scalar turns into when decoded.
enum Produces {
    /// Exactly this character.
    Char(char),
    /// A line break: a newline, or a space where lines are folded.
    LineBreak,
    /// Nothing: indentation, quotes, an escaped line break.
    Nothing,
}

/// The range in `raw` of the token behind each byte of `decoded`, plus an
/// empty range at the end; `None` if the two cannot be aligned.
fn align(decoded: &str, raw: &str) -> Option<Vec<(usize, usize)>> {
    let quote = raw.chars().next().filter(|c| matches!(c, '\'' | '"'));
    let mut position = usize::from(quote.is_some());
    let mut offsets = Vec::with_capacity(decoded.len() + 1);
    for wanted in decoded.chars() {
        loop {
            let (produces, len) = token(&raw[position..], quote)?;
            let hit = match produces {
                Produces::Char(c) => c == wanted,
                Produces::LineBreak => matches!(wanted, '\n' | ' '),
                Produces::Nothing => false,
            };
            if hit {
                offsets.extend((0..wanted.len_utf8()).map(|_| (position, position + len)));
                position += len;
                break;
            }
            // Only layout may be skipped; skipping content would misplace
            // everything after it.
            let skippable = matches!(produces, Produces::Nothing | Produces::LineBreak)
                || matches!(produces, Produces::Char(' ' | '\t' | '\r'));
            if !skippable {
                return None;
            }
            position += len;
        }
    }
    offsets.push((position, position));
    Some(offsets)
}

/// The next raw token at the start of `rest` and its length in bytes.
fn token(rest: &str, quote: Option<char>) -> Option<(Produces, usize)> {
    let c = rest.chars().next()?;
    Some(match (quote, c) {
        (_, '\n') => (Produces::LineBreak, 1),
        (Some('\''), '\'') if rest[1..].starts_with('\'') => (Produces::Char('\''), 2),
        (Some(q), c) if c == q => (Produces::Nothing, 1),
        (Some('"'), '\\') => double_quoted_escape(rest)?,
        (_, c) => (Produces::Char(c), c.len_utf8()),
    })
}

/// A YAML double-quoted escape at the start of `rest`.
fn double_quoted_escape(rest: &str) -> Option<(Produces, usize)> {
    let escaped = rest[1..].chars().next()?;
    let hex = |digits: usize| {
        let code = u32::from_str_radix(rest.get(2..2 + digits)?, 16).ok()?;
        Some((Produces::Char(char::from_u32(code)?), 2 + digits))
    };
    let simple = |c: char| Some((Produces::Char(c), 2));
    match escaped {
        'x' => hex(2),
        'u' => hex(4),
        'U' => hex(8),
        '\n' => Some((Produces::Nothing, 2)),
        '0' => simple('\0'),
        'a' => simple('\x07'),
        'b' => simple('\x08'),
        't' | '\t' => simple('\t'),
        'n' => simple('\n'),
        'v' => simple('\x0b'),
        'f' => simple('\x0c'),
        'r' => simple('\r'),
        'e' => simple('\x1b'),
        'N' => simple('\u{85}'),
        '_' => simple('\u{a0}'),
        'L' => simple('\u{2028}'),
        'P' => simple('\u{2029}'),
        c => simple(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::{self, Value};

    /// The file text at the span of `needle` inside the decoded value of key `a`.
    fn locate(yaml: &str, needle: &str) -> String {
        let Value::Map(entries) = node::parse(yaml).unwrap().value else {
            panic!("not a map")
        };
        let value = &entries[0].1;
        let Value::Str(text) = &value.value else {
            panic!("not a string")
        };
        let expr = ExprText::new(text.clone(), value.span, yaml);
        let start = text.find(needle).unwrap();
        let span = expr.file_span(Span::new(start, start + needle.len()));
        yaml[span.start..span.end].to_string()
    }

    #[test]
    fn plain_scalars_map_directly() {
        assert_eq!(locate("a: lower(status) == 1\n", "status"), "status");
    }

    #[test]
    fn single_quoted_scalars_skip_doubled_quotes() {
        assert_eq!(locate("a: 'concat(''x'', bad)'\n", "bad"), "bad");
        assert_eq!(locate("a: 'concat(''x'', bad)'\n", "'x'"), "''x''");
    }

    #[test]
    fn double_quoted_scalars_resolve_escapes() {
        assert_eq!(locate("a: \"concat(\\\"é\\\", bad)\"\n", "bad"), "bad");
        assert_eq!(locate("a: \"x + \\u00e9 + bad\"\n", "é"), "\\u00e9");
        assert_eq!(locate("a: \"x + \\u00e9 + bad\"\n", "bad"), "bad");
    }

    #[test]
    fn literal_block_scalars_strip_indentation() {
        let yaml = "a: |\n  if x\n    then bad\n    else 2\n";
        assert_eq!(locate(yaml, "bad"), "bad");
        assert_eq!(locate(yaml, "else"), "else");
    }

    #[test]
    fn folded_and_multiline_plain_scalars_fold_lines() {
        assert_eq!(locate("a: >-\n  concat(x,\n  bad)\n", "bad"), "bad");
        assert_eq!(locate("a: concat(x,\n  bad)\n", "bad"), "bad");
    }

    #[test]
    fn non_ascii_text_keeps_character_boundaries() {
        assert_eq!(locate("a: concat(\"对账成功:\", 订单)\n", "订单"), "订单");
    }

    #[test]
    fn unalignable_text_points_at_the_scalar() {
        let expr = ExprText::new("abc".into(), Span::new(3, 6), "a: xyz");
        assert_eq!(expr.file_span(Span::new(1, 2)), Span::new(3, 3));
    }
}
