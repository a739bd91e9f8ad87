//! File and stream sources and file sinks, through the binary: JSONL and
//! CSV files, globs, standard input, malformed lines, followed files, and
//! what is written where.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Run, runner, scratch, steady};

/// Writes `files` (path, contents) under a fresh directory.
fn project(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = scratch(name);
    for (path, contents) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("a directory");
        std::fs::write(path, contents).expect("a file");
    }
    dir
}

/// Runs `runner` on `dir/pipeline.yaml`, with `dir` taken out of what it
/// prints so the output does not depend on where tests run.
fn run_in(dir: &Path, args: &[&str]) -> Run {
    let pipeline = dir.join("pipeline.yaml");
    let pipeline = pipeline.to_str().expect("UTF-8 paths");
    let mut all = args.to_vec();
    all.push(pipeline);
    let mut run = runner(&all);
    let prefix = format!("{}/", dir.display());
    run.stdout = run.stdout.replace(&prefix, "");
    run.stderr = run.stderr.replace(&prefix, "");
    run
}

/// A bill check of `app` against `bank`, keyed by `id`, with an amount
/// rule; `app_source` and `bank_source` give each source's `type` and
/// where it reads, `outputs` the outputs.
fn pipeline(app_source: &str, bank_source: &str, outputs: &str) -> String {
    format!(
        r"sources:
  app:
{app_source}
    schema: {{id: string, amount: int, ts: timestamp}}
    event_time: ts
    watermark_lag: 1s
  bank:
{bank_source}
    schema: {{id: string, paid: int, ts: timestamp}}
    event_time: ts
    watermark_lag: 1s
connect: {{app: id, bank: id}}
match:
  wait: 10s
  rules:
    paid_in_full: bank.paid == app.amount
sinks:
  out: {{type: stdout}}
outputs:
{outputs}
"
    )
}

const BRIEF: &str = r#"  - {outcome: matched, sink: out, template: 'concat("matched ", key)'}
  - {outcome: mismatched, sink: out, template: 'concat("mismatched ", key, ": ", failed)'}
  - {outcome: timed_out, sink: out, template: 'concat("timed_out ", key, ", missing ", missing)'}
  - {outcome: duplicate, sink: out, template: 'concat("duplicate ", key, " on ", side)'}
  - {outcome: malformed, sink: out, template: 'concat("malformed ", source, " ", file, ":", line, ": ", reason, " | ", raw)'}"#;

