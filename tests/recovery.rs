//! Checkpoints and recovery, through the binary: a run killed at random
//! points and resumed each time writes exactly what an uninterrupted run
//! writes; a damaged checkpoint falls back to the one before; a changed
//! pipeline refuses to resume unless told to start fresh; a run resumes
//! however its pipeline file is named; a followed file replaced while
//! the run was stopped is read from its top, and one that is not followed
//! refuses to resume; two runs cannot share checkpoints; runs with workers
//! resume too, on any number of workers; a followed file
//! resumes where it was; `runner state inspect` lists what is pending.
//!
//! `RUNNER_CRASH_KILLS=N` kills N times instead of 50.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[cfg(unix)]
use crate::harness::interrupt;
use crate::harness::{runner, scratch, start};

/// A bill check of generated data with every outcome written to files,
/// JSONL and CSV, checkpointing every `interval`.
fn pipeline(interval: &str) -> String {
    format!(
        r"name: recovery
sources:
  app:
    type: file
    path: data/orders.jsonl
    schema: {{order_id: string, user: string, amount: int, currency: string, created_at: timestamp}}
    event_time: created_at
    watermark_lag: 10s
  platform:
    type: file
    path: data/payments.jsonl
    schema: {{order_ref: string, paid: int, currency: string, status: string, notified_at: timestamp}}
    event_time: notified_at
    watermark_lag: 10s
connect: {{app: order_id, platform: order_ref}}
match:
  wait: 30s
  retention: 10m
  rules:
    paid_in_full: platform.paid == app.amount
    succeeded: platform.status == 'success'
sinks:
  matched: {{type: file, path: out/matched.jsonl}}
  alerts: {{type: file, path: out/alerts.csv}}
  rest: {{type: file, path: out/rest.jsonl}}
outputs:
  - {{outcome: matched, sink: matched}}
  - {{outcome: mismatched, sink: alerts}}
  - {{outcome: timed_out, sink: alerts}}
  - {{outcome: duplicate, sink: rest}}
  - {{outcome: late, sink: rest}}
  - {{outcome: resolved, sink: rest}}
  - {{outcome: malformed, sink: rest}}
checkpoint: {{interval: {interval}}}
"
    )
}

const OUTPUTS: [&str; 3] = ["matched.jsonl", "alerts.csv", "rest.jsonl"];

/// A directory with the pipeline and generated data in it.
fn project(name: &str, interval: &str, gen_args: &[&str]) -> PathBuf {
    let dir = scratch(name);
    std::fs::write(dir.join("pipeline.yaml"), pipeline(interval)).expect("written");
    let data = dir.join("data");
    let mut args = vec!["gen", "--out", data.to_str().expect("UTF-8")];
    args.extend(gen_args);
    let run = runner(&args);
    assert_eq!(run.status, 0, "{}", run.stderr);
    dir
}

fn outputs(dir: &Path) -> Vec<Vec<u8>> {
    OUTPUTS
        .iter()
        .map(|name| std::fs::read(dir.join("out").join(name)).expect("an output"))
        .collect()
}

fn run_to_end(dir: &Path, args: &[&str]) -> crate::harness::Run {
    let pipeline = dir.join("pipeline.yaml");
    let mut all = args.to_vec();
    all.push(pipeline.to_str().expect("UTF-8"));
    runner(&all)
}

/// The outputs of an uninterrupted run, which leaves no checkpoint.
fn uninterrupted(dir: &Path) -> Vec<Vec<u8>> {
    let reference = run_to_end(dir, &["--quiet"]);
    assert_eq!(reference.status, 0, "{}", reference.stderr);
    outputs(dir)
}

