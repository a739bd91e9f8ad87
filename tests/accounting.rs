//! Nothing lost, nothing counted twice: on generated data, every input line
//! ends in exactly one outcome (or is still pending), and the outcomes are
//! the ones the generator placed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use runner::config::OutcomeKind;
use serde_json::Value;

use crate::harness::{root, runner, scratch};

/// Runs `runner gen` into `dir/data` with `args`; returns what it says
/// `bill_check_files.yaml` must report, by outcome.
fn generate(dir: &Path, args: &[&str]) -> BTreeMap<String, u64> {
    let out = dir.join("data");
    let mut all = vec!["gen", "--out", out.to_str().expect("UTF-8 paths")];
    all.extend(args);
    let run = runner(&all);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let reports = run
        .stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("bill_check_files.yaml reports: "))
        .expect("gen says what the pipeline reports");
    reports
        .split(", ")
        .map(|entry| {
            let (kind, count) = entry.split_once(' ').expect("`kind count`");
            (kind.to_string(), count.parse().expect("a count"))
        })
        .collect()
}

/// An output of every kind of outcome to `sink`, a line each, as a
/// pipeline's `outputs` list holds them.
pub(crate) fn every_outcome_to(sink: &str) -> String {
    let mut outputs = String::new();
    for kind in OutcomeKind::ALL {
        let _ = writeln!(outputs, "  - {{outcome: {}, sink: {sink}}}", kind.name());
    }
    outputs
}

/// The example pipeline, reading `dir/data` (CSV files with `csv`), with
/// every outcome also written to `dir/out/all.jsonl`.
pub(crate) fn pipeline(dir: &Path, csv: bool) {
    let mut text = std::fs::read_to_string(root().join("pipelines/bill_check_files.yaml"))
        .expect("the example pipeline");
    if csv {
        text = text
            .replace("data/orders.jsonl", "data/orders.csv")
            .replace("data/payments.jsonl", "data/payments.csv");
    }
    let every = every_outcome_to("all");
    let text = text
        .replacen(
            "sinks:\n",
            "sinks:\n  all:\n    type: file\n    path: out/all.jsonl\n",
            1,
        )
        .replacen("outputs:\n", &format!("outputs:\n{every}"), 1);
    std::fs::write(dir.join("pipeline.yaml"), text).expect("written");
}

/// Input lines: every line of the two files the pipeline reads, but for
/// the header of a CSV file.
fn input_lines(dir: &Path, csv: bool) -> u64 {
    let (names, header) = if csv {
        (["orders.csv", "payments.csv"], 1)
    } else {
        (["orders.jsonl", "payments.jsonl"], 0)
    };
    names
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join("data").join(name)).expect("generated");
            text.lines().filter(|line| !line.trim().is_empty()).count() as u64 - header
        })
        .sum()
}

/// How many input lines an outcome accounts for: its records, except that
/// a resolution accounts only for the late arrivals (its other records were
/// in the timeout it resolves), and a malformed line for itself.
pub(crate) fn inputs(outcome: &Value) -> u64 {
    match outcome["outcome"].as_str() {
        Some("malformed") => 1,
        Some("resolved") => outcome["arrived"].as_array().map_or(0, Vec::len) as u64,
        _ => ["app", "platform"]
            .iter()
            .filter(|side| !outcome[**side].is_null())
            .count() as u64,
    }
}

/// Every outcome the pipeline of [`pipeline`] wrote.
pub(crate) fn outcomes(dir: &Path) -> Vec<Value> {
    let all = std::fs::read_to_string(dir.join("out/all.jsonl")).expect("written");
    all.lines()
        .map(|line| serde_json::from_str(line).expect("each outcome is JSON"))
        .collect()
}

fn check(name: &str, gen_args: &[&str]) {
    let dir = scratch(name);
    let expected = generate(&dir, gen_args);
    let csv = gen_args.windows(2).any(|pair| pair == ["--format", "csv"]);
    pipeline(&dir, csv);
    let run = runner(&[
        "--quiet",
        dir.join("pipeline.yaml").to_str().expect("UTF-8"),
    ]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let outcomes = outcomes(&dir);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for outcome in &outcomes {
        let kind = outcome["outcome"].as_str().expect("a kind").to_string();
        *counts.entry(kind).or_default() += 1;
    }
    let accounted: u64 = outcomes.iter().map(inputs).sum();
    // The run ends with its inputs, so nothing is still pending.
    assert_eq!(
        accounted,
        input_lines(&dir, csv),
        "every line in exactly one outcome: {counts:?}"
    );
    let expected: BTreeMap<String, u64> = expected
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .collect();
    assert_eq!(counts, expected, "the outcomes the generator placed");
}

#[test]
fn every_line_of_the_sample_data_is_accounted_for() {
    check("accounting_default", &[]);
}

#[test]
fn every_line_of_csv_data_is_accounted_for() {
    check(
        "accounting_csv",
        &["--format", "csv", "--seed", "3", "--malformed", "0.01"],
    );
}

#[test]
fn every_line_is_accounted_for_under_heavy_anomalies() {
    check(
        "accounting_heavy",
        &[
            "--orders",
            "4000",
            "--seed",
            "7",
            "--every",
            "500ms",
            "--missing",
            "0.1",
            "--mismatched",
            "0.1",
            "--duplicates",
            "0.1",
            "--late",
            "0.05",
            "--very-late",
            "0.05",
            "--malformed",
            "0.02",
        ],
    );
}

#[test]
fn the_sample_data_is_what_its_documented_command_writes() {
    let dir = scratch("sample_data");
    let run = runner(&["gen", "--out", dir.to_str().expect("UTF-8")]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    for name in runner::generate::DataFormat::default().files() {
        let shipped = std::fs::read(root().join("pipelines/data").join(name)).expect("shipped");
        let generated = std::fs::read(dir.join(name)).expect("generated");
        assert!(
            shipped == generated,
            "pipelines/data/{name} differs from `runner gen --out pipelines/data`"
        );
    }
}

#[test]
fn workers_reach_the_same_outcomes_as_one_matcher() {
    let dir = scratch("accounting_workers");
    let expected = generate(
        &dir,
        &["--orders", "3000", "--seed", "5", "--missing", "0.1"],
    );
    pipeline(&dir, false);
    let sorted = |workers: &str| {
        let run = runner(&[
            "--quiet",
            "--workers",
            workers,
            dir.join("pipeline.yaml").to_str().expect("UTF-8"),
        ]);
        assert_eq!(run.status, 0, "{}", run.stderr);
        let mut lines: Vec<String> = std::fs::read_to_string(dir.join("out/all.jsonl"))
            .expect("written")
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    let one = sorted("1");
    assert_eq!(
        one.len() as u64,
        expected.values().sum::<u64>(),
        "every outcome the generator placed"
    );
    for workers in ["2", "3"] {
        assert!(sorted(workers) == one, "{workers} workers differ from one");
    }
}