const APP: &str = r#"{"id": "a", "amount": 100, "ts": "2026-03-01T10:00:00Z"}
{"id": "b", "amount": 200, "ts": "2026-03-01T10:00:01Z"}
{"id": "c", "amount": "300", "ts": "2026-03-01T10:00:02Z"}
{"id": "d", "amount": 400, "ts": "2026-03-01T10:00:03Z"
{"id": "e", "amount": 500, "ts": "2026-03-01T10:00:04Z"}
"#;

const BANK: &str = "id,paid,ts
a,100,2026-03-01T10:00:05Z
b,250,2026-03-01T10:00:06Z
e,500
e,500,2026-03-01T10:00:07Z
a,100,2026-03-01T10:00:08Z
";

#[test]
fn malformed_lines_are_reported_where_they_are_and_the_rest_is_read() {
    let dir = project(
        "malformed_mid_file",
        &[
            (
                "pipeline.yaml",
                &pipeline(
                    "    type: file\n    path: data/app.jsonl",
                    "    type: file\n    path: data/bank.csv",
                    BRIEF,
                ),
            ),
            ("data/app.jsonl", APP),
            ("data/bank.csv", BANK),
        ],
    );
    let run = run_in(&dir, &["--quiet"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        r#"malformed app data/app.jsonl:3: `amount` is `int`, found the text "300" (column 27) | {"id": "c", "amount": "300", "ts": "2026-03-01T10:00:02Z"}
malformed app data/app.jsonl:4: not JSON: EOF while parsing an object at column 55 | {"id": "d", "amount": 400, "ts": "2026-03-01T10:00:03Z"
matched a
mismatched b: paid_in_full
malformed bank data/bank.csv:4: 2 columns, expected 3 | e,500
matched e
duplicate a on bank
"#
    );
    assert_eq!(run.stderr, "");
    let summary = run_in(&dir, &[]);
    assert_eq!(
        summary.stderr,
        "runner: 7 events in <elapsed>
  read       app 3 events, 2 malformed lines; bank 4 events, 1 malformed line
  outcomes   matched 2, mismatched 1, duplicate 1, malformed 3
  pending    0 keys (at most 3 at once)
  watermark  2026-03-01T10:00:06.999Z
  memory     <memory>
"
    );
}

#[test]
fn a_glob_reads_its_files_in_name_order_each_numbered_from_one() {
    let dir = project(
        "glob_name_order",
        &[
            (
                "pipeline.yaml",
                &pipeline(
                    "    type: file\n    path: in/app-*.jsonl",
                    "    type: file\n    path: in/bank-*.csv",
                    BRIEF,
                ),
            ),
            (
                "in/app-2.jsonl",
                "{\"id\": \"b\", \"amount\": 200, \"ts\": \"2026-03-01T10:00:05Z\"}\nbad\n",
            ),
            (
                "in/app-1.jsonl",
                "bad\n{\"id\": \"a\", \"amount\": 100, \"ts\": \"2026-03-01T10:00:00Z\"}\n",
            ),
            ("in/bank-1.csv", "id,paid,ts\nb,200,2026-03-01T10:00:06Z\n"),
            // Another file, another header: the columns may differ.
            ("in/bank-0.csv", "ts,id,paid\n2026-03-01T10:00:01Z,a,100\n"),
            ("in/ignored.jsonl", "not matched by the glob\n"),
        ],
    );
    let run = run_in(&dir, &["--quiet"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "malformed app in/app-1.jsonl:1: not JSON: expected value at column 1 | bad
matched a
malformed app in/app-2.jsonl:2: not JSON: expected value at column 1 | bad
matched b
",
        "a malformed line comes out as soon as the lines before it are merged"
    );
}

#[test]
fn standard_input_is_a_source() {
    let dir = project(
        "stdin_source",
        &[
            (
                "pipeline.yaml",
                &pipeline(
                    "    type: stdin\n    format: jsonl",
                    "    type: file\n    path: bank.csv",
                    BRIEF,
                ),
            ),
            ("bank.csv", BANK),
        ],
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args([
            "--quiet",
            dir.join("pipeline.yaml").to_str().expect("UTF-8"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runner starts");
    let mut stdin = child.stdin.take().expect("a pipe");
    stdin.write_all(APP.as_bytes()).expect("runner reads stdin");
    drop(stdin);
    let output = child.wait_with_output().expect("runner ends");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let prefix = format!("{}/", dir.display());
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stdout.starts_with("malformed app -:3: `amount` is `int`"),
        "{stdout}"
    );
    assert!(
        stdout
            .replace(&prefix, "")
            .contains("malformed bank bank.csv:4: 2 columns, expected 3"),
        "{stdout}"
    );
    assert!(stdout.contains("matched e\n"), "{stdout}");
}

#[test]
fn file_sinks_write_jsonl_and_csv_and_make_their_directories() {
    let outputs = r"  - {outcome: matched, sink: matches}
  - {outcome: mismatched, sink: report}
  - {outcome: timed_out, sink: report}
  - {outcome: duplicate, sink: report}
  - {outcome: malformed, sink: problems}";
    let text = pipeline(
        "    type: file\n    path: data/app.jsonl",
        "    type: file\n    path: data/bank.csv",
        outputs,
    )
    .replace(
        "  out: {type: stdout}",
        "  matches: {type: file, path: out/matches.jsonl}
  report: {type: file, path: out/deep/report.csv}
  problems: {type: stderr}",
    );
    let dir = project(
        "file_sinks",
        &[
            ("pipeline.yaml", &text),
            ("data/app.jsonl", APP),
            ("data/bank.csv", BANK),
        ],
    );
    let run = run_in(&dir, &["--quiet"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr.lines().count(), 3, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(
            r#"{"outcome":"malformed","source":"app","file":"data/app.jsonl","line":3,"#
        )
    );
    let matches = std::fs::read_to_string(dir.join("out/matches.jsonl")).expect("written");
    assert_eq!(
        matches,
        r#"{"outcome":"matched","key":"a","app":{"id":"a","amount":100,"ts":"2026-03-01T10:00:00Z"},"bank":{"id":"a","paid":100,"ts":"2026-03-01T10:00:05Z"},"times":{"app":"2026-03-01T10:00:00Z","bank":"2026-03-01T10:00:05Z"}}
{"outcome":"matched","key":"e","app":{"id":"e","amount":500,"ts":"2026-03-01T10:00:04Z"},"bank":{"id":"e","paid":500,"ts":"2026-03-01T10:00:07Z"},"times":{"app":"2026-03-01T10:00:04Z","bank":"2026-03-01T10:00:07Z"}}
"#
    );
    let report = std::fs::read_to_string(dir.join("out/deep/report.csv")).expect("written");
    assert_eq!(
        report,
        "outcome,key,missing,expired,failed,side,of,app.id,app.amount,app.ts,bank.id,bank.paid,bank.ts,times.app,times.bank
mismatched,b,,,paid_in_full,,,b,200,2026-03-01T10:00:01Z,b,250,2026-03-01T10:00:06Z,2026-03-01T10:00:01Z,2026-03-01T10:00:06Z
duplicate,a,,,,bank,completed,,,,a,100,2026-03-01T10:00:08Z,,2026-03-01T10:00:08Z
"
    );
}

/// A run writes its output files afresh. A plain file is replaced (which
/// spares ext4 writing a truncated file out as it is closed) and keeps its
/// permissions; a file with another name, or one reached through a
/// symbolic link, is truncated in place, so every name sees the new output.
#[cfg(unix)]
#[test]
fn a_run_writes_its_output_files_afresh_through_every_name() {
    use std::os::unix::fs::PermissionsExt;
    let template = r#"  - {outcome: matched, sink: kept, template: 'concat("matched ", key)'}"#;
    let text = pipeline(
        "    type: file\n    path: data/app.jsonl",
        "    type: file\n    path: data/bank.csv",
        template,
    )
    .replace(
        "  out: {type: stdout}",
        "  kept: {type: file, path: out/kept.jsonl}",
    );
    let dir = project(
        "outputs_afresh",
        &[
            ("pipeline.yaml", &text),
            ("data/app.jsonl", APP),
            ("data/bank.csv", BANK),
            ("out/kept.jsonl", "the last run's, which was longer\n"),
        ],
    );
    let kept = dir.join("out/kept.jsonl");
    let read = |path: &Path| std::fs::read_to_string(path).expect("readable");
    let expected = "matched a\nmatched e\n";
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let born = |path: &Path| std::fs::metadata(path).and_then(|m| m.created()).ok();
    let before = born(&kept);
    let run = run_in(&dir, &["--quiet"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(read(&kept), expected);
    let mode = std::fs::metadata(&kept)
        .expect("there")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    // Where the file system records when a file was made (ext4 does).
    if let (Some(before), Some(after)) = (before, born(&kept)) {
        assert!(after > before, "a plain file is replaced, not truncated");
    }

    // Another name for the same file sees the new output too.
    let other = dir.join("other.txt");
    std::fs::hard_link(&kept, &other).expect("linked");
    std::fs::write(&other, "the last run's, which was longer\n").expect("written");
    let run = run_in(&dir, &["--quiet"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(read(&kept), expected);
    assert_eq!(read(&other), expected);

    // So does the file a symbolic link points at; the link stays a link.
    std::fs::remove_file(&kept).expect("removed");
    let target = dir.join("target.txt");
    std::fs::write(&target, "the last run's, which was longer\n").expect("written");
    std::os::unix::fs::symlink(&target, &kept).expect("symlinked");
    let run = run_in(&dir, &["--quiet"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(read(&target), expected);
    assert!(
        std::fs::symlink_metadata(&kept)
            .expect("there")
            .file_type()
            .is_symlink()
    );
}

#[test]
fn csv_inputs_with_declared_columns_and_other_delimiters() {
    let text = pipeline(
        "    type: file\n    path: app.tsv",
        "    type: file\n    path: bank.txt\n    format: csv\n    columns: [id, paid, ts]\n    delimiter: ';'",
        BRIEF,
    );
    let dir = project(
        "csv_layouts",
        &[
            ("pipeline.yaml", &text),
            // A byte-order mark starts the file; CR LF ends the lines.
            (
                "app.tsv",
                "\u{feff}id\tamount\tts\r\na\t100\t2026-03-01T10:00:00Z\r\nb\t5\t1772359200000\r\n",
            ),
            (
                "bank.txt",
                "a;100;2026-03-01T10:00:01Z\n\"b;x\";5;1772359200000\n\"b\";5;1772359201000\n",
            ),
        ],
    );
    let run = run_in(&dir, &["--quiet"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "matched a\nmatched b\ntimed_out b;x, missing app\n"
    );
}

#[test]
fn inputs_that_cannot_be_found_stop_the_run_before_any_output_is_touched() {
    let text = pipeline(
        "    type: file\n    path: data/app-*.jsonl",
        "    type: file\n    path: data/bank.csv",
        "  - {outcome: matched, sink: kept}
  - {outcome: mismatched, sink: kept}
  - {outcome: timed_out, sink: kept}",
    )
    .replace(
        "  out: {type: stdout}",
        "  kept: {type: file, path: kept.jsonl}",
    );
    let dir = project(
        "missing_input",
        &[("pipeline.yaml", &text), ("kept.jsonl", "the last run's\n")],
    );
    let run = run_in(&dir, &[]);
    assert_eq!(run.status, 2);
    assert_eq!(
        run.stderr,
        "error[E402]: cannot open `data/app-*.jsonl`: no file matches it
 --> pipeline.yaml:4:11
  |
4 |     path: data/app-*.jsonl
  |           ^^^^^^^^^^^^^^^^ named here

error: `pipeline.yaml` has 1 error
"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("kept.jsonl")).expect("still there"),
        "the last run's\n"
    );
    std::fs::create_dir_all(dir.join("data")).expect("a directory");
    std::fs::write(dir.join("data/app-1.jsonl"), APP).expect("written");
    let run = run_in(&dir, &[]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr
            .starts_with("error[E402]: cannot open `data/bank.csv`: No such file or directory"),
        "{}",
        run.stderr
    );
}

/// Waits up to ten seconds for `path` to hold `lines` lines.
fn wait_for_lines(path: &Path, lines: usize) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= lines || start.elapsed() > Duration::from_secs(10) {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("appendable");
    file.write_all(text.as_bytes()).expect("appended");
}

#[cfg(unix)]
#[test]
fn followed_files_are_read_as_they_grow_and_rotate_until_interrupted() {
    let text = pipeline(
        "    type: file\n    path: app.jsonl\n    follow: true\n    idle_timeout: 1s",
        "    type: file\n    path: bank.jsonl\n    follow: true\n    idle_timeout: 1s",
        r"  - {outcome: matched, sink: log}
  - {outcome: mismatched, sink: log}
  - {outcome: timed_out, sink: log}
  - {outcome: malformed, sink: log}",
    )
    .replace(
        "  out: {type: stdout}",
        "  log: {type: file, path: log.jsonl}",
    );
    let dir = project("follow", &[("pipeline.yaml", &text), ("app.jsonl", "")]);
    let log = dir.join("log.jsonl");
    let child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg(dir.join("pipeline.yaml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runner starts");
    let line = |id: &str, ts: &str| {
        format!("{{\"id\": \"{id}\", \"amount\": 1, \"paid\": 1, \"ts\": \"{ts}\"}}\n")
    };
    append(&dir.join("app.jsonl"), &line("a", "2026-03-01T10:00:00Z"));
    // The bank file does not exist yet: it is waited for.
    append(&dir.join("bank.jsonl"), &line("a", "2026-03-01T10:00:01Z"));
    let first = wait_for_lines(&log, 1);
    assert!(first.contains(r#""key":"a""#), "{first}");
    // Half a line is held until its end is written.
    append(&dir.join("app.jsonl"), r#"{"id": "b", "amount": 1, "#);
    append(&dir.join("bank.jsonl"), &line("b", "2026-03-01T10:00:03Z"));
    append(
        &dir.join("app.jsonl"),
        "\"ts\": \"2026-03-01T10:00:02Z\"}\nnot json\n",
    );
    let second = wait_for_lines(&log, 3);
    assert!(second.contains(r#""key":"b""#), "{second}");
    assert!(second.contains(r#""line":3"#), "{second}");
    // Rotation: the file is renamed and a new one takes its place.
    std::fs::rename(dir.join("app.jsonl"), dir.join("app.jsonl.1")).expect("renamed");
    append(&dir.join("app.jsonl"), &line("c", "2026-03-01T10:00:04Z"));
    append(&dir.join("bank.jsonl"), &line("c", "2026-03-01T10:00:05Z"));
    let third = wait_for_lines(&log, 4);
    assert!(third.contains(r#""key":"c""#), "{third}");
    // A key left waiting is not timed out by the interruption.
    append(&dir.join("app.jsonl"), &line("d", "2026-03-01T10:00:06Z"));
    std::thread::sleep(Duration::from_millis(300));
    let (code, stderr) = crate::harness::interrupt(child);
    let stderr = steady(&stderr);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(wait_for_lines(&log, 4).lines().count(), 4);
    assert!(
        stderr.starts_with("runner: stopped after 7 events in <elapsed>\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  pending    1 key, 1 event still waiting"),
        "{stderr}"
    );
}

/// Sends `request` to `addr` and returns the whole response.
pub(crate) fn http(addr: &str, request: &str) -> String {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(addr).expect("the metrics address answers");
    stream.write_all(request.as_bytes()).expect("sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

/// Where a run started with `--metrics-addr 127.0.0.1:0` serves its
/// metrics: the first line of its stderr says, since the system chose the
/// port. The rest of its stderr is left unread.
pub(crate) fn metrics_address(child: &mut std::process::Child) -> String {
    use std::io::BufRead as _;
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("piped"));
    let mut first = String::new();
    stderr.read_line(&mut first).expect("a line");
    first
        .trim()
        .strip_prefix("runner: metrics at http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("{first}"))
        .to_string()
}

/// Reads `/metrics` until it has `line`, for up to ten seconds.
fn wait_for_metric(addr: &str, line: &str) -> String {
    wait_for_page(addr, |page| page.lines().any(|l| l == line))
}

/// Reads `/metrics` until `ready` says the page is, for up to ten seconds.
pub(crate) fn wait_for_page(addr: &str, ready: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let page = http(addr, "GET /metrics HTTP/1.1\r\nHost: runner\r\n\r\n");
        if ready(&page) || start.elapsed() > Duration::from_secs(10) {
            return page;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the pipeline `metered`'s sample `name` on `page`.
fn metered(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}{{pipeline=\"metered\"}} ")))
        .and_then(|value| value.parse().ok())
}

#[cfg(unix)]
#[test]
fn a_running_pipeline_serves_its_metrics_and_health() {
    let text = pipeline(
        "    type: file\n    path: app.jsonl\n    follow: true\n    idle_timeout: 1s",
        "    type: file\n    path: bank.jsonl\n    follow: true\n    idle_timeout: 1s",
        BRIEF,
    )
    .replace("sources:", "name: metered\nsources:")
    .replace("sinks:", "checkpoint: {interval: 100ms}\nsinks:");
    let dir = project(
        "metrics",
        &[
            ("pipeline.yaml", &text),
            (
                "app.jsonl",
                &format!("{}\n", APP.lines().next().unwrap_or_default()),
            ),
            ("bank.jsonl", ""),
        ],
    );
    let mut child = crate::harness::start(&dir, &["--metrics-addr", "127.0.0.1:0"]);
    let addr = metrics_address(&mut child);

    let page = wait_for_metric(
        &addr,
        r#"runner_events_total{pipeline="metered",source="app"} 1"#,
    );
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(
        page.contains("Content-Type: text/plain; version=0.0.4"),
        "{page}"
    );
    assert!(
        page.contains("# TYPE runner_outcomes_total counter\n"),
        "{page}"
    );
    assert!(
        page.contains(r#"runner_pending_keys{pipeline="metered"} 1"#),
        "{page}"
    );
    append(
        &dir.join("bank.jsonl"),
        "{\"id\": \"a\", \"paid\": 100, \"ts\": \"2026-03-01T10:00:01Z\"}\nnot json\n",
    );
    let page = wait_for_metric(
        &addr,
        r#"runner_outcomes_total{pipeline="metered",outcome="matched"} 1"#,
    );
    for line in [
        r#"runner_events_total{pipeline="metered",source="bank"} 1"#,
        r#"runner_malformed_lines_total{pipeline="metered",source="bank"} 1"#,
        r#"runner_pending_keys{pipeline="metered"} 0"#,
        r#"runner_watermark_seconds{pipeline="metered",source="bank"} 1772359199.999"#,
    ] {
        assert!(page.lines().any(|l| l == line), "no `{line}` in {page}");
    }

    // Checkpoints are counted, timed and sized as they are taken.
    let page = wait_for_page(&addr, |page| {
        metered(page, "runner_checkpoints_total").is_some_and(|n| n >= 1.0)
    });
    let value = |name: &str| metered(&page, name).unwrap_or_else(|| panic!("no {name} in {page}"));
    assert!(value("runner_checkpoints_total") >= 1.0, "{page}");
    assert!(value("runner_checkpoint_bytes") > 0.0, "{page}");
    assert!(
        value("runner_checkpoint_duration_seconds") >= value("runner_checkpoint_pause_seconds"),
        "{page}"
    );

    let health = http(&addr, "GET /health HTTP/1.1\r\n\r\n");
    assert!(
        health.starts_with("HTTP/1.1 200 OK\r\n") && health.ends_with("\r\n\r\nok\n"),
        "{health}"
    );
    let missing = http(&addr, "GET /nothing HTTP/1.1\r\n\r\n");
    assert!(
        missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{missing}"
    );
    let posted = http(&addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(
        posted.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{posted}"
    );

    let (code, stderr) = crate::harness::interrupt(child);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_metrics_address_that_cannot_be_listened_on_stops_the_run_before_it_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("bound").to_string();
    let dir = project(
        "metrics_taken",
        &[
            (
                "pipeline.yaml",
                &pipeline(
                    "    type: file\n    path: app.jsonl",
                    "    type: file\n    path: bank.jsonl",
                    BRIEF,
                ),
            ),
            ("app.jsonl", APP),
            ("bank.jsonl", ""),
        ],
    );
    let run = run_in(&dir, &["--metrics-addr", &addr]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with(&format!("error: cannot serve metrics at {addr}: ")),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}
