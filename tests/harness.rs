//! Running the real `runner` binary and comparing with expected files.
//!
//! Set `RUNNER_BLESS=1` to write the expected files from the actual output
//! instead of comparing; review the diff before committing it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The result of one run of the binary.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) status: i32,
}

/// Runs `runner` with `args` in the crate's root directory.
pub(crate) fn runner(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .current_dir(root())
        .env_remove("NO_COLOR")
        .output()
        .expect("the runner binary starts");
    finish(output)
}

/// Runs `runner` on a pipeline given as text, written to a temporary file
/// called `name`.
pub(crate) fn runner_on(name: &str, pipeline: &str, args: &[&str]) -> Run {
    let dir = scratch(name);
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, pipeline).expect("the scratch file is writable");
    let path = path.to_str().expect("scratch paths are UTF-8").to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.push(&path);
    runner(&all)
}

fn finish(output: Output) -> Run {
    Run {
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: steady(&String::from_utf8(output.stderr).expect("stderr is UTF-8")),
        status: output
            .status
            .code()
            .expect("runner exits with a status, not a signal"),
    }
}

/// `text` with what differs from run to run replaced: the time a run took
/// (and its rate) by `<elapsed>` in the summary line, `runner: 5 events in
/// <elapsed>`, and the memory it used by `<memory>`.
pub(crate) fn steady(text: &str) -> String {
    let mut out: String = text
        .lines()
        .map(|line| match line.strip_prefix("runner: ") {
            Some(rest) if rest.contains(" in ") && rest.contains(" event") => {
                let (head, _) = rest.rsplit_once(" in ").unwrap_or((rest, ""));
                format!("runner: {head} in <elapsed>\n")
            }
            _ if line.starts_with("  memory     ") => "  memory     <memory>\n".to_string(),
            _ => format!("{line}\n"),
        })
        .collect();
    if !text.ends_with('\n') {
        out.pop();
    }
    out
}

/// The crate's root directory.
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory for one test's files.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the scratch directory can be made");
    dir
}

/// Compares `actual` with the contents of `expected` (relative to the crate
/// root), or writes it there when blessing. Returns a readable diff on a
/// mismatch.
pub(crate) fn compare(expected: &Path, actual: &str) -> Result<(), String> {
    let path = root().join(expected);
    if std::env::var_os("RUNNER_BLESS").is_some() {
        std::fs::write(&path, actual)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        return Ok(());
    }
    let wanted = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {} ({e}); run with RUNNER_BLESS=1 to create it",
            expected.display()
        )
    })?;
    if wanted == actual {
        return Ok(());
    }
    Err(format!(
        "{} differs (- expected, + actual):\n{}",
        expected.display(),
        diff(&wanted, actual)
    ))
}

/// A line diff: `-` for lines only expected, `+` for lines only actual.
pub(crate) fn diff(expected: &str, actual: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    // Longest common subsequence, fine for the short outputs compared here.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "  {}", a[i]);
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        }
    }
    if expected.ends_with('\n') != actual.ends_with('\n') {
        out.push_str("(the two differ in a final newline)\n");
    }
    out
}

#[test]
fn diff_marks_changed_lines() {
    assert_eq!(diff("a\nb\nc\n", "a\nx\nc\n"), "  a\n+ x\n- b\n  c\n");
}

/// Stops a run as Ctrl-C does; gives its exit code and standard error.
#[cfg(unix)]
pub(crate) fn interrupt(child: std::process::Child) -> (Option<i32>, String) {
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(interrupted.success());
    let stopped = child.wait_with_output().expect("ends");
    (
        stopped.status.code(),
        String::from_utf8_lossy(&stopped.stderr).into_owned(),
    )
}

/// Runs the pipeline in `dir` (its `pipeline.yaml`) with `args`, to its end.
pub(crate) fn run_in(dir: &Path, args: &[&str]) -> Run {
    let path = dir.join("pipeline.yaml");
    let mut all = args.to_vec();
    all.push(path.to_str().expect("scratch paths are UTF-8"));
    runner(&all)
}

/// Starts the pipeline in `dir` with `args`, its summary piped.
pub(crate) fn start(dir: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .arg(dir.join("pipeline.yaml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runner starts")
}
