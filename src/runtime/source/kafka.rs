//! A `kafka` source: every partition of a topic, read by one librdkafka
//! consumer on a thread of its own, a queue per partition: of the messages
//! at hand, the earliest in event time is handed on first (see [`Merge`]).
//!
//! Each partition starts where the checkpoint says, or else at the offset
//! its group committed, or else at the source's `start`. Items carry the
//! partition and the offset after their message ([`At::line`] and
//! [`At::offset`]), so the driver knows, per partition, how far it merged.
//! Watermarks are per partition, as Flink's are: each item carries the
//! source's frontier after it, the least newest event time over the
//! partitions that are neither idle (silent past the source's
//! `idle_timeout`) nor done, and the driver advances the source's
//! watermark by it as it merges the item; a partition falling idle sends
//! the frontier alone. With one partition, the watermark moves exactly as
//! a file's does. A bounded source ends once every partition reaches the
//! end it had when the run started.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::{Assign, At, BATCH, Batch, Chunk, Item, Place};
use crate::codec::Decoder;
use crate::config::{KafkaSource, StartAt};
use crate::runtime::error::RunError;
use crate::runtime::returns::{self, Returned};
use crate::runtime::{Instance, PartitionProgress};
use crate::time::EventTime;

/// How long to wait for the brokers' answers while starting: the topic's
/// partitions, their ends, the group's offsets.
const ANSWER: Duration = Duration::from_secs(30);

/// The most a partition's queue prefetches, in KiB, unless the source's
/// properties say otherwise: 2 MiB.
const QUEUED_KBYTES: u32 = 2 * 1024;

/// How long a commit of a group's offsets is waited for.
const COMMIT_WAIT: Duration = Duration::from_secs(5);

/// How long the source waits for messages when none is at hand.
const POLL_IDLE: Duration = Duration::from_millis(1);

/// How long items wait in a batch that is not full.
const FLUSH: Duration = Duration::from_millis(50);

/// How often what was read per partition is published for metrics.
const PUBLISH: Duration = Duration::from_millis(200);

/// Tells the first problem the client reports, once; keeps the ends of
/// the topic's partitions, from the client's statistics.
#[derive(Default)]
pub(crate) struct Context {
    source: String,
    topic: String,
    warned: AtomicBool,
    /// Each partition's end for this consumer (the last stable offset,
    /// which is the end where no transaction is open), by partition.
    ends: Mutex<Vec<(u32, u64)>>,
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let mut ends: Vec<(u32, u64)> = topic
            .partitions
            .values()
            .filter_map(|p| {
                Some((
                    u32::try_from(p.partition).ok()?,
                    u64::try_from(p.ls_offset).ok()?,
                ))
            })
            .collect();
        ends.sort_unstable();
        *self.ends.lock().unwrap_or_else(PoisonError::into_inner) = ends;
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            eprintln!(
                "warning: kafka source `{}`: {error}: {reason} (the consumer keeps trying)",
                self.source
            );
        }
    }
}

impl ConsumerContext for Context {}

type Client = BaseConsumer<Context>;

/// A source's consumer, made before the run starts.
pub(crate) struct Consumer {
    client: Arc<Client>,
    /// Per partition: messages read and the offset after the last, as
    /// last published.
    read: Arc<Mutex<Vec<(u32, u64, u64)>>>,
    config: KafkaSource,
    /// Where each partition resumes, from the checkpoint.
    resume: Vec<(u32, u64)>,
    /// Whether the group's committed offsets are ignored: the run starts
    /// over.
    fresh: bool,
    /// Which of the processes sharing the partitions this is.
    instance: Instance,
    /// The bytes of message values read, for progress.
    bytes_read: Arc<AtomicU64>,
}

/// A Kafka source's offsets in its consumer group, as the driver sees
/// them: what was read of each partition (for the metrics), and the
/// commits of the offsets a checkpoint holds.
#[derive(Clone)]
pub(crate) struct GroupOffsets {
    client: Arc<Client>,
    source: Arc<str>,
    topic: String,
    group: String,
    /// Whether a failed commit was told.
    told: Arc<AtomicBool>,
    /// Whether a commit is waiting for the coordinator's answer.
    committing: Arc<AtomicBool>,
    read: Arc<Mutex<Vec<(u32, u64, u64)>>>,
}

