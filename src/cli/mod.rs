//! Command-line interface: arguments in, library calls, exit codes out.
//!
//! Exit codes: 0 success; 1 an invalid pipeline, an expression that failed
//! on an event, or a failed test; 2 usage or I/O error (bad arguments, a
//! file that cannot be read, output that cannot be written).

mod args;
mod metrics;
mod paths;
mod run;
mod test;
mod validate;

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use runner::diagnostic::{self, Diagnostic, SourceFile, Style};

use args::Command;

/// The pipeline is invalid, an expression failed on an event, or a test
/// failed.
const FAILED: u8 = 1;
/// Bad arguments, or input or output that cannot be read or written.
const USAGE: u8 = 2;

pub(crate) fn main() -> ExitCode {
    let command = match args::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("error: {error}\n\n{}", args::USAGE);
            return ExitCode::from(USAGE);
        }
    };
    match command {
        Command::Help => print(args::HELP),
        Command::Version => print(&format!("runner {}\n", env!("CARGO_PKG_VERSION"))),
        Command::Schema => print(runner::config::SCHEMA),
        Command::Run(args) => {
            let path = Path::new(&args.path);
            with_file(path, |file| run::run(file, path, &args))
        }
        Command::Inspect {
            path,
            state_dir,
            instance,
        } => {
            let path = Path::new(&path);
            with_file(path, |file| {
                run::inspect(file, path, state_dir.as_deref(), instance)
            })
        }
        Command::Explain(path) => with_file(Path::new(&path), explain),
        Command::Validate {
            paths,
            format,
            deny_warnings,
        } => validate::validate(&paths, format, deny_warnings),
        Command::Test(paths) => test::test(&paths),
        Command::Gen { spec, out } => generate(&spec, Path::new(&out)),
    }
}

/// Writes `text` to stdout; a closed pipe is not an error.
fn print(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: cannot write to standard output: {error}");
            ExitCode::from(USAGE)
        }
        _ => ExitCode::SUCCESS,
    }
}

fn generate(spec: &runner::generate::Spec, out: &Path) -> ExitCode {
    match runner::generate::write(spec, out) {
        Ok(tally) => print(&tally.describe(out)),
        Err(error) => {
            eprintln!("error: cannot write to `{}`: {error}", out.display());
            ExitCode::from(USAGE)
        }
    }
}

fn with_file(path: &Path, command: impl FnOnce(&SourceFile) -> ExitCode) -> ExitCode {
    match read(path) {
        Ok(file) => command(&file),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(USAGE)
        }
    }
}

/// Reads a pipeline file, named in messages as the user wrote its path.
fn read(path: &Path) -> anyhow::Result<SourceFile> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read `{name}`"))?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("cannot read `{name}`: it is not UTF-8 text"))?;
    Ok(SourceFile::new(name, text))
}

fn explain(file: &SourceFile) -> ExitCode {
    let (graph, diagnostics) = runner::check(file);
    if !diagnostics.is_empty() {
        report(&diagnostics, file);
    }
    match graph {
        Some(graph) => print(&graph.to_string()),
        None => ExitCode::from(FAILED),
    }
}

/// Colour for a terminal, unless `NO_COLOR` is set.
fn style(stream: &impl IsTerminal) -> Style {
    let colour =
        stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    if colour { Style::Colored } else { Style::Plain }
}

/// Writes findings about `file` to stderr, with a closing count.
fn report(diagnostics: &[Diagnostic], file: &SourceFile) {
    let stderr = std::io::stderr();
    let mut text = diagnostic::render(diagnostics, file, style(&stderr));
    let _ = writeln!(text, "{}", summary(file.name(), diagnostics));
    // Nothing useful can be done if stderr itself is gone.
    let _ = stderr.lock().write_all(text.as_bytes());
}

/// `error: `p.yaml` has 2 errors and 1 warning`, or `warning: ...`.
fn summary(name: &str, diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("1 {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    match (errors, warnings) {
        (0, w) => format!("warning: `{name}` has {}", plural(w, "warning")),
        (e, 0) => format!("error: `{name}` has {}", plural(e, "error")),
        (e, w) => format!(
            "error: `{name}` has {} and {}",
            plural(e, "error"),
            plural(w, "warning")
        ),
    }
}
