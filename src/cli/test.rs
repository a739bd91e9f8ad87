//! `runner test`: the test cases of every pipeline named.

use std::fmt::Write as _;
use std::process::ExitCode;

use runner::diagnostic;

use super::{FAILED, USAGE, paths, print, read, style, summary};

pub(crate) fn test(args: &[String]) -> ExitCode {
    let files = match paths::expand(args) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(USAGE);
        }
    };
    let mut out = String::new();
    let mut failures = String::new();
    let (mut passed, mut failed, mut invalid, mut untested) = (0, 0, 0, 0);
    let mut unreadable = false;
    for path in files {
        let file = match read(&path) {
            Ok(file) => file,
            Err(error) => {
                eprintln!("error: {error:#}");
                unreadable = true;
                continue;
            }
        };
        let cases = match runner::testing::run(&file) {
            Ok(cases) => cases,
            Err(diagnostics) => {
                out.push_str(&diagnostic::render(
                    &diagnostics,
                    &file,
                    style(&std::io::stdout()),
                ));
                let _ = writeln!(
                    out,
                    "{}: its tests cannot run",
                    summary(file.name(), &diagnostics)
                );
                invalid += 1;
                continue;
            }
        };
        if cases.is_empty() {
            untested += 1;
        }
        for case in cases {
            let (line, column) = file.line_col(case.span.start);
            match case.failure {
                None => {
                    passed += 1;
                    let _ = writeln!(out, "test {} › {} ... ok", file.name(), case.name);
                }
                Some(failure) => {
                    failed += 1;
                    let _ = writeln!(out, "test {} › {} ... FAILED", file.name(), case.name);
                    let _ = write!(
                        failures,
                        "\n---- {}:{line}:{column}: {}\n{failure}",
                        file.name(),
                        case.name
                    );
                }
            }
        }
    }
    if !failures.is_empty() {
        let _ = write!(out, "\nfailures:\n{failures}");
    }
    let ok = failed == 0 && invalid == 0 && passed > 0;
    let _ = write!(
        out,
        "\ntest result: {}. {passed} passed; {failed} failed",
        if ok { "ok" } else { "FAILED" }
    );
    if invalid > 0 {
        let _ = write!(
            out,
            "; {invalid} invalid pipeline{}",
            if invalid == 1 { "" } else { "s" }
        );
    }
    if untested > 0 {
        let _ = write!(
            out,
            "; {untested} pipeline{} without tests",
            if untested == 1 { "" } else { "s" }
        );
    }
    out.push('\n');
    if passed + failed == 0 && invalid == 0 {
        out.push_str("error: no test cases found; add them under `tests` in a pipeline file\n");
    }
    let printed = print(&out);
    if unreadable || printed != ExitCode::SUCCESS {
        ExitCode::from(USAGE)
    } else if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FAILED)
    }
}
