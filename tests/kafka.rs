//! Kafka sinks, through the binary, against librdkafka's mock cluster: a
//! real Kafka protocol over TCP, in this test's process.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};

use crate::harness::{Run, runner, scratch};

const PARTITIONS: i32 = 3;

/// Orders and payments: `a` and `c` match, `b` is paid the wrong amount,
/// `d` is never paid, `e` is paid twice.
const APP: &str = r#"{"id": "a", "amount": 100, "ts": "2026-03-01T10:00:00Z"}
{"id": "b", "amount": 200, "ts": "2026-03-01T10:00:01Z"}
{"id": "c", "amount": 300, "ts": "2026-03-01T10:00:02Z"}
{"id": "d", "amount": 400, "ts": "2026-03-01T10:00:03Z"}
{"id": "e", "amount": 500, "ts": "2026-03-01T10:00:04Z"}
"#;

const BANK: &str = r#"{"id": "a", "paid": 100, "ts": "2026-03-01T10:00:05Z"}
{"id": "b", "paid": 250, "ts": "2026-03-01T10:00:06Z"}
{"id": "e", "paid": 500, "ts": "2026-03-01T10:00:07Z"}
{"id": "c", "paid": 300, "ts": "2026-03-01T10:00:08Z"}
{"id": "e", "paid": 500, "ts": "2026-03-01T10:00:09Z"}
"#;

/// The bill check writing every outcome to the Kafka sink `bus` (with
/// `bus_extra` added to it) and, the same outcomes, to the file
/// `copy.jsonl`.
fn pipeline(brokers: &str, bus_extra: &str) -> String {
    let outputs: String = ["matched", "mismatched", "timed_out", "duplicate"]
        .iter()
        .flat_map(|outcome| {
            ["bus", "copy"].map(|sink| format!("  - {{outcome: {outcome}, sink: {sink}}}\n"))
        })
        .collect();
    format!(
        r"sources:
  app:
    type: file
    path: app.jsonl
    schema: {{id: string, amount: int, ts: timestamp}}
    event_time: ts
    watermark_lag: 1s
  bank:
    type: file
    path: bank.jsonl
    schema: {{id: string, paid: int, ts: timestamp}}
    event_time: ts
    watermark_lag: 1s
connect: {{app: id, bank: id}}
match:
  wait: 10s
  rules:
    paid_in_full: bank.paid == app.amount
sinks:
  bus:
    type: kafka
    brokers: {brokers}
    topic: alerts
    properties: {{message.timeout.ms: 10000}}
{bus_extra}
  copy: {{type: file, path: copy.jsonl}}
outputs:
{outputs}"
    )
}

/// Runs `runner` with `args` on `pipeline` with the data above, in a
/// fresh directory.
fn run(name: &str, pipeline: &str, args: &[&str]) -> (Run, std::path::PathBuf) {
    let dir = scratch(name);
    std::fs::write(dir.join("app.jsonl"), APP).expect("written");
    std::fs::write(dir.join("bank.jsonl"), BANK).expect("written");
    std::fs::write(dir.join("pipeline.yaml"), pipeline).expect("written");
    let path = dir.join("pipeline.yaml");
    let mut all = vec!["--quiet"];
    all.extend(args);
    all.push(path.to_str().expect("UTF-8 paths"));
    (runner(&all), dir)
}

/// `pipeline` with its two sources' files followed, idle after a second.
fn followed(pipeline: &str) -> String {
    pipeline
        .replace(
            "    path: app.jsonl\n",
            "    path: app.jsonl\n    follow: true\n    idle_timeout: 1s\n",
        )
        .replace(
            "    path: bank.jsonl\n",
            "    path: bank.jsonl\n    follow: true\n    idle_timeout: 1s\n",
        )
}

/// Appends `lines` to the file at `path`, made if missing.
fn append(path: &std::path::Path, lines: &[&str]) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("appendable");
    for line in lines {
        writeln!(file, "{line}").expect("appended");
    }
}

/// A mock cluster with the topic `alerts`.
fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    cluster
        .create_topic("alerts", PARTITIONS, 1)
        .expect("a topic");
    cluster
}

