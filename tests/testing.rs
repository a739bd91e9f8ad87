//! `runner test`: a pipeline's own test cases through the real runtime.

use crate::harness::{root, runner, scratch};

#[test]
fn every_example_pipeline_passes_its_tests() {
    let run = runner(&["test", "pipelines/"]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert!(run.stdout.contains(
        "test pipelines/bill_check.yaml › the reference records give the reference result ... ok"
    ));
    // Below the top level too, and without the brokers a Kafka pipeline
    // reads from.
    assert!(run.stdout.contains(
        "test pipelines/kafka/bill_check.yaml › a payment for the amount ordered matches ... ok"
    ));
    assert!(
        run.stdout
            .ends_with("test result: ok. 16 passed; 0 failed\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_failing_case_shows_where_and_what_differs() {
    let dir = scratch("test_failing");
    let path = dir.join("bill_check.yaml");
    let text = std::fs::read_to_string(root().join("pipelines/bill_check.yaml")).unwrap();
    let broken = text
        .replace(
            "      - { outcome: matched, key: order-7 }",
            "      - { outcome: matched, key: order-77 }",
        )
        .replace(
            "(order-3,third-party,success,4000)\"",
            "(order-3,third-party,succes,4000)\"",
        );
    std::fs::write(&path, broken).unwrap();
    let run = runner(&["test", path.to_str().unwrap()]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    let failures = run
        .stdout
        .split("failures:")
        .nth(1)
        .expect("a failures section");
    assert!(
        failures.contains("bill_check.yaml:76:11: the reference records give the reference result"),
        "{failures}"
    );
    assert!(
        failures.contains(
            "lines of `console` expected (-) and actual (+):\n  \
         对账成功:(order-1,app,1000) (order-1,third-party,success,3000)\n\
         - 对账成功:(order-3,app,3500) (order-3,third-party,succes,4000)\n\
         + 对账成功:(order-3,app,3500) (order-3,third-party,success,4000)\n"
        ),
        "{failures}"
    );
    assert!(failures.contains(
        "outcomes expected (-) and actual (+):\n- {outcome: matched, key: order-77}\n+ {outcome: matched, key: order-7}\n"
    ), "{failures}");
    assert!(
        run.stdout
            .ends_with("test result: FAILED. 3 passed; 2 failed\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_timeout_expectation_compares_only_what_it_names() {
    let dir = scratch("test_partial");
    let path = dir.join("p.yaml");
    let text = std::fs::read_to_string(root().join("pipelines/bill_check.yaml")).unwrap();
    // Leaving out `expired` and `missing` still passes; a wrong `missing` fails.
    let loose = text.replace(
        "      - { outcome: timed_out, key: order-9, expired: app, missing: [third_party] }",
        "      - { outcome: timed_out, key: order-9 }",
    );
    std::fs::write(&path, &loose).unwrap();
    assert_eq!(runner(&["test", path.to_str().unwrap()]).status, 0);
    let wrong = text.replace(
        "key: order-9, expired: app, missing: [third_party]",
        "key: order-9, expired: app, missing: [app]",
    );
    std::fs::write(&path, wrong).unwrap();
    let run = runner(&["test", path.to_str().unwrap()]);
    assert_eq!(run.status, 1);
    assert!(
        run.stdout.contains(
            "- {outcome: timed_out, key: order-9, expired: app, missing: [app]}\n\
         + {outcome: timed_out, key: order-9, expired: app, missing: [third_party]}\n"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn an_invalid_pipeline_does_not_run_its_tests() {
    let dir = scratch("test_invalid");
    let path = dir.join("p.yaml");
    let text = std::fs::read_to_string(root().join("pipelines/bill_check.yaml")).unwrap();
    std::fs::write(&path, text.replace("event_time: ts", "event_time: tss")).unwrap();
    let run = runner(&["test", path.to_str().unwrap()]);
    assert_eq!(run.status, 1);
    assert!(
        run.stdout.contains("error[E201]: unknown name `tss`"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("has 2 errors: its tests cannot run"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .ends_with("test result: FAILED. 0 passed; 0 failed; 1 invalid pipeline\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn no_tests_at_all_is_a_failure() {
    let dir = scratch("test_none");
    let path = dir.join("p.yaml");
    let text = std::fs::read_to_string(root().join("pipelines/bill_check.yaml")).unwrap();
    let without = &text[..text.find("\n# `runner test").unwrap()];
    std::fs::write(&path, without).unwrap();
    let run = runner(&["test", path.to_str().unwrap()]);
    assert_eq!(run.status, 1);
    assert!(
        run.stdout.contains("1 pipeline without tests"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("error: no test cases found"),
        "{}",
        run.stdout
    );
}

#[test]
fn an_expression_failing_in_a_case_fails_the_case_with_its_location() {
    let dir = scratch("test_eval");
    let path = dir.join("p.yaml");
    let text = std::fs::read_to_string(root().join("pipelines/bill_check.yaml")).unwrap();
    let failing = text.replacen(
        "event_time: ts          # milliseconds since the epoch",
        "event_time: 1000 / (ts - ts)",
        1,
    );
    std::fs::write(&path, failing).unwrap();
    let run = runner(&["test", path.to_str().unwrap()]);
    assert_eq!(run.status, 1);
    assert!(
        run.stdout.contains(
            "error[E401]: cannot evaluate the `event_time` of `app` for a record: division by zero"
        ),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("on this record"), "{}", run.stdout);
}
