//! Human rendering: the message, the file position and the source line with
//! the span underlined, in the style of rustc.

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

use super::{Diagnostic, Severity, SourceFile};

/// Whether the rendering may use colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Plain text: for pipes, files and `NO_COLOR`.
    Plain,
    /// ANSI colours: for terminals.
    Colored,
}

/// Renders `diagnostics`, all about `file`, one after another.
pub fn render(diagnostics: &[Diagnostic], file: &SourceFile, style: Style) -> String {
    let renderer = match style {
        Style::Plain => Renderer::plain(),
        Style::Colored => Renderer::styled(),
    };
    let mut out = String::new();
    for diagnostic in diagnostics {
        let level = match diagnostic.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let mut snippet = Snippet::source(file.text())
            .path(file.name())
            .fold(true)
            .annotation(annotation(
                AnnotationKind::Primary,
                diagnostic.primary.span,
                &diagnostic.primary.message,
                file,
            ));
        for label in &diagnostic.secondary {
            snippet = snippet.annotation(annotation(
                AnnotationKind::Context,
                label.span,
                &label.message,
                file,
            ));
        }
        let mut group = level
            .primary_title(diagnostic.message.as_str())
            .id(diagnostic.code.as_str())
            .element(snippet);
        if let Some(help) = &diagnostic.help {
            group = group.element(Level::HELP.message(help.as_str()));
        }
        out.push_str(&renderer.render(&[group as Group<'_>]));
        out.push_str("\n\n");
    }
    out
}

/// An annotation on `span`, widened to one character where it is empty so the
/// caret has something to point at.
fn annotation<'a>(
    kind: AnnotationKind,
    span: super::Span,
    label: &'a str,
    file: &SourceFile,
) -> annotate_snippets::Annotation<'a> {
    let text = file.text();
    let start = span.start.min(text.len());
    let mut end = span.end.clamp(start, text.len());
    if end == start {
        end = text[start..]
            .chars()
            .next()
            .map_or(start, |c| start + c.len_utf8());
    }
    let annotation = kind.span(start..end);
    if label.is_empty() {
        annotation
    } else {
        annotation.label(label)
    }
}