impl GroupOffsets {
    /// What the source read from each partition, and how far behind each
    /// partition's end it is, once the client's statistics told the end.
    pub(crate) fn partitions(&self) -> Vec<PartitionProgress> {
        let read = self
            .read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let ends = self
            .client
            .context()
            .ends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        read.into_iter()
            .map(|(partition, messages, next)| PartitionProgress {
                source: self.source.to_string(),
                partition,
                messages,
                lag: ends
                    .iter()
                    .find(|(p, _)| *p == partition)
                    .map(|(_, end)| end.saturating_sub(next)),
            })
            .collect()
    }

    /// Commits `partitions` (partition, offset after the last message
    /// merged), waiting for the group coordinator's answer for at most
    /// [`COMMIT_WAIT`]. A commit that fails or is not answered is told
    /// once, and the run goes on: the checkpoint, not the group, is where
    /// a run resumes. While a commit still waits for its answer, later
    /// ones are skipped: the next after it carries their offsets.
    pub(crate) fn commit(&self, partitions: &[(u32, u64)]) {
        if partitions.is_empty() {
            return;
        }
        let committed = if self.committing.swap(true, Ordering::AcqRel) {
            Err("the last commit is still waiting for the group coordinator".to_string())
        } else {
            let (done, answer) = std::sync::mpsc::channel();
            let group = self.clone();
            let offsets = partitions.to_vec();
            let spawned = std::thread::Builder::new()
                .name("kafka commit".to_string())
                .spawn(move || {
                    let answer = group.commit_waiting(&offsets);
                    group.committing.store(false, Ordering::Release);
                    let _ = done.send(answer);
                });
            match spawned {
                Err(error) => {
                    self.committing.store(false, Ordering::Release);
                    Err(error.to_string())
                }
                Ok(_) => answer.recv_timeout(COMMIT_WAIT).unwrap_or_else(|_| {
                    Err(format!(
                        "the group coordinator did not answer within {}s",
                        COMMIT_WAIT.as_secs()
                    ))
                }),
            }
        };
        match &committed {
            Ok(()) => tracing::info!(
                source = %self.source,
                group = %self.group,
                offsets = %places(partitions.iter().copied()),
                "kafka offsets committed"
            ),
            Err(error) => tracing::warn!(
                source = %self.source,
                group = %self.group,
                %error,
                "kafka offsets not committed"
            ),
        }
        if let Err(error) = committed
            && !self.told.swap(true, Ordering::Relaxed)
        {
            eprintln!(
                "warning: kafka source `{}`: cannot commit its offsets for group `{}`: {error} \
                 (the checkpoint holds them; a run resumes from it)",
                self.source, self.group
            );
        }
    }

    /// Commits each source's offsets, all at once: waits for at most
    /// [`COMMIT_WAIT`] however many sources there are.
    pub(crate) fn commit_all<'a>(commits: impl IntoIterator<Item = (&'a Self, &'a [(u32, u64)])>) {
        std::thread::scope(|scope| {
            for (offsets, partitions) in commits {
                scope.spawn(move || offsets.commit(partitions));
            }
        });
    }

    /// `partitions` as the offsets to commit for the source's group in a
    /// producer's transaction, with the group's metadata; `None` for none.
    pub(crate) fn for_transaction(
        &self,
        partitions: &[(u32, u64)],
    ) -> Result<Option<(TopicPartitionList, rdkafka::consumer::ConsumerGroupMetadata)>, String>
    {
        if partitions.is_empty() {
            return Ok(None);
        }
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in partitions {
            let offset = Offset::Offset(i64::try_from(offset).unwrap_or(i64::MAX));
            list.add_partition_offset(&self.topic, partition_id(partition), offset)
                .map_err(|error| error.to_string())?;
        }
        let metadata = (self.client.group_metadata())
            .ok_or_else(|| format!("the group `{}` has no metadata", self.group))?;
        Ok(Some((list, metadata)))
    }

    /// Commits `partitions`, waiting for the answer however long it takes.
    fn commit_waiting(&self, partitions: &[(u32, u64)]) -> Result<(), String> {
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in partitions {
            let offset = Offset::Offset(i64::try_from(offset).unwrap_or(i64::MAX));
            list.add_partition_offset(&self.topic, partition_id(partition), offset)
                .map_err(|error| error.to_string())?;
        }
        self.client
            .commit(&list, CommitMode::Sync)
            .map_err(|error| error.to_string())
    }
}

