//! The command line as a user meets it: arguments, exit codes, messages.

use std::fmt::Write as _;
use std::io::Read;
use std::process::{Command, Stdio};

use crate::harness::{runner, runner_on, scratch};

#[test]
fn the_short_form_runs_the_pipeline() {
    let short = runner(&["pipelines/three_way.yaml"]);
    let long = runner(&["run", "pipelines/three_way.yaml"]);
    assert_eq!(short.status, 0);
    assert_eq!(short.stdout, long.stdout);
    assert!(
        short
            .stdout
            .contains("UNRECONCILED A-1005: missing payments, settlements")
    );
}

#[test]
fn a_missing_file_is_an_io_error() {
    let run = runner(&["pipelines/nope.yaml"]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr
            .starts_with("error: cannot read `pipelines/nope.yaml`: "),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn a_file_that_is_not_text_is_an_io_error() {
    let path = scratch("not_text").join("binary.yaml");
    std::fs::write(&path, [0xff, 0xfe, 0x00, 0x12]).unwrap();
    let run = runner(&[path.to_str().unwrap()]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("it is not UTF-8 text"),
        "{}",
        run.stderr
    );
}

#[test]
fn usage_errors_exit_2_and_show_usage() {
    for args in [
        &[][..],
        &["run"][..],
        &["--fast", "x.yaml"][..],
        &["a.yaml", "b.yaml"][..],
    ] {
        let run = runner(args);
        assert_eq!(run.status, 2, "{args:?}");
        assert!(
            run.stderr.contains(
                "Usage: runner [--quiet] [--workers N] [--state-dir DIR] [--fresh]
              [--instance I/N | --join] [--metrics-addr ADDR] [--log text|json] <FILE>"
            ),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn help_and_version() {
    let help = runner(&["--help"]);
    assert_eq!(help.status, 0);
    assert!(help.stdout.contains("runner explain <FILE>"));
    let version = runner(&["-V"]);
    assert_eq!(
        version.stdout,
        format!("runner {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_invalid_pipeline_exits_1_without_output() {
    let run = runner_on("invalid", "sources: []\n", &[]);
    assert_eq!(run.status, 1);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr
            .contains("error[E004]: `sources` must be a mapping, found a list"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("invalid.yaml:1:10"), "{}", run.stderr);
}

#[test]
fn explain_refuses_an_invalid_pipeline() {
    let run = runner_on("explain_invalid", "sources: {}\n", &["explain"]);
    assert_eq!(run.status, 1);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.contains("is missing `connect`"),
        "{}",
        run.stderr
    );
}

#[test]
fn colour_is_off_when_stderr_is_not_a_terminal() {
    let run = runner_on("no_colour", "sources: []\n", &[]);
    assert!(!run.stderr.contains('\u{1b}'), "{}", run.stderr);
}

/// A pipeline whose output is far larger than a pipe's buffer.
fn loud_pipeline(records: usize) -> String {
    let mut text = String::from(
        "sources:\n  a:\n    type: inline\n    schema: {id: int, ts: int}\n    event_time: ts\n    \
         watermark_lag: 0s\n    records:\n",
    );
    for i in 0..records {
        let _ = writeln!(text, "      - {{id: {i}, ts: {i}}}");
    }
    text.push_str(
        "  b:\n    type: inline\n    schema: {id: int, ts: int}\n    event_time: ts\n    watermark_lag: 0s\n    \
         records: []\nconnect: {a: id, b: id}\nmatch: {wait: 1s}\nsinks: {out: {type: stdout}}\n\
         outputs:\n  - {outcome: matched, sink: out}\n  - {outcome: timed_out, sink: out}\n",
    );
    text
}

#[test]
fn a_closed_pipe_ends_the_run_quietly() {
    let path = scratch("closed_pipe").join("loud.yaml");
    std::fs::write(&path, loud_pipeline(20_000)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, as `head -1` would, then hang up.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    let read = stdout.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..read]).starts_with("{\"outcome\":\"timed_out\""));
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn default_output_is_one_json_object_per_outcome() {
    let run = runner_on("json", &loud_pipeline(2), &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "{\"outcome\":\"timed_out\",\"key\":0,\"expired\":\"a\",\"missing\":[\"b\"],\"a\":{\"id\":0,\"ts\":0},\"b\":null,\
         \"times\":{\"a\":\"1970-01-01T00:00:00Z\",\"b\":null}}\n\
         {\"outcome\":\"timed_out\",\"key\":1,\"expired\":\"a\",\"missing\":[\"b\"],\"a\":{\"id\":1,\"ts\":1},\"b\":null,\
         \"times\":{\"a\":\"1970-01-01T00:00:00.001Z\",\"b\":null}}\n"
    );
}

#[test]
fn output_that_cannot_be_written_is_an_io_error() {
    for args in [
        &["pipelines/bill_check.yaml"][..],
        &["explain", "pipelines/bill_check.yaml"][..],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(args)
            .current_dir(crate::harness::root())
            .stdout(full)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("No space left on device"),
            "{args:?}: {stderr}"
        );
    }
}
