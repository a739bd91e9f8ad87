//! The bill check through Kafka: generated orders and payments produced to
//! two topics of librdkafka's mock cluster (a broker in this process, the
//! real protocol over TCP), read by `runner` in a process of its own with
//! bounded Kafka sources, every outcome written to files; then by two
//! processes at once, each an `--instance` reading half of every topic's
//! partitions; and, for comparison, the same events read from files.
//!
//!     cargo bench --bench kafka [-- ORDERS [PARTITIONS]]
//!
//! Prints `name value unit` lines (`bench/run` puts them in BENCHMARKS.md).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use runner::generate::{Spec, generate};

/// The benchmark pipeline over JSON lines, its sources as `sources` says.
fn pipeline(sources: &str) -> String {
    format!(
        "name: bench_kafka
sources:
{sources}connect:
  app: order_id
  platform: order_ref
match:
  wait: 30s
  retention: 10m
  rules:
    paid_in_full: platform.paid == app.amount
    same_currency: platform.currency == app.currency
    succeeded: platform.status == \"success\"
sinks:
  matched: {{type: file, path: out/matched.jsonl}}
  alerts: {{type: file, path: out/alerts.jsonl}}
outputs:
  - {{ outcome: matched, sink: matched }}
  - {{ outcome: mismatched, sink: alerts }}
  - {{ outcome: timed_out, sink: alerts }}
  - {{ outcome: duplicate, sink: alerts }}
  - {{ outcome: late, sink: alerts }}
  - {{ outcome: resolved, sink: alerts }}
  - {{ outcome: malformed, sink: alerts }}
"
    )
}

/// A source `name` keyed by `key`, read as `input` says.
fn source(name: &str, input: &str, fields: &str, time: &str) -> String {
    format!(
        "  {name}:\n{input}    schema: {{{fields}}}\n    event_time: {time}\n    watermark_lag: 10s\n"
    )
}

const APP: &str =
    "order_id: string, user: string, amount: int, currency: string, created_at: timestamp";
const PLATFORM: &str =
    "order_ref: string, paid: int, currency: string, status: string, notified_at: timestamp";

/// Runs `runner` on `dir/pipeline.yaml`; its wall time and peak memory.
fn run(dir: &Path) -> (Duration, u64) {
    run_instances(dir, 1)
}

/// Runs `count` `runner` processes on `dir/pipeline.yaml` at once, each
/// an `--instance` of `count`; the wall time until the last ends, and the
/// most memory one of them held (megabytes, from its summary).
fn run_instances(dir: &Path, count: u32) -> (Duration, u64) {
    let start = Instant::now();
    let children: Vec<_> = (1..=count)
        .map(|number| {
            Command::new(env!("CARGO_BIN_EXE_runner"))
                .args(["--fresh", "--instance"])
                .arg(format!("{number}/{count}"))
                .arg(dir.join("pipeline.yaml"))
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("runner runs")
        })
        .collect();
    let mut peak = 0;
    for child in children {
        let output = child.wait_with_output().expect("runner ends");
        let summary = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "runner failed: {summary}");
        let memory = summary
            .lines()
            .find_map(|line| line.trim().strip_prefix("memory"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|megabytes| megabytes.parse::<u64>().ok());
        peak = peak.max(memory.unwrap_or(0));
    }
    (start.elapsed(), peak)
}

/// Lines in the run's output files, matches and alerts, over the files of
/// every instance.
fn written(dir: &Path) -> [usize; 2] {
    let lines = |prefix: &str| {
        std::fs::read_dir(dir.join("out"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(prefix))
            .map(|entry| {
                std::fs::read_to_string(entry.path()).map_or(0, |text| text.lines().count())
            })
            .sum()
    };
    [lines("matched"), lines("alerts")]
}

/// Removes what the last run wrote.
fn clear(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir.join("out"));
    std::fs::create_dir_all(dir.join("out")).expect("a directory");
}

/// The key of a generated line: its order's id, where it has one.
fn key(line: &str) -> Option<&str> {
    ["\"order_id\":\"", "\"order_ref\":\""]
        .iter()
        .find_map(|field| line.split(field).nth(1))
        .and_then(|rest| rest.split('"').next())
}

/// Produces each line of each topic's text to it, keyed by its order, on
/// `partitions` partitions; how long that took. Checks the mock cluster
/// kept every message.
fn produce(
    cluster: &MockCluster<'static, DefaultProducerContext>,
    partitions: i32,
    topics: [(&str, &String); 2],
) -> Duration {
    let brokers = cluster.bootstrap_servers();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("a producer");
    let producing = Instant::now();
    for (topic, text) in topics {
        cluster.create_topic(topic, partitions, 1).expect("a topic");
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let mut record = BaseRecord::<str, str>::to(topic).payload(line);
            if let Some(key) = key(line) {
                record = record.key(key);
            }
            let mut record = record;
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        // The queue is full: let it drain.
                        producer.poll(Duration::from_millis(10));
                        record = back;
                    }
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("delivered");
    let producing = producing.elapsed();
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("a consumer");
    for (topic, _) in topics {
        for partition in 0..partitions {
            let (low, _) = rdkafka::consumer::Consumer::fetch_watermarks(
                &consumer,
                topic,
                partition,
                Duration::from_secs(10),
            )
            .expect("watermarks");
            assert_eq!(
                low, 0,
                "the mock cluster dropped messages of {topic}/{partition}"
            );
        }
    }
    producing
}