/// Partitions and offsets for the log: `0@15, 1@0`.
fn places(partitions: impl Iterator<Item = (u32, u64)>) -> String {
    partitions
        .map(|(partition, offset)| format!("{partition}@{offset}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn partition_id(partition: u32) -> i32 {
    i32::try_from(partition).unwrap_or(i32::MAX)
}

impl Consumer {
    /// A consumer for source `source` as `config` says, resuming at
    /// `resume`; `fresh` ignores the group's committed offsets. Nothing is
    /// asked of the brokers yet.
    ///
    /// # Errors
    ///
    /// A client property librdkafka does not take, located at it.
    pub(crate) fn open(
        source: &str,
        config: &KafkaSource,
        resume: Vec<(u32, u64)>,
        fresh: bool,
        instance: Instance,
    ) -> Result<Self, RunError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers.value)
            .set("group.id", &config.group.value)
            // Offsets are committed after a checkpoint holds them, never
            // on their own.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match config.start {
                    StartAt::Earliest => "earliest",
                    StartAt::Latest => "latest",
                },
            )
            // The partitions' ends, for the consumer lag in metrics.
            .set("statistics.interval.ms", "1000")
            // Each partition has a queue of its own, and librdkafka's
            // prefetch limits then hold per partition (64 MiB and 100,000
            // messages by default): memory would grow with the partitions.
            .set("queued.max.messages.kbytes", QUEUED_KBYTES.to_string())
            .set("queued.min.messages", "1000")
            // A partition whose queue is full is fetched for again after
            // this long (1 s by default): the run drains a queue in a
            // millisecond or two, and then waited out the second.
            .set("fetch.queue.backoff.ms", "10");
        for (name, value) in &config.properties {
            client.set(&name.value, &value.value);
        }
        let context = Context {
            source: source.to_string(),
            topic: config.topic.value.clone(),
            ..Context::default()
        };
        let client: Client = client.create_with_context(context).map_err(|error| {
            RunError::kafka_client(
                &error,
                &config.topic.value,
                &config.brokers,
                &config.properties,
            )
        })?;
        Ok(Self {
            client: Arc::new(client),
            read: Arc::default(),
            config: config.clone(),
            resume,
            fresh,
            instance,
            bytes_read: Arc::default(),
        })
    }

    /// Counts the bytes of message values it reads in `bytes`.
    pub(super) fn count_bytes_in(&mut self, bytes: Arc<AtomicU64>) {
        self.bytes_read = bytes;
    }

    /// This source's offsets in its group: what was read, and commits.
    pub(crate) fn offsets(&self) -> GroupOffsets {
        GroupOffsets {
            client: self.client.clone(),
            source: Arc::from(self.client.context().source.as_str()),
            topic: self.config.topic.value.clone(),
            group: self.config.group.value.clone(),
            told: Arc::new(AtomicBool::new(false)),
            committing: Arc::new(AtomicBool::new(false)),
            read: self.read.clone(),
        }
    }

    /// The topic, as the pipeline names it.
    pub(crate) fn topic(&self) -> &crate::config::Spanned<String> {
        &self.config.topic
    }

    /// The ids of the topic's partitions, in order.
    pub(crate) fn partition_ids(&self) -> Result<Vec<i32>, String> {
        let topic = &self.config.topic.value;
        let metadata = self
            .client
            .fetch_metadata(Some(topic), ANSWER)
            .map_err(|error| format!("cannot read the topic's partitions: {error}"))?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Err("the brokers do not know the topic".to_string());
        };
        if let Some(error) = found.error() {
            return Err(format!(
                "the topic cannot be read: {}",
                RDKafkaErrorCode::from(error)
            ));
        }
        let mut ids: Vec<i32> = found
            .partitions()
            .iter()
            .map(rdkafka::metadata::MetadataPartition::id)
            .collect();
        ids.sort_unstable();
        if ids.is_empty() {
            return Err("the topic has no partitions".to_string());
        }
        Ok(ids)
    }

    /// The partitions this instance reads, each with where it starts and,
    /// for a bounded source, where it ends.
    fn partitions(&self, idle_since: Instant) -> Result<Vec<Partition>, String> {
        let topic = &self.config.topic.value;
        let all = self.partition_ids()?;
        let ids = &all[self.instance.range(all.len())];
        if ids.is_empty() {
            return Err(format!(
                "instance {} has none of the topic's {} partitions to read",
                self.instance,
                all.len()
            ));
        }
        let committed = if self.fresh || !self.resume.is_empty() {
            None
        } else {
            let mut list = TopicPartitionList::new();
            for &id in ids {
                list.add_partition(topic, id);
            }
            Some(
                self.client
                    .committed_offsets(list, ANSWER)
                    .map_err(|error| format!("cannot read the group's offsets: {error}"))?,
            )
        };
        let mut partitions = Vec::with_capacity(ids.len());
        // Of a group's process: partitions read before (their group has
        // offsets) that no checkpoint here holds.
        let mut unheld = Vec::new();
        for &id in ids {
            let (low, high) = self
                .client
                .fetch_watermarks(topic, id, ANSWER)
                .map_err(|error| format!("cannot read the ends of partition {id}: {error}"))?;
            let (low, high) = (low.max(0).unsigned_abs(), high.max(0).unsigned_abs());
            let number = id.unsigned_abs();
            let resumed = self
                .resume
                .iter()
                .find(|(partition, _)| *partition == number)
                .map(|(_, offset)| *offset);
            let group = committed.as_ref().and_then(|list| {
                match list.find_partition(topic, id)?.offset() {
                    Offset::Offset(offset) => Some(offset.max(0).unsigned_abs()),
                    _ => None,
                }
            });
            if resumed.is_none() && group.is_some() && self.instance.dealt_of().is_some() {
                unheld.push(number);
            }
            let start = resumed.or(group).unwrap_or(match self.config.start {
                StartAt::Earliest => low,
                StartAt::Latest => high,
            });
            partitions.push(Partition {
                id: number,
                start,
                end: self.config.bounded.then_some(high),
                max_seen: None,
                last: idle_since,
                received: self.config.bounded && start >= high,
                done: self.config.bounded && start >= high,
                messages: 0,
                next: start,
            });
        }
        if !unheld.is_empty() {
            let listed: Vec<String> = unheld.iter().map(u32::to_string).collect();
            let source = &self.client.context().source;
            tracing::warn!(source, topic, partitions = %listed.join(", "), "kafka partitions without state");
            let (which, them) = match &listed[..] {
                [one] => (format!("partition {one} of `{topic}` starts"), "it"),
                many => (
                    format!("partitions {} of `{topic}` start", many.join(", ")),
                    "them",
                ),
            };
            eprintln!(
                "warning: kafka source `{source}`: {which} at the offsets \
                 committed in group `{}`, but no checkpoint in the state directory (or on a \
                 state topic) holds {them}: the keys read from {them} before are not here (the \
                 processes of a group share a state directory, or keep their state in a \
                 `state_topic`)",
                self.config.group.value
            );
        }
        Ok(partitions)
    }
}

