//! The JSON rendering: one document for a whole run, in the stable shape the
//! README documents (`version` 1).

use std::fmt::Write as _;

use super::{Diagnostic, Severity, SourceFile, Span};
use crate::expr::write_json_string;

/// Renders the findings of every checked file as one JSON document on one
/// line.
pub fn render_json(files: &[(&SourceFile, &[Diagnostic])]) -> String {
    let count = |severity: Severity| {
        files
            .iter()
            .flat_map(|(_, diagnostics)| diagnostics.iter())
            .filter(|d| d.severity == severity)
            .count()
    };
    let errors = count(Severity::Error);
    let mut out = format!(
        "{{\"version\":1,\"valid\":{},\"errors\":{errors},\"warnings\":{},\"files\":[",
        errors == 0,
        count(Severity::Warning)
    );
    for (i, (file, diagnostics)) in files.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        file_json(file, diagnostics, &mut out);
    }
    out.push_str("]}\n");
    out
}

fn file_json(file: &SourceFile, diagnostics: &[Diagnostic], out: &mut String) {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    out.push_str("{\"path\":");
    write_json_string(file.name(), out);
    let _ = write!(
        out,
        ",\"valid\":{},\"errors\":{errors},\"warnings\":{},\"diagnostics\":[",
        errors == 0,
        diagnostics.len() - errors
    );
    for (i, diagnostic) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"severity\":");
        write_json_string(&diagnostic.severity.to_string(), out);
        out.push_str(",\"code\":");
        write_json_string(diagnostic.code.as_str(), out);
        out.push_str(",\"message\":");
        write_json_string(&diagnostic.message, out);
        out.push_str(",\"location\":");
        location_json(file, diagnostic.primary.span, out);
        out.push_str(",\"label\":");
        optional(&diagnostic.primary.message, out);
        out.push_str(",\"help\":");
        optional(diagnostic.help.as_deref().unwrap_or(""), out);
        out.push_str(",\"related\":[");
        for (j, label) in diagnostic.secondary.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"location\":");
            location_json(file, label.span, out);
            out.push_str(",\"label\":");
            optional(&label.message, out);
            out.push('}');
        }
        out.push_str("]}");
    }
    out.push_str("]}");
}

/// `{"line":3,"column":5,"end_line":3,"end_column":9,"start":40,"end":44}`:
/// one-based lines and character columns, the end just past the span, and
/// byte offsets.
fn location_json(file: &SourceFile, span: Span, out: &mut String) {
    let (line, column) = file.line_col(span.start);
    let (end_line, end_column) = file.line_col(span.end);
    let _ = write!(
        out,
        "{{\"line\":{line},\"column\":{column},\"end_line\":{end_line},\"end_column\":{end_column},\"start\":{},\"end\":{}}}",
        span.start, span.end
    );
}

/// A string, or `null` when it is empty.
fn optional(text: &str, out: &mut String) {
    if text.is_empty() {
        out.push_str("null");
    } else {
        write_json_string(text, out);
    }
}
