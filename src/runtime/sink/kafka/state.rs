//! The state topic: every partition's state, written in each checkpoint's
//! Kafka transaction, so that a process that takes a partition over (or
//! starts on a state directory of its own) restores it from the brokers
//! rather than from another process's checkpoint files.
//!
//! A checkpoint's snapshot of partition `p` is a checkpoint of its own,
//! framed as a checkpoint file is: the sources' offsets of `p` alone, the
//! watermarks, and the keys whose first event came from `p`, with no file
//! sinks (those are the writing process's, on its machine). Its records
//! are keyed `<pipeline id>/<p>/<chunk>` (the pipeline id being the
//! transactional id without the process's tag), so a compacted topic
//! keeps each partition's newest snapshot and nothing older; each holds
//! at most [`CHUNK`] bytes of it, after a header: the format, the
//! checkpoint's number, the partition, the chunk's place and how many
//! there are, and the writing process's tag. Chunks a newer snapshot no
//! longer has are deleted with tombstones; a run read to its end leaves,
//! in each partition's first chunk, a record saying its snapshots are
//! deleted. Partition `p`'s records go to the topic's partition `p`
//! modulo its count, so that a process reading its partitions' snapshots
//! waits only for their own writers' open transactions: a
//! `read_committed` reader ends before the first one open, which would
//! hide newer snapshots behind it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};

use super::{
    ASKED_WAIT, Transactions, as_refs, client_of, consumer_of, id_for, kafka_of, marker_of,
    read_marker, tagged,
};
use crate::checkpoint::{Checkpoint, from_bytes, to_bytes};
use crate::config::KafkaSink;
use crate::plan::Graph;
use crate::runtime::error::RunError;
use crate::runtime::matcher::{Divided, Matcher};

/// The first bytes of every record's value.
const MAGIC: &[u8; 8] = b"RUNNERST";

/// The format of the records' header.
const FORMAT: u32 = 1;

/// The most bytes of a snapshot in one record: brokers refuse records of
/// more than 1 MB unless told otherwise.
const CHUNK: usize = 512 * 1024;

/// How long reading the topic waits for the brokers without hearing from
/// them before it gives up.
const READ_WAIT: Duration = Duration::from_secs(30);

/// What reading the topic asks of its brokers: how to reach them, the
/// transactional id of the pipeline's processes without their tags (its
/// records' keys start with it), and the number of the last checkpoint
/// whose transaction committed as the process tagged `tag`.
pub(crate) trait Brokers {
    fn sink(&self) -> &KafkaSink;
    fn base(&self) -> &str;
    fn committed_of(&self, tag: Option<&str>) -> Result<Option<u64>, String>;
}

impl Brokers for Transactions {
    fn sink(&self) -> &KafkaSink {
        &self.sink
    }

    fn base(&self) -> &str {
        &self.base
    }

    fn committed_of(&self, tag: Option<&str>) -> Result<Option<u64>, String> {
        Transactions::committed_of(self, tag)
    }
}

/// The brokers of a pipeline's state topic as one that writes nothing
/// sees them (`runner state inspect`): no transactional producer, which
/// would fence off the running processes.
pub(crate) struct Onlooker {
    sink: KafkaSink,
    base: String,
}

impl Onlooker {
    /// The brokers of `graph`'s transactions (its first Kafka sink's, or
    /// its first Kafka source's without any), where its processes write
    /// as `id` unless the sink's properties name a `transactional.id`.
    ///
    /// # Errors
    ///
    /// No sink writes Kafka, and there is no state topic.
    pub(crate) fn new(graph: &Graph, id: &str) -> Result<Self, RunError> {
        let kafka = kafka_of(graph)?;
        let kafka = as_refs(&kafka);
        Ok(Self {
            base: id_for(&kafka, id).to_string(),
            sink: kafka[0].1.clone(),
        })
    }
}

impl Brokers for Onlooker {
    fn sink(&self) -> &KafkaSink {
        &self.sink
    }

    fn base(&self) -> &str {
        &self.base
    }

    fn committed_of(&self, tag: Option<&str>) -> Result<Option<u64>, String> {
        let id = tagged(&self.base, tag);
        let marker = marker_of(&self.sink, &id).map_err(|error| error.to_string())?;
        read_marker(&marker, &self.sink.topic.value, &id, ASKED_WAIT)
    }
}