impl Consumer {
    /// Takes every partition of the topic, each at its start, for source
    /// `source`.
    fn assign(&self, source: &str) -> Result<Vec<Partition>, String> {
        let topic = self.config.topic.value.as_str();
        let partitions = self.partitions(Instant::now())?;
        let mut list = TopicPartitionList::new();
        for partition in &partitions {
            let offset = Offset::Offset(i64::try_from(partition.start).unwrap_or(i64::MAX));
            list.add_partition_offset(topic, partition_id(partition.id), offset)
                .map_err(|error| error.to_string())?;
        }
        self.client
            .assign(&list)
            .map_err(|error| format!("cannot read its partitions: {error}"))?;
        tracing::info!(
            source,
            topic,
            group = %self.config.group.value,
            instance = %self.instance,
            starts = %places(partitions.iter().map(|p| (p.id, p.start))),
            ends = %places(partitions.iter().filter_map(|p| Some((p.id, p.end?)))),
            "kafka partitions assigned"
        );
        Ok(partitions)
    }
}

/// What the source knows of one partition.
struct Partition {
    id: u32,
    /// The offset it starts at.
    start: u64,
    /// For a bounded source, the offset it ends at.
    end: Option<u64>,
    /// The newest event time read from it.
    max_seen: Option<EventTime>,
    /// When it last had a message (or the run started).
    last: Instant,
    /// Whether every message up to its end was received.
    received: bool,
    /// Whether it reached its end: every message up to it received and
    /// handed on.
    done: bool,
    /// Messages read from it.
    messages: u64,
    /// The offset after the last message read.
    next: u64,
}