/// One process on the Kafka pipeline in `dir` again, a checkpoint every
/// second, its alerts to a topic of `cluster` (of `partitions`
/// partitions) in transactions; then with every partition's state written
/// to a state topic in them too. How long each took.
fn transacted(
    dir: &Path,
    cluster: &MockCluster<'static, DefaultProducerContext>,
    partitions: i32,
) -> (Duration, Duration) {
    let brokers = cluster.bootstrap_servers();
    let text = std::fs::read_to_string(dir.join("pipeline.yaml")).expect("written");
    let transacted = |extra: &str| {
        text.replace(
            "  alerts: {type: file, path: out/alerts.jsonl}\n",
            &format!(
                "  alerts: {{type: kafka, brokers: {brokers}, topic: alerts}}\n\
                 checkpoint: {{interval: 1s, transactions: true{extra}}}\n"
            ),
        )
    };
    for topic in ["alerts", "state"] {
        cluster.create_topic(topic, partitions, 1).expect("a topic");
    }
    std::fs::write(dir.join("pipeline.yaml"), transacted("")).expect("written");
    clear(dir);
    let (in_transactions, _) = run(dir);
    let with_state = transacted(", state_topic: state");
    std::fs::write(dir.join("pipeline.yaml"), with_state).expect("written");
    clear(dir);
    let (with_state_topic, _) = run(dir);
    (in_transactions, with_state_topic)
}

#[allow(clippy::cast_precision_loss)] // Rates as floats.
fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .map(|arg| arg.parse::<u64>().expect("a number"));
    let orders = args.next().unwrap_or(250_000);
    let asked = args.next().unwrap_or(4);
    let spec = Spec {
        orders,
        every: runner::time::Duration::from_millis(50),
        missing: 0.05,
        duplicates: 0.01,
        mismatched: 0.02,
        late: 0.002,
        very_late: 0.001,
        malformed: 0.0005,
        ..Spec::default()
    };
    let ([orders_text, payments_text, _], _) = generate(&spec);
    // The mock cluster keeps at most 5 MiB of a partition (older messages
    // go): enough partitions that none holds more than 4.
    let needed = (orders_text.len().max(payments_text.len()) as u64).div_ceil(4 << 20);
    let partitions = i32::try_from(asked.max(needed)).expect("a partition count");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-kafka");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("out")).expect("a directory");
    let events = orders_text
        .lines()
        .chain(payments_text.lines())
        .filter(|l| !l.trim().is_empty())
        .count();

    // The same events from files, for comparison.
    std::fs::write(dir.join("orders.jsonl"), &orders_text).expect("written");
    std::fs::write(dir.join("payments.jsonl"), &payments_text).expect("written");
    let file = |path: &str| format!("    type: file\n    path: {path}\n");
    std::fs::write(
        dir.join("pipeline.yaml"),
        pipeline(&format!(
            "{}{}",
            source("app", &file("orders.jsonl"), APP, "created_at"),
            source("platform", &file("payments.jsonl"), PLATFORM, "notified_at"),
        )),
    )
    .expect("written");
    let (from_files, files_memory) = run(&dir);
    let files_wrote = written(&dir);

    let cluster = MockCluster::new(1).expect("a mock cluster");
    let brokers = cluster.bootstrap_servers();
    let producing = produce(
        &cluster,
        partitions,
        [("orders", &orders_text), ("payments", &payments_text)],
    );
    let kafka = |name: &str, topic: &str| {
        format!(
            "    type: kafka\n    brokers: {brokers}\n    topic: {topic}\n    group: bench-{name}\n    \
             format: jsonl\n    bounded: true\n"
        )
    };
    std::fs::write(
        dir.join("pipeline.yaml"),
        pipeline(&format!(
            "{}{}",
            source("app", &kafka("app", "orders"), APP, "created_at"),
            source(
                "platform",
                &kafka("platform", "payments"),
                PLATFORM,
                "notified_at"
            ),
        )),
    )
    .expect("written");
    clear(&dir);
    let (through_kafka, kafka_memory) = run(&dir);
    let kafka_wrote = written(&dir);
    // Two processes, each reading half of every topic's partitions.
    clear(&dir);
    let (two_processes, two_memory) = run_instances(&dir, 2);
    let two_wrote = written(&dir);
    let (in_transactions, with_state_topic) = transacted(&dir, &cluster, partitions);
    let rate = |took: Duration| events as f64 / took.as_secs_f64();
    println!("kafka_events {events} events");
    println!("kafka_partitions {partitions} partitions");
    println!("kafka_produce {:.0} events/s", rate(producing));
    println!("kafka_one_process {:.0} events/s", rate(through_kafka));
    println!("kafka_two_processes {:.0} events/s", rate(two_processes));
    println!("kafka_files_same_events {:.0} events/s", rate(from_files));
    let in_transactions = rate(in_transactions);
    println!("kafka_in_transactions {in_transactions:.0} events/s");
    let with_state_topic = rate(with_state_topic);
    println!("kafka_with_state_topic {with_state_topic:.0} events/s");
    println!("kafka_one_process_memory {kafka_memory} MB");
    println!("kafka_two_processes_memory {two_memory} MB (each, at most)");
    println!("kafka_files_memory {files_memory} MB");
    // Four partitions interleave differently from the files: a late
    // event may be judged against its own partition's progress.
    println!(
        "kafka_written {} matches {} alerts (files: {} and {})",
        kafka_wrote[0], kafka_wrote[1], files_wrote[0], files_wrote[1]
    );
    println!(
        "kafka_written_two_processes {} matches {} alerts",
        two_wrote[0], two_wrote[1]
    );
}