/// A run's state topic.
pub(crate) struct StateTopic {
    topic: String,
    /// An empty matcher of the pipeline's sides, to divide states by
    /// partition.
    splitter: Matcher,
    /// How many chunks each partition's last snapshot written or found
    /// had (those a newer one does not have are deleted), and the
    /// partitions this run wrote.
    chunks: Mutex<Chunks>,
}

/// What a run knows of the chunks on the topic.
#[derive(Default)]
struct Chunks {
    /// How many each partition's last snapshot written or found had.
    counts: HashMap<u32, u32>,
    /// The partitions whose snapshots this run wrote.
    written: BTreeSet<u32>,
    /// The highest number of a record found, deleted snapshots' too.
    highest: Option<u64>,
    /// How many partitions the topic has.
    partitions: Option<u32>,
    /// Whether the topic's cleanup policy was asked of the brokers.
    policy_asked: bool,
}

/// A partition's newest snapshot on the topic whose transaction
/// committed.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) partition: u32,
    /// The tag of the process that wrote it (`None`: alone).
    pub(crate) tag: Option<String>,
    pub(crate) checkpoint: Checkpoint,
}

/// Which partitions' snapshots to read once the transactions open on them
/// settled, and how: the reading process's tag, and how to fence off the
/// transactional id of another process (by its tag), the partitions' last
/// owner, whose open transaction may hold newer snapshots (given the
/// highest number of its records on them, committed or not).
pub(crate) struct Settling<'a> {
    pub(crate) partitions: &'a BTreeSet<u32>,
    pub(crate) own: Option<&'a str>,
    pub(crate) fence: &'a Fence<'a>,
}

/// Fences off the process tagged so, the highest number of whose records
/// on the partitions read is given.
pub(crate) type Fence<'a> = dyn Fn(Option<&str>, u64) -> Result<(), String> + 'a;

/// The chunks of one snapshot found so far, or that a partition's
/// snapshots were deleted (its process read its inputs to their end).
struct Pieces {
    tag: Option<String>,
    chunks: Vec<Option<Vec<u8>>>,
    deleted: bool,
}

/// One record's header, read.
struct Header<'a> {
    sequence: u64,
    partition: u32,
    chunk: u32,
    chunks: u32,
    tag: Option<String>,
    data: &'a [u8],
}

impl StateTopic {
    /// The state topic `topic`, `splitter` being an empty matcher of the
    /// pipeline's sides.
    pub(crate) fn new(topic: &str, splitter: Matcher) -> Self {
        Self {
            topic: topic.to_string(),
            splitter,
            chunks: Mutex::default(),
        }
    }

    /// The topic's name.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends, in the open transaction of `transactions`, the snapshot of
    /// every partition `checkpoint` holds offsets of, as the process
    /// tagged `tag` took it. Committing the transaction delivers them.
    ///
    /// # Errors
    ///
    /// The checkpoint's states do not read back, or a record cannot be
    /// sent.
    pub(crate) fn write(
        &self,
        transactions: &Transactions,
        checkpoint: &Checkpoint,
        tag: Option<&str>,
    ) -> Result<usize, String> {
        let states: Vec<&[u8]> = if checkpoint.workers.is_empty() {
            vec![&checkpoint.matcher]
        } else {
            checkpoint.workers.iter().map(Vec::as_slice).collect()
        };
        // What the states say of ids and the watermark, for partitions
        // without keys.
        let mut none: Option<Divided> = None;
        let mut divided: BTreeMap<u32, Divided> = BTreeMap::new();
        for state in states {
            let (header, parts) = (self.splitter.split_by_partition(state))
                .map_err(|error| format!("the state cannot be divided by partition: {error}"))?;
            match &mut none {
                Some(none) => none.absorb(&header),
                None => none = Some(header),
            }
            for (partition, part) in parts {
                (divided.entry(partition))
                    .and_modify(|into| into.absorb(&part))
                    .or_insert(part);
            }
        }
        let none = none.unwrap_or_default();
        let partitions: BTreeSet<u32> = (checkpoint.inputs.iter())
            .flat_map(|input| input.partitions.iter().map(|&(partition, _)| partition))
            .collect();
        let mut chunks = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        if chunks.partitions.is_none() {
            let metadata = (transactions.client.client())
                .fetch_metadata(Some(&self.topic), READ_WAIT)
                .map_err(|error| format!("the state topic `{}`: {error}", self.topic))?;
            chunks.partitions = Some(partition_count(&metadata, &self.topic)?);
        }
        let count = chunks.partitions.unwrap_or(1);
        let place = |partition: u32| i32::try_from(partition % count).unwrap_or(0);
        let mut bytes = 0;
        for partition in partitions {
            let state = divided.get(&partition).unwrap_or(&none).state();
            let snapshot = of_partition(checkpoint, partition, state);
            let encoded = to_bytes(&snapshot);
            let pieces: Vec<&[u8]> = encoded.chunks(CHUNK).collect();
            let pieces_count =
                u32::try_from(pieces.len()).map_err(|_| "a state too large".to_string())?;
            for (chunk, data) in (0..).zip(&pieces) {
                let mut value = header(checkpoint.sequence, partition, chunk, pieces_count, tag);
                value.extend_from_slice(data);
                let key = Self::key(transactions, partition, chunk);
                transactions.send_state(&self.topic, place(partition), &key, Some(&value))?;
            }
            let before = chunks.counts.insert(partition, pieces_count).unwrap_or(0);
            chunks.written.insert(partition);
            for chunk in pieces_count..before {
                let key = Self::key(transactions, partition, chunk);
                transactions.send_state(&self.topic, place(partition), &key, None)?;
            }
            bytes += encoded.len();
        }
        Ok(bytes)
    }