/// Deterministic delays, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[cfg(unix)]
#[test]
fn killed_at_random_points_and_resumed_it_writes_what_an_uninterrupted_run_writes() {
    let kills: usize = std::env::var("RUNNER_CRASH_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let dir = project(
        "recovery_kills",
        "5ms",
        &[
            "--orders",
            "30000",
            "--seed",
            "9",
            "--every",
            "200ms",
            "--malformed",
            "0.005",
        ],
    );
    let expected = uninterrupted(&dir);
    assert!(
        !dir.join(".runner").exists(),
        "a run read to its end leaves no state"
    );
    std::fs::remove_dir_all(dir.join("out")).expect("removed");

    let mut rng = Lcg(kills as u64);
    let mut killed = 0;
    while killed < kills {
        let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
            .arg(dir.join("pipeline.yaml"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runner starts");
        std::thread::sleep(Duration::from_millis(5 + rng.below(60)));
        if child.try_wait().expect("waitable").is_none() {
            child.kill().expect("killed");
            child.wait().expect("reaped");
            killed += 1;
            continue;
        }
        // Read to its end before the kill: the next run starts over.
        let output = child.wait_with_output().expect("runner ends");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
    }
    // The last kill may have come before that run's first checkpoint, after
    // one that read to its end: there is one to resume from now.
    kill_after_checkpoints(&dir, 1, &[]);
    let last = run_to_end(&dir, &[]);
    assert_eq!(last.status, 0, "{}", last.stderr);
    let resumed = last.stderr.contains("resumed    from checkpoint");
    let actual = outputs(&dir);
    for ((name, expected), actual) in OUTPUTS.iter().zip(&expected).zip(&actual) {
        assert!(
            expected == actual,
            "{name} differs after {killed} kills: {} bytes expected, {} written",
            expected.len(),
            actual.len()
        );
    }
    assert!(resumed, "the last run resumed from a checkpoint");
}

/// Runs with `args` until at least `checkpoints` checkpoints are there,
/// then kills the run, which must not have ended by then: a fast build reads these inputs
/// in tens of milliseconds, so the files are watched without a pause.
#[cfg(unix)]
fn kill_after_checkpoints(dir: &Path, checkpoints: usize, args: &[&str]) {
    let state = dir.join(".runner/pipeline");
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .arg(dir.join("pipeline.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("runner starts");
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let written = std::fs::read_dir(&state).map_or(0, |entries| {
            entries
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("checkpoint-"))
                })
                .count()
        });
        if written >= checkpoints {
            break;
        }
        std::thread::yield_now();
    }
    assert!(
        child.try_wait().expect("waitable").is_none(),
        "the run ended before {checkpoints} checkpoints were there to kill it after"
    );
    child.kill().expect("killed");
    child.wait().expect("reaped");
}

#[cfg(unix)]
#[test]
fn a_damaged_checkpoint_falls_back_to_the_one_before() {
    let dir = project(
        "recovery_damaged",
        "5ms",
        &["--orders", "20000", "--seed", "4", "--every", "200ms"],
    );
    let expected = uninterrupted(&dir);
    kill_after_checkpoints(&dir, 2, &[]);
    let state = dir.join(".runner/pipeline");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&state)
        .expect("state")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("checkpoint-"))
        })
        .collect();
    files.sort();
    let newest = files.last().expect("a checkpoint");
    let mut bytes = std::fs::read(newest).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(newest, &bytes).expect("damaged");
    let resumed = run_to_end(&dir, &[]);
    assert_eq!(resumed.status, 0, "{}", resumed.stderr);
    assert!(
        resumed
            .stderr
            .contains("(its checksum does not match: it is damaged); using the one before it"),
        "{}",
        resumed.stderr
    );
    assert!(
        resumed.stderr.contains("resumed    from checkpoint"),
        "{}",
        resumed.stderr
    );
    assert!(
        outputs(&dir) == expected,
        "the outputs differ from an uninterrupted run's"
    );
}

#[cfg(unix)]
#[test]
fn a_run_resumes_however_the_pipeline_file_is_named() {
    let dir = project(
        "recovery_named",
        "5ms",
        // A malformed line's outcome names its file as the run opened it,
        // which differs with the name the run was given: none here.
        &[
            "--orders",
            "20000",
            "--seed",
            "5",
            "--every",
            "200ms",
            "--malformed",
            "0",
        ],
    );
    let expected = uninterrupted(&dir);
    // Killed when run by its full path; resumed by its name, from its
    // directory: the checkpoint's files are the same files.
    kill_after_checkpoints(&dir, 1, &[]);
    let resumed = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("pipeline.yaml")
        .current_dir(&dir)
        .output()
        .expect("runner runs");
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("resumed    from checkpoint"), "{stderr}");
    assert!(
        outputs(&dir) == expected,
        "the outputs differ from an uninterrupted run's"
    );
}

