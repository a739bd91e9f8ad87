//! The golden corpus: every `tests/cases/**/<name>.yaml` runs through the
//! binary; its stdout and stderr must equal `<name>.stdout` and
//! `<name>.stderr` (a missing file means empty).
//!
//! A case declares how it runs in comment lines at its top:
//!
//!     # args: explain      arguments before the file (default: none, i.e. run)
//!     # exit: 1            the expected exit status (default: 0)

use std::path::{Path, PathBuf};

use crate::harness::{compare, root, runner};

fn cases(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("tests/cases is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            cases(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "yaml") {
            found.push(path);
        }
    }
}

/// The value of `# name: value` in the leading comment block.
fn directive<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .take_while(|line| line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix('#')?
                .trim()
                .strip_prefix(name)?
                .strip_prefix(':')
        })
        .map(str::trim)
}

fn run_case(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let relative = path
        .strip_prefix(root())
        .expect("cases live under the crate root");
    let file = relative.to_str().expect("case paths are UTF-8");
    let mut args: Vec<&str> = directive(&text, "args")
        .map(|a| a.split_whitespace().collect())
        .unwrap_or_default();
    args.push(file);
    let status: i32 = directive(&text, "exit")
        .map_or(Ok(0), str::parse)
        .map_err(|e| format!("bad `# exit:` ({e})"))?;
    let run = runner(&args);
    let mut problems = Vec::new();
    if run.status != status {
        problems.push(format!(
            "exit status {} (expected {status})\nstderr:\n{}",
            run.status, run.stderr
        ));
    }
    for (extension, actual) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        let expected = relative.with_extension(extension);
        let exists = root().join(&expected).exists();
        if actual.is_empty() && !exists {
            continue;
        }
        if let Err(problem) = compare(&expected, actual) {
            problems.push(problem);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{file}:\n{}", problems.join("\n")))
    }
}

#[test]
fn corpus() {
    let mut found = Vec::new();
    cases(&root().join("tests/cases"), &mut found);
    assert!(
        found.len() >= 10,
        "the corpus is missing: found {} cases",
        found.len()
    );
    let failures: Vec<String> = found
        .iter()
        .filter_map(|path| run_case(path).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        found.len(),
        failures.join("\n\n")
    );
}