    /// The highest number of a record the last [`read`](Self::read) found,
    /// of a snapshot or of a partition's snapshots deleted: a run numbers
    /// its checkpoints after it, so that its snapshots are the newest.
    pub(crate) fn highest(&self) -> Option<u64> {
        (self.chunks.lock().unwrap_or_else(PoisonError::into_inner)).highest
    }

    /// How many partitions the topic has, once read.
    pub(crate) fn partitions(&self) -> Option<u32> {
        (self.chunks.lock().unwrap_or_else(PoisonError::into_inner)).partitions
    }

    /// Deletes, in the open transaction of `transactions`, the snapshots
    /// of the partitions `read` (and of those this run wrote), as the
    /// process tagged `tag` committing the number `sequence`: a run that
    /// read its inputs to their end leaves nothing to resume. Each
    /// partition's first chunk becomes a record saying so, with no
    /// snapshot (a reader passes over the older ones it still finds), and
    /// its other chunks are deleted.
    ///
    /// # Errors
    ///
    /// A record cannot be sent.
    pub(crate) fn delete(
        &self,
        transactions: &Transactions,
        sequence: u64,
        tag: Option<&str>,
        read: &BTreeSet<u32>,
    ) -> Result<(), String> {
        let mut chunks = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        let Chunks {
            counts,
            written,
            partitions,
            ..
        } = &mut *chunks;
        let count = partitions.unwrap_or(1);
        let mut deleted = std::mem::take(written);
        deleted.extend(read);
        for partition in deleted {
            let place = i32::try_from(partition % count).unwrap_or(0);
            let marker = header(sequence, partition, 0, 0, tag);
            let key = Self::key(transactions, partition, 0);
            transactions.send_state(&self.topic, place, &key, Some(&marker))?;
            for chunk in 1..counts.remove(&partition).unwrap_or(0) {
                let key = Self::key(transactions, partition, chunk);
                transactions.send_state(&self.topic, place, &key, None)?;
            }
        }
        Ok(())
    }

    /// The key of `chunk` of partition `partition`'s snapshot.
    fn key(transactions: &Transactions, partition: u32, chunk: u32) -> String {
        format!("{}/{partition}/{chunk}", transactions.base)
    }

