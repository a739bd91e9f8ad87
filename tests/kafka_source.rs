//! Kafka sources, through the binary, against librdkafka's mock cluster:
//! topics produced to by the test, read by `runner`, and compared with the
//! same events read from files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::harness::{interrupt, run_in, runner, scratch, start};

const PARTITIONS: i32 = 3;

type Cluster = MockCluster<'static, DefaultProducerContext>;

/// A mock cluster with the topics `orders` and `payments`.
fn cluster() -> Cluster {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    for topic in ["orders", "payments"] {
        cluster.create_topic(topic, PARTITIONS, 1).expect("a topic");
    }
    cluster
}

/// Sends `lines` to `topic`, each keyed by its `id` if it has one (so a
/// key's messages share a partition), or to `partition` when given.
fn produce(brokers: &str, topic: &str, lines: &str, partition: Option<i32>) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a producer");
    // Blank lines, which a file source skips, are not messages.
    for line in lines.lines().filter(|line| !line.trim().is_empty()) {
        let key = line
            .split(r#""id": ""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next());
        let mut record = BaseRecord::<str, str>::to(topic).payload(line);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        producer
            .send(record)
            .map_err(|(error, _)| error)
            .expect("sent");
    }
    producer.flush(Duration::from_secs(10)).expect("delivered");
}

/// The group's committed offset of each partition of `topic`.
fn committed(brokers: &str, group: &str, topic: &str) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("a consumer");
    let mut list = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        list.add_partition(topic, partition);
    }
    let list = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("offsets");
    (0..PARTITIONS)
        .map(
            |partition| match list.find_partition(topic, partition)?.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            },
        )
        .collect()
}

/// The end offset of each partition of `topic` that has messages.
fn ends(brokers: &str, topic: &str) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a consumer");
    (0..PARTITIONS)
        .map(|partition| {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .expect("watermarks");
            (high > 0).then_some(high)
        })
        .collect()
}

const ORDERS: &str = r#"{"id": "a", "amount": 100, "ts": "2026-03-01T10:00:00Z"}
{"id": "b", "amount": 200, "ts": "2026-03-01T10:00:01Z"}
{"id": "c", "amount": 300, "ts": "2026-03-01T10:00:02Z"}
{"id": "d", "amount": 400, "ts": "2026-03-01T10:00:03Z"}
{"id": "e", "amount": 500, "ts": "2026-03-01T10:00:04Z"}
{"id": "f", "amount": 600, "ts": "2026-03-01T10:00:05Z"}
not json
"#;

const PAYMENTS: &str = r#"{"id": "a", "paid": 100, "ts": "2026-03-01T10:00:05Z"}
{"id": "b", "paid": 250, "ts": "2026-03-01T10:00:06Z"}
{"id": "e", "paid": 500, "ts": "2026-03-01T10:00:07Z"}
{"id": "c", "paid": 300, "ts": "2026-03-01T10:00:08Z"}
{"id": "e", "paid": 500, "ts": "2026-03-01T10:00:09Z"}
{"id": "f", "paid": 600, "ts": "2026-03-01T10:00:40Z"}
"#;

/// The bill check over `orders` and `payments` (`kafka`) or the files
/// `orders.jsonl` and `payments.jsonl` (`file`); `extra` goes into each
/// Kafka source. Every outcome goes to `out.jsonl`.
fn pipeline(kind: &str, brokers: &str, extra: &str) -> String {
    let source = |name: &str, topic: &str, fields: &str| match kind {
        "kafka" => format!(
            "  {name}:\n    type: kafka\n    brokers: {brokers}\n    topic: {topic}\n    \
             group: bill-check\n    format: jsonl\n{extra}    schema: {{{fields}}}\n    \
             event_time: ts\n    watermark_lag: 1s\n"
        ),
        _ => format!(
            "  {name}:\n    type: file\n    path: {topic}.jsonl\n    schema: {{{fields}}}\n    \
             event_time: ts\n    watermark_lag: 1s\n"
        ),
    };
    let outputs = crate::accounting::every_outcome_to("out");
    format!(
        "sources:\n{}{}connect: {{app: id, bank: id}}\nmatch:\n  wait: 10s\n  rules:\n    \
         paid_in_full: bank.paid == app.amount\nsinks:\n  out: {{type: file, path: out.jsonl}}\n\
         outputs:\n{outputs}",
        source("app", "orders", "id: string, amount: int, ts: timestamp"),
        source("bank", "payments", "id: string, paid: int, ts: timestamp"),
    )
}

