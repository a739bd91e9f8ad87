//! `runner validate`: every check short of running, for every file named.

use std::fmt::Write as _;
use std::process::ExitCode;

use runner::diagnostic::{self, Diagnostic, SourceFile};

use super::args::Format;
use super::{FAILED, USAGE, paths, print, read, style};

pub(crate) fn validate(args: &[String], format: Format, deny_warnings: bool) -> ExitCode {
    let files = match paths::expand(args) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(USAGE);
        }
    };
    let mut unreadable = false;
    let mut checked: Vec<(SourceFile, Vec<Diagnostic>)> = Vec::new();
    for path in files {
        match read(&path) {
            Ok(file) => {
                let (_, diagnostics) = runner::check(&file);
                checked.push((file, diagnostics));
            }
            Err(error) => {
                eprintln!("error: {error:#}");
                unreadable = true;
            }
        }
    }
    let text = match format {
        Format::Human => human(&checked, deny_warnings),
        Format::Json => {
            let files: Vec<(&SourceFile, &[Diagnostic])> =
                checked.iter().map(|(f, d)| (f, d.as_slice())).collect();
            diagnostic::render_json(&files)
        }
        Format::Github => checked
            .iter()
            .map(|(file, diagnostics)| diagnostic::render_github(file, diagnostics))
            .collect(),
    };
    let printed = print(&text);
    let errors = checked
        .iter()
        .flat_map(|(_, d)| d)
        .filter(|d| d.is_error())
        .count();
    let warnings = checked.iter().map(|(_, d)| d.len()).sum::<usize>() - errors;
    if unreadable || printed != ExitCode::SUCCESS {
        ExitCode::from(USAGE)
    } else if errors > 0 || (deny_warnings && warnings > 0) {
        ExitCode::from(FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// Each file's findings as the compiler shows them, then a count.
fn human(checked: &[(SourceFile, Vec<Diagnostic>)], deny_warnings: bool) -> String {
    let style = style(&std::io::stdout());
    let mut out = String::new();
    let mut invalid = 0;
    let (mut errors, mut warnings) = (0, 0);
    for (file, diagnostics) in checked {
        out.push_str(&diagnostic::render(diagnostics, file, style));
        let file_errors = diagnostics.iter().filter(|d| d.is_error()).count();
        errors += file_errors;
        warnings += diagnostics.len() - file_errors;
        if file_errors > 0 || (deny_warnings && !diagnostics.is_empty()) {
            invalid += 1;
        }
    }
    let files = if checked.len() == 1 {
        "1 file".to_string()
    } else {
        format!("{} files", checked.len())
    };
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("1 {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    let _ = match (invalid, warnings) {
        (0, 0) => writeln!(out, "checked {files}: all valid"),
        (0, w) => writeln!(
            out,
            "checked {files}: all valid, with {}",
            plural(w, "warning")
        ),
        (i, 0) => writeln!(
            out,
            "checked {files}: {i} invalid ({})",
            plural(errors, "error")
        ),
        (i, w) if errors == 0 => writeln!(
            out,
            "checked {files}: {i} invalid ({}, denied)",
            plural(w, "warning")
        ),
        (i, w) => writeln!(
            out,
            "checked {files}: {i} invalid ({}, {}{})",
            plural(errors, "error"),
            plural(w, "warning"),
            if deny_warnings { ", denied" } else { "" }
        ),
    };
    out
}