#[cfg(unix)]
#[test]
fn a_changed_pipeline_does_not_resume_unless_told_to_start_fresh() {
    let dir = project(
        "recovery_changed",
        "5ms",
        &["--orders", "20000", "--seed", "6", "--every", "200ms"],
    );
    let expected = uninterrupted(&dir);
    kill_after_checkpoints(&dir, 1, &[]);
    let pipeline = dir.join("pipeline.yaml");
    let text = std::fs::read_to_string(&pipeline).expect("read");
    // A new sink, with a new output and its template, is compatible: the
    // run resumes, and the files come out as if it had never stopped.
    let compatible = text
        .replace(
            "  rest: {type: file, path: out/rest.jsonl}",
            "  rest: {type: file, path: out/rest.jsonl}\n  console: {type: stdout}",
        )
        .replace(
            "  - {outcome: malformed, sink: rest}",
            "  - {outcome: malformed, sink: rest}\n  - {outcome: late, sink: console, template: \"concat('late ', key)\"}",
        );
    std::fs::write(&pipeline, &compatible).expect("written");
    let resumed = run_to_end(&dir, &[]);
    assert_eq!(resumed.status, 0, "{}", resumed.stderr);
    assert!(
        resumed.stderr.contains("resumed    from checkpoint"),
        "{}",
        resumed.stderr
    );
    assert!(
        resumed
            .stdout
            .lines()
            .all(|line| line.starts_with("late A-")),
        "{}",
        resumed.stdout
    );
    assert!(
        outputs(&dir) == expected,
        "the outputs differ from an uninterrupted run's"
    );
    // A changed rule is not compatible.
    kill_after_checkpoints(&dir, 1, &[]);
    let changed = compatible.replace(
        "paid_in_full: platform.paid == app.amount",
        "paid_in_full: platform.paid >= app.amount",
    );
    std::fs::write(&pipeline, changed).expect("written");
    let refused = run_to_end(&dir, &[]);
    assert_eq!(refused.status, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(
            "the pipeline changed since it was taken (the rules: `paid_in_full: platform.paid == app.amount; \
             succeeded: platform.status == \"success\"` then, `paid_in_full: platform.paid >= app.amount; \
             succeeded: platform.status == \"success\"` now); run with --fresh to start over"
        ),
        "{}",
        refused.stderr
    );
    let fresh = run_to_end(&dir, &["--fresh"]);
    assert_eq!(fresh.status, 0, "{}", fresh.stderr);
    assert!(!fresh.stderr.contains("resumed"), "{}", fresh.stderr);
}

