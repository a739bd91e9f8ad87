//! The GitHub Actions rendering: one workflow command per finding, which the
//! runner turns into an annotation on the pull request's diff.

use std::fmt::Write as _;

use super::{Diagnostic, Severity, SourceFile};

/// `::error file=p.yaml,line=3,col=5,endLine=3,endColumn=8,title=E201::message`
pub fn render_github(file: &SourceFile, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for diagnostic in diagnostics {
        let command = match diagnostic.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let (line, column) = file.line_col(diagnostic.primary.span.start);
        // GitHub's end column is the last column of the span, inclusive.
        let last = diagnostic
            .primary
            .span
            .end
            .max(diagnostic.primary.span.start + 1)
            - 1;
        let (end_line, end_column) = file.line_col(last.max(diagnostic.primary.span.start));
        let mut message = diagnostic.message.clone();
        if !diagnostic.primary.message.is_empty() {
            let _ = write!(message, "\n{}", diagnostic.primary.message);
        }
        if let Some(help) = &diagnostic.help {
            let _ = write!(message, "\nhelp: {help}");
        }
        let _ = writeln!(
            out,
            "::{command} file={},line={line},col={column},endLine={end_line},endColumn={end_column},title={}::{}",
            property(file.name()),
            property(diagnostic.code.as_str()),
            data(&message)
        );
    }
    out
}

/// Escapes a command's message.
fn data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a command's property value, which also may not hold `:` or `,`.
fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::{Code, Span};

    #[test]
    fn annotations_escape_and_locate() {
        let file = SourceFile::new("dir,1/p:x.yaml", "a: 1\nbb: 100%\n");
        let diagnostic = Diagnostic::error(Code::UnknownKey, "unknown key `bb`", Span::new(5, 7))
            .label("here")
            .help("did you mean `b`? 100%".to_string());
        assert_eq!(
            render_github(&file, &[diagnostic]),
            "::error file=dir%2C1/p%3Ax.yaml,line=2,col=1,endLine=2,endColumn=2,title=E002::unknown key `bb`%0Ahere%0Ahelp: did you mean `b`? 100%25\n"
        );
    }
}
