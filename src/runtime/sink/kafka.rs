//! A `kafka` sink: a record per outcome, produced by librdkafka from a
//! thread of its own. Every record sent is delivered (acknowledged by the
//! brokers as the producer's `acks` asks) before a checkpoint's barrier is
//! answered and before the run ends; a record that cannot be delivered
//! stops the run with the broker's reason.
//!
//! With checkpoint `transactions`, one transactional producer writes for
//! every Kafka sink ([`Transactions`]): a sink that answered a checkpoint's
//! barrier waits until that checkpoint's transaction committed before it
//! writes on, into the next.

mod state;

pub(crate) use state::{Onlooker, Settling, Snapshot, StateTopic};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};

use super::{Message, QUEUE, SinkThread, Written};
use crate::config::{KafkaSink, SinkKind, Spanned};
use crate::plan::{Graph, Input};
use crate::runtime::error::RunError;
use crate::runtime::returns::{Returns, Ways};
use crate::runtime::router::Router;
use crate::runtime::source::GroupOffsets;

/// The most a producer queues for the brokers, in KiB, unless the sink's
/// properties say otherwise: 16 MiB.
const QUEUE_KBYTES: u32 = 16 * 1024;

/// Records that could not be delivered: how many, and the first reason;
/// and whether a broker problem was told.
#[derive(Default)]
struct Deliveries {
    sink: String,
    failed: Mutex<(u64, Option<String>)>,
    told: AtomicBool,
}

impl ClientContext for Deliveries {
    /// The first problem with the brokers (none reachable, say) is told at
    /// once: until the message timeout fails the records, the run would
    /// seem to hang. librdkafka retries, and repeats itself; the rest is
    /// left out.
    fn error(&self, error: KafkaError, reason: &str) {
        if !self.told.swap(true, Ordering::Relaxed) {
            eprintln!(
                "warning: kafka sink `{}`: {error}: {reason} (records are kept and retried \
                 until the producer's message.timeout.ms)",
                self.sink
            );
        }
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        if let Err((error, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
            failed.0 += 1;
            failed.1.get_or_insert_with(|| error.to_string());
        }
    }
}

/// A sink's producer and topic, ready for its thread.
pub(crate) struct Producer {
    sink: String,
    topic: String,
    client: ThreadedProducer<Deliveries>,
    /// The run's transactions, when its Kafka sinks write in them (one
    /// producer for all of them).
    transactions: Option<Arc<Transactions>>,
}

impl Producer {
    /// A producer for sink `sink`, as `config` says. Nothing is sent yet,
    /// so brokers that cannot be reached show when records are delivered.
    ///
    /// # Errors
    ///
    /// A client property librdkafka does not take, located at it.
    pub(crate) fn open(
        sink: &str,
        config: &KafkaSink,
        transactions: Option<&Arc<Transactions>>,
    ) -> Result<Self, RunError> {
        let client = match transactions {
            Some(transactions) => transactions.client.clone(),
            None => producer_config(config, config.properties.iter(), ClientConfig::new())
                .create_with_context(Deliveries {
                    sink: sink.to_string(),
                    ..Deliveries::default()
                })
                .map_err(|error| {
                    RunError::kafka_client(
                        &error,
                        &config.topic.value,
                        &config.brokers,
                        &config.properties,
                    )
                })?,
        };
        Ok(Self {
            sink: sink.to_string(),
            topic: config.topic.value.clone(),
            client,
            transactions: transactions.cloned(),
        })
    }

    /// The sink and what its barriers name in messages.
    pub(crate) fn barrier_names(&self) -> (String, String) {
        (self.sink.clone(), format!("kafka topic {}", self.topic))
    }