/// Every record of `alerts`, per partition in order: (key, value).
fn records(brokers: &str, count: usize) -> BTreeMap<i32, Vec<(Option<String>, String)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions
            .add_partition_offset("alerts", partition, Offset::Beginning)
            .expect("a partition");
    }
    consumer.assign(&partitions).expect("assigned");
    let mut records: BTreeMap<i32, Vec<(Option<String>, String)>> = BTreeMap::new();
    let start = Instant::now();
    let mut seen = 0;
    while seen < count && start.elapsed() < Duration::from_secs(20) {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let text = |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8_lossy(b).into_owned());
        records.entry(message.partition()).or_default().push((
            text(message.key()),
            text(message.payload()).unwrap_or_default(),
        ));
        seen += 1;
    }
    // Nothing more than that.
    if let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) {
        panic!("an extra record at offset {}", message.offset());
    }
    records
}

#[test]
fn every_outcome_is_a_record_keyed_by_its_match_key() {
    let cluster = cluster();
    every_outcome_is_a_record("kafka_sink", &cluster.bootstrap_servers(), &[]);
}

#[test]
fn with_workers_every_outcome_is_a_record_too() {
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    every_outcome_is_a_record("kafka_sink_workers", &brokers, &["--workers", "2"]);
}

/// A broker process, stopped when dropped.
pub(crate) struct Broker {
    process: std::process::Child,
    tansu: String,
    url: String,
    /// Its bootstrap address, `127.0.0.1:port`.
    pub(crate) brokers: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The path of tansu's binary, which the project's script `tests/tansu`
/// installs once: the tests that start a broker at once ask it once,
/// rather than each installing into the same directory.
fn tansu() -> &'static str {
    static TANSU: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TANSU.get_or_init(|| {
        let install = std::process::Command::new(crate::harness::root().join("tests/tansu"))
            .output()
            .expect("tests/tansu runs");
        assert!(
            install.status.success(),
            "tests/tansu could not install the broker: {}",
            String::from_utf8_lossy(&install.stderr)
        );
        String::from_utf8(install.stdout)
            .expect("a path")
            .trim()
            .to_string()
    })
}

impl Broker {
    /// Starts tansu, which the project's script `tests/tansu` installs from
    /// `PyPI` (Apache Kafka cannot be installed from the registries this
    /// project uses), on a free port; it keeps its log in memory.
    pub(crate) fn start() -> Self {
        Self::start_advertising(None)
    }

