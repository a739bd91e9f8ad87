//! The state topic (`checkpoint: {state_topic: ...}`), through the binary
//! against librdkafka's mock cluster: processes that share no state
//! directory take partitions over from one another through it.

use std::path::Path;
use std::process::Child;

use crate::harness::{runner, scratch};
use crate::kafka_instances::{
    Running, add_transactional_sink, dealt, every_key, matched_keys, partition_of,
    pipeline_reading, produce, read_to_end, refusal, run_briefly, spawn, stop, topics, wait_until,
};

/// The mock cluster of `topics()`, with the topics `alerts` (for the
/// transactional sink) and `state` of `state_partitions` partitions.
fn with_topics(
    state_partitions: i32,
) -> rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = topics();
    cluster.create_topic("alerts", 1, 1).expect("a topic");
    (cluster.create_topic("state", state_partitions, 1)).expect("a topic");
    cluster
}

/// A pipeline over the mock cluster `brokers` in `dir` whose checkpoints
/// (every 300 ms) keep every partition's state in the topic `state` too,
/// with its sources' `extra`.
fn with_state_topic(dir: &Path, brokers: &str, extra: &str) {
    pipeline_reading(dir, brokers, extra);
    add_transactional_sink(
        dir,
        brokers,
        "interval: 300ms, state_topic: state, ",
        ", properties: {transactional.id: tx}",
    );
}

/// A mock cluster of `with_topics(state_partitions)` and, in the scratch
/// directory `name`, a pipeline over it keeping its state in the topic
/// `state`, with orders `k0` to `k15` sent: gives the cluster (to keep
/// while it is used), its brokers and the directory.
fn orders_sent(
    name: &str,
    state_partitions: i32,
) -> (
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    String,
    std::path::PathBuf,
) {
    let cluster = with_topics(state_partitions);
    let brokers = cluster.bootstrap_servers();
    let dir = scratch(name);
    with_state_topic(&dir, &brokers, "");
    send(&brokers, "orders", 0);
    (cluster, brokers, dir)
}