    /// Reads the topic, as a `read_committed` reader of `brokers` sees it
    /// (its partitions holding the snapshots of `only` the partitions
    /// given, or all), and gives each partition's newest snapshot of this
    /// pipeline whose transaction committed: whose number
    /// is not past the last the brokers hold for its process's id (brokers
    /// that show aborted records to `read_committed` readers are not
    /// trusted to hide them). Warnings go to `warnings`.
    ///
    /// # Errors
    ///
    /// The topic does not exist, the brokers do not answer, or a snapshot
    /// that committed does not read back.
    pub(crate) fn read(
        &self,
        brokers: &dyn Brokers,
        only: Option<&Settling<'_>>,
        warnings: &mut Vec<String>,
    ) -> Result<BTreeMap<u32, Snapshot>, String> {
        let ask = !std::mem::replace(
            &mut (self.chunks.lock().unwrap_or_else(PoisonError::into_inner)).policy_asked,
            true,
        );
        if ask {
            self.check_policy(brokers);
        }
        let found = self.fetch(brokers, only, warnings)?;
        let mut committed: HashMap<Option<String>, Option<u64>> = HashMap::new();
        let mut newest = BTreeMap::new();
        let mut chunks = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        chunks.highest = (found.values().flat_map(BTreeMap::keys).copied()).max();
        for (partition, snapshots) in found {
            let most = (snapshots.values())
                .map(|pieces| u32::try_from(pieces.chunks.len()).unwrap_or(u32::MAX))
                .max()
                .unwrap_or(0);
            let known = chunks.counts.entry(partition).or_default();
            *known = (*known).max(most);
            for (sequence, pieces) in snapshots.into_iter().rev() {
                if !committed.contains_key(&pieces.tag) {
                    let number = brokers.committed_of(pieces.tag.as_deref())?;
                    committed.insert(pieces.tag.clone(), number);
                }
                let number = committed.get(&pieces.tag).copied().flatten();
                if number.is_some_and(|number| number < sequence) {
                    continue;
                }
                if pieces.deleted {
                    break;
                }
                let Some(whole) = whole(&pieces.chunks) else {
                    if number.is_none() {
                        // Unknown whether it committed: passed over.
                        continue;
                    }
                    let missing = (pieces.chunks.iter())
                        .filter(|chunk| chunk.is_none())
                        .count();
                    return Err(format!(
                        "the snapshot of partition {partition} numbered {sequence} on the state \
                         topic `{}` committed, but {missing} of its {} records are gone: the \
                         topic must be compacted (cleanup.policy=compact), not deleted by \
                         retention; run with --fresh to start over",
                        self.topic,
                        pieces.chunks.len()
                    ));
                };
                let checkpoint = from_bytes(&whole).map_err(|problem| {
                    format!(
                        "the snapshot of partition {partition} numbered {sequence} on the state \
                         topic `{}` cannot be read: {problem}",
                        self.topic
                    )
                })?;
                newest.insert(
                    partition,
                    Snapshot {
                        partition,
                        tag: pieces.tag,
                        checkpoint,
                    },
                );
                break;
            }
        }
        tracing::info!(
            topic = %self.topic,
            partitions = ?newest.keys().collect::<Vec<_>>(),
            "state topic read"
        );
        Ok(newest)
    }

    /// Asks the brokers, on a thread of its own, whether the topic is
    /// compacted alone (`cleanup.policy=compact`), and warns when it is not:
    /// with `delete` it grows with every checkpoint until its retention,
    /// and then loses snapshots, the newest too once its pipeline stopped
    /// for that long. The run does not wait for the answer: brokers that
    /// cannot describe a topic's settings (or do not let this client ask)
    /// may take the request's whole timeout to say so.
    fn check_policy(&self, brokers: &dyn Brokers) {
        let (sink, topic) = (brokers.sink().clone(), self.topic.clone());
        let asked = std::thread::Builder::new()
            .name("state-topic-policy".into())
            .spawn(move || match cleanup_policy(&sink, &topic) {
                Ok(policy) => {
                    let policy = policy.as_deref().unwrap_or("compact");
                    tracing::info!(topic = %topic, policy = %policy, "state topic cleanup policy");
                    if let Some(warning) = policy_warning(&topic, policy) {
                        eprintln!("warning: {warning}");
                    }
                }
                Err(error) => {
                    tracing::info!(topic = %topic, %error, "state topic cleanup policy not known");
                }
            });
        if let Err(error) = asked {
            tracing::info!(topic = %self.topic, %error, "state topic cleanup policy not asked");
        }
    }