    /// Sends one record, waiting while librdkafka's queue is full.
    fn send(&self, key: Option<&str>, value: &[u8]) -> Result<(), KafkaError> {
        let mut record = BaseRecord::to(&self.topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        loop {
            match self.client.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), again)) => {
                    // The brokers are behind: this holds the driver back,
                    // as a slow file does.
                    record = again;
                    self.client.poll(Duration::from_millis(10));
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Waits until every record sent is delivered or has failed (after
    /// the producer's `message.timeout.ms`); what failed, and why.
    fn deliver(&self) -> Result<(), String> {
        self.client
            .flush(Timeout::Never)
            .map_err(|error| format!("records were not delivered: {error}"))?;
        let failed = self
            .client
            .context()
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match failed {
            (0, _) => Ok(()),
            (count, reason) => Err(format!(
                "{count} record{} could not be delivered to topic `{}`: {}",
                if count == 1 { "" } else { "s" },
                self.topic,
                reason.unwrap_or_default()
            )),
        }
    }
}

/// A producer's configuration for the sink `config`: `client` with its
/// brokers and the run's settings, then `properties`.
fn producer_config<'a>(
    config: &KafkaSink,
    properties: impl Iterator<Item = &'a (Spanned<String>, Spanned<String>)>,
    mut client: ClientConfig,
) -> ClientConfig {
    client.set("bootstrap.servers", &config.brokers.value);
    // librdkafka queues up to 1 GiB for slow brokers before it pushes
    // back; the run's memory is bounded by what is pending instead (the
    // properties may say otherwise).
    client.set("queue.buffering.max.kbytes", QUEUE_KBYTES.to_string());
    // A batch sent again after a lost answer is not written twice, and
    // records stay in order within a partition.
    client.set("enable.idempotence", "true");
    for (name, value) in properties {
        client.set(&name.value, &value.value);
    }
    client
}

/// How long a transaction's steps wait for the brokers.
const TRANSACTION_WAIT: Duration = Duration::from_secs(60);

/// How long a run waits for the brokers to say how far another process's
/// transactions committed, which it asks between checkpoints: not long,
/// the run waits meanwhile (and asks again at its next checkpoint).
const ASKED_WAIT: Duration = Duration::from_secs(5);

/// The Kafka transactions of a run whose Kafka sinks write in them: one
/// producer for every Kafka sink, and a transaction per checkpoint. The
/// records decided up to a checkpoint are committed once it is saved,
/// with the Kafka sources' offsets it holds and its number, which a run
/// that resumes reads back to know which checkpoint the brokers hold the
/// outcomes of: the records of a transaction that did not commit are
/// aborted, and decided again from the checkpoint before.
///
/// The number is kept as the offset of the group named by the
/// transactional id on partition 0 of the first Kafka sink's topic: a
/// group that reads nothing, committed in each transaction.
pub(crate) struct Transactions {
    client: ThreadedProducer<Deliveries>,
    id: String,
    /// The id without the process's tag.
    base: String,
    /// The first Kafka sink, whose brokers keep the number on its topic.
    sink: KafkaSink,
    /// A member of the group whose offset is the number.
    marker: BaseConsumer,
    /// Clients of the groups of other processes' ids, to ask their
    /// numbers.
    asked: Mutex<Vec<(String, BaseConsumer)>>,
    epochs: Mutex<Epochs>,
    changed: Condvar,
}

/// How many transactions committed in this run, or why they stopped.
#[derive(Default)]
struct Epochs {
    committed: u64,
    failed: Option<String>,
}

impl Transactions {
    /// Starts the transactions of `graph`'s Kafka sinks (or, without any,
    /// of its state topic: [`kafka_of`]) as `id`, unless the first Kafka
    /// sink's properties name a `transactional.id`, and then
    /// with `-tag` after it (one of several processes: each has its own):
    /// a producer of that id that ran before is fenced off, and its open
    /// transaction aborted.
    ///
    /// # Errors
    ///
    /// A client property librdkafka does not take, or brokers that do not
    /// answer.
    pub(crate) fn start(
        graph: &Graph,
        id: &str,
        tag: Option<&str>,
        interval: Duration,
    ) -> Result<Arc<Self>, RunError> {
        let kafka = kafka_of(graph)?;
        let kafka = as_refs(&kafka);
        let started = Self::open(&kafka, id_for(&kafka, id), tag, interval)?;
        (started.client.begin_transaction()).map_err(|error| started.not_started(&error))?;
        tracing::info!(id = %started.id, "kafka transactions started");
        Ok(Arc::new(started))
    }