/// 16 events of `topic`, keys `k0` to `k15`, at `second`.
fn send(brokers: &str, topic: &str, second: u32) {
    let lines: Vec<String> = (0..16)
        .map(|n| format!(r#"{{"id":"k{n}","ts":"2026-11-02T12:00:0{second}Z"}}"#))
        .collect();
    produce(
        brokers,
        topic,
        "id",
        &lines.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

/// A process alone on a state directory no process used before (another
/// machine's) takes every partition's offsets and pending keys from the
/// state topic, and matches them; the topic having fewer partitions than
/// the sources' topics is worth a warning.
#[test]
fn a_process_on_a_new_state_directory_takes_its_partitions_from_the_state_topic() {
    let (_cluster, brokers, dir) = orders_sent("kafka_state_topic_alone", 3);
    let first = dir.join("first");
    run_briefly(&dir, &["--state-dir", first.to_str().expect("UTF-8")]);
    assert!(matched_keys(&dir).is_empty());
    send(&brokers, "payments", 1);
    let second = dir.join("second");
    let stderr = run_briefly(&dir, &["--state-dir", second.to_str().expect("UTF-8")]);
    assert!(
        stderr.contains("8 partitions of them from the state topic: 16 keys pending"),
        "{stderr}"
    );
    // Snapshots of partitions 0, 3 and 6 share the topic's partition 0.
    assert!(
        stderr.contains(
            "warning: the state topic `state` has 3 partitions, fewer than the 8 of each \
             source's topic"
        ),
        "{stderr}"
    );
    assert_eq!(matched_keys(&dir), every_key(), "{stderr}");
    // The first directory's checkpoint is older than the topic's now: a
    // run on it takes the partitions from the topic, and matches nothing
    // again.
    let stderr = run_briefly(&dir, &["--state-dir", first.to_str().expect("UTF-8")]);
    assert!(
        stderr.contains("of them from the state topic: 0 keys pending"),
        "{stderr}"
    );
    assert_eq!(matched_keys(&dir), every_key(), "{stderr}");
}

/// Starts a process of the group in `dir` on a state directory of its own,
/// `state`, logging to `log`; with metrics, to tell when it read to the
/// end.
fn member_on(dir: &Path, state: &str, log: &'static str) -> (Child, &'static str) {
    let state = dir.join(state);
    let args = [
        "--log",
        "text",
        "--metrics-addr",
        "127.0.0.1:0",
        "--join",
        "--state-dir",
        state.to_str().expect("UTF-8"),
    ];
    (spawn(dir, &args, log), log)
}

/// Two processes of a group, each on a state directory of its own: the
/// one that joins second takes the keys pending in the partitions the
/// group deals it from the state topic, the other keeps its own; the
/// payments that come next match every order once.
#[test]
fn processes_of_a_group_on_state_directories_of_their_own_move_partitions_through_the_topic() {
    let cluster = with_topics(8);
    let brokers = cluster.bootstrap_servers();
    let dir = scratch("kafka_state_topic_group");
    with_state_topic(
        &dir,
        &brokers,
        "    idle_timeout: 1s\n    properties: {session.timeout.ms: 3000, heartbeat.interval.ms: \
         500}\n",
    );
    send(&brokers, "orders", 0);
    let mut running = Running(vec![member_on(&dir, "state-a", "a.log")]);
    wait_until("the group to deal every partition", &dir, || {
        dealt(&dir, "a.log").as_deref() == Some("partitions-0-7-of-8")
    });
    read_to_end(&dir, "a.log", &mut running.0[0].0);
    running.0.push(member_on(&dir, "state-b", "b.log"));
    wait_until("the group to deal the partitions over two", &dir, || {
        let mut held: Vec<String> = ["a.log", "b.log"]
            .iter()
            .filter_map(|log| dealt(&dir, log))
            .collect();
        held.sort();
        held == ["partitions-0-3-of-8", "partitions-4-7-of-8"]
            && std::fs::read_to_string(dir.join("b.log"))
                .is_ok_and(|log| log.contains("from_state_topic=4"))
    });
    let range = dealt(&dir, "b.log").expect("dealt");
    send(&brokers, "payments", 1);
    wait_until("every match", &dir, || {
        matched_keys(&dir).len() >= every_key().len()
    });
    let mut logs = String::new();
    for (child, log) in running.0.drain(..) {
        let (status, stderr) = stop(child, &dir, log);
        assert_eq!(status, Some(0), "{stderr}");
        logs.push_str(&stderr);
    }
    assert_eq!(matched_keys(&dir), every_key(), "{logs}");
    let b = std::fs::read_to_string(dir.join("b.log")).expect("its log");
    let first = if range == "partitions-0-3-of-8" { 0 } else { 4 };
    let pending = (0..16)
        .filter(|n| (first..first + 4).contains(&partition_of(&format!("k{n}"))))
        .count();
    assert!(
        b.contains(&format!(
            "4 partitions of them from the state topic: {pending} keys pending"
        )),
        "{pending} keys of {range}: {b}"
    );
}

/// A state topic needs a name, transactions, and sources that all read
/// Kafka: refused, pointed at, otherwise.
#[test]
fn a_state_topic_without_what_it_needs_is_refused() {
    let dir = scratch("kafka_state_topic_refused");
    pipeline_reading(&dir, "127.0.0.1:9", "");
    let path = dir.join("pipeline.yaml");
    let text = std::fs::read_to_string(&path).expect("written");
    for (name, text, problem) in [
        (
            "unnamed.yaml",
            text.replace(
                "sinks:\n",
                "checkpoint: {transactions: true, state_topic: \"\"}\nsinks:\n  alerts: {type: \
                 kafka, brokers: 127.0.0.1:9, topic: alerts}\n",
            ),
            "a state topic needs a name",
        ),
        (
            "untransacted.yaml",
            text.replace("sinks:\n", "checkpoint: {state_topic: state}\nsinks:\n"),
            "the state topic is written in the checkpoints' Kafka transactions, which are off",
        ),
        (
            "file.yaml",
            text.replacen(
                "    type: kafka\n    brokers: 127.0.0.1:9\n    topic: orders\n    group: g\n",
                "    type: file\n    path: orders.jsonl\n",
                1,
            )
            .replace(
                "sinks:\n",
                "checkpoint: {transactions: true, state_topic: state}\nsinks:\n  alerts: {type: \
                 kafka, brokers: 127.0.0.1:9, topic: alerts}\n",
            ),
            "state kept in a Kafka topic is kept by partition, and source `app` does not read \
             Kafka",
        ),
        (
            "file_without_kafka_sink.yaml",
            text.replacen(
                "    type: kafka\n    brokers: 127.0.0.1:9\n    topic: orders\n    group: g\n",
                "    type: file\n    path: orders.jsonl\n",
                1,
            )
            .replace(
                "sinks:\n",
                "checkpoint: {transactions: true, state_topic: state}\nsinks:\n",
            ),
            "state kept in a Kafka topic is kept by partition, and source `app` does not read \
             Kafka",
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("written");
        let run = runner(&["validate", path.to_str().expect("UTF-8")]);
        assert_eq!(run.status, 1, "{name}: {}", run.stderr);
        let said = format!("{}{}", run.stdout, run.stderr);
        assert!(
            said.contains(&format!("error[E311]: {problem}")) && said.contains("state_topic"),
            "{name}: {said}"
        );
    }
}

/// Orders of 1,000-byte ids in the mock cluster's topics (of
/// [`with_topics`]), with a pipeline keeping its state in the topic
/// `state`, a checkpoint every 2 seconds; gives the directory.
fn large_state(
    cluster: &rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    name: &str,
    orders: usize,
) -> std::path::PathBuf {
    let brokers = cluster.bootstrap_servers();
    let dir = scratch(name);
    // The orders wait for no payments, the other source idle.
    pipeline_reading(&dir, &brokers, "    idle_timeout: 1s\n");
    add_transactional_sink(
        &dir,
        &brokers,
        "interval: 2s, state_topic: state, ",
        ", properties: {transactional.id: tx}",
    );
    let padding = "x".repeat(1_000);
    let lines: Vec<String> = (0..orders)
        .map(|n| format!(r#"{{"id":"{padding}{n}","ts":"2026-11-02T12:00:00Z"}}"#))
        .collect();
    produce(
        &brokers,
        "orders",
        "id",
        &lines.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let first = dir.join("first");
    run_briefly(&dir, &["--state-dir", first.to_str().expect("UTF-8")]);
    dir
}

/// A partition's state larger than a record may be is written in chunks,
/// and read back whole: 3,000 orders pending, about 750 kB per partition
/// (over 8 partitions of the state topic: librdkafka's mock cluster keeps
/// about 5 MB per partition).
#[test]
fn a_partition_state_larger_than_a_record_is_taken_whole() {
    let cluster = with_topics(8);
    let dir = large_state(&cluster, "kafka_state_topic_chunks", 3_000);
    let second = dir.join("second");
    let stderr = run_briefly(&dir, &["--state-dir", second.to_str().expect("UTF-8")]);
    assert!(
        stderr.contains("8 partitions of them from the state topic: 3000 keys pending"),
        "{stderr}"
    );
}

/// A snapshot that committed but whose records are gone (a topic deleted
/// by retention rather than compacted; here librdkafka's mock cluster,
/// which keeps about 5 MB per partition, drops the oldest of 12 MB) is
/// not passed over, which would lose its keys: the run refuses to start.
#[test]
fn a_snapshot_whose_records_are_gone_is_refused() {
    let cluster = with_topics(1);
    let dir = large_state(&cluster, "kafka_state_topic_gone", 6_000);
    let second = dir.join("second");
    let stderr = refusal(&dir, &["--state-dir", second.to_str().expect("UTF-8")]);
    assert!(
        stderr.contains("committed, but") && stderr.contains("records are gone"),
        "{stderr}"
    );
}

/// A run that reads its bounded sources to their end has nothing to
/// resume, and deletes its partitions' snapshots with its last
/// transaction: a run on another state directory takes nothing from the
/// topic, and numbers its checkpoints after the deletion, so that a run
/// after it takes its snapshots.
#[test]
fn a_run_read_to_its_end_leaves_no_snapshot_to_take() {
    let cluster = with_topics(8);
    let brokers = cluster.bootstrap_servers();
    let dir = scratch("kafka_state_topic_ended");
    with_state_topic(&dir, &brokers, "");
    let path = dir.join("pipeline.yaml");
    let unbounded = std::fs::read_to_string(&path).expect("written");
    // Bounded, and no checkpoint before its end: it deletes the snapshots
    // of the partitions it read, not only of those it wrote.
    let bounded = (unbounded.replace(
        "    format: jsonl\n",
        "    format: jsonl\n    bounded: true\n",
    ))
    .replace("interval: 300ms", "interval: 1h");
    let state = |name: &str| dir.join(name).to_str().expect("UTF-8").to_string();
    send(&brokers, "orders", 0);
    // Snapshots of the orders pending; then read to the end, from them.
    run_briefly(&dir, &["--state-dir", &state("first")]);
    let numbers = crate::kafka::checkpoint_numbers(&dir.join("first"));
    let last = numbers.iter().copied().max().expect("a checkpoint");
    std::fs::write(&path, &bounded).expect("written");
    let run = crate::harness::run_in(&dir, &["--state-dir", &state("first")]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stderr.contains("timed_out 16"), "{}", run.stderr);
    // Nothing to take.
    std::fs::write(&path, &unbounded).expect("written");
    send(&brokers, "orders", 1);
    let stderr = run_briefly(&dir, &["--state-dir", &state("second")]);
    assert!(
        stderr.contains("state topic read topic=state partitions=[]")
            && !stderr.contains("from the state topic"),
        "{stderr}"
    );
    // Numbered after the last run's end, whose transaction deleted the
    // snapshots.
    let first_saved: i64 = (stderr.split("checkpoint saved sequence=").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("a checkpoint saved");
    assert_eq!(first_saved, last + 2, "{stderr}");
    // The orders pending there are taken from the topic.
    let stderr = run_briefly(&dir, &["--state-dir", &state("third")]);
    assert!(
        stderr.contains("8 partitions of them from the state topic: 16 keys pending"),
        "{stderr}"
    );
}

/// Processes by number (`--instance 1/2`, `2/2`), each on a state
/// directory of its own, leave orders pending; a process alone on a new
/// state directory takes every partition from the state topic, fencing
/// off both processes' transactional ids, and matches the orders.
#[test]
fn a_process_alone_takes_over_from_processes_by_number_through_the_state_topic() {
    let (_cluster, brokers, dir) = orders_sent("kafka_state_topic_numbered", 8);
    for which in ["1/2", "2/2"] {
        let state = dir.join(format!("state-{}", which.replace('/', "-of-")));
        let stderr = run_briefly(
            &dir,
            &[
                "--instance",
                which,
                "--state-dir",
                state.to_str().expect("UTF-8"),
            ],
        );
        assert!(stderr.contains("pending"), "{stderr}");
    }
    assert!(matched_keys(&dir).is_empty());
    send(&brokers, "payments", 1);
    let alone = dir.join("state-alone");
    let stderr = run_briefly(&dir, &["--state-dir", alone.to_str().expect("UTF-8")]);
    assert!(
        stderr.contains("took over  its partitions from the checkpoints of 2 processes (newest")
            && stderr.contains("8 partitions of them from the state topic: 16 keys pending"),
        "{stderr}"
    );
    for id in ["tx-1-of-2", "tx-2-of-2"] {
        assert!(
            stderr.contains(&format!(
                "kafka transactions of another process fenced off id={id}"
            )),
            "{stderr}"
        );
    }
    assert_eq!(matched_keys(&dir), every_key(), "{stderr}");
}

/// A run asks the brokers whether its state topic is compacted (without
/// waiting for the answer): one whose `cleanup.policy` is `delete`, which
/// grows with every checkpoint and loses snapshots to retention, is worth
/// a warning; one compacted is not. Against a broker process: librdkafka's
/// mock cluster cannot describe a topic's settings.
#[test]
fn against_a_broker_process_a_state_topic_not_compacted_is_warned_of() {
    let broker = crate::kafka::Broker::start();
    for topic in ["orders", "payments"] {
        broker.create_topic(topic, 2);
    }
    broker.create_topic("alerts", 1);
    broker.create_topic_with("deleted", 1, &["cleanup.policy=delete"]);
    broker.create_topic_with("compacted", 1, &["cleanup.policy=compact"]);
    let dir = scratch("kafka_state_topic_policy");
    for (topic, warned) in [("deleted", true), ("compacted", false)] {
        pipeline_reading(&dir, &broker.brokers, "");
        let checkpoint = format!("state_topic: {topic}, ");
        add_transactional_sink(&dir, &broker.brokers, &checkpoint, "");
        let run = spawn(&dir, &["--log", "text", "--fresh"], "policy.log");
        let mut running = Running(vec![(run, "policy.log")]);
        wait_until("the state topic's cleanup policy", &dir, || {
            let log = std::fs::read_to_string(dir.join("policy.log")).unwrap_or_default();
            log.contains("state topic cleanup policy")
        });
        let (run, _) = running.0.remove(0);
        let (status, stderr) = stop(run, &dir, "policy.log");
        assert_eq!(status, Some(0), "{stderr}");
        let warning = format!(
            "warning: the state topic `{topic}` has cleanup.policy=delete: it should be \
             compacted alone (cleanup.policy=compact)"
        );
        assert_eq!(stderr.contains(&warning), warned, "{stderr}");
        assert!(
            stderr.contains(&format!(
                "policy={}",
                if warned { "delete" } else { "compact" }
            )),
            "{stderr}"
        );
    }
}

/// `runner state inspect` of a pipeline with a state topic lists, after
/// what its state directory holds (nothing here: another machine's), each
/// partition's newest snapshot on the topic with its offsets and pending
/// keys: what a process taking the partition over resumes from. It only
/// looks: the process that wrote them is not fenced off.
#[test]
fn state_inspect_lists_each_partition_snapshot_on_the_state_topic() {
    let (_cluster, brokers, dir) = orders_sent("kafka_state_topic_inspect", 8);
    let first = dir.join("first");
    run_briefly(&dir, &["--state-dir", first.to_str().expect("UTF-8")]);
    let elsewhere = dir.join("elsewhere");
    let pipeline = dir.join("pipeline.yaml");
    let listed = runner(&[
        "state",
        "inspect",
        "--state-dir",
        elsewhere.to_str().expect("UTF-8"),
        pipeline.to_str().expect("UTF-8"),
    ]);
    assert_eq!(listed.status, 0, "{}", listed.stderr);
    let out = &listed.stdout;
    assert!(out.starts_with("no checkpoint in `"), "{out}");
    let mut section = None;
    let mut keys = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("partition ") {
            let (number, rest) = rest.split_once(' ').expect("a header");
            assert!(
                rest.starts_with(
                    "on the state topic `state`, written by a process alone: checkpoint "
                ),
                "{line}"
            );
            section = Some(number.parse::<i32>().expect("a partition"));
        } else if let Some(rest) = line.strip_prefix("    k") {
            let key = format!("k{}", rest.split(' ').next().expect("a key"));
            let place = format!(
                "(partition {})  app 2026-11-02T12:00:00",
                partition_of(&key)
            );
            assert!(rest.contains(&place), "{line}");
            assert_eq!(
                section,
                Some(partition_of(&key)),
                "{line} under another partition"
            );
            keys.push(key);
        }
    }
    assert_eq!(section, Some(7), "{out}");
    keys.sort();
    let mut every: Vec<String> = (0..16).map(|n| format!("k{n}")).collect();
    every.sort();
    assert_eq!(keys, every, "{out}");
    assert!(
        (out.lines())
            .any(|line| line.starts_with("  source app ")
                && line.contains(" partition 5 at offset ")),
        "{out}"
    );
    // The process that wrote them was not fenced off: it resumes from its
    // own directory and matches what comes.
    send(&brokers, "payments", 1);
    let stderr = run_briefly(&dir, &["--state-dir", first.to_str().expect("UTF-8")]);
    assert_eq!(matched_keys(&dir), every_key(), "{stderr}");
}

/// Without a Kafka sink, the checkpoints' transactions hold the state
/// topic's snapshots and the sources' offsets alone, on the sources'
/// cluster: a process on a new state directory takes the pending orders
/// from the topic and matches them into its files.
#[test]
fn without_a_kafka_sink_the_state_topic_is_written_on_the_sources_cluster() {
    let cluster = with_topics(8);
    let brokers = cluster.bootstrap_servers();
    let dir = scratch("kafka_state_topic_files_only");
    pipeline_reading(&dir, &brokers, "");
    let path = dir.join("pipeline.yaml");
    let text = std::fs::read_to_string(&path).expect("written").replace(
        "sinks:\n",
        "checkpoint: {interval: 300ms, transactions: true, state_topic: state}\nsinks:\n",
    );
    std::fs::write(&path, text).expect("written");
    let explained = runner(&["explain", path.to_str().expect("UTF-8")]);
    assert!(
        explained.stdout.contains(
            "file sink lengths; each partition's state (to `state`) committed with each, in a \
             transaction"
        ),
        "{}",
        explained.stdout
    );
    send(&brokers, "orders", 0);
    let first = dir.join("first");
    let stderr = run_briefly(&dir, &["--state-dir", first.to_str().expect("UTF-8")]);
    assert!(
        stderr.contains("kafka transaction committed id=runner-pipeline-state"),
        "{stderr}"
    );
    assert!(matched_keys(&dir).is_empty(), "{stderr}");
    send(&brokers, "payments", 1);
    let second = dir.join("second");
    let stderr = run_briefly(&dir, &["--state-dir", second.to_str().expect("UTF-8")]);
    assert!(
        stderr.contains("8 partitions of them from the state topic: 16 keys pending"),
        "{stderr}"
    );
    assert_eq!(matched_keys(&dir), every_key(), "{stderr}");
}