    /// The end of each of `partitions` of the topic, as `client` sees it
    /// (at its isolation level), asked in one request.
    ///
    /// # Errors
    ///
    /// The brokers do not answer.
    fn ends(
        &self,
        client: &BaseConsumer,
        partitions: &BTreeSet<i32>,
    ) -> Result<BTreeMap<i32, i64>, String> {
        let failed = |error: KafkaError| format!("the state topic `{}`: {error}", self.topic);
        let mut list = TopicPartitionList::new();
        for &partition in partitions {
            // The time -1 asks for the latest offset.
            (list.add_partition_offset(&self.topic, partition, Offset::End)).map_err(failed)?;
        }
        let found = (client.offsets_for_times(list, READ_WAIT)).map_err(failed)?;
        let mut ends = BTreeMap::new();
        for element in found.elements() {
            element.error().map_err(failed)?;
            let end = match element.offset() {
                Offset::Offset(end) => end,
                _ => 0,
            };
            ends.insert(element.partition(), end);
        }
        Ok(ends)
    }

    /// Has `client` read, from their start, the partitions of the topic
    /// that `ends` says hold records; gives them (none: nothing assigned).
    ///
    /// # Errors
    ///
    /// The client refuses the assignment.
    fn read_from_start(
        &self,
        client: &BaseConsumer,
        ends: &BTreeMap<i32, i64>,
    ) -> Result<BTreeSet<i32>, String> {
        let failed = |error: KafkaError| format!("the state topic `{}`: {error}", self.topic);
        let mut list = TopicPartitionList::new();
        let mut open = BTreeSet::new();
        for (&partition, _) in ends.iter().filter(|&(_, &end)| end > 0) {
            (list.add_partition_offset(&self.topic, partition, Offset::Beginning))
                .map_err(failed)?;
            open.insert(partition);
        }
        if !open.is_empty() {
            client.assign(&list).map_err(failed)?;
        }
        Ok(open)
    }