    /// Fences off the producer of the transactional `id` (that of another
    /// process, whose checkpoints this one takes partitions over from):
    /// its open transaction is aborted, and one it was committing settles.
    /// Gives the number of the last checkpoint whose transaction committed
    /// as `id`.
    ///
    /// # Errors
    ///
    /// A client property librdkafka does not take, or brokers that do not
    /// answer.
    pub(crate) fn fence(
        graph: &Graph,
        id: &str,
        interval: Duration,
    ) -> Result<Option<u64>, RunError> {
        let fenced = Self::open(&as_refs(&kafka_of(graph)?), id, None, interval)?;
        tracing::info!(id = %id, "kafka transactions of another process fenced off");
        (fenced.committed())
            .map_err(|error| RunError::Checkpoint(format!("kafka transactions as `{id}`: {error}")))
    }

    /// A producer of the transactional id `base`, with `-tag` after it
    /// where given, for the Kafka sinks `kafka` (each's name and node; one
    /// at least), its transactions initialised, which fences off an
    /// earlier producer of that id.
    fn open(
        kafka: &[(&str, &KafkaSink)],
        base: &str,
        tag: Option<&str>,
        interval: Duration,
    ) -> Result<Self, RunError> {
        let (name, first) = kafka[0];
        let id = tagged(base, tag);
        let opened = |error: KafkaError| {
            RunError::kafka_client(
                &error,
                &first.topic.value,
                &first.brokers,
                &first.properties,
            )
        };
        let mut config = ClientConfig::new();
        // A transaction is open from one checkpoint to the next (and while
        // it is saved): the brokers abort one open longer, 60s by default.
        let timeout = (interval * 3).max(Duration::from_secs(60));
        config.set("transaction.timeout.ms", timeout.as_millis().to_string());
        let mut config = producer_config(
            first,
            kafka.iter().flat_map(|(_, k)| k.properties.iter()),
            config,
        );
        let client: ThreadedProducer<Deliveries> = config
            .set("transactional.id", &id)
            .create_with_context(Deliveries {
                sink: name.to_string(),
                ..Deliveries::default()
            })
            .map_err(opened)?;
        let marker = marker_of(first, &id).map_err(opened)?;
        let opened = Self {
            client,
            base: base.to_string(),
            id,
            sink: first.clone(),
            marker,
            asked: Mutex::default(),
            epochs: Mutex::default(),
            changed: Condvar::new(),
        };
        (opened.client.init_transactions(TRANSACTION_WAIT))
            .map_err(|error| opened.not_started(&error))?;
        Ok(opened)
    }

    /// The number of the last checkpoint whose transaction committed as
    /// the transactional id of the process tagged `tag` (`None`: alone),
    /// which may be running: read, not fenced.
    ///
    /// # Errors
    ///
    /// The brokers do not answer.
    pub(crate) fn committed_of(&self, tag: Option<&str>) -> Result<Option<u64>, String> {
        let id = tagged(&self.base, tag);
        if id == self.id {
            return read_marker(&self.marker, &self.sink.topic.value, &id, ASKED_WAIT);
        }
        // A client per id asked, kept: a run asks at each checkpoint until
        // the checkpoints it took over from go.
        let mut asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
        if !asked.iter().any(|(known, _)| *known == id) {
            let marker = marker_of(&self.sink, &id).map_err(|error| error.to_string())?;
            asked.push((id.clone(), marker));
        }
        let (_, marker) = (asked.iter())
            .find(|(known, _)| *known == id)
            .ok_or_else(|| format!("no client of the group `{id}`"))?;
        read_marker(marker, &self.sink.topic.value, &id, ASKED_WAIT)
    }