    /// Starts tansu as `start` does, telling clients that it is at
    /// `127.0.0.1:advertised` (a proxy in front of it), where given.
    pub(crate) fn start_advertising(advertised: Option<u16>) -> Self {
        use std::process::{Command, Stdio};
        let tansu = tansu();
        // A port nothing listens on now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{}", advertised.unwrap_or(port));
        let process = Command::new(tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the broker starts");
        let broker = Self {
            process,
            tansu: tansu.to_string(),
            url,
            brokers: format!("127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the broker does not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    /// Creates `topic` with `partitions` partitions.
    pub(crate) fn create_topic(&self, topic: &str, partitions: i32) {
        self.create_topic_with(topic, partitions, &[]);
    }

    /// Creates `topic` with `partitions` partitions and the settings
    /// `configs` (`name=value`).
    pub(crate) fn create_topic_with(&self, topic: &str, partitions: i32, configs: &[&str]) {
        let created = std::process::Command::new(&self.tansu)
            .args(["topic", "create", topic, "--broker", &self.url])
            .args(["--partitions", &partitions.to_string()])
            .args(configs.iter().flat_map(|config| ["--config", config]))
            .output()
            .expect("tansu topic runs");
        assert!(created.status.success(), "{created:?}");
    }
}

/// Against a real broker in a process of its own: tansu.
#[test]
fn against_a_broker_process_every_outcome_is_a_record() {
    let broker = Broker::start();
    broker.create_topic("alerts", PARTITIONS);
    every_outcome_is_a_record("kafka_sink_tansu", &broker.brokers, &[]);
}

fn every_outcome_is_a_record(name: &str, brokers: &str, args: &[&str]) {
    let (run, dir) = run(name, &pipeline(brokers, ""), args);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let copy = std::fs::read_to_string(dir.join("copy.jsonl")).expect("written");
    let lines: Vec<&str> = copy.lines().collect();
    assert_eq!(lines.len(), 6, "{copy}");
    let records = records(brokers, lines.len());
    // Each record is an outcome's JSON, keyed by its match key; a key's
    // records share a partition, in the order they were decided.
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    for (partition, records) in &records {
        for (key, value) in records {
            let key = key.clone().expect("a key");
            assert!(
                value.contains(&format!(r#""key":"{key}""#)),
                "{key}: {value}"
            );
            assert_eq!(
                *partition_of.entry(key.clone()).or_insert(*partition),
                *partition
            );
            by_key.entry(key).or_default().push(value.clone());
        }
    }
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in &lines {
        let key = line
            .split(r#""key":""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a key");
        expected
            .entry(key.to_string())
            .or_default()
            .push((*line).to_string());
    }
    assert_eq!(by_key, expected);
}

#[test]
fn a_key_expression_keys_the_records() {
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    let (run, _) = run(
        "kafka_sink_key",
        &pipeline(&brokers, r#"    key: 'concat("order:", key)'"#),
        &[],
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    let mut keys: Vec<Option<String>> = records(&brokers, 6)
        .into_values()
        .flatten()
        .map(|(key, _)| key)
        .collect();
    keys.sort();
    let order = |key: &str| Some(format!("order:{key}"));
    assert_eq!(
        keys,
        vec![
            order("a"),
            order("b"),
            order("c"),
            order("d"),
            order("e"),
            order("e")
        ]
    );
}

#[test]
fn a_record_that_cannot_be_delivered_stops_the_run_with_the_reason() {
    // Nothing listens there.
    let text =
        pipeline("127.0.0.1:9", "").replace("message.timeout.ms: 10000", "message.timeout.ms: 500");
    let (run, _) = run("kafka_sink_unreachable", &text, &[]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    // Told once while it waits, then why it stopped.
    assert!(
        run.stderr.starts_with("warning: kafka sink `bus`: "),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.matches("warning:").count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "\nerror: cannot write to sink `bus`: 6 records could not be delivered to topic `alerts`: "
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn the_producer_writes_idempotently_unless_told_otherwise() {
    // A broker that refuses producer ids: an idempotent producer cannot
    // write, a plain one can.
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    cluster.request_errors(
        RDKafkaApiKey::InitProducerId,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED; 100],
    );
    let (refused, _) = run("kafka_sink_idempotent", &pipeline(&brokers, ""), &[]);
    assert_eq!(refused.status, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("error: cannot write to sink `bus`")
            && refused.stderr.contains("uthoriz"),
        "{}",
        refused.stderr
    );
    let plain = pipeline(&brokers, "").replace(
        "properties: {message.timeout.ms: 10000}",
        "properties: {message.timeout.ms: 10000, enable.idempotence: false}",
    );
    let (written, _) = run("kafka_sink_not_idempotent", &plain, &[]);
    assert_eq!(written.status, 0, "{}", written.stderr);
    assert_eq!(
        records(&brokers, 6).values().map(Vec::len).sum::<usize>(),
        6
    );
}

#[test]
fn a_property_librdkafka_does_not_take_is_pointed_at() {
    let text = pipeline("127.0.0.1:9", "").replace(
        "message.timeout.ms: 10000",
        "message.timeout.ms: 10000, no.such.thing: 1",
    );
    let (run, _) = run("kafka_sink_property", &text, &[]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(
            "error[E402]: cannot open `kafka topic alerts`: Client config error: No such configuration property: \"no.such.thing\""
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("^^^^^^^^^^^^^ named here"),
        "{}",
        run.stderr
    );
}

#[cfg(unix)]
#[test]
fn a_stopped_run_resumes_without_sending_a_record_twice() {
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    let text =
        followed(&pipeline(&brokers, "")).replace("sinks:", "checkpoint: {interval: 1s}\nsinks:");
    let dir = scratch("kafka_sink_resume");
    std::fs::write(dir.join("pipeline.yaml"), &text).expect("written");
    let (app, bank): (Vec<&str>, Vec<&str>) = (APP.lines().collect(), BANK.lines().collect());
    let write = |name: &str, lines: &[&str]| append(&dir.join(name), lines);
    let stop = |child: std::process::Child| {
        let (code, stderr) = crate::harness::interrupt(child);
        assert_eq!(code, Some(0), "{stderr}");
    };
    let start = || crate::harness::start(&dir, &[]);
    // `a` and `b` are decided in the first run, the rest in the second.
    write("app.jsonl", &app[..2]);
    write("bank.jsonl", &bank[..2]);
    let first = start();
    let copy = dir.join("copy.jsonl");
    let wait_for = |lines: usize| {
        let start = Instant::now();
        while std::fs::read_to_string(&copy)
            .unwrap_or_default()
            .lines()
            .count()
            < lines
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(2);
    stop(first);
    write("app.jsonl", &app[2..]);
    write("bank.jsonl", &bank[2..]);
    let second = start();
    // Whatever the second run decides, once it has decided something.
    wait_for(3);
    stop(second);
    // The file sink is exactly-once across the stop: the topic holds the
    // same outcomes, each once.
    let lines = std::fs::read_to_string(&copy).expect("written");
    let count = lines.lines().count();
    assert!(count >= 3, "{lines}");
    let mut values: Vec<String> = records(&brokers, count)
        .into_values()
        .flatten()
        .map(|(_, value)| value)
        .collect();
    values.sort();
    let mut expected: Vec<String> = lines.lines().map(str::to_string).collect();
    expected.sort();
    assert_eq!(values, expected);
}

/// A second Ctrl-C ends a run that is still stopping, here waiting for
/// brokers that never answer to take its last records: at once, with the
/// status of an interrupted process.
#[cfg(unix)]
#[test]
fn a_second_interrupt_ends_a_run_that_is_still_stopping() {
    let followed =
        |file: &str| format!("    path: {file}\n    follow: true\n    idle_timeout: 1s\n");
    let text = pipeline("127.0.0.1:9", "")
        .replace("message.timeout.ms: 10000", "message.timeout.ms: 120000")
        .replace("    path: app.jsonl\n", &followed("app.jsonl"))
        .replace("    path: bank.jsonl\n", &followed("bank.jsonl"));
    let dir = scratch("kafka_sink_second_interrupt");
    std::fs::write(dir.join("app.jsonl"), APP).expect("written");
    std::fs::write(dir.join("bank.jsonl"), BANK).expect("written");
    std::fs::write(dir.join("pipeline.yaml"), text).expect("written");
    let mut child = crate::harness::start(&dir, &[]);
    let waited = Instant::now();
    while std::fs::metadata(dir.join("copy.jsonl")).map_or(0, |m| m.len()) == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "nothing decided"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let signal = |child: &std::process::Child| {
        let sent = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    };
    signal(&child);
    // Still stopping: the records wait for the brokers.
    std::thread::sleep(Duration::from_secs(1));
    assert!(child.try_wait().expect("a status").is_none(), "it stopped");
    signal(&child);
    let stopping = Instant::now();
    let stopped = child.wait_with_output().expect("ends");
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert!(stopping.elapsed() < Duration::from_secs(5), "{stderr}");
    assert_eq!(stopped.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(
            "runner: stopped again: exiting now, without waiting for the last checkpoint"
        ),
        "{stderr}"
    );
}

/// The transactional id the tests' runs write in.
const TRANSACTIONAL_ID: &str = "bill-check-test";

/// The bill check writing to the Kafka sink `bus` in transactions, one
/// per checkpoint, as `TRANSACTIONAL_ID`; `checkpoint` adds to the
/// section.
fn transactional(brokers: &str, checkpoint: &str) -> String {
    pipeline(brokers, "").replace(
        "    properties: {message.timeout.ms: 10000}\n",
        &format!(
            "    properties: {{message.timeout.ms: 10000, transactional.id: {TRANSACTIONAL_ID}}}\n"
        ),
    ) + &format!("checkpoint: {{transactions: true{checkpoint}}}\n")
}

/// The sequence numbers of the checkpoints in the state directory `dir`.
pub(crate) fn checkpoint_numbers(dir: &std::path::Path) -> Vec<i64> {
    (std::fs::read_dir(dir).expect("a state directory").flatten())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_prefix("checkpoint-")?.parse().ok()
        })
        .collect()
}

/// Tells the brokers at `brokers` that the transactions of the id `id`
/// committed checkpoint `number` last: the offset of the group named by
/// the id on partition 0 of `alerts`.
pub(crate) fn commit_number(brokers: &str, id: &str, number: i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", id)
        .create()
        .expect("a consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition_offset("alerts", 0, Offset::Offset(number))
        .expect("a partition");
    consumer
        .commit(&list, rdkafka::consumer::CommitMode::Sync)
        .expect("committed");
}

/// The number of the last checkpoint whose transaction the brokers
/// committed: the offset of the group named by the transactional id.
fn committed_checkpoint(brokers: &str) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", TRANSACTIONAL_ID)
        .create()
        .expect("a consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition("alerts", 0);
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("answered");
    match committed.find_partition("alerts", 0)?.offset() {
        Offset::Offset(number) => Some(number),
        _ => None,
    }
}

/// In transactions, the topic gets every outcome once, as without; the
/// transaction that ends the run commits a number past its last
/// checkpoint, which tells a run started again that this one finished.
#[test]
fn in_transactions_every_outcome_is_a_record_and_the_end_is_committed() {
    let broker = Broker::start();
    broker.create_topic("alerts", PARTITIONS);
    let brokers = broker.brokers.clone();
    let (run, dir) = run("kafka_sink_transactions", &transactional(&brokers, ""), &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let copy = std::fs::read_to_string(dir.join("copy.jsonl")).expect("written");
    let mut expected: Vec<&str> = copy.lines().collect();
    assert_eq!(expected.len(), 6, "{copy}");
    let mut values: Vec<String> = records(&brokers, expected.len())
        .into_values()
        .flatten()
        .map(|(_, value)| value)
        .collect();
    values.sort();
    expected.sort_unstable();
    assert_eq!(values, expected);
    // No checkpoint was taken in so short a run: the end is number 1.
    assert_eq!(committed_checkpoint(&brokers), Some(1));
}

/// A run that stopped after saving a checkpoint, before its transaction
/// committed (as the brokers say here), resumes from the checkpoint
/// before, whose transaction did: the file sink is cut back to it, and
/// what came after is decided again, once.
#[test]
fn a_run_whose_last_transaction_did_not_commit_resumes_from_the_one_before() {
    resumes_from_the_one_before(
        "kafka_sink_transaction_resume",
        |last| last - 1,
        |last| {
            format!(
                "warning: the transaction of checkpoint {last} did not commit: resuming from \
             checkpoint {}",
                last - 1
            )
        },
    );
}

/// Where the brokers name a checkpoint older than both the state
/// directory keeps (or none: Kafka forgets a group's offsets a week after
/// its last commit), the one before the newest committed all the same,
/// since the newest was saved after it: the run resumes from it.
#[test]
fn a_run_whose_brokers_name_an_older_checkpoint_resumes_from_the_one_before_its_newest() {
    resumes_from_the_one_before(
        "kafka_sink_transaction_older",
        |_| 1,
        |last| {
            format!(
                "warning: the brokers committed the transaction of checkpoint 1 last (as \
             `{TRANSACTIONAL_ID}`), which the state directory no longer holds; checkpoint {} \
             committed, since checkpoint {last} was saved after it",
                last - 1
            )
        },
    );
}

/// A run of a transactional pipeline in scratch directory `name` stops
/// after its checkpoint `last` (3 at least); the brokers are then told
/// `marker(last)` committed last; a run started again warns
/// `warning(last)` and resumes from checkpoint `last - 1`, each outcome
/// once in its file.
fn resumes_from_the_one_before(
    name: &str,
    marker: impl Fn(i64) -> i64,
    warning: impl Fn(i64) -> String,
) {
    let broker = Broker::start();
    broker.create_topic("alerts", PARTITIONS);
    let brokers = broker.brokers.clone();
    let text = followed(&transactional(&brokers, ", interval: 300ms"));
    let dir = scratch(name);
    std::fs::write(dir.join("pipeline.yaml"), &text).expect("written");
    let (app, bank): (Vec<&str>, Vec<&str>) = (APP.lines().collect(), BANK.lines().collect());
    let write = |name: &str, lines: &[&str]| append(&dir.join(name), lines);
    let copy = dir.join("copy.jsonl");
    let lines = || {
        std::fs::read_to_string(&copy)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let wait_for = |count: usize| {
        let start = Instant::now();
        while lines().len() < count && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    write("app.jsonl", &app[..2]);
    write("bank.jsonl", &bank[..2]);
    let first = crate::harness::start(&dir, &[]);
    wait_for(2);
    // Checkpoints after the first outcomes, then the stop's.
    std::thread::sleep(Duration::from_millis(1500));
    let (code, stderr) = crate::harness::interrupt(first);
    assert_eq!(code, Some(0), "{stderr}");
    // Its newest checkpoint, saved as it stopped.
    let numbers = checkpoint_numbers(&dir.join(".runner/pipeline"));
    let last = numbers.iter().copied().max().expect("a checkpoint");
    assert!(last >= 3, "{last}");
    // As if the run had died between saving its last checkpoint and
    // committing its transaction: the brokers have the number of the one
    // before (set here by hand).
    commit_number(&brokers, TRANSACTIONAL_ID, marker(last));
    write("app.jsonl", &app[2..]);
    write("bank.jsonl", &bank[2..]);
    let second = crate::harness::start(&dir, &[]);
    // Whatever the second run decides, once it has decided something.
    wait_for(3);
    std::thread::sleep(Duration::from_millis(500));
    let (code, stderr) = crate::harness::interrupt(second);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains(&warning(last)), "{stderr}");
    assert!(
        stderr.contains(&format!("resumed    from checkpoint {}", last - 1)),
        "{stderr}"
    );
    // Each outcome once in the file, cut back to the checkpoint resumed.
    let mut written = lines();
    let count = written.len();
    written.sort();
    written.dedup();
    assert!(count >= 3 && written.len() == count, "{written:#?}");
}

/// Transactions need checkpoints and Kafka sinks of one cluster: refused,
/// pointed at, otherwise.
#[test]
fn transactions_without_what_they_need_are_refused() {
    let dir = scratch("kafka_sink_transactions_refused");
    for (name, text, problem) in [
        (
            "off.yaml",
            transactional("127.0.0.1:9", ", enabled: false"),
            "transactions are committed with checkpoints, which are off",
        ),
        (
            "no_kafka.yaml",
            transactional("127.0.0.1:9", "")
                .replace("    type: kafka\n", "    type: file\n    path: bus.jsonl\n")
                .replace("    brokers: 127.0.0.1:9\n    topic: alerts\n", "")
                .replace(
                    &format!(
                        "    properties: {{message.timeout.ms: 10000, transactional.id: \
                         {TRANSACTIONAL_ID}}}\n"
                    ),
                    "",
                ),
            "transactions are for Kafka sinks and the state topic, and no sink writes Kafka",
        ),
        (
            "two_clusters.yaml",
            transactional("127.0.0.1:9", "").replace(
                "  copy: {type: file, path: copy.jsonl}\n",
                "  copy: {type: kafka, brokers: 127.0.0.2:9, topic: copies}\n",
            ),
            "Kafka sinks written in transactions must be of one cluster",
        ),
    ] {
        std::fs::write(dir.join(name), text).expect("written");
        let path = dir.join(name);
        let run = runner(&["validate", path.to_str().expect("UTF-8")]);
        assert_eq!(run.status, 1, "{name}: {}", run.stderr);
        assert!(
            run.stdout.contains(&format!("error[E311]: {problem}"))
                || run.stderr.contains(&format!("error[E311]: {problem}")),
            "{name}: {}{}",
            run.stdout,
            run.stderr
        );
    }
}