/// Reads messages until the source ends (bounded), the run stops, or the
/// driver hangs up. A message that cannot be read is sent as malformed;
/// a topic that cannot be read stops the run.
pub(super) fn read(
    assign: &Assign,
    consumer: &Consumer,
    mut decoder: Decoder,
    idle_timeout: Option<Duration>,
    events: &mpsc::Sender<Batch>,
    stop: &AtomicBool,
    returned: Option<&Returned>,
) {
    let topic = consumer.config.topic.value.as_str();
    let failed = |message: String| {
        let _ = events.blocking_send(Err(RunError::Read {
            input: assign.name.to_string(),
            file: format!("kafka topic {topic}"),
            error: std::io::Error::other(message),
        }));
    };
    let mut partitions = match consumer.assign(&assign.name) {
        Ok(partitions) => partitions,
        Err(message) => return failed(message),
    };
    let names: Vec<Arc<str>> = partitions
        .iter()
        .map(|partition| Arc::from(format!("{topic}/{}", partition.id).as_str()))
        .collect();
    let mut reader = Reader {
        assign,
        decoder: &mut decoder,
        names: &names,
        bytes_read: &consumer.bytes_read,
    };
    let mut merge = match Merge::split(consumer, &partitions) {
        Ok(merge) => merge,
        Err(message) => return failed(message),
    };
    // What was fetched before the queues were split came through the
    // consumer's own queue.
    while let Some(message) = consumer.client.poll(Duration::ZERO) {
        if let Err(message) = merge.early(message, &mut partitions, &mut reader, Instant::now()) {
            return failed(message);
        }
    }
    let mut batch = Pending::default();
    let mut published = Instant::now();
    publish(&partitions, &consumer.read);
    while !stop.load(Ordering::Relaxed) && !partitions.iter().all(|p| p.done) {
        let now = Instant::now();
        if now >= published + PUBLISH {
            publish(&partitions, &consumer.read);
            published = now;
        }
        if let Err(message) = merge.fill(&mut partitions, &mut reader, now) {
            return failed(message);
        }
        let Some((index, item)) = merge.take(&mut partitions) else {
            // Nothing at hand: what waits goes to the driver, records
            // written out are freed, and the client serves its callbacks
            // while messages come.
            returns::free(returned);
            if !batch.send(&partitions, idle_timeout, now, events) {
                return;
            }
            if let Some(message) = consumer.client.poll(POLL_IDLE)
                && let Err(message) = merge.early(message, &mut partitions, &mut reader, now)
            {
                return failed(message);
            }
            continue;
        };
        // A chunk may hold several partitions' items: each names its own.
        if let Item::Event(event, _) = &item {
            let partition = &mut partitions[index];
            partition.max_seen = Some(partition.max_seen.map_or(event.time, |t| t.max(event.time)));
        }
        batch.items.push(item);
        batch
            .frontiers
            .push(frontier(&partitions, idle_timeout, now));
        if batch.started.is_none() {
            batch.started = Some(now);
        }
        let due = batch.items.len() == BATCH
            || batch.started.is_some_and(|started| now >= started + FLUSH);
        if due {
            returns::free(returned);
            if !batch.send(&partitions, idle_timeout, now, events) {
                return;
            }
        }
    }
    batch.send(&partitions, idle_timeout, Instant::now(), events);
    publish(&partitions, &consumer.read);
    if partitions.iter().all(|p| p.done) {
        tracing::info!(
            source = %assign.name,
            messages = partitions.iter().map(|p| p.messages).sum::<u64>(),
            "kafka source read to its end"
        );
    }
}

/// The partitions' messages in event-time order as far as they are at
/// hand: a queue per partition, read one message ahead, and of the heads
/// the earliest goes first. Partitions fetched in long runs so still come
/// out nearly in time order, and each partition in its own order.
struct Merge {
    queues: Vec<PartitionQueue<Context>>,
    /// Each partition's next item, and the time it goes out by.
    heads: Vec<Option<(EventTime, Item)>>,
    /// Items that came through the consumer's own queue, before their
    /// partition's was split off: they go first.
    early: Vec<VecDeque<(EventTime, Item)>>,
    /// The partition last taken from, whose queue is looked in next; the
    /// others without a head now and then.
    last: Option<usize>,
    taken: u32,
}

