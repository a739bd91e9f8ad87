//! `runner validate` as CI uses it: many paths, every format, exit codes.

use std::fmt::Write as _;

use serde_json::Value as Json;

use crate::harness::{root, runner, scratch};

/// A directory with a valid pipeline, an invalid one and a warned one.
fn project(name: &str) -> String {
    let dir = scratch(name);
    let valid = std::fs::read_to_string(root().join("pipelines/bill_check.yaml")).unwrap();
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    std::fs::write(dir.join("a_valid.yaml"), &valid).unwrap();
    std::fs::write(
        dir.join("nested/b_invalid.yml"),
        valid.replace("event_time: ts", "event_time: tss"),
    )
    .unwrap();
    std::fs::write(
        dir.join("c_warned.yaml"),
        valid.replace("app: 5s ", "app: 0s "),
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not a pipeline").unwrap();
    dir.to_str().unwrap().to_string()
}

#[test]
fn a_directory_is_every_yaml_file_below_it() {
    let dir = project("validate_dir");
    let run = runner(&["validate", &dir]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert_eq!(
        run.stdout
            .matches("error[E201]: unknown name `tss`")
            .count(),
        2,
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("nested/b_invalid.yml:20:17"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("warning[W001]: `app` waits 0s"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("notes.txt"));
    assert!(
        run.stdout
            .ends_with("checked 3 files: 1 invalid (2 errors, 1 warning)\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn quoted_patterns_are_expanded() {
    let dir = project("validate_glob");
    let run = runner(&[
        "validate",
        &format!("{dir}/*_valid.yaml"),
        &format!("{dir}/c_*.yaml"),
    ]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert!(
        run.stdout
            .ends_with("checked 2 files: all valid, with 1 warning\n"),
        "{}",
        run.stdout
    );
    let run = runner(&["validate", "--deny-warnings", &format!("{dir}/**/*.y*ml")]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(
        run.stdout
            .ends_with("checked 3 files: 2 invalid (2 errors, 1 warning, denied)\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn every_example_pipeline_is_valid() {
    let run = runner(&["validate", "--deny-warnings", "pipelines/"]);
    let pipelines: usize = ["pipelines", "pipelines/kafka"]
        .iter()
        .map(|dir| {
            std::fs::read_dir(root().join(dir))
                .expect("the examples' directory is readable")
                .filter(|entry| {
                    entry
                        .as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|ext| ext == "yaml"))
                })
                .count()
        })
        .sum();
    assert_eq!(
        (run.status, run.stdout),
        (0, format!("checked {pipelines} files: all valid\n"))
    );
}

#[test]
fn json_reports_every_file_in_one_document() {
    let dir = project("validate_json");
    let run = runner(&["validate", "--format", "json", &dir]);
    assert_eq!(run.status, 1);
    let report: Json = serde_json::from_str(&run.stdout).expect("one JSON document");
    assert_eq!(report["version"], 1);
    assert_eq!(
        (
            report["valid"].as_bool(),
            report["errors"].as_u64(),
            report["warnings"].as_u64()
        ),
        (Some(false), Some(2), Some(1))
    );
    let files = report["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    assert_eq!(files[0]["valid"], true);
    assert_eq!(files[0]["diagnostics"].as_array().unwrap().len(), 0);
    let finding = &files[2]["diagnostics"][0];
    assert!(
        files[2]["path"]
            .as_str()
            .unwrap()
            .ends_with("nested/b_invalid.yml")
    );
    assert_eq!(
        (finding["code"].as_str(), finding["severity"].as_str()),
        (Some("E201"), Some("error"))
    );
    assert_eq!(finding["location"]["line"], 20);
    assert_eq!(finding["location"]["column"], 17);
    assert_eq!(finding["location"]["end_column"], 20);
    assert_eq!(finding["help"], "did you mean `ts`?");
}

#[test]
fn usage_and_io_errors_exit_2() {
    let run = runner(&["validate", "pipelines/nope.yaml"]);
    assert_eq!(run.status, 2);
    assert_eq!(run.stderr, "error: `pipelines/nope.yaml` does not exist\n");
    let run = runner(&["validate", "pipelines/*.json"]);
    assert_eq!(
        (run.status, run.stderr.as_str()),
        (2, "error: no files match `pipelines/*.json`\n")
    );
    let empty = scratch("validate_empty");
    let run = runner(&["validate", empty.to_str().unwrap()]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr
            .contains("no pipeline files (`*.yaml`, `*.yml`) under"),
        "{}",
        run.stderr
    );
    let run = runner(&["validate", "--format", "xml", "pipelines/"]);
    assert_eq!(run.status, 2);
}

#[test]
fn run_prints_warnings_and_runs() {
    let dir = project("run_warned");
    let run = runner(&[&format!("{dir}/c_warned.yaml")]);
    assert_eq!(run.status, 0);
    assert!(run.stderr.contains("warning[W001]"), "{}", run.stderr);
    // What the warning warns of: with no wait, the app's events time out
    // before their notifications arrive.
    assert!(
        run.stdout
            .starts_with("对账失败:(order-1,app,1000) 第三方支付平台信息未到\n"),
        "{}",
        run.stdout
    );
}

/// `runner validate` on a terminal: `script` (util-linux, on every Debian)
/// gives it one.
fn on_a_terminal(no_color: &str) -> String {
    let command = format!(
        "NO_COLOR={no_color} {} validate tests/cases/validate/unknown_field.yaml",
        env!("CARGO_BIN_EXE_runner")
    );
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(root())
        .output()
        .expect("script runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn colour_on_a_terminal_unless_no_color() {
    assert!(
        on_a_terminal("").contains("\u{1b}[1m\u{1b}[91merror[E201]"),
        "{}",
        on_a_terminal("")
    );
    let plain = on_a_terminal("1");
    assert!(plain.contains("error[E201]: unknown name `tss`"), "{plain}");
    assert!(!plain.contains('\u{1b}'), "{plain}");
}

/// A pipeline connecting `count` inline sources, each with one record of
/// key `k`, and every outcome to standard output.
fn many_sides(count: usize) -> String {
    let mut yaml = String::from("sources:\n");
    for n in 0..count {
        let _ = write!(
            yaml,
            "  s{n}:\n    type: inline\n    schema: {{ id: string, ts: int }}\n    \
             event_time: ts\n    watermark_lag: 0s\n    records:\n      - {{ id: k, ts: {n} }}\n"
        );
    }
    yaml.push_str("connect:\n");
    for n in 0..count {
        let _ = writeln!(yaml, "  s{n}: id");
    }
    yaml.push_str(
        "match:\n  wait: 5s\nsinks:\n  out: { type: stdout }\noutputs:\n  \
         - outcome: matched\n    sink: out\n    template: concat(\"matched \", key)\n  \
         - outcome: timed_out\n    sink: out\n    template: concat(\"timed out \", key)\n",
    );
    yaml
}

#[test]
fn a_match_connects_at_most_256_sources() {
    let dir = scratch("many_sides");
    let most = dir.join("most.yaml");
    std::fs::write(&most, many_sides(256)).unwrap();
    // The last side's event completes the group.
    let run = runner(&[most.to_str().unwrap()]);
    assert_eq!(
        (run.status, run.stdout.as_str()),
        (0, "matched k\n"),
        "{}",
        run.stderr
    );

    let over = dir.join("over.yaml");
    let yaml = many_sides(257);
    // Pointed at the first source too many.
    let line = yaml.lines().position(|l| l == "  s256: id").unwrap() + 1;
    std::fs::write(&over, yaml).unwrap();
    let run = runner(&["validate", over.to_str().unwrap()]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("error[E305]: `connect` names 257 sources; a match takes at most 256\n")
            && run
                .stdout
                .contains(&format!("--> {}:{line}:3\n", over.display())),
        "{}",
        run.stdout
    );
}