/// The outcomes a run wrote (none before it made its file), sorted,
/// without the places of malformed lines (a file's line, a partition's
/// offset).
fn outcomes(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("out.jsonl")).unwrap_or_default();
    let mut lines: Vec<String> = text
        .lines()
        .map(|line| match line.find(r#","source":"#) {
            Some(at) if line.starts_with(r#"{"outcome":"malformed""#) => {
                let reason = line.split(r#""reason":"#).nth(1).unwrap_or_default();
                format!("{} {reason}", &line[..at])
            }
            _ => line.to_string(),
        })
        .collect();
    lines.sort();
    lines
}

/// What the same events give read from files.
fn from_files(name: &str) -> Vec<String> {
    let dir = scratch(name);
    std::fs::write(dir.join("orders.jsonl"), ORDERS).expect("written");
    std::fs::write(dir.join("payments.jsonl"), PAYMENTS).expect("written");
    std::fs::write(dir.join("pipeline.yaml"), pipeline("file", "", "")).expect("written");
    let run = run_in(&dir, &["--quiet"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    outcomes(&dir)
}

/// The orders and payments produced to their topics, every message keyed
/// by its `id` (the line that is not JSON has one in its text), and a
/// directory `name` with the pipeline reading them, its sources given
/// `extra`.
fn on_kafka(name: &str, brokers: &str, extra: &str) -> PathBuf {
    produce(
        brokers,
        "orders",
        &ORDERS.replace("not json", r#"not json "id": "z""#),
        None,
    );
    produce(brokers, "payments", PAYMENTS, None);
    let dir = scratch(name);
    std::fs::write(dir.join("pipeline.yaml"), pipeline("kafka", brokers, extra)).expect("written");
    dir
}

#[test]
fn a_bounded_kafka_source_decides_what_its_files_would() {
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    let dir = on_kafka("kafka_source_bounded", &brokers, "    bounded: true\n");
    let run = run_in(&dir, &["--quiet"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(outcomes(&dir), from_files("kafka_source_bounded_files"));
    // Read to the end, the group's offsets are the topics' ends (an empty
    // partition has nothing to commit).
    for topic in ["orders", "payments"] {
        assert_eq!(
            committed(&brokers, "bill-check", topic),
            ends(&brokers, topic),
            "{topic}"
        );
    }
    // Nothing new: a second run reads nothing and decides nothing.
    std::fs::remove_file(dir.join("out.jsonl")).expect("removed");
    let again = run_in(&dir, &["--quiet"]);
    assert_eq!(again.status, 0, "{}", again.stderr);
    assert_eq!(outcomes(&dir), Vec::<String>::new());
    // `--fresh` starts over, the group's offsets notwithstanding; with
    // workers, the same is decided.
    let fresh = run_in(&dir, &["--quiet", "--fresh", "--workers", "2"]);
    assert_eq!(fresh.status, 0, "{}", fresh.stderr);
    assert_eq!(outcomes(&dir), from_files("kafka_source_bounded_files"));
}

/// Waits until `out.jsonl` in `dir` has `count` lines.
fn wait_for(dir: &Path, count: usize) {
    let start = Instant::now();
    loop {
        let lines =
            std::fs::read_to_string(dir.join("out.jsonl")).map_or(0, |text| text.lines().count());
        if lines >= count {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(50),
            "{lines} outcomes of {count}:\n{}",
            std::fs::read_to_string(dir.join("out.jsonl")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_stopped_kafka_source_resumes_after_what_it_merged() {
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    let first = "{\"id\": \"a\", \"amount\": 100, \"ts\": \"2026-03-01T10:00:00Z\"}\n";
    let paid = "{\"id\": \"a\", \"paid\": 100, \"ts\": \"2026-03-01T10:00:01Z\"}\n";
    produce(&brokers, "orders", first, None);
    produce(&brokers, "payments", paid, None);
    let dir = scratch("kafka_source_resume");
    // A quiet source holds the merge back until it is idle.
    let extra = "    idle_timeout: 1s\n";
    std::fs::write(
        dir.join("pipeline.yaml"),
        pipeline("kafka", &brokers, extra),
    )
    .expect("written");
    let state = dir.join("state");
    let args = ["--quiet", "--state-dir", state.to_str().expect("UTF-8")];
    let run = start(&dir, &args);
    wait_for(&dir, 1);
    let (status, stderr) = interrupt(run);
    assert_eq!(status, Some(0), "{stderr}");
    // What the group committed is what the checkpoint holds: after `a`.
    let merged: i64 = 1;
    for topic in ["orders", "payments"] {
        let offsets = committed(&brokers, "bill-check", topic);
        assert_eq!(
            offsets.iter().flatten().sum::<i64>(),
            merged,
            "{topic}: {offsets:?}\n{stderr}"
        );
    }
    let listing = runner(&[
        "state",
        "inspect",
        "--state-dir",
        state.to_str().expect("UTF-8"),
        dir.join("pipeline.yaml").to_str().expect("UTF-8"),
    ]);
    assert_eq!(listing.status, 0, "{}", listing.stderr);
    let app = listing
        .stdout
        .lines()
        .find(|line| line.contains("source app"))
        .unwrap_or_default();
    assert!(app.contains(" at offset 1"), "{}", listing.stdout);
    // More comes while it is stopped; the next run takes it up from
    // where the last one stopped, and decides `a` no second time.
    produce(
        &brokers,
        "orders",
        "{\"id\": \"b\", \"amount\": 200, \"ts\": \"2026-03-01T10:00:02Z\"}\n",
        None,
    );
    produce(
        &brokers,
        "payments",
        "{\"id\": \"b\", \"paid\": 200, \"ts\": \"2026-03-01T10:00:03Z\"}\n",
        None,
    );
    let run = start(&dir, &args);
    wait_for(&dir, 2);
    // Time for a wrong second `a` to show.
    std::thread::sleep(Duration::from_millis(500));
    let (status, stderr) = interrupt(run);
    assert_eq!(status, Some(0), "{stderr}");
    let keys: Vec<String> = outcomes(&dir)
        .iter()
        .map(|line| line.split(r#""key":"#).nth(1).unwrap_or_default()[..3].to_string())
        .collect();
    assert_eq!(keys, [r#""a""#, r#""b""#]);
}

#[test]
fn each_partition_holds_the_watermark_back_until_it_speaks() {
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    // Orders on partition 0 run to 10:05; nothing on the others yet.
    let early = (0..10)
        .map(|n| {
            format!(
                "{{\"id\": \"k{n}\", \"amount\": 1, \"ts\": \"2026-03-01T10:0{}:00Z\"}}\n",
                n / 2
            )
        })
        .collect::<Vec<_>>()
        .concat();
    produce(&brokers, "orders", &early, Some(0));
    let paid = (0..10)
        .map(|n| {
            format!(
                "{{\"id\": \"k{n}\", \"paid\": 1, \"ts\": \"2026-03-01T10:0{}:01Z\"}}\n",
                n / 2
            )
        })
        .collect::<Vec<_>>()
        .concat();
    produce(&brokers, "payments", &paid, Some(0));
    let dir = scratch("kafka_source_partitions");
    // The orders' partitions 1 and 2 are not idle for the first minute
    // (a loaded machine may take seconds to start the run); the payments
    // do not hold the merge back for long.
    let text = pipeline("kafka", &brokers, "")
        .replace("topic: orders\n", "topic: orders\n    idle_timeout: 60s\n")
        .replace(
            "topic: payments\n",
            "topic: payments\n    idle_timeout: 1s\n",
        );
    std::fs::write(dir.join("pipeline.yaml"), text).expect("written");
    let started = Instant::now();
    let run = start(&dir, &["--quiet"]);
    wait_for(&dir, 1);
    // An order from 10:00 on partition 1, after the newer ones on
    // partition 0: its partition's watermark had not moved, so it is on
    // time, not late (one watermark for the whole topic would be past
    // 10:03 by now).
    produce(
        &brokers,
        "orders",
        "{\"id\": \"x\", \"amount\": 7, \"ts\": \"2026-03-01T10:00:00Z\"}\n",
        Some(1),
    );
    produce(
        &brokers,
        "payments",
        "{\"id\": \"x\", \"paid\": 7, \"ts\": \"2026-03-01T10:00:01Z\"}\n",
        Some(0),
    );
    // And a newer order on partition 0, for the merge to go on by.
    produce(
        &brokers,
        "orders",
        "{\"id\": \"y\", \"amount\": 8, \"ts\": \"2026-03-01T10:06:00Z\"}\n",
        Some(0),
    );
    wait_for(&dir, 11);
    let (status, stderr) = interrupt(run);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "too slow for the test: the partitions fell idle"
    );
    assert_eq!(status, Some(0), "{stderr}");
    let text = std::fs::read_to_string(dir.join("out.jsonl")).expect("written");
    let x: Vec<&str> = text
        .lines()
        .filter(|line| line.contains(r#""key":"x""#))
        .collect();
    assert_eq!(x.len(), 1, "{text}");
    assert!(x[0].starts_with(r#"{"outcome":"matched""#), "{text}");
}

#[test]
fn a_topic_that_does_not_exist_stops_the_run_saying_so() {
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    let dir = scratch("kafka_source_no_topic");
    let text = pipeline("kafka", &brokers, "    bounded: true\n")
        .replace("topic: payments", "topic: nowhere");
    std::fs::write(dir.join("pipeline.yaml"), text).expect("written");
    let run = run_in(&dir, &["--quiet"]);
    assert_ne!(run.status, 0);
    assert!(run.stderr.contains("nowhere"), "{}", run.stderr);
}

#[test]
fn a_property_librdkafka_does_not_take_is_pointed_at_before_anything_runs() {
    let dir = scratch("kafka_source_property");
    let text = pipeline(
        "kafka",
        "127.0.0.1:9",
        "    properties: { no.such.thing: 1 }\n",
    );
    std::fs::write(dir.join("pipeline.yaml"), text).expect("written");
    let run = run_in(&dir, &["--quiet"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "error[E402]: cannot open `kafka topic orders`: Client config error: No such configuration property: \"no.such.thing\""
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("^^^^^^^^^^^^^ named here"),
        "{}",
        run.stderr
    );
    assert!(
        !dir.join("out.jsonl").exists(),
        "no output before the run starts"
    );
}

/// The outcomes of a run of the example pipeline in `dir`, as `outcomes`
/// gives them, from `out/all.jsonl`.
fn all_outcomes(dir: &Path) -> Vec<String> {
    let out = dir.join("out");
    std::fs::copy(out.join("all.jsonl"), dir.join("out.jsonl")).expect("copied");
    outcomes(dir)
}

/// Generated bill-check data, with every kind of anomaly, through topics of
/// one partition: the messages come in the files' order, so the watermark
/// moves as the files' does and every outcome is the same, late and
/// malformed ones too.
#[test]
fn generated_data_through_one_partition_decides_what_its_files_would() {
    let files = scratch("kafka_source_generated_files");
    let generated = runner(&["gen", "--out", files.join("data").to_str().expect("UTF-8")]);
    assert_eq!(generated.status, 0, "{}", generated.stderr);
    crate::accounting::pipeline(&files, false);
    let run = run_in(&files, &["--quiet"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let cluster = MockCluster::new(1).expect("a mock cluster");
    let brokers = cluster.bootstrap_servers();
    let dir = scratch("kafka_source_generated");
    let mut text = std::fs::read_to_string(files.join("pipeline.yaml")).expect("written");
    for (topic, file) in [("orders", "orders.jsonl"), ("payments", "payments.jsonl")] {
        cluster.create_topic(topic, 1, 1).expect("a topic");
        let lines = std::fs::read_to_string(files.join("data").join(file)).expect("generated");
        produce(&brokers, topic, &lines, Some(0));
        text = text.replace(
            &format!("    type: file\n    path: data/{file}\n"),
            &format!(
                "    type: kafka\n    brokers: {brokers}\n    topic: {topic}\n    group: g\n    \
                 format: jsonl\n    bounded: true\n"
            ),
        );
    }
    std::fs::write(dir.join("pipeline.yaml"), text).expect("written");
    let run = run_in(&dir, &["--quiet"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let (kafka, files) = (all_outcomes(&dir), all_outcomes(&files));
    assert!(files.len() > 3000, "{} outcomes", files.len());
    assert!(
        files
            .iter()
            .any(|line| line.contains(r#""outcome":"late""#))
    );
    assert!(
        files
            .iter()
            .any(|line| line.contains(r#""outcome":"malformed""#))
    );
    assert_eq!(kafka.len(), files.len());
    let differ: Vec<_> = kafka
        .iter()
        .zip(&files)
        .filter(|(k, f)| k != f)
        .take(3)
        .collect();
    assert!(differ.is_empty(), "{differ:#?}");
}

/// The value of `name` for `partition` of source `app` on a metrics page.
fn partition_sample(page: &str, name: &str, partition: i32) -> Option<u64> {
    let prefix = format!(r#"{name}{{pipeline="pipeline",source="app",partition="{partition}"}} "#);
    page.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
}

#[cfg(unix)]
#[test]
fn metrics_count_each_partitions_messages_and_lag() {
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, "orders", &ORDERS.replace("not json\n", ""), None);
    let dir = scratch("kafka_source_metrics");
    let extra = "    idle_timeout: 1s\n";
    std::fs::write(
        dir.join("pipeline.yaml"),
        pipeline("kafka", &brokers, extra),
    )
    .expect("written");
    let mut child = start(&dir, &["--metrics-addr", "127.0.0.1:0"]);
    let addr = crate::sources::metrics_address(&mut child);
    // Every order read, and the client's statistics told each partition's
    // end: nothing is left to read.
    let page = crate::sources::wait_for_page(&addr, |page| {
        (0..PARTITIONS).all(|p| partition_sample(page, "runner_kafka_consumer_lag", p) == Some(0))
    });
    let read: u64 = (0..PARTITIONS)
        .map(|p| partition_sample(&page, "runner_kafka_messages_total", p).unwrap_or_default())
        .sum();
    assert_eq!(read, 6, "{page}");
    for p in 0..PARTITIONS {
        assert_eq!(
            partition_sample(&page, "runner_kafka_consumer_lag", p),
            Some(0),
            "{page}"
        );
    }
    let (status, stderr) = interrupt(child);
    assert_eq!(status, Some(0), "{stderr}");
}

/// Against a real broker in a process of its own (tansu, as for the Kafka
/// sink's test): a source reads every partition and pairs what its files
/// pair. (Not bounded: tansu 0.6's in-memory log answers the partitions'
/// end offsets short of the messages it serves.)
#[test]
fn against_a_broker_process_a_source_reads_every_partition() {
    let broker = crate::kafka::Broker::start();
    for topic in ["orders", "payments"] {
        broker.create_topic(topic, PARTITIONS);
    }
    let brokers = &broker.brokers;
    produce(brokers, "orders", &ORDERS.replace("not json\n", ""), None);
    produce(brokers, "payments", PAYMENTS, None);
    let dir = scratch("kafka_source_tansu");
    let extra = "    idle_timeout: 1s\n";
    std::fs::write(dir.join("pipeline.yaml"), pipeline("kafka", brokers, extra)).expect("written");
    let run = start(&dir, &["--quiet"]);
    // What pairs without waiting for time to pass: matched, mismatched and
    // duplicate outcomes.
    let paired = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|line| !line.contains(r#""outcome":"timed_out""#))
            .filter(|line| !line.contains(r#""outcome":"malformed""#))
            .cloned()
            .collect()
    };
    let expected = paired(&from_files("kafka_source_tansu_files"));
    let waited = Instant::now();
    while paired(&outcomes(&dir)).len() < expected.len() {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "{:?}",
            outcomes(&dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, stderr) = interrupt(run);
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(paired(&outcomes(&dir)), expected);
}

/// With `--log json`, what the run does is a JSON object per line on
/// stderr: the run starting, each source's partitions and where they
/// start and end, the source reaching its end, the offsets committed, the
/// run ending.
#[test]
fn the_log_tells_partitions_offsets_and_ends() {
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, "orders", &ORDERS.replace("not json\n", ""), None);
    produce(&brokers, "payments", PAYMENTS, None);
    let dir = scratch("kafka_source_log");
    std::fs::write(
        dir.join("pipeline.yaml"),
        pipeline("kafka", &brokers, "    bounded: true\n"),
    )
    .expect("written");
    let run = run_in(&dir, &["--quiet", "--log", "json"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let events: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let of = |message: &str| -> Vec<&serde_json::Value> {
        events
            .iter()
            .filter(|event| event["message"] == message)
            .collect()
    };
    assert_eq!(of("run started").len(), 1, "{}", run.stderr);
    let assigned = of("kafka partitions assigned");
    assert_eq!(assigned.len(), 2, "{}", run.stderr);
    let app = assigned
        .iter()
        .find(|event| event["source"] == "app")
        .expect("app's partitions");
    assert_eq!(app["topic"], "orders");
    assert_eq!(app["starts"], "0@0, 1@0, 2@0");
    assert_eq!(
        of("kafka source read to its end").len(),
        2,
        "{}",
        run.stderr
    );
    assert_eq!(of("kafka offsets committed").len(), 2, "{}", run.stderr);
    let ended = of("run ended");
    assert_eq!(ended.len(), 1, "{}", run.stderr);
    assert_eq!(ended[0]["events"], 12);
    assert!(
        events.iter().all(|event| event["level"] == "INFO"),
        "{}",
        run.stderr
    );
}

#[test]
fn start_latest_skips_what_the_topic_held() {
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    let dir = on_kafka(
        "kafka_source_latest",
        &brokers,
        "    bounded: true\n    start: latest\n",
    );
    let run = run_in(&dir, &["--quiet"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(outcomes(&dir), Vec::<String>::new());
}

/// CSV message values, read by the columns the pipeline names, and no
/// `event_time`: each record's time is its message's timestamp.
#[test]
fn csv_values_take_their_messages_timestamps() {
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("a producer");
    // 2026-03-01T10:00:00Z and on.
    let at = 1_772_359_200_000_i64;
    for (topic, value, time) in [
        ("orders", "a,100", at),
        ("payments", "a,100", at + 1_500),
        ("orders", "b,200", at + 2_000),
        ("payments", "b,x", at + 3_000),
    ] {
        let record = BaseRecord::<str, str>::to(topic)
            .key(&value[..1])
            .payload(value)
            .timestamp(time);
        producer
            .send(record)
            .map_err(|(error, _)| error)
            .expect("sent");
    }
    producer.flush(Duration::from_secs(10)).expect("delivered");
    let dir = scratch("kafka_source_csv");
    let text = pipeline("kafka", &brokers, "    bounded: true\n")
        .replace("format: jsonl", "format: csv")
        .replace(
            "schema: {id: string, amount: int, ts: timestamp}\n    event_time: ts\n",
            "columns: [id, amount]\n    schema: {id: string, amount: int}\n",
        )
        .replace(
            "schema: {id: string, paid: int, ts: timestamp}\n    event_time: ts\n",
            "columns: [id, paid]\n    schema: {id: string, paid: int}\n",
        );
    std::fs::write(dir.join("pipeline.yaml"), text).expect("written");
    let run = run_in(&dir, &["--quiet"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(dir.join("out.jsonl")).expect("written");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(
            &r#"{"outcome":"matched","key":"a","app":{"id":"a","amount":100},"bank":{"id":"a","paid":100},"times":{"app":"2026-03-01T10:00:00Z","bank":"2026-03-01T10:00:01.5Z"}}"#
        ),
        "{text}"
    );
    // The payment of `b` is not a number: malformed, named by its topic,
    // partition and offset.
    let malformed = lines
        .iter()
        .find(|line| line.starts_with(r#"{"outcome":"malformed""#))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(malformed.contains(r#""file":"payments/"#), "{malformed}");
    assert!(malformed.contains(r#""raw":"b,x""#), "{malformed}");
    assert!(
        malformed.contains("`paid` is `int`, found \\\"x\\\""),
        "{malformed}"
    );
}

/// Ctrl-C stops a run whose brokers went away, with its last checkpoint
/// saved and the commit of its offsets given up, rather than waiting for
/// the brokers for good.
#[test]
fn a_run_whose_brokers_are_gone_still_stops() {
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    produce(
        &brokers,
        "orders",
        &ORDERS[..ORDERS.find('\n').unwrap_or(0)],
        None,
    );
    produce(
        &brokers,
        "payments",
        &PAYMENTS[..PAYMENTS.find('\n').unwrap_or(0)],
        None,
    );
    let dir = scratch("kafka_source_brokers_gone");
    let extra = "    idle_timeout: 1s\n";
    std::fs::write(
        dir.join("pipeline.yaml"),
        pipeline("kafka", &brokers, extra),
    )
    .expect("written");
    let run = start(&dir, &[]);
    wait_for(&dir, 1);
    drop(cluster);
    std::thread::sleep(Duration::from_millis(500));
    let stopping = Instant::now();
    let (status, stderr) = interrupt(run);
    let took = stopping.elapsed();
    assert_eq!(status, Some(0), "{stderr}");
    // Committing is given up after 5 seconds, for every source at once.
    assert!(took < Duration::from_secs(12), "{took:?}\n{stderr}");
    assert!(
        stderr.contains(
            "warning: kafka source `app`: cannot commit its offsets for group `bill-check`: the \
             group coordinator did not answer within 5s (the checkpoint holds them; a run \
             resumes from it)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("saved      "), "{stderr}");
}