    /// The end of each of `partitions` of the topic once no transaction is
    /// open on them, as `reader` (`read_committed`) and `all`
    /// (`read_uncommitted`) see them: `reader`'s end then is the end of
    /// every record written, so it misses none that committed, a
    /// transaction open before it included. First the processes that
    /// wrote the newest record of each of the partitions read (their last
    /// owners, committed or not) are fenced off, which aborts a
    /// transaction one of them left open, dying; one being committed
    /// settles. Waits up to [`READ_WAIT`].
    ///
    /// # Errors
    ///
    /// The brokers do not answer, or a transaction stays open.
    fn settled(
        &self,
        (reader, all): (&BaseConsumer, &BaseConsumer),
        partitions: &BTreeSet<i32>,
        settling: &Settling<'_>,
        prefix: &str,
    ) -> Result<BTreeMap<i32, i64>, String> {
        for (tag, newest) in self.last_writers(all, partitions, settling.partitions, prefix)? {
            if tag.as_deref() != settling.own {
                (settling.fence)(tag.as_deref(), newest)?;
            }
        }
        let began = Instant::now();
        loop {
            let stable = self.ends(reader, partitions)?;
            let written = self.ends(all, partitions)?;
            let open = (written.iter())
                .map(|(&partition, &written)| {
                    let stable = stable.get(&partition).copied().unwrap_or(0);
                    (partition, stable, written)
                })
                .find(|&(_, stable, written)| stable < written);
            let Some((partition, stable_end, written)) = open else {
                return Ok(stable);
            };
            if began.elapsed() > READ_WAIT {
                return Err(format!(
                    "the state topic `{}`: partition {partition} has had a transaction open for \
                     {}s (offsets {stable_end} to {written}), whose snapshots may be newer than \
                     those before it; it ends once its process commits it, or is fenced off, or \
                     its transaction times out",
                    self.topic,
                    READ_WAIT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The tags of the processes that wrote the newest record (by number)
    /// of each of `mine`, the partitions read, in `partitions` of the
    /// topic, as `all` (a `read_uncommitted` reader) sees them: records of
    /// transactions that did not commit, or are still open, included;
    /// each with the highest of those numbers. Records whose keys do not
    /// start with `prefix` are another pipeline's.
    ///
    /// # Errors
    ///
    /// The brokers do not answer.
    fn last_writers(
        &self,
        all: &BaseConsumer,
        partitions: &BTreeSet<i32>,
        mine: &BTreeSet<u32>,
        prefix: &str,
    ) -> Result<BTreeMap<Option<String>, u64>, String> {
        let failed = |error: KafkaError| format!("the state topic `{}`: {error}", self.topic);
        let mut open = self.read_from_start(all, &self.ends(all, partitions)?)?;
        let mut newest: BTreeMap<u32, (u64, Option<String>)> = BTreeMap::new();
        let deadline = Instant::now() + READ_WAIT;
        while !open.is_empty() && Instant::now() < deadline {
            match all.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let ours =
                        (message.key()).is_some_and(|key| key.starts_with(prefix.as_bytes()));
                    let header = message.payload().filter(|_| ours).and_then(read_header);
                    if let Some(header) = header.filter(|h| mine.contains(&h.partition)) {
                        let newer = (newest.get(&header.partition))
                            .is_none_or(|(sequence, _)| header.sequence >= *sequence);
                        if newer {
                            newest.insert(header.partition, (header.sequence, header.tag));
                        }
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    open.remove(&partition);
                }
                Some(Err(error)) => return Err(failed(error)),
                None => {}
            }
        }
        let mut writers = BTreeMap::new();
        for (sequence, tag) in newest.into_values() {
            let highest = writers.entry(tag).or_insert(sequence);
            *highest = (*highest).max(sequence);
        }
        Ok(writers)
    }

    /// Every snapshot of this pipeline on the topic (`only` those of the
    /// partitions given, once the transactions open on them settled), by
    /// partition and number.
    fn fetch(
        &self,
        brokers: &dyn Brokers,
        only: Option<&Settling<'_>>,
        warnings: &mut Vec<String>,
    ) -> Result<BTreeMap<u32, BTreeMap<u64, Pieces>>, String> {
        let failed = |error: KafkaError| format!("the state topic `{}`: {error}", self.topic);
        let reader = reader_of(brokers, "read_committed").map_err(failed)?;
        let metadata = (reader.fetch_metadata(Some(&self.topic), READ_WAIT)).map_err(failed)?;
        let count = partition_count(&metadata, &self.topic)?;
        (self.chunks.lock().unwrap_or_else(PoisonError::into_inner)).partitions = Some(count);
        let place = |partition: u32| i32::try_from(partition % count).unwrap_or(0);
        let partitions: BTreeSet<i32> = match only {
            Some(only) => only
                .partitions
                .iter()
                .map(|&partition| place(partition))
                .collect(),
            None => (0..count).map(place).collect(),
        };
        let ends = match only {
            // Every transaction that wrote to them settled: what the
            // snapshots of these partitions' writers committed.
            Some(settling) => {
                let all = reader_of(brokers, "read_uncommitted").map_err(failed)?;
                let prefix = format!("{}/", brokers.base());
                self.settled((&reader, &all), &partitions, settling, &prefix)?
            }
            None => self.ends(&reader, &partitions)?,
        };
        let mut open = self.read_from_start(&reader, &ends)?;
        let mut found: BTreeMap<u32, BTreeMap<u64, Pieces>> = BTreeMap::new();
        let prefix = format!("{}/", brokers.base());
        let mut foreign = 0_usize;
        let mut heard = Instant::now();
        while !open.is_empty() {
            let Some(message) = reader.poll(Duration::from_millis(100)) else {
                if heard.elapsed() > READ_WAIT {
                    return Err(format!(
                        "the state topic `{}`: nothing read in {}s, with partitions {open:?} \
                         not read to their end",
                        self.topic,
                        READ_WAIT.as_secs()
                    ));
                }
                continue;
            };
            heard = Instant::now();
            let message = match message {
                Ok(message) => message,
                Err(KafkaError::PartitionEOF(partition)) => {
                    open.remove(&partition);
                    continue;
                }
                Err(error) => return Err(failed(error)),
            };
            let mine = (message.key()).is_some_and(|key| key.starts_with(prefix.as_bytes()));
            let Some(value) = message.payload().filter(|_| mine) else {
                // Another pipeline's, or a chunk deleted.
                continue;
            };
            let Some(header) = read_header(value) else {
                foreign += 1;
                continue;
            };
            let pieces = (found.entry(header.partition).or_default())
                .entry(header.sequence)
                .or_insert_with(|| Pieces {
                    tag: header.tag.clone(),
                    chunks: Vec::new(),
                    deleted: false,
                });
            let count = usize::try_from(header.chunks).unwrap_or(usize::MAX);
            let at = usize::try_from(header.chunk).unwrap_or(usize::MAX);
            if count == 0 && at == 0 {
                // The partition's snapshots deleted.
                pieces.deleted = true;
                continue;
            }
            if at >= count || (!pieces.chunks.is_empty() && pieces.chunks.len() != count) {
                foreign += 1;
                continue;
            }
            pieces.chunks.resize(count, None);
            pieces.chunks[at] = Some(header.data.to_vec());
        }
        if foreign > 0 {
            warnings.push(format!(
                "{foreign} record{} on the state topic `{}` under this pipeline's keys are not \
                 snapshots of this runner's: passed over",
                if foreign == 1 { "" } else { "s" },
                self.topic
            ));
        }
        Ok(found)
    }
}

/// How many partitions `topic` has, as `metadata` says.
///
/// # Errors
///
/// It does not exist.
fn partition_count(metadata: &rdkafka::metadata::Metadata, topic: &str) -> Result<u32, String> {
    let count = (metadata.topics().iter())
        .filter(|found| found.name() == topic && found.error().is_none())
        .map(|found| found.partitions().len())
        .sum::<usize>();
    match u32::try_from(count) {
        Ok(count) if count > 0 => Ok(count),
        _ => Err(format!(
            "the state topic `{topic}` does not exist: create it, compacted \
             (cleanup.policy=compact), on the Kafka sinks' cluster"
        )),
    }
}

/// Partition `partition`'s snapshot of `checkpoint`, holding `state`.
fn of_partition(checkpoint: &Checkpoint, partition: u32, state: Vec<u8>) -> Checkpoint {
    let inputs = (checkpoint.inputs.iter())
        .map(|input| {
            let mut input = input.clone();
            input.partitions.retain(|&(p, _)| p == partition);
            input
        })
        .collect();
    Checkpoint {
        version: checkpoint.version,
        sequence: checkpoint.sequence,
        taken_at: checkpoint.taken_at,
        fingerprint: checkpoint.fingerprint.clone(),
        inputs,
        watermark: checkpoint.watermark,
        sinks: Vec::new(),
        matcher: state,
        workers: Vec::new(),
    }
}

/// A record's header, before its chunk of a snapshot.
fn header(sequence: u64, partition: u32, chunk: u32, chunks: u32, tag: Option<&str>) -> Vec<u8> {
    let tag = tag.unwrap_or_default().as_bytes();
    let mut value = Vec::with_capacity(MAGIC.len() + 26 + tag.len() + CHUNK);
    value.extend_from_slice(MAGIC);
    value.extend_from_slice(&FORMAT.to_le_bytes());
    value.extend_from_slice(&sequence.to_le_bytes());
    value.extend_from_slice(&partition.to_le_bytes());
    value.extend_from_slice(&chunk.to_le_bytes());
    value.extend_from_slice(&chunks.to_le_bytes());
    value.extend_from_slice(&u16::try_from(tag.len()).unwrap_or(0).to_le_bytes());
    value.extend_from_slice(tag);
    value
}

/// What [`header`] wrote before `value`'s chunk; `None` for a value that
/// is not a record of this format.
fn read_header(value: &[u8]) -> Option<Header<'_>> {
    let rest = value.strip_prefix(MAGIC)?;
    let (format, rest) = rest.split_at_checked(4)?;
    if u32::from_le_bytes(format.try_into().ok()?) != FORMAT {
        return None;
    }
    let (sequence, rest) = rest.split_at_checked(8)?;
    let (partition, rest) = rest.split_at_checked(4)?;
    let (chunk, rest) = rest.split_at_checked(4)?;
    let (chunks, rest) = rest.split_at_checked(4)?;
    let (length, rest) = rest.split_at_checked(2)?;
    let length = usize::from(u16::from_le_bytes(length.try_into().ok()?));
    let (tag, data) = rest.split_at_checked(length)?;
    let tag = std::str::from_utf8(tag).ok()?;
    Some(Header {
        sequence: u64::from_le_bytes(sequence.try_into().ok()?),
        partition: u32::from_le_bytes(partition.try_into().ok()?),
        chunk: u32::from_le_bytes(chunk.try_into().ok()?),
        chunks: u32::from_le_bytes(chunks.try_into().ok()?),
        tag: (!tag.is_empty()).then(|| tag.to_string()),
        data,
    })
}

/// The warning for the state topic `topic` whose `cleanup.policy` is
/// `policy`, unless that is `compact` alone.
fn policy_warning(topic: &str, policy: &str) -> Option<String> {
    let policies: Vec<&str> = policy.split(',').map(str::trim).collect();
    (policies != ["compact"]).then(|| {
        format!(
            "the state topic `{topic}` has cleanup.policy={policy}: it should be compacted \
             alone (cleanup.policy=compact); as it is, it keeps every checkpoint's snapshots \
             until their retention (retention.ms) and then deletes them, the newest too once \
             the pipeline has stopped for that long, and a process that takes its partitions \
             over then refuses to start"
        )
    })
}

/// The `cleanup.policy` of `topic`, as the brokers of `sink` describe it.
///
/// # Errors
///
/// The brokers do not answer, or cannot describe topics' settings.
fn cleanup_policy(sink: &KafkaSink, topic: &str) -> Result<Option<String>, String> {
    let admin: AdminClient<DefaultClientContext> =
        (client_of(sink).create()).map_err(|error| error.to_string())?;
    let options = AdminOptions::new().request_timeout(Some(READ_WAIT));
    // On its own thread, outside the run's runtime: one of its own to wait.
    let runtime = (tokio::runtime::Builder::new_current_thread().build())
        .map_err(|error| error.to_string())?;
    let described =
        runtime.block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options));
    let resource = (described.map_err(|error| error.to_string())?)
        .into_iter()
        .next()
        .ok_or("no answer")?
        .map_err(|code| code.to_string())?;
    Ok((resource.get("cleanup.policy")).and_then(|entry| entry.value.clone()))
}

/// A snapshot's bytes, when every chunk of it was found.
fn whole(chunks: &[Option<Vec<u8>>]) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    for chunk in chunks {
        bytes.extend_from_slice(chunk.as_ref()?);
    }
    (!chunks.is_empty()).then_some(bytes)
}