    fn not_started(&self, error: &KafkaError) -> RunError {
        RunError::Checkpoint(format!(
            "kafka transactions as `{}` cannot start: {error}",
            self.id
        ))
    }

    /// The transactional id of the process tagged `tag` (`None`: alone).
    pub(crate) fn id_of(&self, tag: Option<&str>) -> String {
        tagged(&self.base, tag)
    }

    /// The transactional id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The number of the last checkpoint whose transaction committed, as
    /// the brokers keep it; `None` before the first.
    ///
    /// # Errors
    ///
    /// The brokers do not answer.
    pub(crate) fn committed(&self) -> Result<Option<u64>, String> {
        read_marker(
            &self.marker,
            &self.sink.topic.value,
            &self.id,
            TRANSACTION_WAIT,
        )
    }

    /// Commits the transaction of the checkpoint numbered `sequence`, saved
    /// now, with the Kafka sources' offsets it holds (`offsets`: each
    /// source's, for its group), and begins the next; lets the sinks go on.
    ///
    /// # Errors
    ///
    /// The brokers refuse or do not answer: the run stops, and resumes
    /// from the checkpoint before.
    pub(crate) fn commit<'a>(
        &self,
        sequence: u64,
        offsets: impl IntoIterator<Item = (&'a GroupOffsets, &'a [(u32, u64)])>,
    ) -> Result<(), String> {
        let committed = self.commit_now(sequence, offsets);
        match &committed {
            Ok(()) => {
                tracing::info!(id = %self.id, sequence, "kafka transaction committed");
                self.epochs().committed += 1;
            }
            Err(error) => self.fail(error.clone()),
        }
        self.changed.notify_all();
        committed
    }

    fn commit_now<'a>(
        &self,
        sequence: u64,
        offsets: impl IntoIterator<Item = (&'a GroupOffsets, &'a [(u32, u64)])>,
    ) -> Result<(), String> {
        let failed = |error: KafkaError| format!("kafka transaction as `{}`: {error}", self.id);
        for (group, partitions) in offsets {
            if let Some((list, metadata)) = group.for_transaction(partitions)? {
                (self.client)
                    .send_offsets_to_transaction(&list, &metadata, TRANSACTION_WAIT)
                    .map_err(failed)?;
            }
        }
        let mut list = TopicPartitionList::new();
        let number = Offset::Offset(i64::try_from(sequence).unwrap_or(i64::MAX));
        (list.add_partition_offset(&self.sink.topic.value, 0, number)).map_err(failed)?;
        let metadata = (self.marker.group_metadata())
            .ok_or_else(|| format!("the group `{}` has no metadata", self.id))?;
        (self.client)
            .send_offsets_to_transaction(&list, &metadata, TRANSACTION_WAIT)
            .map_err(failed)?;
        self.client
            .commit_transaction(TRANSACTION_WAIT)
            .map_err(failed)?;
        // Committed: the number again, outside a transaction, for brokers
        // that keep a transaction's offsets only when it has records, or
        // not at all (tansu, librdkafka's mock cluster). Kafka has it
        // already, so a failure here loses nothing there.
        if let Err(error) = self
            .marker
            .commit(&list, rdkafka::consumer::CommitMode::Sync)
        {
            tracing::warn!(id = %self.id, %error, "checkpoint number not committed again");
        }
        self.client.begin_transaction().map_err(failed)
    }