/// Waits, for ten seconds at most, until the file at `path` holds `needle`.
#[cfg(unix)]
fn wait_for(path: &Path, needle: &str) {
    for _ in 0..5_000 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A project whose payments file is followed: orders A-1 and A-2, and the
/// payment of A-1.
fn followed(name: &str) -> PathBuf {
    let dir = scratch(name);
    std::fs::create_dir_all(dir.join("data")).expect("made");
    std::fs::write(
        dir.join("pipeline.yaml"),
        pipeline("1h").replace(
            "path: data/payments.jsonl",
            "path: data/payments.jsonl\n    follow: true\n    idle_timeout: 1s",
        ),
    )
    .expect("written");
    std::fs::write(
        dir.join("data/orders.jsonl"),
        r#"{"order_id":"A-1","user":"u","amount":5,"currency":"EUR","created_at":"2026-11-01T10:00:00Z"}
{"order_id":"A-2","user":"u","amount":7,"currency":"EUR","created_at":"2026-11-01T10:00:05Z"}
"#,
    )
    .expect("written");
    std::fs::write(dir.join("data/payments.jsonl"), payment("A-1", 5, "02")).expect("written");
    dir
}

/// A payment's line, notified at 10:00 and `second` seconds.
fn payment(order: &str, paid: i64, second: &str) -> String {
    format!(
        "{{\"order_ref\":\"{order}\",\"paid\":{paid},\"currency\":\"EUR\",\"status\":\"success\",\
         \"notified_at\":\"2026-11-01T10:00:{second}Z\"}}\n"
    )
}

/// Resumes the pipeline in `dir` until A-2 is matched, and stops it: A-1
/// and A-2 are each matched once, across the runs.
fn resume_until_both_match(dir: &Path) {
    let child = start(dir, &[]);
    wait_for(&dir.join("out/matched.jsonl"), "A-2");
    let (_, stderr) = interrupt(child);
    assert!(stderr.contains("resumed    from checkpoint 1"), "{stderr}");
    assert_eq!(
        matched(dir),
        [
            r#"{"outcome":"matched","key":"A-1","ap"#,
            r#"{"outcome":"matched","key":"A-2","ap"#
        ],
        "each match once, across the two runs"
    );
}

/// Starts the (followed) pipeline in `dir`, which must stop at once with
/// an error (exit status 2); its standard error. Not stopping, it would
/// follow its files for ever: it is stopped, and the test fails.
fn refused(dir: &Path) -> String {
    let mut child = start(dir, &[]);
    for _ in 0..1_000 {
        if child.try_wait().expect("waits").is_some() {
            let output = child.wait_with_output().expect("ended");
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert_eq!(output.status.code(), Some(2), "{stderr}");
            return stderr;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (_, stderr) = interrupt(child);
    panic!("the run went on: {stderr}");
}

/// The keys of the matches written, in order.
fn matched(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("out/matched.jsonl"))
        .expect("written")
        .lines()
        .map(|line| line[..36].to_string())
        .collect()
}

#[cfg(unix)]
#[test]
fn state_inspect_lists_what_is_pending() {
    let dir = followed("recovery_inspect");
    let child = start(&dir, &[]);
    // Matched A-1 lands in its file: the run has read its inputs.
    wait_for(&dir.join("out/matched.jsonl"), "A-1");
    let (code, stderr) = interrupt(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("saved      1 checkpoint"), "{stderr}");
    let listing = runner(&[
        "state",
        "inspect",
        dir.join("pipeline.yaml").to_str().expect("UTF-8"),
    ]);
    assert_eq!(listing.status, 0, "{}", listing.stderr);
    let prefix = format!("{}/", dir.display());
    let text = listing.stdout.replace(&prefix, "");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("checkpoint 1, taken "), "{text}");
    assert_eq!(
        lines[1..].join("\n"),
        "  source app       data/orders.jsonl, up to line 2 (byte 188); newest event 2026-11-01T10:00:05Z
  source platform  data/payments.jsonl, up to line 1 (byte 102); newest event 2026-11-01T10:00:02Z
  watermark        2026-11-01T09:59:51.999Z
  sink matched     out/matched.jsonl, 320 bytes
  sink alerts      out/alerts.csv, 209 bytes
  sink rest        out/rest.jsonl, 0 bytes
  pending          1 key
  remembered       1 key, done within the retention
    A-2  app 2026-11-01T10:00:05Z, platform missing; deadline 2026-11-01T10:00:35Z",
        "{text}"
    );
    // Resumed, the followed file's new line completes A-2.
    let appended = payment("A-1", 5, "02") + &payment("A-2", 7, "06");
    std::fs::write(dir.join("data/payments.jsonl"), appended).expect("appended");
    resume_until_both_match(&dir);
}

#[cfg(unix)]
#[test]
fn a_followed_file_replaced_while_stopped_is_read_from_its_top() {
    let dir = followed("recovery_rotated");
    let child = start(&dir, &[]);
    wait_for(&dir.join("out/matched.jsonl"), "A-1");
    let (code, stderr) = interrupt(child);
    assert_eq!(code, Some(0), "{stderr}");
    // Rotated while the run was stopped: the file it read moved aside, and
    // a new one at its path, longer than where the run was in the old one
    // (the payment of A-2 is as long as that of A-1, so reading on from
    // there would skip it).
    let path = dir.join("data/payments.jsonl");
    std::fs::rename(&path, dir.join("data/payments.jsonl.1")).expect("rotated");
    let rotated = payment("A-2", 7, "06") + &payment("A-9", 1, "07");
    std::fs::write(&path, rotated).expect("written");
    resume_until_both_match(&dir);
}

#[cfg(unix)]
#[test]
fn an_input_rewritten_since_the_checkpoint_is_not_resumed() {
    let dir = followed("recovery_rewritten");
    // Without an idle timeout, the followed payments hold A-2 back: the
    // orders file is read up to A-1 and not to its end.
    let pipeline = dir.join("pipeline.yaml");
    let text = std::fs::read_to_string(&pipeline).expect("read");
    let text = text
        .replace("\n    idle_timeout: 1s", "")
        .replace("interval: 1h", "interval: 20ms");
    std::fs::write(&pipeline, text).expect("written");
    let mut child = start(&dir, &[]);
    let held = "  source app       data/orders.jsonl, up to line 1 (byte 94)";
    for _ in 0..1_000 {
        let listing = runner(&["state", "inspect", pipeline.to_str().expect("UTF-8")]);
        if listing.stdout.contains(held) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("killed");
    child.wait().expect("reaped");
    // Other orders in the file, as long as before.
    let orders = std::fs::read_to_string(dir.join("data/orders.jsonl")).expect("read");
    std::fs::write(dir.join("data/orders.jsonl"), orders.replace("A-", "B-")).expect("written");
    let stderr = refused(&dir);
    assert!(
        stderr.contains(
            "/data/orders.jsonl` at the checkpoint, and it begins differently now: it was \
             replaced since; run with --fresh"
        ),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn two_runs_of_a_pipeline_cannot_share_its_checkpoints() {
    let dir = followed("recovery_locked");
    let first = start(&dir, &[]);
    wait_for(&dir.join("out/matched.jsonl"), "A-1");
    let second = refused(&dir);
    assert!(
        second.contains("another run is using the checkpoints in"),
        "{second}"
    );
    let (code, stderr) = interrupt(first);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(matched(&dir), [r#"{"outcome":"matched","key":"A-1","ap"#]);
}

/// Each output's lines, sorted: what runs with workers agree on, since
/// outcomes of different keys may come out in another order.
fn sorted_lines(outputs: &[Vec<u8>]) -> Vec<Vec<String>> {
    outputs
        .iter()
        .map(|bytes| {
            let mut lines: Vec<String> = String::from_utf8_lossy(bytes)
                .lines()
                .map(str::to_string)
                .collect();
            lines.sort();
            lines
        })
        .collect()
}

#[cfg(unix)]
#[test]
fn with_workers_killed_and_resumed_on_any_number_it_loses_and_repeats_nothing() {
    let dir = project(
        "recovery_workers",
        "5ms",
        &["--orders", "30000", "--seed", "10", "--every", "200ms"],
    );
    let reference = run_to_end(&dir, &["--quiet", "--workers", "2"]);
    assert_eq!(reference.status, 0, "{}", reference.stderr);
    let expected = sorted_lines(&outputs(&dir));
    std::fs::remove_dir_all(dir.join("out")).expect("removed");
    let mut rng = Lcg(10);
    let mut killed = 0;
    // Each run on another number of workers than the last: the keys each
    // worker held are divided anew.
    let workers = ["2", "3", "1"];
    while killed < 15 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(["--workers", workers[killed % workers.len()]])
            .arg(dir.join("pipeline.yaml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("runner starts");
        std::thread::sleep(Duration::from_millis(5 + rng.below(60)));
        if let Some(status) = child.try_wait().expect("waitable") {
            assert!(
                status.success(),
                "a run resuming on other workers: {status}"
            );
            // Read to its end before the kill: start again from nothing.
            std::fs::remove_dir_all(dir.join("out")).expect("removed");
            continue;
        }
        child.kill().expect("killed");
        child.wait().expect("reaped");
        killed += 1;
    }
    // The last kill may have come before that run's first checkpoint, after
    // one that read to its end: there is one to resume from now.
    kill_after_checkpoints(&dir, 1, &["--workers", "3"]);
    // As an earlier version wrote it: naming its number of workers, which
    // then had to match.
    let store = runner::checkpoint::Store::new(dir.join(".runner/pipeline"));
    let (Some(mut earlier), _) = store.load().expect("readable") else {
        panic!("a checkpoint to resume from")
    };
    earlier.sequence += 1;
    (earlier.fingerprint).push((runner::checkpoint::WORKERS.into(), "3".into()));
    store.save(&earlier).expect("saved");
    let resumed = run_to_end(&dir, &["--workers", "2"]);
    assert_eq!(resumed.status, 0, "{}", resumed.stderr);
    assert!(
        resumed.stderr.contains("resumed    from checkpoint"),
        "{}",
        resumed.stderr
    );
    let actual = sorted_lines(&outputs(&dir));
    for ((name, expected), actual) in OUTPUTS.iter().zip(&expected).zip(&actual) {
        assert!(
            expected == actual,
            "{name} differs after {killed} kills: {} lines expected, {} written",
            expected.len(),
            actual.len()
        );
    }
}

#[test]
fn a_state_directory_that_cannot_be_made_is_an_error_before_anything_runs() {
    let dir = project("recovery_bad_state", "1s", &["--orders", "10"]);
    let file = dir.join("not-a-directory");
    std::fs::write(&file, "").expect("written");
    let run = run_to_end(&dir, &["--state-dir", file.to_str().expect("UTF-8")]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "error: the state directory for checkpoints: cannot create `{}`",
            file.display()
        )),
        "{}",
        run.stderr
    );
    assert!(!dir.join("out").exists(), "no output is started");
}

/// A sink that cannot be written (here: past the process's file size
/// limit, as a full disk would refuse it) stops the run with an error that
/// says the last checkpoint is kept; put right, the same pipeline resumes
/// from it and writes what could not be written, once.
#[cfg(target_os = "linux")]
#[test]
fn a_sink_that_cannot_be_written_stops_the_run_and_the_next_resumes_from_its_checkpoint() {
    let dir = followed("recovery_write_error");
    let text = std::fs::read_to_string(dir.join("pipeline.yaml")).expect("read");
    std::fs::write(
        dir.join("pipeline.yaml"),
        text.replace("interval: 1h", "interval: 100ms"),
    )
    .expect("written");
    // Files may grow to 2 KiB (in 512-byte blocks: checkpoints here take
    // 914 bytes); the signal that would end the process instead of failing
    // the write is ignored.
    let mut child = Command::new("sh")
        .args(["-c", "trap '' XFSZ; ulimit -f 4; exec \"$0\" \"$1\""])
        .arg(env!("CARGO_BIN_EXE_runner"))
        .arg(dir.join("pipeline.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runner starts");
    wait_for(&dir.join("out/matched.jsonl"), "A-1");
    // Checkpoints after the match.
    std::thread::sleep(Duration::from_millis(500));
    // A malformed line of 10 KB: its outcome (with the line's first 4 KB)
    // cannot be written.
    let garbage = format!("{{\"order_ref\": \"{}\n", "x".repeat(10_000));
    let appended = payment("A-1", 5, "02") + &garbage;
    std::fs::write(dir.join("data/payments.jsonl"), appended).expect("appended");
    let mut ended = None;
    for _ in 0..1_000 {
        ended = child.try_wait().expect("waits");
        if ended.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if ended.is_none() {
        let (_, stderr) = interrupt(child);
        panic!("the run went on: {stderr}");
    }
    let output = child.wait_with_output().expect("ended");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    // Told by the sink's thread, or by the checkpoint that waited on it.
    assert!(
        (stderr.contains("error: cannot write to sink `rest (")
            || stderr.contains("error: cannot write a checkpoint: cannot write to sink `rest ("))
            && stderr.contains("File too large"),
        "{stderr}"
    );
    let state = dir.join(".runner/pipeline");
    let sequence: String = stderr
        .split("runner: checkpoint ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("says which checkpoint is kept: {stderr}"))
        .to_string();
    assert!(
        stderr.contains(&format!(
            "runner: checkpoint {sequence} in `{}` is kept: run the pipeline again to resume \
             from it, reading again what came after it",
            state.display()
        )),
        "{stderr}"
    );

    // Without the limit, the same pipeline resumes and writes it, once.
    let rest = dir.join("out/rest.jsonl");
    let child = start(&dir, &[]);
    // (The failed run left the outcome's first 2 KiB: the reason is past
    // them.)
    wait_for(&rest, "\"reason\"");
    let (code, stderr) = interrupt(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("resumed    from checkpoint {sequence}")),
        "{stderr}"
    );
    let written = std::fs::read_to_string(&rest).expect("written");
    assert_eq!(written.lines().count(), 1, "{written}");
    assert!(
        written.starts_with(r#"{"outcome":"malformed","source":"platform""#),
        "{written}"
    );
    assert!(written.len() > 4_000, "{written}");
    assert_eq!(matched(&dir), [r#"{"outcome":"matched","key":"A-1","ap"#]);
}