/// A reader of the topic, on `brokers`, at
/// `isolation` (`read_committed` sees only what committed, and its end is
/// before the first open transaction's records), that says when it
/// reaches each partition's end.
fn reader_of(brokers: &dyn Brokers, isolation: &str) -> Result<BaseConsumer, KafkaError> {
    let group = format!("{}.state", brokers.base());
    consumer_of(brokers.sink(), &group)
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .create()
}

impl Transactions {
    /// Sends a record of the state topic `topic`, to `partition`, in the
    /// open transaction, waiting while librdkafka's queue is full; `None`
    /// deletes the key.
    fn send_state(
        &self,
        topic: &str,
        partition: i32,
        key: &str,
        value: Option<&[u8]>,
    ) -> Result<(), String> {
        let mut record = BaseRecord::<str, [u8]>::to(topic)
            .key(key)
            .partition(partition);
        if let Some(value) = value {
            record = record.payload(value);
        }
        loop {
            match self.client.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), again)) => {
                    record = again;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((error, _)) => {
                    return Err(format!("the state topic `{topic}`: {error}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_back_and_other_values_do_not() {
        let mut value = header(7, 3, 1, 4, Some("2-of-3"));
        value.extend_from_slice(b"data");
        let read = read_header(&value).unwrap();
        assert_eq!(
            (read.sequence, read.partition, read.chunk, read.chunks),
            (7, 3, 1, 4)
        );
        assert_eq!(read.tag.as_deref(), Some("2-of-3"));
        assert_eq!(read.data, b"data");
        let alone = header(1, 0, 0, 1, None);
        assert_eq!(read_header(&alone).unwrap().tag, None);
        assert!(read_header(b"{\"json\": true}").is_none());
        assert!(read_header(&value[..20]).is_none());
    }

    #[test]
    fn a_state_topic_is_warned_of_unless_compacted_alone() {
        assert_eq!(policy_warning("state", "compact"), None);
        assert_eq!(policy_warning("state", " compact "), None);
        for policy in ["delete", "compact,delete", "delete, compact", ""] {
            let warning = policy_warning("state", policy).unwrap_or_default();
            assert!(
                warning.starts_with(&format!(
                    "the state topic `state` has cleanup.policy={policy}: it should be compacted"
                )),
                "{policy:?}: {warning}"
            );
        }
    }

    #[test]
    fn a_snapshot_is_whole_only_with_every_chunk() {
        assert_eq!(
            whole(&[Some(b"ab".to_vec()), Some(b"c".to_vec())]),
            Some(b"abc".to_vec())
        );
        assert_eq!(whole(&[Some(b"ab".to_vec()), None]), None);
        assert_eq!(whole(&[]), None);
    }
}