    /// Waits until `epoch` transactions committed in this run: a sink that
    /// answered its `epoch`th checkpoint's barrier writes on once that
    /// checkpoint's transaction committed, into the next.
    ///
    /// # Errors
    ///
    /// The transactions stopped: why.
    pub(crate) fn wait(&self, epoch: u64) -> Result<(), String> {
        let mut epochs = self.epochs();
        loop {
            if let Some(failed) = &epochs.failed {
                return Err(failed.clone());
            }
            if epochs.committed >= epoch {
                return Ok(());
            }
            epochs = (self.changed.wait(epochs)).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Stops the transactions (the run failed, or a checkpoint was not
    /// saved): sinks waiting go no further.
    pub(crate) fn fail(&self, why: String) {
        self.epochs().failed.get_or_insert(why);
        self.changed.notify_all();
    }

    /// Aborts the open transaction: its records are decided again by a run
    /// that resumes from the last checkpoint.
    pub(crate) fn abort(&self) {
        self.fail("the run stopped".to_string());
        if let Err(error) = self.client.abort_transaction(TRANSACTION_WAIT) {
            tracing::warn!(id = %self.id, %error, "kafka transaction not aborted");
        }
    }

    fn epochs(&self) -> std::sync::MutexGuard<'_, Epochs> {
        self.epochs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The transactional id of the Kafka sinks `kafka` (one at least): the
/// first one's `transactional.id` property, else `id`.
fn id_for<'a>(kafka: &[(&str, &'a KafkaSink)], id: &'a str) -> &'a str {
    (kafka[0].1.properties.iter())
        .find(|(name, _)| name.value == "transactional.id")
        .map_or(id, |(_, value)| value.value.as_str())
}

/// The transactional id `base` of the process tagged `tag`: with the tag
/// after it, for one of several processes (`None`: alone).
fn tagged(base: &str, tag: Option<&str>) -> String {
    match tag {
        Some(tag) => format!("{base}-{tag}"),
        None => base.to_string(),
    }
}

/// A client of the group `id`, whose offset on partition 0 of the Kafka
/// sink `first`'s topic is the number of the last checkpoint whose
/// transaction committed as `id`; with the sink's properties for reaching
/// the brokers.
fn marker_of(first: &KafkaSink, id: &str) -> Result<BaseConsumer, KafkaError> {
    consumer_of(first, id).create()
}

/// A consumer's configuration for the brokers of the Kafka sink `first`,
/// in the group `group`, committing nothing by itself: the sink's
/// properties for reaching the brokers, none of the producer's.
fn consumer_of(first: &KafkaSink, group: &str) -> ClientConfig {
    let mut config = client_of(first);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    config
}

/// A client's configuration for the brokers of the Kafka sink `first`:
/// the sink's properties for reaching them, none of the producer's.
fn client_of(first: &KafkaSink) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &first.brokers.value);
    for (name, value) in &first.properties {
        if CONSUMER_TOO
            .iter()
            .any(|prefix| name.value.starts_with(prefix))
        {
            config.set(&name.value, &value.value);
        }
    }
    config
}

/// The number `marker`, a client of the group `id`, reads on partition 0
/// of `topic` (waiting up to `wait`): the last checkpoint whose
/// transaction committed as `id`.
fn read_marker(
    marker: &BaseConsumer,
    topic: &str,
    id: &str,
    wait: Duration,
) -> Result<Option<u64>, String> {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = (marker.committed_offsets(list, wait))
        .map_err(|error| format!("cannot read the group `{id}`: {error}"))?;
    Ok(
        match committed.find_partition(topic, 0).map(|p| p.offset()) {
            Some(Offset::Offset(sequence)) => u64::try_from(sequence).ok(),
            _ => None,
        },
    )
}

