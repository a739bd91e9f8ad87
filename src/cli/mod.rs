//! Command-line interface: arguments in, library calls, exit codes out.
//!
//! Exit codes: 0 success; 1 the pipeline is invalid or failed on an event;
//! 2 usage or I/O error (bad arguments, a file that cannot be read, output
//! that cannot be written).

mod args;

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use runner::diagnostic::{self, SourceFile, Style};
use runner::runtime::{self, Outputs};

use args::Command;

/// The pipeline is invalid, or an expression failed on an event.
const INVALID: u8 = 1;
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
        Command::Run(path) => with_file(&path, run),
        Command::Explain(path) => with_file(&path, explain),
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

fn with_file(path: &str, command: fn(&SourceFile) -> ExitCode) -> ExitCode {
    match read(path) {
        Ok(file) => command(&file),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(USAGE)
        }
    }
}

fn read(path: &str) -> anyhow::Result<SourceFile> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read `{path}`"))?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("cannot read `{path}`: it is not UTF-8 text"))?;
    Ok(SourceFile::new(path, text))
}

fn run(file: &SourceFile) -> ExitCode {
    let Some(graph) = compile(file) else {
        return ExitCode::from(INVALID);
    };
    match runtime::run_blocking(graph, Outputs::stdio()) {
        Ok(_) => ExitCode::SUCCESS,
        // `runner pipeline.yaml | head`: the reader has all it wanted.
        Err(error) if error.is_broken_pipe() => ExitCode::SUCCESS,
        Err(error) => {
            if let Some(diagnostic) = error.to_diagnostic() {
                report(&[diagnostic], file);
                return ExitCode::from(INVALID);
            }
            // Not about the pipeline: output that cannot be written.
            eprintln!("error: {error}");
            ExitCode::from(USAGE)
        }
    }
}

fn explain(file: &SourceFile) -> ExitCode {
    match compile(file) {
        Some(graph) => print(&graph.to_string()),
        None => ExitCode::from(INVALID),
    }
}

/// The graph of `file`, or `None` after reporting why there is none.
fn compile(file: &SourceFile) -> Option<runner::plan::Graph> {
    runner::compile(file)
        .map_err(|diagnostics| report(&diagnostics, file))
        .ok()
}

fn report(diagnostics: &[diagnostic::Diagnostic], file: &SourceFile) {
    let stderr = std::io::stderr();
    let colored =
        stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let style = if colored {
        Style::Colored
    } else {
        Style::Plain
    };
    let mut text = diagnostic::render(diagnostics, file, style);
    let errors = diagnostics.len();
    let _ = writeln!(
        text,
        "error: `{}` has {errors} problem{}",
        file.name(),
        if errors == 1 { "" } else { "s" }
    );
    // Nothing useful can be done if stderr itself is gone.
    let _ = stderr.lock().write_all(text.as_bytes());
}
