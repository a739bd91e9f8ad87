//! Several `runner` processes sharing Kafka topics' partitions, by number
//! (`--instance I/N`) or as their consumer group deals them (`--join`),
//! through the binary, against librdkafka's mock cluster and tansu: what
//! they decide together, one of them killed and started again, others
//! joining or leaving, is what one process decides reading the same events
//! from files.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};

use crate::harness::{interrupt, run_in, runner, scratch};
use runner::runtime::Instance;

const PARTITIONS: i32 = 8;

/// The partition of `key` in every topic: the same function for each, so
/// the topics are co-partitioned (FNV-1a).
pub(crate) fn partition_of(key: &str) -> i32 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    i32::try_from(hash % u64::from(PARTITIONS.unsigned_abs())).unwrap_or(0)
}

/// The value of `field` in a generated JSON line.
fn field<'a>(line: &'a str, field: &str) -> &'a str {
    line.split(&format!(r#""{field}":""#))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
}

/// Sends each of `lines` to `topic`, to the partition of its key
/// (`FLUSH-p-round` to partition `p`).
pub(crate) fn produce(brokers: &str, topic: &str, key_field: &str, lines: &[&str]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a producer");
    for line in lines {
        let key = field(line, key_field);
        // `FLUSH-p-round` goes to partition `p`.
        let partition = key.strip_prefix("FLUSH-").map_or_else(
            || partition_of(key),
            |rest| {
                let p = rest.split('-').next().unwrap_or_default();
                p.parse().expect("a partition")
            },
        );
        let record = BaseRecord::<str, str>::to(topic)
            .payload(line)
            .key(key)
            .partition(partition);
        producer
            .send(record)
            .map_err(|(error, _)| error)
            .expect("sent");
    }
    producer.flush(Duration::from_secs(10)).expect("delivered");
}

/// Generated orders and payments, without late or garbled lines (whose
/// outcomes depend on how the inputs interleave, or name a file's line).
fn generate(dir: &Path) -> (Vec<String>, Vec<String>) {
    let data = dir.join("data");
    let generated = runner(&[
        "gen",
        "--out",
        data.to_str().expect("UTF-8"),
        "--orders",
        "3000",
        "--seed",
        "11",
        "--late",
        "0",
        "--very-late",
        "0",
        "--malformed",
        "0",
    ]);
    assert_eq!(generated.status, 0, "{}", generated.stderr);
    let lines = |name: &str| -> Vec<String> {
        std::fs::read_to_string(data.join(name))
            .expect("generated")
            .lines()
            .map(str::to_string)
            .collect()
    };
    (lines("orders.jsonl"), lines("payments.jsonl"))
}

/// Round `round` of the end of the input: per partition, an order and its
/// payment a day after the generated ones, later with each round. Their
/// event times move every partition's watermark past every wait and
/// retention, as the end of a file does. The instances have no
/// `idle_timeout`, so that a quiet input holds the others back and the
/// events of one that resumes are never late; so what the last round
/// sends waits for more, and rounds go on until every outcome is there.
fn end_round(brokers: &str, round: u32) {
    let (orders, payments): (Vec<String>, Vec<String>) = (0..PARTITIONS)
        .map(|partition| {
            let at = |second: u32| format!("2026-11-02T12:{:02}:{:02}Z", second / 60, second % 60);
            let (ordered, paid) = (at(2 * round), at(2 * round + 1));
            (
                format!(
                    r#"{{"order_id":"FLUSH-{partition}-{round}","user":"u-0","amount":1,"currency":"EUR","created_at":"{ordered}"}}"#
                ),
                format!(
                    r#"{{"order_ref":"FLUSH-{partition}-{round}","paid":1,"currency":"EUR","status":"success","notified_at":"{paid}"}}"#
                ),
            )
        })
        .unzip();
    let orders: Vec<&str> = orders.iter().map(String::as_str).collect();
    let payments: Vec<&str> = payments.iter().map(String::as_str).collect();
    produce(brokers, "orders", "order_id", &orders);
    produce(brokers, "payments", "order_ref", &payments);
}

/// The `part`th of three parts of `lines`, in their order.
fn third(lines: &[String], part: usize) -> Vec<&str> {
    let (from, to) = (lines.len() * part / 3, lines.len() * (part + 1) / 3);
    lines[from..to].iter().map(String::as_str).collect()
}

/// Every outcome written to `out/all*.jsonl` under `dir`, sorted, but
/// for those of the end rounds; a duplicate without its `of` between
/// `waiting` and `completed`, which says whether the second notification
/// came before its order or after, and so depends on how the partitions'
/// messages arrive (the file run merges by event time, the order first).
fn outcomes(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir.join("out")).into_iter().flatten() {
        let path = entry.expect("an entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("all") {
            let text = std::fs::read_to_string(&path).expect("readable");
            lines.extend(
                text.lines()
                    .filter(|line| !line.contains("FLUSH-"))
                    .map(|line| {
                        line.replace(r#""of":"waiting""#, r#""of":"waiting or completed""#)
                            .replace(r#""of":"completed""#, r#""of":"waiting or completed""#)
                    }),
            );
        }
    }
    lines.sort();
    lines
}

/// The example pipeline with its sources on the topics of `brokers`,
/// unbounded and never idle, as `kafka_source` makes it; checkpoints
/// every second.
fn kafka_pipeline(files: &Path, dir: &Path, brokers: &str) {
    let mut text = std::fs::read_to_string(files.join("pipeline.yaml")).expect("written");
    for (topic, file) in [("orders", "orders.jsonl"), ("payments", "payments.jsonl")] {
        text = text.replace(
            &format!("    type: file\n    path: data/{file}\n"),
            &format!(
                "    type: kafka\n    brokers: {brokers}\n    topic: {topic}\n    group: shared\n    \
                 format: jsonl\n"
            ),
        );
    }
    text.push_str("\ncheckpoint:\n  interval: 1s\n");
    std::fs::write(dir.join("pipeline.yaml"), text).expect("written");
}

/// Starts instance `number` of 3 on the pipeline in `dir`.
fn instance(dir: &Path, number: u32, log: &str) -> Child {
    instance_of(dir, number, 3, log)
}

/// Starts instance `number` of `count` on the pipeline in `dir`.
fn instance_of(dir: &Path, number: u32, count: u32, log: &str) -> Child {
    let state = dir.join("state");
    let which = format!("{number}/{count}");
    let args = ["--log", "text", "--instance", &which, "--state-dir"];
    spawn(
        dir,
        &[&args[..], &[state.to_str().expect("UTF-8")]].concat(),
        log,
    )
}

/// Starts the pipeline in `dir` with `args`, its stderr in `log` in `dir`.
pub(crate) fn spawn(dir: &Path, args: &[&str], log: &str) -> Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .arg(dir.join("pipeline.yaml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).expect("a log"))
        .spawn()
        .expect("runner starts")
}

/// Instances, each with its log, killed if still there when dropped: a
/// failing test leaves none running (live, they would run on).
pub(crate) struct Running(pub(crate) Vec<(Child, &'static str)>);

impl Drop for Running {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Stops an instance as Ctrl-C does; gives its exit code and what it
/// wrote to `log`.
pub(crate) fn stop(child: Child, dir: &Path, log: &str) -> (Option<i32>, String) {
    let (status, _) = interrupt(child);
    (
        status,
        std::fs::read_to_string(dir.join(log)).unwrap_or_default(),
    )
}

/// Waits until `check` holds, for at most a minute; then tells what the
/// instances in `dir` logged.
pub(crate) fn wait_until(what: &str, dir: &Path, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        if Instant::now() > deadline {
            let logs: Vec<String> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
                .map(|entry| {
                    let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                    format!("{}:\n{text}", entry.path().display())
                })
                .collect();
            panic!("waited a minute for {what}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn has_checkpoint(state: &Path) -> bool {
    std::fs::read_dir(state).into_iter().flatten().any(|entry| {
        entry.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("checkpoint-"))
    })
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// A mock cluster with topics `orders` and `payments` of eight
/// partitions each.
pub(crate) fn topics() -> MockCluster<'static, DefaultProducerContext> {
    topics_of(PARTITIONS)
}

/// A mock cluster with topics `orders` and `payments` of `partitions`
/// partitions each.
fn topics_of(partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    for topic in ["orders", "payments"] {
        cluster.create_topic(topic, partitions, 1).expect("a topic");
    }
    cluster
}

/// Where the topics are.
enum Cluster {
    /// librdkafka's, in the test's process.
    Mock(MockCluster<'static, DefaultProducerContext>),
    /// A broker process.
    Process(crate::kafka::Broker),
}

impl Cluster {
    /// Its bootstrap servers.
    fn brokers(&self) -> String {
        match self {
            Self::Mock(cluster) => cluster.bootstrap_servers(),
            Self::Process(broker) => broker.brokers.clone(),
        }
    }
}

/// Generated orders and payments, their outcomes in a run on files, and
/// the example pipeline on topics `orders` and `payments` of eight
/// partitions each, in a scratch directory.
struct Scenario {
    _cluster: Cluster,
    brokers: String,
    /// Where the pipeline is, and its outputs go.
    dir: std::path::PathBuf,
    orders: Vec<String>,
    payments: Vec<String>,
    /// The outcomes of the run on files.
    expected: Vec<String>,
}

impl Scenario {
    /// The scenario in scratch directory `name` (and `name_files`, for
    /// the run on files), on librdkafka's mock cluster.
    fn new(name: &str) -> Self {
        Self::on(name, Cluster::Mock(topics()))
    }

    /// The scenario in scratch directory `name`, on `cluster`, which has
    /// the topics.
    fn on(name: &str, cluster: Cluster) -> Self {
        let files = scratch(&format!("{name}_files"));
        let (orders, payments) = generate(&files);
        crate::accounting::pipeline(&files, false);
        let run = run_in(&files, &["--quiet"]);
        assert_eq!(run.status, 0, "{}", run.stderr);
        let expected = outcomes(&files);
        assert!(expected.len() > 3000, "{} outcomes", expected.len());
        for kind in ["timed_out", "duplicate", "mismatched"] {
            let outcome = format!(r#""outcome":"{kind}""#);
            assert!(
                expected.iter().any(|line| line.contains(&outcome)),
                "{kind}"
            );
        }
        let brokers = cluster.brokers();
        let dir = scratch(name);
        kafka_pipeline(&files, &dir, &brokers);
        Self {
            _cluster: cluster,
            brokers,
            dir,
            orders,
            payments,
            expected,
        }
    }

    /// Sends the second third of the events; once the second of
    /// `running` wrote outcomes of them to `file` (likely before its next
    /// checkpoint), kills it (SIGKILL). `checkpointed`: not before it saved
    /// a checkpoint of the partitions it was dealt (see the caller).
    fn kill_the_second_once_it_writes(
        &self,
        running: &mut Running,
        file: &str,
        checkpointed: bool,
    ) {
        if checkpointed {
            let log = self.dir.join(running.0[1].1);
            wait_until(
                "the second's checkpoint of its partitions",
                &self.dir,
                || {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    (text.rfind("kafka partitions assigned"))
                        .is_some_and(|at| text[at..].contains("checkpoint saved"))
                },
            );
        }
        let written = self.dir.join("out").join(file);
        let before = size(&written);
        self.send(1);
        wait_until(
            "the second's outcomes of the second third",
            &self.dir,
            || size(&written) > before,
        );
        let (mut second, _) = running.0.remove(1);
        second.kill().expect("killed");
        assert!(!second.wait().expect("ended").success());
    }

    /// Has the pipeline write the matches to the Kafka sink `published`
    /// (topic `alerts`, transactional id `tx`) too, in transactions, with
    /// `extra` lines in its `checkpoint` section.
    fn publish_in_transactions(&self, extra: &str) {
        let pipeline = self.dir.join("pipeline.yaml");
        let text = std::fs::read_to_string(&pipeline).expect("written");
        let text = (text.replace(
            "checkpoint:\n  interval: 1s\n",
            &format!("checkpoint:\n  interval: 1s\n  transactions: true\n{extra}"),
        ))
        .replacen(
            "outputs:\n",
            "outputs:\n  - {outcome: matched, sink: published}\n",
            1,
        )
        .replacen(
            "sinks:\n",
            &format!(
                "sinks:\n  published: {{type: kafka, brokers: {}, topic: alerts, properties: \
                 {{transactional.id: tx}}}}\n",
                self.brokers
            ),
            1,
        );
        std::fs::write(&pipeline, text).expect("written");
    }

    /// Sends the `half`th (0 or 1) half of the `part`th third of the
    /// events, each file's in its own order.
    fn send_half(&self, part: usize, half: usize) {
        for (topic, key, lines) in [
            ("orders", "order_id", &self.orders),
            ("payments", "order_ref", &self.payments),
        ] {
            let third = third(lines, part);
            let middle = third.len() / 2;
            let half = if half == 0 {
                &third[..middle]
            } else {
                &third[middle..]
            };
            produce(&self.brokers, topic, key, half);
        }
    }

    /// Sends rounds of the end of the input until every outcome is
    /// written (some may be twice, for processes that decide again what
    /// a killed one decided after its last checkpoint).
    fn end(&self) {
        let mut round = 0;
        let expected: std::collections::HashSet<&String> = self.expected.iter().collect();
        wait_until("every outcome", &self.dir, || {
            end_round(&self.brokers, round);
            round += 1;
            std::thread::sleep(Duration::from_millis(200));
            let written = outcomes(&self.dir);
            written.len() >= self.expected.len()
                && (written.iter().collect::<std::collections::HashSet<_>>()).is_superset(&expected)
        });
    }

    /// Sends the `part`th third of the events, each file's in its own
    /// order.
    fn send(&self, part: usize) {
        produce(
            &self.brokers,
            "orders",
            "order_id",
            &third(&self.orders, part),
        );
        produce(
            &self.brokers,
            "payments",
            "order_ref",
            &third(&self.payments, part),
        );
    }
}

/// Whether `together` holds exactly the lines `expected` does, as often;
/// panics saying what is missing or extra.
fn assert_same(together: &[String], expected: &[String]) {
    let missing: Vec<_> = expected
        .iter()
        .filter(|line| !together.contains(line))
        .take(3)
        .collect();
    let extra: Vec<_> = together
        .iter()
        .filter(|line| !expected.contains(line))
        .take(3)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:#?}\nextra {extra:#?}"
    );
    // Each as often as the file run wrote it.
    assert!(
        together == expected,
        "{} outcomes, where the file run wrote {}",
        together.len(),
        expected.len()
    );
}

/// Three processes share two topics of eight partitions; the second is
/// killed (SIGKILL) after a checkpoint, with outcomes written since, and
/// started again after more events came. Together they write each of the
/// file run's outcomes once: none lost, none twice, none of a key decided
/// where its other side is not.
#[test]
fn three_instances_one_killed_and_restarted_decide_what_one_file_run_does() {
    let scenario = Scenario::new("kafka_instances");
    let (dir, expected) = (&scenario.dir, &scenario.expected);
    let send = |part| scenario.send(part);

    send(0);
    let mut running = Running(vec![
        (instance(dir, 1, "1.log"), "1.log"),
        (instance(dir, 2, "2.log"), "2.log"),
        (instance(dir, 3, "3.log"), "3.log"),
    ]);
    let state = dir.join("state").join("instance-2-of-3");
    wait_until("a checkpoint of instance 2", dir, || has_checkpoint(&state));
    // More events; once instance 2 wrote outcomes of them (likely before
    // its next checkpoint), it is killed.
    scenario.kill_the_second_once_it_writes(&mut running, "all.2-of-3.jsonl", false);
    send(2);
    running
        .0
        .push((instance(dir, 2, "2-again.log"), "2-again.log"));
    scenario.end();
    // Time for a wrong extra outcome to show.
    std::thread::sleep(Duration::from_millis(1500));
    for (child, log) in running.0.drain(..) {
        let (status, stderr) = stop(child, dir, log);
        assert_eq!(status, Some(0), "{stderr}");
        if log == "2-again.log" {
            assert!(stderr.contains("resumed    from checkpoint"), "{stderr}");
            assert!(
                stderr.contains("runner: instance 2/3: stopped after "),
                "{stderr}"
            );
        }
    }
    assert_same(&outcomes(dir), expected);
    // Each instance wrote outcomes of its own partitions.
    for number in 1..=3 {
        let path = dir.join("out").join(format!("all.{number}-of-3.jsonl"));
        assert!(size(&path) > 0, "{}", path.display());
    }
}

/// Two processes share the topics; one is killed (SIGKILL) with outcomes
/// written since its checkpoint, the other stopped. Three processes start
/// in their place on the same state directory: each takes over its
/// partitions' offsets and pending keys from the two's checkpoints, and
/// all five files hold each of the file run's outcomes once. The two's
/// checkpoints go once all three have taken over.
#[test]
fn three_processes_take_over_from_two_and_decide_what_one_file_run_does() {
    take_over_from_two(&Scenario::new("kafka_instances_rescale"));
}

/// As above, against a broker process.
#[test]
fn against_a_broker_process_three_processes_take_over_from_two() {
    let broker = crate::kafka::Broker::start();
    for topic in ["orders", "payments"] {
        broker.create_topic(topic, PARTITIONS);
    }
    take_over_from_two(&Scenario::on(
        "kafka_instances_rescale_tansu",
        Cluster::Process(broker),
    ));
}

/// Two processes of `scenario`, then three taking over from them.
fn take_over_from_two(scenario: &Scenario) {
    let (dir, expected) = (&scenario.dir, &scenario.expected);
    let send = |part| scenario.send(part);
    let state = dir.join("state");

    send(0);
    let mut running = Running(vec![
        (instance_of(dir, 1, 2, "1-of-2.log"), "1-of-2.log"),
        (instance_of(dir, 2, 2, "2-of-2.log"), "2-of-2.log"),
    ]);
    wait_until("checkpoints of both", dir, || {
        has_checkpoint(&state.join("instance-1-of-2"))
            && has_checkpoint(&state.join("instance-2-of-2"))
    });
    scenario.kill_the_second_once_it_writes(&mut running, "all.2-of-2.jsonl", false);
    // While one of the two runs, none of three takes over.
    let refused = refusal(
        dir,
        &[
            "--instance",
            "1/3",
            "--state-dir",
            state.to_str().expect("UTF-8"),
        ],
    );
    assert!(
        refused.contains("cannot take over from") && refused.contains("stop every one of them"),
        "{refused}"
    );
    let (first, log) = running.0.remove(0);
    let (status, stderr) = stop(first, dir, log);
    assert_eq!(status, Some(0), "{stderr}");

    send(2);
    for number in 1..=3 {
        let log = ["1-of-3.log", "2-of-3.log", "3-of-3.log"][number as usize - 1];
        running.0.push((instance_of(dir, number, 3, log), log));
    }
    scenario.end();
    // The two's checkpoints go once the three have each saved one.
    wait_until("the two's checkpoints to go", dir, || {
        !has_checkpoint(&state.join("instance-1-of-2"))
            && !has_checkpoint(&state.join("instance-2-of-2"))
    });
    std::thread::sleep(Duration::from_millis(1500));
    for (child, log) in running.0.drain(..) {
        let (status, stderr) = stop(child, dir, log);
        assert_eq!(status, Some(0), "{stderr}");
        assert!(
            stderr.contains("took over  its partitions from the checkpoints of 2 processes"),
            "{stderr}"
        );
    }
    assert_same(&outcomes(dir), expected);
    for number in 1..=3 {
        let path = dir.join("out").join(format!("all.{number}-of-3.jsonl"));
        assert!(size(&path) > 0, "{}", path.display());
    }
}

/// Starts a process of the pipeline in `dir` that joins its consumer
/// group (`--join`), logging to `log`.
fn member(dir: &Path, log: &'static str) -> (Child, &'static str) {
    member_in(dir, "state", log)
}

/// Starts a process of the pipeline in `dir` that joins its consumer
/// group (`--join`) on the state directory `state` in `dir`, logging to
/// `log`.
fn member_in(dir: &Path, state: &str, log: &'static str) -> (Child, &'static str) {
    let state = dir.join(state);
    let args = ["--log", "text", "--join", "--state-dir"];
    let child = spawn(
        dir,
        &[&args[..], &[state.to_str().expect("UTF-8")]].concat(),
        log,
    );
    (child, log)
}

/// The partitions the group last dealt the process logging to `log` in
/// `dir`, as its directory and files are tagged: `partitions-3-5-of-8`.
pub(crate) fn dealt(dir: &Path, log: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(log)).ok()?;
    let line = text.lines().rfind(|line| {
        line.contains("kafka partitions dealt") || line.contains("kafka partitions taken back")
    })?;
    let (_, range) = line.split_once("partitions=partitions ")?;
    let (first_last, of) = range.trim().split_once(" of ")?;
    let (first, last) = first_last.split_once('-')?;
    Some(format!("partitions-{first}-{last}-of-{of}"))
}

/// Waits until the processes of `running` hold `ranges` between them,
/// each with a checkpoint of its range (in a state directory `state...`
/// in `dir`).
fn wait_for_ranges(dir: &Path, running: &Running, ranges: &[&str]) {
    wait_until(&format!("the group to deal {ranges:?}"), dir, || {
        let mut held: Vec<String> = (running.0.iter())
            .filter_map(|(_, log)| dealt(dir, log))
            .collect();
        held.sort();
        let states: Vec<std::path::PathBuf> = (std::fs::read_dir(dir).into_iter().flatten())
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("state"))
            .map(|entry| entry.path())
            .collect();
        held == ranges
            && (ranges.iter())
                .all(|range| (states.iter()).any(|state| has_checkpoint(&state.join(range))))
    });
}

/// Three processes join one consumer group over topics of eight
/// partitions, which it deals out as 0-2, 3-5 and 6-7; the one holding
/// 3-5 is killed (SIGKILL) with outcomes written since its checkpoint.
/// Once the group stops hearing from it, it deals its partitions to the
/// other two, which take its keys over; then a fourth process joins, and
/// the group deals the partitions out over three again; then one leaves
/// (Ctrl-C), and the group deals them over the two left. Events come all
/// along. Together their files hold each of the file run's outcomes once:
/// none lost, none twice.
#[test]
fn processes_of_a_group_one_killed_and_one_joining_decide_what_one_file_run_does() {
    killed_and_joining(&Scenario::new("kafka_join"));
}

/// As above, against a broker process.
#[test]
fn against_a_broker_process_processes_of_a_group_one_killed_and_one_joining() {
    let broker = crate::kafka::Broker::start();
    for topic in ["orders", "payments"] {
        broker.create_topic(topic, PARTITIONS);
    }
    killed_and_joining(&Scenario::on("kafka_join_tansu", Cluster::Process(broker)));
}

/// Three processes of `scenario`'s group, one killed, and one joining.
fn killed_and_joining(scenario: &Scenario) {
    let (dir, expected) = (&scenario.dir, &scenario.expected);
    let logs = killed_and_joining_on(scenario, |_| "state");
    assert!(
        logs.contains("took over  its partitions from the checkpoints"),
        "{logs}"
    );
    assert!(
        !logs.contains("no checkpoint in the state directory"),
        "{logs}"
    );
    assert_same(&outcomes(dir), expected);
    // A process alone takes the group's partitions over, each from the
    // checkpoint holding it newest: it decides nothing again.
    let state = dir.join("state");
    let pipeline = dir.join("pipeline.yaml");
    let (state_text, pipeline_text) = (
        state.to_str().expect("UTF-8"),
        pipeline.to_str().expect("UTF-8"),
    );
    let listed = inspect("1/1", state_text, pipeline_text);
    assert_eq!(listed.status, 0, "{}", listed.stderr);
    assert!(
        listed
            .stdout
            .contains("processes of a consumer group (--join)"),
        "{}",
        listed.stdout
    );
    let stderr = run_briefly(dir, &["--state-dir", state_text]);
    assert!(
        stderr.contains("took over  its partitions from the checkpoints of 2 processes"),
        "{stderr}"
    );
    assert_same(&outcomes(dir), expected);
}

/// As the processes of a group above, against a broker process, but each
/// process on a state directory of its own (as on machines of their own),
/// the pipeline keeping its state in a state topic: the processes that
/// take partitions over, the killed one's among them, take their keys
/// from the topic. Nothing is lost: every outcome of the file run is in
/// the files; what the killed process decided after its last checkpoint
/// is decided again by the new owner, in its own file (file sinks are
/// cut back only within a state directory), so some are there twice, and
/// only those. Then a process alone, on a new state directory, takes
/// every partition from the topic and decides nothing again.
#[test]
fn against_a_broker_process_processes_of_a_group_apart_move_partitions_through_a_state_topic() {
    let broker = crate::kafka::Broker::start();
    for topic in ["orders", "payments"] {
        broker.create_topic(topic, PARTITIONS);
    }
    broker.create_topic("alerts", 1);
    broker.create_topic("state", 4);
    let scenario = Scenario::on("kafka_join_apart_topic", Cluster::Process(broker));
    let dir = &scenario.dir;
    scenario.publish_in_transactions("  state_topic: state\n");
    let logs = killed_and_joining_on(&scenario, |n| {
        ["state-1", "state-2", "state-3", "state-4"][n - 1]
    });
    assert!(logs.contains("of them from the state topic"), "{logs}");
    assert!(
        !logs.contains("no checkpoint in the state directory"),
        "{logs}"
    );
    let written = outcomes(dir);
    let missing: Vec<_> = (scenario.expected.iter())
        .filter(|line| !written.contains(line))
        .take(3)
        .collect();
    let foreign: Vec<_> = (written.iter())
        .filter(|line| !scenario.expected.contains(line))
        .take(3)
        .collect();
    assert!(
        missing.is_empty() && foreign.is_empty(),
        "missing {missing:#?}\nnot the file run's {foreign:#?}"
    );
    let mut counts = std::collections::HashMap::new();
    for line in &written {
        *counts.entry(line).or_insert(0) += 1;
    }
    for line in &scenario.expected {
        *counts.entry(line).or_insert(0) -= 1;
    }
    let fewer: Vec<_> = (counts.iter())
        .filter(|(_, count)| **count < 0)
        .take(3)
        .collect();
    assert!(fewer.is_empty(), "fewer than the file run: {fewer:#?}");
    let state = dir.join("state-alone");
    let stderr = run_briefly(dir, &["--state-dir", state.to_str().expect("UTF-8")]);
    assert!(
        stderr.contains("8 partitions of them from the state topic"),
        "{stderr}"
    );
    assert_eq!(outcomes(dir), written, "the process alone decided again");
}

/// Three processes of `scenario`'s group, one killed, and one joining,
/// the `n`th process to start on the state directory `state_of(n)`; what
/// they logged.
fn killed_and_joining_on(scenario: &Scenario, state_of: fn(usize) -> &'static str) -> String {
    let dir = &scenario.dir;
    // A process not heard from for 6 s is dealt out.
    let pipeline = dir.join("pipeline.yaml");
    let text = std::fs::read_to_string(&pipeline).expect("written");
    let text = text.replacen(
        "    group: shared\n",
        "    group: shared\n    properties: {session.timeout.ms: 6000, heartbeat.interval.ms: 500}\n",
        1,
    );
    std::fs::write(&pipeline, text).expect("written");
    let thirds = [
        "partitions-0-2-of-8",
        "partitions-3-5-of-8",
        "partitions-6-7-of-8",
    ];

    scenario.send(0);
    let mut running = Running(vec![
        member_in(dir, state_of(1), "1.log"),
        member_in(dir, state_of(2), "2.log"),
        member_in(dir, state_of(3), "3.log"),
    ]);
    wait_for_ranges(dir, &running, &thirds);
    // The one holding 3-5 second among them, to be killed.
    let second = (running.0.iter())
        .position(|(_, log)| dealt(dir, log).as_deref() == Some(thirds[1]))
        .expect("one holds 3-5");
    let holder = running.0.remove(second);
    running.0.insert(1, holder);
    // Processes apart (each on a state directory of its own) are killed
    // only once they saved a checkpoint of their partitions, whose
    // snapshots name them on the state topic, so that whoever takes the
    // partitions over fences them off. One killed before that leaves a
    // transaction open on the sinks only, which Kafka keeps apart from the
    // state topic; tansu, though, holds every partition's
    // `read_committed` end back while it is open (until it times out,
    // after 60 s), and the process reading the snapshots gives up first.
    let apart = state_of(1) != state_of(2);
    scenario.kill_the_second_once_it_writes(
        &mut running,
        &format!("all.{}.jsonl", thirds[1]),
        apart,
    );
    wait_for_ranges(
        dir,
        &running,
        &["partitions-0-3-of-8", "partitions-4-7-of-8"],
    );

    scenario.send_half(2, 0);
    running.0.push(member_in(dir, state_of(4), "4.log"));
    wait_for_ranges(dir, &running, &thirds);
    // One leaves (Ctrl-C): its last checkpoint saved, the group deals its
    // partitions to the other two.
    let (leaving, log) = running.0.remove(0);
    let (status, stderr) = stop(leaving, dir, log);
    assert_eq!(status, Some(0), "{stderr}");
    let mut logs = stderr;
    wait_for_ranges(
        dir,
        &running,
        &["partitions-0-3-of-8", "partitions-4-7-of-8"],
    );
    scenario.send_half(2, 1);
    scenario.end();
    // Time for a wrong extra outcome to show.
    std::thread::sleep(Duration::from_millis(1500));
    for (child, log) in running.0.drain(..) {
        let (status, stderr) = stop(child, dir, log);
        assert_eq!(status, Some(0), "{stderr}");
        logs.push_str(&stderr);
    }
    logs
}

/// A process of a group dealt partitions read before (their group has
/// offsets committed) that no checkpoint in its state directory holds
/// says that their keys are not there: processes of one group with state
/// directories of their own would otherwise lose keys without a word.
#[test]
fn a_process_of_a_group_without_the_state_of_partitions_read_before_says_so() {
    let cluster = topics();
    let brokers = cluster.bootstrap_servers();
    let dir = scratch("kafka_join_apart");
    // The mock cluster deals a group its last member left only once the
    // session timeout (less a second) has passed.
    pipeline_reading(
        &dir,
        &brokers,
        "    properties: {session.timeout.ms: 3000, heartbeat.interval.ms: 500}\n",
    );
    let order = r#"{"id":"k1","ts":"2026-11-02T12:00:00Z"}"#;
    produce(&brokers, "orders", "id", &[order]);
    let (here, elsewhere) = (dir.join("here"), dir.join("elsewhere"));
    let run = |state: &Path| {
        run_briefly(
            &dir,
            &["--join", "--state-dir", state.to_str().expect("UTF-8")],
        )
    };
    let without = "but no checkpoint in the state directory";
    let first = run(&here);
    assert!(!first.contains(without), "{first}");
    // Resumed from its own checkpoint: its keys are there.
    let again = run(&here);
    assert!(again.contains("resumed    from checkpoint"), "{again}");
    assert!(!again.contains(without), "{again}");
    let apart = run(&elsewhere);
    assert!(
        apart.contains(
            "warning: kafka source `app`: partition 1 of `orders` starts at the offsets \
             committed in group `g`, but no checkpoint in the state directory (or on a state \
             topic) holds it: the keys read from it before are not here"
        ),
        "{apart}"
    );
}

/// A process of a group that reads a topic the brokers do not know stops,
/// saying so, rather than waiting for partitions that never come.
#[test]
fn a_process_of_a_group_reading_a_topic_that_is_not_there_stops() {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    cluster.create_topic("orders", 2, 1).expect("a topic");
    let dir = scratch("kafka_join_no_topic");
    pipeline_reading(&dir, &cluster.bootstrap_servers(), "");
    let refused = refusal(&dir, &["--join"]);
    assert!(
        refused.contains("error: consumer group `g.members`:") && refused.contains("payments"),
        "{refused}"
    );
}

/// A process of a group takes each partition from the checkpoint that
/// holds it newest, and from each checkpoint only those. Here its own
/// range 0-7's checkpoint holds every key pending, and a newer one of
/// range 4-7 (whose 0-3 counterpart is gone, as if its process had died
/// before saving) holds the keys of 4-7 matched: once it took over, only
/// the keys of 0-3 are pending; the older keys of 4-7 are not taken.
#[test]
fn a_process_of_a_group_takes_from_each_checkpoint_only_what_it_holds_newest() {
    let cluster = topics();
    let brokers = cluster.bootstrap_servers();
    let dir = scratch("kafka_join_picks");
    // A group its last member left deals again after this, less a second;
    // a silent topic lets the other's events through after a second.
    pipeline_reading(
        &dir,
        &brokers,
        "    idle_timeout: 1s\n    properties: {session.timeout.ms: 3000, heartbeat.interval.ms: \
         500}\n",
    );
    let keys: Vec<String> = (0..16).map(|n| format!("k{n}")).collect();
    let send = |topic: &str, second: u32| {
        let lines: Vec<String> = (keys.iter())
            .map(|key| format!(r#"{{"id":"{key}","ts":"2026-11-02T12:00:0{second}Z"}}"#))
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        produce(&brokers, topic, "id", &lines);
    };
    let state = dir.join("state");
    let state_arg = state.to_str().expect("UTF-8");
    let args = ["--join", "--state-dir", state_arg];
    let all = state.join("partitions-0-7-of-8");
    let copy = |from: &Path, to: &Path| {
        let _ = std::fs::remove_dir_all(to);
        std::fs::create_dir_all(to).expect("a directory");
        for entry in std::fs::read_dir(from).expect("a directory").flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with("checkpoint-") {
                std::fs::copy(entry.path(), to.join(name)).expect("copied");
            }
        }
    };
    // Every order pending, in the checkpoint of one process's range 0-7.
    send("orders", 0);
    run_briefly(&dir, &args);
    copy(&all, &dir.join("pending"));
    // Every order matched by two processes, holding 0-3 and 4-7.
    send("payments", 1);
    let mut running = Running(vec![member(&dir, "1.log"), member(&dir, "2.log")]);
    let halves = ["partitions-0-3-of-8", "partitions-4-7-of-8"];
    wait_for_ranges(&dir, &running, &halves);
    wait_until("every match", &dir, || {
        matched_keys(&dir).len() == keys.len()
    });
    for (child, log) in running.0.drain(..) {
        let (status, stderr) = stop(child, &dir, log);
        assert_eq!(status, Some(0), "{stderr}");
    }
    std::fs::remove_dir_all(state.join(halves[0])).expect("removed");
    copy(&dir.join("pending"), &all);
    let stderr = run_briefly(&dir, &args);
    let pending = (keys.iter()).filter(|key| partition_of(key) < 4).count();
    assert!(
        stderr.contains("took over  its partitions from the checkpoints of 2 processes")
            && stderr.contains(&format!(": {pending} keys pending")),
        "{pending} keys of partitions 0-3: {stderr}"
    );
}

/// Adds to the pipeline in `dir` the Kafka sink `alerts` on `brokers`
/// (with `extra` in its mapping), written in transactions (with
/// `checkpoint` in that section), which gets the matches too.
pub(crate) fn add_transactional_sink(dir: &Path, brokers: &str, checkpoint: &str, extra: &str) {
    let path = dir.join("pipeline.yaml");
    let text = std::fs::read_to_string(&path).expect("written").replace(
        "sinks:\n",
        &format!(
            "checkpoint: {{{checkpoint}transactions: true}}\nsinks:\n  alerts: {{type: kafka, \
             brokers: {brokers}, topic: alerts{extra}}}\n"
        ),
    ) + "  - {outcome: matched, sink: alerts}\n";
    std::fs::write(&path, text).expect("written");
}

/// As the processes of a group above, against a broker process, writing
/// the matches to a Kafka sink too, in transactions: a process that takes
/// partitions over fences off the transactional id of each process that
/// held them, whose open transaction is aborted, and takes them from the
/// checkpoints whose transactions committed. The files hold each outcome
/// once, as before; the brokers keep each range's checkpoint number.
/// (tansu does not hide aborted records from `read_committed` readers, so
/// the Kafka sink's topic is not compared.)
#[test]
fn against_a_broker_process_processes_of_a_group_write_in_transactions() {
    let broker = crate::kafka::Broker::start();
    for topic in ["orders", "payments"] {
        broker.create_topic(topic, PARTITIONS);
    }
    broker.create_topic("alerts", 1);
    let scenario = Scenario::on("kafka_join_transactions", Cluster::Process(broker));
    scenario.publish_in_transactions("");
    killed_and_joining(&scenario);
    let logs: String = ["1.log", "2.log", "3.log", "4.log"]
        .iter()
        .map(|log| std::fs::read_to_string(scenario.dir.join(log)).unwrap_or_default())
        .collect();
    assert!(
        logs.contains("kafka transactions of another process fenced off id=tx-partitions-3-5-of-8"),
        "{logs}"
    );
    assert!(logs.contains("kafka transaction committed"), "{logs}");
}

/// A checkpoint saved whose transaction did not commit (its process died
/// between the two) is dropped by the processes that take its partitions
/// over, once they fenced its transactional id off: they take them from
/// the checkpoint before, whose transaction committed.
#[test]
fn a_checkpoint_whose_transaction_did_not_commit_is_not_taken_over() {
    let cluster = topics();
    cluster.create_topic("alerts", 1, 1).expect("a topic");
    let brokers = cluster.bootstrap_servers();
    let dir = scratch("kafka_join_uncommitted");
    // A group its last member left deals again after this, less a second.
    pipeline_reading(
        &dir,
        &brokers,
        "    idle_timeout: 1s\n    properties: {session.timeout.ms: 3000, heartbeat.interval.ms: \
         500}\n",
    );
    add_transactional_sink(
        &dir,
        &brokers,
        "interval: 300ms, ",
        ", properties: {transactional.id: tx}",
    );
    let orders: Vec<String> = (0..16)
        .map(|n| format!(r#"{{"id":"k{n}","ts":"2026-11-02T12:00:00Z"}}"#))
        .collect();
    produce(
        &brokers,
        "orders",
        "id",
        &orders.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let state = dir.join("state");
    let all = state.join("partitions-0-7-of-8");
    // One process, dealt every partition, leaves checkpoints of its orders
    // pending; its last, as if it had died before committing it.
    run_briefly(
        &dir,
        &["--join", "--state-dir", state.to_str().expect("UTF-8")],
    );
    let numbers = crate::kafka::checkpoint_numbers(&all);
    let last = numbers.iter().copied().max().expect("a checkpoint");
    assert!(numbers.contains(&(last - 1)), "{numbers:?}");
    crate::kafka::commit_number(&brokers, "tx-partitions-0-7-of-8", last - 1);
    // Two processes take the partitions over, 0-3 and 4-7.
    let mut running = Running(vec![member(&dir, "1.log"), member(&dir, "2.log")]);
    wait_for_ranges(
        &dir,
        &running,
        &["partitions-0-3-of-8", "partitions-4-7-of-8"],
    );
    let mut logs = String::new();
    for (child, log) in running.0.drain(..) {
        let (status, stderr) = stop(child, &dir, log);
        assert_eq!(status, Some(0), "{stderr}");
        logs.push_str(&stderr);
    }
    assert!(
        logs.contains("kafka transactions of another process fenced off id=tx-partitions-0-7-of-8"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!(
            "warning: checkpoint {last} in `{}` was saved, but its transaction as \
             `tx-partitions-0-7-of-8` did not commit (the brokers committed that of checkpoint \
             {} last): dropped",
            all.display(),
            last - 1
        )),
        "{logs}"
    );
    // Each took its half of the orders pending from the one before.
    assert_eq!(
        logs.matches(&format!("the checkpoint of one process ({}): ", last - 1))
            .count(),
        2,
        "{logs}"
    );
    let pending: usize = (logs.lines())
        .filter_map(|line| line.split_once(&format!("({}): ", last - 1)))
        .filter_map(|(_, rest)| rest.split_once(' ')?.0.parse::<usize>().ok())
        .sum();
    assert_eq!(pending, 16, "{logs}");
}

/// Processes by number write their Kafka sinks in transactions of their
/// own (the transactional id with their number after it); one of another
/// number takes their keys over once it fenced their ids off.
#[test]
fn processes_by_number_write_in_transactions_of_their_own() {
    let broker = crate::kafka::Broker::start();
    for topic in ["orders", "payments"] {
        broker.create_topic(topic, PARTITIONS);
    }
    broker.create_topic("alerts", 1);
    let dir = scratch("kafka_instances_transactions");
    pipeline_reading(&dir, &broker.brokers, "");
    add_transactional_sink(
        &dir,
        &broker.brokers,
        "interval: 300ms, ",
        ", properties: {transactional.id: tx}",
    );
    let lines: Vec<String> = (0..16)
        .map(|n| format!(r#"{{"id":"k{n}","ts":"2026-11-02T12:00:00Z"}}"#))
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    produce(&broker.brokers, "orders", "id", &lines);
    produce(&broker.brokers, "payments", "id", &lines);
    let state = dir.join("state");
    let state_arg = state.to_str().expect("UTF-8");
    for which in ["1/2", "2/2"] {
        let stderr = run_briefly(&dir, &["--instance", which, "--state-dir", state_arg]);
        assert!(stderr.contains("kafka transaction committed"), "{stderr}");
    }
    // Each with its own number, which the brokers keep for each.
    let marker = |group: &str| {
        let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &broker.brokers)
            .set("group.id", group)
            .create()
            .expect("a consumer");
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition("alerts", 0);
        rdkafka::consumer::Consumer::committed_offsets(&consumer, list, Duration::from_secs(10))
            .expect("answered")
            .find_partition("alerts", 0)
            .map(|partition| partition.offset())
    };
    for group in ["tx-1-of-2", "tx-2-of-2"] {
        assert!(
            matches!(marker(group), Some(rdkafka::Offset::Offset(n)) if n > 0),
            "{group}"
        );
    }
    assert!(!matches!(marker("tx"), Some(rdkafka::Offset::Offset(_))));
    // As if the first had died between saving its last checkpoint and
    // committing its transaction: the brokers have the one before.
    let first = state.join("instance-1-of-2");
    let numbers = crate::kafka::checkpoint_numbers(&first);
    let last = numbers.iter().copied().max().expect("a checkpoint");
    assert!(numbers.contains(&(last - 1)), "{numbers:?}");
    crate::kafka::commit_number(&broker.brokers, "tx-1-of-2", last - 1);
    // One of three takes over from the two, fencing their ids off first,
    // taking the first's checkpoint that committed, and writes in
    // transactions of its own.
    let stderr = run_briefly(&dir, &["--instance", "1/3", "--state-dir", state_arg]);
    assert!(
        stderr.contains("took over  its partitions from the checkpoints of 2 processes")
            && stderr.contains("kafka transactions of another process fenced off id=tx-1-of-2")
            && stderr.contains("kafka transactions of another process fenced off id=tx-2-of-2"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: checkpoint {last} in `{}` was saved, but its transaction as `tx-1-of-2` \
             did not commit",
            first.display()
        )),
        "{stderr}"
    );
    assert!(matches!(marker("tx-1-of-3"), Some(rdkafka::Offset::Offset(n)) if n > 0));
    let pipeline = dir.join("pipeline.yaml");
    let listing = inspect("1/3", state_arg, pipeline.to_str().expect("UTF-8"));
    assert!(
        listing
            .stdout
            .contains("Kafka sinks written as `tx-1-of-3`"),
        "{}",
        listing.stdout
    );
}

/// The bill check over topics `orders` and `payments` of `brokers`,
/// bounded, every outcome to `out.jsonl`.
fn small_pipeline(dir: &Path, brokers: &str) {
    pipeline_reading(dir, brokers, "    bounded: true\n");
}

/// The bill check over topics `orders` and `payments` of `brokers`, each
/// source with `extra`, every outcome to `out.jsonl`.
pub(crate) fn pipeline_reading(dir: &Path, brokers: &str, extra: &str) {
    let source = |name: &str, topic: &str, fields: &str| {
        format!(
            "  {name}:\n    type: kafka\n    brokers: {brokers}\n    topic: {topic}\n    \
             group: g\n    format: jsonl\n{extra}    schema: {{{fields}}}\n    \
             event_time: ts\n    watermark_lag: 1s\n"
        )
    };
    let text = format!(
        "sources:\n{}{}connect: {{app: id, bank: id}}\nmatch:\n  wait: 10s\nsinks:\n  \
         out: {{type: file, path: out.jsonl}}\noutputs:\n  - {{outcome: matched, sink: out}}\n",
        source("app", "orders", "id: string, ts: timestamp"),
        source("bank", "payments", "id: string, ts: timestamp"),
    );
    std::fs::write(dir.join("pipeline.yaml"), text).expect("written");
}

#[test]
fn topics_partitioned_differently_are_refused_before_anything_runs() {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("orders", 8, 1).expect("a topic");
    cluster.create_topic("payments", 6, 1).expect("a topic");
    let dir = scratch("kafka_instances_not_co_partitioned");
    small_pipeline(&dir, &brokers);
    let pipeline = dir.join("pipeline.yaml");
    let run = runner(&["--instance", "1/2", pipeline.to_str().expect("UTF-8")]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "error[E403]: kafka topic `payments` of source `bank`: it has 6 partitions, but \
             topic `orders` of source `app` has 8"
        ),
        "{}",
        run.stderr
    );
    // Pointed at the topic's line of the second source.
    assert!(run.stderr.contains("topic: payments"), "{}", run.stderr);
    assert!(!dir.join("out.2-of-2.jsonl").exists());
    assert!(!dir.join("out.1-of-2.jsonl").exists());
    // One process reads every partition of each: nothing to share.
    let alone = runner(&["--quiet", pipeline.to_str().expect("UTF-8")]);
    assert_eq!(alone.status, 0, "{}", alone.stderr);
}

#[test]
fn more_instances_than_partitions_are_refused() {
    let cluster = topics_of(2);
    let brokers = cluster.bootstrap_servers();
    let dir = scratch("kafka_instances_too_many");
    small_pipeline(&dir, &brokers);
    let pipeline = dir.join("pipeline.yaml");
    let run = runner(&["--instance", "3/3", pipeline.to_str().expect("UTF-8")]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "kafka topic `orders` of source `app`: instance 3/3 has none of its 2 partitions \
             to read: run at most 2 instances"
        ),
        "{}",
        run.stderr
    );
    let second = runner(&[
        "--quiet",
        "--instance",
        "2/3",
        pipeline.to_str().expect("UTF-8"),
    ]);
    assert_eq!(second.status, 0, "{}", second.stderr);
}

#[test]
fn a_source_that_is_not_kafka_cannot_be_shared() {
    let dir = scratch("kafka_instances_file_source");
    std::fs::write(dir.join("orders.jsonl"), "").expect("written");
    std::fs::write(
        dir.join("pipeline.yaml"),
        "sources:\n  app:\n    type: file\n    path: orders.jsonl\n    \
         schema: {id: string, ts: timestamp}\n    event_time: ts\n    watermark_lag: 1s\n  \
         bank:\n    type: file\n    path: orders.jsonl\n    \
         schema: {id: string, ts: timestamp}\n    event_time: ts\n    watermark_lag: 1s\nconnect: {app: id, bank: id}\nmatch:\n  wait: 1s\n\
         sinks:\n  out: {type: stdout}\noutputs:\n  - {outcome: matched, sink: out}\n",
    )
    .expect("written");
    for (args, how) in [
        (&["--instance", "1/2"][..], "`--instance 1/2`"),
        (&["--join"], "`--join`"),
    ] {
        let run = run_in(&dir, args);
        assert_eq!(run.status, 2, "{}", run.stderr);
        let error = format!(
            "error[E403]: source `app` does not read Kafka: with {how}, every process would read \
             all of it"
        );
        assert!(run.stderr.contains(&error), "{}", run.stderr);
        assert!(run.stderr.contains("path: orders.jsonl"), "{}", run.stderr);
    }
}

/// A bounded source reads to an end; processes of a group read on while
/// it deals partitions out: refused, pointed at, before joining.
#[test]
fn a_bounded_source_is_not_read_by_a_group() {
    let dir = scratch("kafka_join_bounded");
    // No broker is asked anything.
    small_pipeline(&dir, "127.0.0.1:9");
    let run = run_in(&dir, &["--join"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "error[E403]: kafka source `app` is bounded: with `--join`, processes read on"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("topic: orders"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("joined the consumer group"),
        "{}",
        run.stderr
    );
}

#[test]
fn another_number_of_processes_takes_over_and_an_older_one_is_refused() {
    let cluster = topics_of(4);
    let brokers = cluster.bootstrap_servers();
    let dir = scratch("kafka_instances_recount");
    pipeline_reading(&dir, &brokers, "    idle_timeout: 1s\n");
    let state = dir.join("state");
    let state_arg = state.to_str().expect("UTF-8");
    // Stopped, the first of two leaves its checkpoint.
    let stderr = run_briefly(&dir, &["--instance", "1/2", "--state-dir", state_arg]);
    assert!(has_checkpoint(&state.join("instance-1-of-2")), "{stderr}");
    let pipeline = dir.join("pipeline.yaml");
    let pipeline = pipeline.to_str().expect("UTF-8");
    // `state inspect` finds it with the same `--instance`.
    let listing = inspect("1/2", state_arg, pipeline);
    assert_eq!(listing.status, 0, "{}", listing.stderr);
    assert!(
        listing.stdout.contains("source app")
            && listing.stdout.contains("sink out     out.1-of-2.jsonl"),
        "{}",
        listing.stdout
    );
    assert!(!listing.stderr.contains("changed"), "{}", listing.stderr);
    // With `--instance 1/3` it tells what one of three would take over.
    let listing = inspect("1/3", state_arg, pipeline);
    assert_eq!(listing.status, 0, "{}", listing.stderr);
    assert!(
        listing.stdout.contains(&format!(
            "no checkpoint in `{}` yet: started, this process takes its partitions over from \
             the checkpoints of `{}` of 2 processes",
            state.join("instance-1-of-3").display(),
            state.join("instance-1-of-2").display()
        )),
        "{}",
        listing.stdout
    );
    // While the second of two runs, before its first checkpoint, none of
    // three takes over.
    let second = instance_of(&dir, 2, 2, "2-of-2.log");
    wait_until("the second of two to run", &dir, || {
        std::fs::read_to_string(dir.join("2-of-2.log")).is_ok_and(|log| log.contains("run started"))
    });
    let refused = refusal(&dir, &["--instance", "1/3", "--state-dir", state_arg]);
    assert!(
        refused.contains(&format!(
            "cannot take over from `{}`, `{}` of 2 processes: another run is using the \
             checkpoints in `{}`",
            state.join("instance-1-of-2").display(),
            state.join("instance-2-of-2").display(),
            state.join("instance-2-of-2").display(),
        )),
        "{}",
        refused
    );
    let (status, stderr) = stop(second, &dir, "2-of-2.log");
    assert_eq!(status, Some(0), "{stderr}");
    // One of three takes over from the two.
    let stderr = run_briefly(&dir, &["--instance", "1/3", "--state-dir", state_arg]);
    assert!(
        stderr.contains("took over  its partitions from the checkpoints of 2 processes"),
        "{stderr}"
    );
    assert!(has_checkpoint(&state.join("instance-1-of-3")), "{stderr}");
    // The others of three have not: the two's checkpoints stay, and a
    // process alone would take each partition from the checkpoint that
    // holds it newest, of either number.
    assert!(has_checkpoint(&state.join("instance-1-of-2")));
    let pipeline_arg = dir.join("pipeline.yaml");
    let listing = inspect("1/1", state_arg, pipeline_arg.to_str().expect("UTF-8"));
    assert!(
        listing.stdout.contains(
            "started, this process takes each of its partitions over from the checkpoint that \
             holds it newest"
        ),
        "{}",
        listing.stdout
    );
    // The first of two, started again, would read partitions one of three
    // owns now: refused.
    let old = refusal(&dir, &["--instance", "1/2", "--state-dir", state_arg]);
    assert!(
        old.contains(&format!(
            "the state directory holds checkpoints of `{}` of 3 processes, newer than this \
             process's own",
            state.join("instance-1-of-3").display()
        )),
        "{}",
        old
    );
    // The three resume their own; `--fresh` starts the two over.
    let stderr = run_briefly(&dir, &["--instance", "1/3", "--state-dir", state_arg]);
    assert!(stderr.contains("resumed    from checkpoint"), "{stderr}");
    run_briefly(
        &dir,
        &["--instance", "1/2", "--fresh", "--state-dir", state_arg],
    );
    // Started over, the two are newer than the three.
    let superseded = refusal(&dir, &["--instance", "1/3", "--state-dir", state_arg]);
    assert!(
        superseded.contains("of 2 processes, newer than this process's own"),
        "{superseded}"
    );
    // A process alone takes partitions 0-1 from the first of two, started
    // over, newer than the first of three, and 2-3 from the second of two.
    let stderr = run_briefly(&dir, &["--state-dir", state_arg]);
    assert!(
        stderr.contains("took over  its partitions from the checkpoints of 2 processes"),
        "{stderr}"
    );
}

/// `count` processes (one: alone) read orders `k0` to `k15`, all at one
/// time, from topics of eight partitions of a new cluster, and are stopped
/// with the keys pending; then their payments are sent. The pipeline, in the scratch
/// directory `name`, reads the topics bounded from then on.
fn stopped_with_orders_pending(
    name: &str,
    count: u32,
) -> (
    MockCluster<'static, DefaultProducerContext>,
    std::path::PathBuf,
) {
    let cluster = topics();
    let brokers = cluster.bootstrap_servers();
    let dir = scratch(name);
    // Never idle: a quiet payments topic holds the orders' watermark back
    // (idle, it would let the end of the bounded orders time them out).
    pipeline_reading(&dir, &brokers, "");
    // Keys `k0` to `k15` to `topic`, at second `second`.
    let send = |topic: &str, second: u32| {
        let lines: Vec<String> = (0..16)
            .map(|n| format!(r#"{{"id":"k{n}","ts":"2026-11-02T12:00:0{second}Z"}}"#))
            .collect();
        produce(
            &brokers,
            topic,
            "id",
            &lines.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    };
    send("orders", 0);
    let state = dir.join("state");
    let state_arg = state.to_str().expect("UTF-8");
    let instances: Vec<Instance> = match count {
        1 => vec![Instance::ALONE],
        _ => (1..=count)
            .map(|number| Instance::new(number, count).expect("an instance"))
            .collect(),
    };
    let runs: Vec<(Child, String)> = (instances.iter())
        .map(|instance| {
            let which = instance.to_string();
            let log = format!("{}.log", instance.tag().unwrap_or_else(|| "alone".into()));
            let mut args = [&METERED[..], &["--state-dir", state_arg]].concat();
            if instance.is_shared() {
                args.extend(["--instance", &which]);
            }
            (spawn(&dir, &args, &log), log)
        })
        .collect();
    // Every order read (they are stopped, not waited for).
    for (mut run, log) in runs {
        read_to_end(&dir, &log, &mut run);
        let (status, stderr) = stop(run, &dir, &log);
        assert_eq!(status, Some(0), "{stderr}");
    }
    for instance in instances {
        assert!(has_checkpoint(&instance.state_dir(&state)));
    }
    send("payments", 1);
    pipeline_reading(&dir, &brokers, "    bounded: true\n");
    (cluster, dir)
}

/// `runner state inspect` of instance `which` (`1/3`) of `pipeline`, its
/// checkpoints in `state`.
fn inspect(which: &str, state: &str, pipeline: &str) -> crate::harness::Run {
    runner(&[
        "state",
        "inspect",
        "--instance",
        which,
        "--state-dir",
        state,
        pipeline,
    ])
}

/// Runs the pipeline in `dir` with `args`, which must refuse to start
/// (exit 2); gives what it wrote to stderr. One that runs instead is
/// stopped after a minute, failing the test rather than hanging it.
pub(crate) fn refusal(dir: &Path, args: &[&str]) -> String {
    let log = dir.join("refused.log");
    let mut run = spawn(dir, args, "refused.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = run.try_wait().expect("waited") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = run.kill();
            let _ = run.wait();
            panic!(
                "{args:?} ran instead of being refused:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&log).expect("its log");
    assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
    stderr
}

/// Runs the pipeline in `dir` with `args` until it has read its Kafka
/// sources' partitions to their ends, and a little more, and stops it as
/// Ctrl-C does, which it must do cleanly; gives what it wrote to stderr.
pub(crate) fn run_briefly(dir: &Path, args: &[&str]) -> String {
    let log = dir.join("briefly.log");
    let mut run = spawn(dir, &[&METERED[..], args].concat(), "briefly.log");
    read_to_end(dir, "briefly.log", &mut run);
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = interrupt(run);
    let stderr = std::fs::read_to_string(&log).expect("its log");
    assert_eq!(status, Some(0), "{stderr}");
    stderr
}

/// Logging as text and serving metrics on a port the system chooses.
const METERED: [&str; 4] = ["--log", "text", "--metrics-addr", "127.0.0.1:0"];

/// Waits until the run started with [`METERED`] and logging to `log` in
/// `dir` has read its Kafka sources' partitions to their ends, as its
/// metrics tell once the client's statistics (every second) gave the
/// ends: a fixed wait would stop a slow start before it read.
pub(crate) fn read_to_end(dir: &Path, log: &str, run: &mut Child) {
    let log = dir.join(log);
    let mut ended = || {
        if let Some(status) = run.try_wait().expect("waited") {
            panic!(
                "the run ended ({status}) before reading to the end:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    };
    let mut addr = None;
    wait_until("the run to serve its metrics", dir, || {
        ended();
        addr = std::fs::read_to_string(&log).ok().and_then(|text| {
            let line = (text.lines()).find_map(|l| l.strip_prefix("runner: metrics at http://"))?;
            Some(line.strip_suffix("/metrics")?.to_string())
        });
        addr.is_some()
    });
    let addr = addr.expect("waited for");
    wait_until("the run to read every partition to its end", dir, || {
        ended();
        let page = crate::sources::http(&addr, "GET /metrics HTTP/1.1\r\nHost: runner\r\n\r\n");
        let samples = |name: &str| -> Vec<String> {
            let prefix = format!("{name}{{");
            (page.lines())
                .filter(|line| line.starts_with(&prefix))
                .map(|line| line.rsplit(' ').next().unwrap_or_default().to_string())
                .collect()
        };
        let lags = samples("runner_kafka_consumer_lag");
        !lags.is_empty()
            && lags.len() == samples("runner_kafka_messages_total").len()
            && lags.iter().all(|lag| lag == "0")
    });
}

/// The keys of the matches in every `out*.jsonl` in `dir`, sorted.
pub(crate) fn matched_keys(dir: &Path) -> Vec<String> {
    let mut keys: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("out"))
        .flat_map(|entry| {
            let text = std::fs::read_to_string(entry.path()).expect("readable");
            text.lines()
                .map(|line| field(line, "key").to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    keys.sort();
    keys
}

/// Every key `k0` to `k15`, sorted as text.
pub(crate) fn every_key() -> Vec<String> {
    let mut keys: Vec<String> = (0..16).map(|n| format!("k{n}")).collect();
    keys.sort();
    keys
}

#[test]
fn processes_that_take_over_and_read_to_their_end_keep_a_checkpoint_until_all_have() {
    let (_cluster, dir) = stopped_with_orders_pending("kafka_instances_bounded_take_over", 2);
    let state = dir.join("state");
    let state_arg = state.to_str().expect("UTF-8");
    let run = |number: u32| {
        let run = run_in(
            &dir,
            &[
                "--instance",
                &format!("{number}/3"),
                "--state-dir",
                state_arg,
            ],
        );
        assert_eq!(run.status, 0, "{}", run.stderr);
        assert!(
            run.stderr
                .contains("took over  its partitions from the checkpoints of 2 processes"),
            "{}",
            run.stderr
        );
    };
    // The first of three reads its partitions to their end, but keeps a
    // checkpoint: without it, a later start would take over again from
    // the two, whose checkpoints the others still need.
    run(1);
    assert!(has_checkpoint(&state.join("instance-1-of-3")));
    assert!(has_checkpoint(&state.join("instance-1-of-2")));
    run(2);
    run(3);
    // The third to take over saw every one of three with a checkpoint.
    for number in 1..=2 {
        assert!(!has_checkpoint(
            &state.join(format!("instance-{number}-of-2"))
        ));
    }
    assert_eq!(matched_keys(&dir), every_key());
}

#[test]
fn a_process_alone_takes_over_from_several() {
    let (_cluster, dir) = stopped_with_orders_pending("kafka_instances_alone_take_over", 2);
    let state = dir.join("state");
    // Each pending key's partition is in the first's checkpoint, which
    // reads partitions 0 to 3 of 8.
    let pipeline = dir.join("pipeline.yaml");
    let listing = inspect(
        "1/2",
        state.to_str().expect("UTF-8"),
        pipeline.to_str().expect("UTF-8"),
    );
    assert_eq!(listing.status, 0, "{}", listing.stderr);
    for key in every_key() {
        let partition = partition_of(&key);
        let line = format!("    {key} (partition {partition})  ");
        assert_eq!(
            listing.stdout.contains(&line),
            partition < 4,
            "{line}\n{}",
            listing.stdout
        );
    }
    // On two workers, each taking the keys that hash to it.
    let run = run_in(
        &dir,
        &[
            "--workers",
            "2",
            "--state-dir",
            state.to_str().expect("UTF-8"),
        ],
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "took over  its partitions from the checkpoints of 2 processes (newest 1): 16 keys \
             pending"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(matched_keys(&dir), every_key());
    // Read to the end, nothing is left to resume or take over from.
    assert!(!has_checkpoint(&state));
    for number in 1..=2 {
        assert!(!has_checkpoint(
            &state.join(format!("instance-{number}-of-2"))
        ));
    }
}

#[test]
fn processes_take_over_from_one_alone() {
    let (_cluster, dir) = stopped_with_orders_pending("kafka_instances_from_alone", 1);
    let state = dir.join("state");
    let state_arg = state.to_str().expect("UTF-8");
    for number in 1..=2 {
        let which = format!("{number}/2");
        let run = run_in(&dir, &["--instance", &which, "--state-dir", state_arg]);
        assert_eq!(run.status, 0, "{}", run.stderr);
        assert!(
            run.stderr
                .contains("took over  its partitions from the checkpoint of one process"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(matched_keys(&dir), every_key());
    // Both took over: the lone process's checkpoints are gone.
    assert!(!has_checkpoint(&state));
}

#[test]
fn processes_sharing_topics_whose_partitions_changed_in_number_are_refused() {
    let four = topics_of(4);
    let dir = scratch("kafka_instances_repartitioned");
    pipeline_reading(&dir, &four.bootstrap_servers(), "    idle_timeout: 1s\n");
    let state = dir.join("state");
    let state_arg = state.to_str().expect("UTF-8");
    run_briefly(&dir, &["--instance", "1/2", "--state-dir", state_arg]);
    // The same topics, with six partitions each now.
    let six = topics_of(6);
    // Bounded: a run that is not refused ends.
    pipeline_reading(
        &dir,
        &six.bootstrap_servers(),
        "    bounded: true\n    idle_timeout: 1s\n",
    );
    // Resuming its own checkpoint, or taking over from it.
    for which in ["1/2", "1/3"] {
        let refused = refusal(&dir, &["--instance", which, "--state-dir", state_arg]);
        assert!(
            refused.contains(
                "the connected topics have 6 partitions each, and had 4 when the checkpoint \
                 this process resumes from was taken"
            ),
            "{which}: {refused}"
        );
    }
    assert!(has_checkpoint(&state.join("instance-1-of-2")));
}

#[test]
fn a_process_alone_goes_on_where_the_partitions_changed_in_number_but_keeps_the_count_its_keys_had()
{
    let four = topics_of(4);
    let dir = scratch("kafka_instances_alone_repartitioned");
    pipeline_reading(&dir, &four.bootstrap_servers(), "    idle_timeout: 1s\n");
    let state = dir.join("state");
    let state_arg = state.to_str().expect("UTF-8");
    run_briefly(&dir, &["--state-dir", state_arg]);
    let six = topics_of(6);
    pipeline_reading(&dir, &six.bootstrap_servers(), "    idle_timeout: 1s\n");
    // Alone, it reads every partition: it resumes, and says what it means.
    let stderr = run_briefly(&dir, &["--state-dir", state_arg]);
    assert!(
        stderr.contains(
            "warning: the connected topics have 6 partitions each, and had 4 when the \
             checkpoint was taken"
        ),
        "{stderr}"
    );
    // Its keys were read from partitions of four: processes sharing six
    // cannot take them over, also after it went on.
    pipeline_reading(
        &dir,
        &six.bootstrap_servers(),
        "    bounded: true\n    idle_timeout: 1s\n",
    );
    let refused = refusal(&dir, &["--instance", "1/2", "--state-dir", state_arg]);
    assert!(
        refused.contains(
            "the connected topics have 6 partitions each, and had 4 when the checkpoint this \
             process resumes from was taken"
        ),
        "{refused}"
    );
    assert!(has_checkpoint(&state));
}