/// What `graph`'s Kafka transactions write, each's name and node: its
/// Kafka sinks; without any, its state topic, as a sink of the first
/// Kafka source's brokers, with the source's properties for reaching
/// them (the producer's own are librdkafka's defaults).
///
/// # Errors
///
/// There is neither.
fn kafka_of(graph: &Graph) -> Result<Vec<(String, KafkaSink)>, RunError> {
    let sinks: Vec<(String, KafkaSink)> = (graph.sinks.iter())
        .filter_map(|sink| match &sink.kind {
            SinkKind::Kafka(kafka) => Some((sink.name.clone(), kafka.clone())),
            _ => None,
        })
        .collect();
    if !sinks.is_empty() {
        return Ok(sinks);
    }
    let source = (graph.sources.iter()).find_map(|source| match &source.input {
        Input::Kafka(kafka) => Some(kafka),
        _ => None,
    });
    match (&graph.state_topic, source) {
        (Some(topic), Some(source)) => {
            let properties = (source.properties.iter())
                .filter(|(name, _)| CONSUMER_TOO.iter().any(|p| name.value.starts_with(p)))
                .cloned()
                .collect();
            let sink = KafkaSink {
                brokers: source.brokers.clone(),
                topic: Spanned {
                    value: topic.clone(),
                    span: source.topic.span,
                },
                key: None,
                properties,
            };
            Ok(vec![("the state topic".to_string(), sink)])
        }
        _ => Err(RunError::Checkpoint(
            "transactions are for Kafka sinks and the state topic, and neither is written"
                .to_string(),
        )),
    }
}

/// `kafka` borrowed, as [`Transactions::open`] takes it.
fn as_refs(kafka: &[(String, KafkaSink)]) -> Vec<(&str, &KafkaSink)> {
    (kafka.iter())
        .map(|(name, sink)| (name.as_str(), sink))
        .collect()
}

/// The client properties the group that keeps a transaction's checkpoint
/// number takes from the first Kafka sink's: how to reach the brokers.
const CONSUMER_TOO: [&str; 5] = ["security.", "ssl.", "sasl.", "socket.", "client."];

/// Starts the thread that renders outcomes by `router` into records of
/// `producer`'s topic; `name` names the target in errors.
///
/// # Errors
///
/// A thread that cannot be started.
pub(super) fn spawn(
    name: &str,
    producer: Producer,
    router: std::sync::Arc<Router>,
    ways: Ways,
) -> std::io::Result<SinkThread> {
    let (messages, mut receiver) = mpsc::channel::<Message>(QUEUE);
    let (give_back, spare) = std::sync::mpsc::sync_channel(QUEUE);
    let (report, done) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("sink {name}"))
        .spawn(move || {
            let failed = |message: String| RunError::Write {
                sink: producer.sink.clone(),
                source: std::io::Error::other(message),
            };
            let (mut key, mut value) = (String::new(), Vec::new());
            let mut returns = Returns::new(ways);
            let mut barriers = 0;
            let mut produce = || -> Result<(), RunError> {
                while let Some(message) = receiver.blocking_recv() {
                    let mut batch = match message {
                        Message::Outcomes(batch) => batch,
                        Message::Barrier(answer) => {
                            let delivered = producer.deliver().map_err(failed);
                            let stop = delivered.is_err();
                            let _ = answer.send(delivered.map(|()| Written {
                                length: 0,
                                file: None,
                            }));
                            if stop {
                                return Ok(());
                            }
                            if let Some(transactions) = &producer.transactions {
                                // What comes next is of the next transaction.
                                barriers += 1;
                                transactions.wait(barriers).map_err(failed)?;
                            }
                            continue;
                        }
                    };
                    for (route, mut outcome) in batch.drain(..) {
                        key.clear();
                        value.clear();
                        let keyed = router.record_key(route, &outcome, &mut key)?;
                        router.render(route, &outcome, &mut value)?;
                        // The line's break is not part of the record.
                        value.pop();
                        producer
                            .send(keyed.then_some(key.as_str()), &value)
                            .map_err(|error| failed(error.to_string()))?;
                        returns.take(&mut outcome);
                    }
                    let _ = give_back.try_send(batch);
                }
                producer.deliver().map_err(failed)
            };
            let _ = report.send(produce());
        })?;
    Ok(SinkThread {
        messages,
        spare,
        done,
    })
}
