//! Every example pipeline runs through the binary and prints exactly its
//! documented output; `explain` prints its documented graph.

use std::path::Path;

use crate::harness::{compare, runner};

/// The reference job's result, in its order (flink-bill-check.md).
const REFERENCE: &str = "\
对账成功:(order-1,app,1000) (order-1,third-party,success,3000)
对账成功:(order-3,app,3500) (order-3,third-party,success,4000)
对账失败:(order-2,app,2000) 第三方支付平台信息未到
";

#[test]
fn bill_check_reproduces_the_reference_job() {
    let run = runner(&["pipelines/bill_check.yaml"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(run.stdout, REFERENCE);
    assert_eq!(
        run.stderr,
        "runner: 5 events in <elapsed>\n  \
           read       app 3 events; third_party 2 events\n  \
           outcomes   matched 2, timed_out 1\n  \
           pending    0 keys (at most 2 at once)\n  \
           watermark  1970-01-01T00:00:03.999Z\n  \
           memory     <memory>\n",
        "the summary goes to stderr"
    );
    let quiet = runner(&["--quiet", "pipelines/bill_check.yaml"]);
    assert_eq!(
        (quiet.stdout.as_str(), quiet.stderr.as_str()),
        (REFERENCE, "")
    );
}

#[test]
fn bill_check_is_the_same_on_every_run() {
    for _ in 0..5 {
        assert_eq!(
            runner(&["run", "pipelines/bill_check.yaml"]).stdout,
            REFERENCE
        );
    }
}

#[test]
fn every_example_pipeline_matches_its_golden_output() {
    let mut failures = Vec::new();
    let mut pipelines: Vec<_> = std::fs::read_dir(crate::harness::root().join("pipelines"))
        .expect("pipelines/ is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    pipelines.sort();
    assert!(pipelines.len() >= 2, "the example pipelines are missing");
    for path in pipelines {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 names");
        let file = format!("pipelines/{name}.yaml");
        for (args, extension) in [
            (vec![file.as_str()], "stdout"),
            (vec!["explain", file.as_str()], "explain"),
        ] {
            let run = runner(&args);
            let summary_only = run.stderr.is_empty() || run.stderr.starts_with("runner: ");
            if run.status != 0 || !summary_only {
                failures.push(format!(
                    "{args:?} failed with {}:\n{}",
                    run.status, run.stderr
                ));
                continue;
            }
            let golden = format!("tests/golden/{name}.{extension}");
            if let Err(problem) = compare(Path::new(&golden), &run.stdout) {
                failures.push(problem);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