impl Merge {
    /// How often every partition without a head is looked in.
    const EVERY: u32 = 64;

    fn split(consumer: &Consumer, partitions: &[Partition]) -> Result<Self, String> {
        let topic = consumer.config.topic.value.as_str();
        let queues = partitions
            .iter()
            .map(|partition| {
                consumer
                    .client
                    .split_partition_queue(topic, partition_id(partition.id))
                    .ok_or_else(|| format!("cannot read partition {}", partition.id))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            queues,
            heads: partitions.iter().map(|_| None).collect(),
            early: partitions.iter().map(|_| VecDeque::new()).collect(),
            last: None,
            taken: 0,
        })
    }

    /// Takes a message from the consumer's own queue.
    fn early(
        &mut self,
        message: KafkaResult<BorrowedMessage<'_>>,
        partitions: &mut [Partition],
        reader: &mut Reader<'_>,
        now: Instant,
    ) -> Result<(), String> {
        let message = match message {
            Ok(message) => message,
            Err(error) if fatal(&error) => return Err(error.to_string()),
            Err(_) => return Ok(()),
        };
        if let Some(index) = index_of(partitions, message.partition())
            && let Some(head) = reader.receive(index, &mut partitions[index], &message, now)
        {
            self.early[index].push_back(head);
        }
        Ok(())
    }

    /// Gives the partitions without a head one, where a message is at hand.
    fn fill(
        &mut self,
        partitions: &mut [Partition],
        reader: &mut Reader<'_>,
        now: Instant,
    ) -> Result<(), String> {
        let everyone = self.last.is_none() || self.taken.is_multiple_of(Self::EVERY);
        for (index, partition) in partitions.iter_mut().enumerate() {
            if self.heads[index].is_some() {
                continue;
            }
            if let Some(head) = self.early[index].pop_front() {
                self.heads[index] = Some(head);
                continue;
            }
            if partition.received || !(everyone || self.last == Some(index)) {
                continue;
            }
            match self.queues[index].poll(Duration::ZERO) {
                Some(Ok(message)) => {
                    self.heads[index] = reader.receive(index, partition, &message, now);
                }
                Some(Err(error)) if fatal(&error) => return Err(error.to_string()),
                _ => {}
            }
        }
        Ok(())
    }

    /// The earliest head and its partition; `None` when no partition has
    /// one, and then each partition whose messages are all received and
    /// handed on is done.
    fn take(&mut self, partitions: &mut [Partition]) -> Option<(usize, Item)> {
        let earliest = self
            .heads
            .iter()
            .enumerate()
            .filter_map(|(index, head)| Some((head.as_ref()?.0, index)))
            .min();
        let Some((_, index)) = earliest else {
            self.last = None;
            for (index, partition) in partitions.iter_mut().enumerate() {
                partition.done = partition.received && self.early[index].is_empty();
            }
            return None;
        };
        self.last = Some(index);
        self.taken = self.taken.wrapping_add(1);
        let (_, item) = self.heads[index].take()?;
        let partition = &mut partitions[index];
        partition.done = partition.received && self.early[index].is_empty();
        Some((index, item))
    }
}

/// The index of `partition` among `partitions`.
fn index_of(partitions: &[Partition], partition: i32) -> Option<usize> {
    partitions
        .iter()
        .position(|p| i32::try_from(p.id) == Ok(partition))
}

/// Turns the messages of a source's partitions into items.
struct Reader<'a> {
    assign: &'a Assign,
    decoder: &'a mut Decoder,
    /// Each partition's name in malformed lines: `topic/partition`.
    names: &'a [Arc<str>],
    bytes_read: &'a AtomicU64,
}

impl Reader<'_> {
    /// Takes `message` of `partition`, the source's `index`th, received
    /// `now`: its item, with the time it goes out by (a malformed line at
    /// once: it has none).
    fn receive(
        &mut self,
        index: usize,
        partition: &mut Partition,
        message: &BorrowedMessage<'_>,
        now: Instant,
    ) -> Option<(EventTime, Item)> {
        let offset = message.offset().max(0).unsigned_abs();
        partition.last = now;
        partition.messages += 1;
        partition.next = offset + 1;
        partition.received = partition.end.is_some_and(|end| offset + 1 >= end);
        self.bytes_read
            .fetch_add(message.payload_len() as u64, Ordering::Relaxed);
        let place = Place {
            file: &self.names[index],
            at: At {
                offset: offset + 1,
                line: u64::from(partition.id),
            },
            raw: message.payload().unwrap_or_default(),
            line: offset,
        };
        let mut item = message_item(self.assign, self.decoder, message, &place)?;
        let time = match &mut item {
            Item::Event(event, _) => {
                event.partition = Some(partition.id);
                event.time
            }
            Item::Malformed(..) => EventTime::from_millis(i64::MIN),
        };
        Some((time, item))
    }
}

/// The item a message at `place` makes: an event, or a malformed line.
fn message_item(
    assign: &Assign,
    decoder: &mut Decoder,
    message: &BorrowedMessage<'_>,
    place: &Place<'_>,
) -> Option<Item> {
    let time = message.timestamp().to_millis().map(EventTime::from_millis);
    match message.payload().map(std::str::from_utf8) {
        None => Some(assign.malformed(place, "the message has no value".to_string())),
        Some(Err(_)) => {
            Some(assign.malformed(place, "the message's value is not UTF-8 text".to_string()))
        }
        Some(Ok(text)) => {
            let text = text.strip_suffix('\n').unwrap_or(text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            assign.item_at(decoder, text, place, time)
        }
    }
}

/// Publishes what was read from each partition.
fn publish(partitions: &[Partition], read: &Mutex<Vec<(u32, u64, u64)>>) {
    let mut read = read.lock().unwrap_or_else(PoisonError::into_inner);
    read.clear();
    read.extend(partitions.iter().map(|p| (p.id, p.messages, p.next)));
}

/// Whether a consumer error ends the run: the topic or the group is gone
/// or refused, rather than a broker being away for a while.
pub(crate) fn fatal(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::UnknownTopicOrPartition
                | Code::TopicAuthorizationFailed
                | Code::GroupAuthorizationFailed
                | Code::Fatal
        )
    )
}

/// Items waiting to be sent, each naming its partition, and the frontier
/// last sent.
#[derive(Default)]
struct Pending {
    /// What chunks name as their file: nothing, since items name their
    /// partition.
    file: Arc<str>,
    items: Vec<Item>,
    /// The frontier after each item.
    frontiers: Vec<Option<EventTime>>,
    started: Option<Instant>,
    frontier: Option<EventTime>,
}

impl Pending {
    /// Sends the items with the frontier as it is after them; when there
    /// are none, the frontier alone if it moved (a partition fell idle).
    /// `false` when the driver hung up.
    fn send(
        &mut self,
        partitions: &[Partition],
        idle_timeout: Option<Duration>,
        now: Instant,
        events: &mpsc::Sender<Batch>,
    ) -> bool {
        let frontier = frontier(partitions, idle_timeout, now);
        if self.items.is_empty() && frontier <= self.frontier {
            return true;
        }
        self.frontier = self.frontier.max(frontier);
        self.started = None;
        let chunk = Chunk {
            file: self.file.clone(),
            head: None,
            items: std::mem::replace(&mut self.items, Vec::with_capacity(BATCH)),
            frontiers: std::mem::replace(&mut self.frontiers, Vec::with_capacity(BATCH)),
            frontier: self.frontier,
        };
        events.blocking_send(Ok(chunk)).is_ok()
    }
}

/// The least newest event time over the partitions that count: neither
/// idle nor done. `None` while one that counts has had no event, which
/// holds the watermark back; with none that counts, the newest of all.
fn frontier(
    partitions: &[Partition],
    idle_timeout: Option<Duration>,
    now: Instant,
) -> Option<EventTime> {
    let counts =
        |p: &&Partition| !p.done && idle_timeout.is_none_or(|timeout| now < p.last + timeout);
    if partitions.iter().any(|p| counts(&p)) {
        partitions
            .iter()
            .filter(counts)
            .map(|p| p.max_seen)
            .min()
            .flatten()
    } else {
        partitions.iter().filter_map(|p| p.max_seen).max()
    }
}
