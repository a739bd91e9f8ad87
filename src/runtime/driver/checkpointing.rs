//! Checkpoints in a run: resuming from the last one, and taking them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::time::Instant;

use super::layouts::{self, Layout};
use super::{Driver, Options, Taken};
use crate::checkpoint::encoding::Encoder;
use crate::checkpoint::{Checkpoint, InputPosition, Lock, Store};
use crate::plan::Graph;
use crate::runtime::StateFormat;
use crate::runtime::engine::{Engine, Kept};
use crate::runtime::error::RunError;
use crate::runtime::sink::{StateTopic, Transactions};
use crate::runtime::source::At;
use crate::runtime::source::GroupOffsets;
use crate::runtime::{Instance, Resumed};
use crate::time::Watermark;

/// What a run that writes checkpoints keeps.
pub(super) struct Checkpointing {
    store: Store,
    interval: std::time::Duration,
    /// When the next checkpoint is due.
    pub(super) next: Instant,
    /// The number the next checkpoint gets.
    sequence: u64,
    fingerprint: Vec<(String, String)>,
    /// The pipeline file's directory, which the paths in a checkpoint are
    /// relative to.
    base: std::path::PathBuf,
    /// The run's hold on the state directory.
    lock: Option<Lock>,
    /// The checkpoint being made durable, on a thread of its own.
    in_flight: Option<Saving>,
    /// The buffer the last checkpoint's state was encoded into, to encode
    /// the next into: its memory is there already, which saves the run the
    /// time of getting it anew (most of a checkpoint's pause, with many keys
    /// pending).
    spare: Vec<u8>,
    /// The pipeline's state directory, which holds this process's own
    /// when it is one of several.
    root: PathBuf,
    instance: Instance,
    /// Checkpoints of other numbers of processes, to remove once every
    /// process of this number has one of its own.
    retire: Vec<Layout>,
    /// When this run took over from another number of processes: how
    /// many.
    pub(super) took_over: Option<u32>,
    /// How many partitions each connected topic had when the checkpoint
    /// resumed from was taken, by processes sharing them.
    partitions_then: Option<String>,
    /// Whether checkpoints whose partitions are all held newer elsewhere
    /// were removed, for a process its consumer group dealt partitions.
    retired_superseded: bool,
    /// Of a take-over by partition: the partitions to take from each
    /// state of the checkpoint resumed from.
    picked: Option<Vec<Vec<u32>>>,
    /// The Kafka transactions the Kafka sinks write in, committed with
    /// each checkpoint.
    pub(super) transactions: Option<Arc<Transactions>>,
    /// The state topic each checkpoint's transaction writes every
    /// partition's state to.
    state: Option<Arc<StateTopic>>,
    /// How many partitions the run took from the state topic.
    from_topic: usize,
}

/// A checkpoint being saved on a thread of its own, which hands back the
/// buffer its state was encoded into.
type Saving = std::thread::JoinHandle<Result<Saved, String>>;

/// What a checkpoint's thread hands back: the encoding buffer, to reuse,
/// the bytes the file took, and how long the checkpoint took from its
/// start until it was saved.
struct Saved {
    buffer: Vec<u8>,
    bytes: u64,
    took: std::time::Duration,
}

/// How soon to look again at a checkpoint still being made durable when
/// the next is due.
const RECHECK: std::time::Duration = std::time::Duration::from_millis(20);

/// Whether `graph` writes checkpoints under `options`, and the checkpoint
/// to resume from, if there is one: the process's own, or one put
/// together from the checkpoints of another number of processes it takes
/// its partitions over from ([`layouts::resolve`]); warnings about damaged
/// checkpoints go to `warnings`.
///
/// # Errors
///
/// The state cannot be read, its checkpoint does not fit the pipeline, or
/// the checkpoints of other numbers of processes are newer, ambiguous, or
/// cannot be taken over.
pub(super) fn prepare(
    graph: &Graph,
    options: &mut Options,
    now: Instant,
    warnings: &mut Vec<String>,
) -> Result<(Option<Checkpointing>, Option<Checkpoint>), RunError> {
    let (Some(interval), Some((dir, fresh))) = (graph.checkpoint, options.checkpoints.take())
    else {
        return Ok((None, None));
    };
    let instance = options.instance;
    let store = Store::new(instance.state_dir(&dir));
    let failed = |error: crate::checkpoint::StoreError| RunError::Checkpoint(error.to_string());
    let lock = lock(&store)?;
    // Any number of workers resumes a checkpoint: each takes the keys that
    // hash to it.
    let mut fingerprint = graph.fingerprint();
    if instance.is_shared() {
        // Each instance's state is that of its partitions.
        fingerprint.push((
            crate::checkpoint::INSTANCE.to_string(),
            instance.to_string(),
        ));
    }
    let interval = std::time::Duration::from_millis(interval.millis().unsigned_abs());
    let transactions = start_transactions(graph, instance, &dir, interval)?;
    let mut resume = if fresh {
        store.clear().map_err(failed)?;
        None
    } else {
        own(&store, instance, transactions.as_deref(), warnings)?
    };
    let settling = |store: &Store| settle(store, graph, interval);
    let state = state_topic(graph);
    let fence = |tag: Option<&str>| fence(graph, transactions.as_deref(), tag, interval);
    let pipeline = layouts::Pipeline {
        graph,
        base: &options.base,
        fingerprint: &fingerprint,
        settle: transactions
            .is_some()
            .then_some(&settling as layouts::Settle<'_>),
        topic: (state.as_deref())
            .zip(transactions.as_deref())
            .map(|(state, transactions)| layouts::Topic {
                state,
                transactions,
                fence: &fence,
            }),
    };
    let resolved = layouts::resolve(&dir, instance, &mut resume, fresh, &pipeline)?;
    warnings.extend(resolved.warnings);
    let mut partitions_then = None;
    if let Some(checkpoint) = &mut resume {
        // Checkpoints of earlier versions name their number of workers;
        // the transactions' id is the run's own.
        (checkpoint.fingerprint).retain(|(part, _)| {
            part != crate::checkpoint::WORKERS && part != crate::checkpoint::TRANSACTIONS
        });
        // The topics' partitions are counted once they are open.
        partitions_then = (checkpoint.fingerprint.iter())
            .position(|(part, _)| part == crate::checkpoint::PARTITIONS)
            .map(|at| checkpoint.fingerprint.remove(at).1);
    }
    if let Some(checkpoint) = &resume
        && let Some(why) = checkpoint.mismatch(&fingerprint)
    {
        return Err(RunError::Checkpoint(format!(
            "cannot resume from the checkpoint in `{}`: the pipeline changed since it was taken \
             ({why}); run with --fresh to start over (every output is then written anew)",
            store.dir().display()
        )));
    }
    let base = options.base.clone();
    let resume = resume.map(|checkpoint| opened_from(checkpoint, &base));
    // Newer than any of other numbers of processes, also after --fresh: a
    // process's own checkpoints are told from older ones of another
    // number by their sequence numbers.
    let newest_other = (resolved.others.iter().filter_map(Layout::newest))
        .chain(resolved.topic_newest)
        .max();
    let sequence = (resume.as_ref().map_or(0, |c| c.sequence)).max(newest_other.unwrap_or(0)) + 1;
    if let Some(transactions) = &transactions {
        fingerprint.push((
            crate::checkpoint::TRANSACTIONS.to_string(),
            transactions.id().to_string(),
        ));
    }
    Ok((
        Some(Checkpointing {
            store,
            interval,
            next: now + interval,
            sequence,
            fingerprint,
            base,
            lock: Some(lock),
            in_flight: None,
            spare: Vec::new(),
            root: dir,
            instance,
            retire: resolved.others,
            took_over: resolved.took_over,
            from_topic: resolved.from_topic,
            partitions_then,
            retired_superseded: false,
            picked: resolved.picked,
            transactions,
            state,
        }),
        resume,
    ))
}

/// Holds the run's state directory, that of `store`.
///
/// # Errors
///
/// Another run holds it, or it cannot be made.
fn lock(store: &Store) -> Result<Lock, RunError> {
    store.lock().map_err(|error| match error {
        crate::checkpoint::StoreError::Io { .. } => {
            RunError::Checkpoint(format!("the state directory for checkpoints: {error}"))
        }
        busy => RunError::Checkpoint(busy.to_string()),
    })
}

/// The state topic of `graph`, if it keeps one.
fn state_topic(graph: &Graph) -> Option<Arc<StateTopic>> {
    let topic = graph.state_topic.as_ref()?;
    let waits = graph.matcher.sides.iter().map(|side| side.wait);
    let splitter = crate::runtime::Matcher::new(waits, Vec::new(), graph.matcher.retention);
    Some(Arc::new(StateTopic::new(topic, splitter)))
}

/// What `graph`'s state topic holds, for `runner state inspect` (the
/// pipeline's state directory being `dir`): each partition's newest
/// snapshot whose transaction committed, listed as a checkpoint is, and
/// warnings; `None` without a state topic. Read as an onlooker: no one
/// is fenced off, and a transaction open on the topic hides the
/// snapshots after it.
///
/// # Errors
///
/// The topic cannot be read, or a snapshot does not read back.
pub fn state_topic_listing(
    graph: &Graph,
    dir: &Path,
) -> Result<Option<(String, Vec<String>)>, String> {
    let Some(state) = state_topic(graph) else {
        return Ok(None);
    };
    let onlooker = crate::runtime::sink::Onlooker::new(graph, &transactional_id(graph, dir))
        .map_err(|error| error.to_string())?;
    let mut warnings = Vec::new();
    let snapshots = state.read(&onlooker, None, &mut warnings)?;
    let mut out = String::new();
    if snapshots.is_empty() {
        let _ = writeln!(
            out,
            "no snapshot on the state topic `{}`: the pipeline has not taken a checkpoint \
             with it, or ran to its end",
            state.topic()
        );
    }
    for snapshot in snapshots.values() {
        let writer = snapshot.tag.as_deref().map_or_else(
            || "a process alone".to_string(),
            |tag| format!("the process tagged `{tag}`"),
        );
        let _ = write!(
            out,
            "partition {} on the state topic `{}`, written by {writer}: ",
            snapshot.partition,
            state.topic()
        );
        out.push_str(&crate::checkpoint::inspect(&snapshot.checkpoint)?);
    }
    Ok(Some((out, warnings)))
}

/// Fences off the transactional id of the process tagged `tag`, of the
/// run's `transactions`, as it writes `graph`'s Kafka sinks: its open
/// transaction is aborted, one it was committing settles.
///
/// # Errors
///
/// The brokers do not answer.
fn fence(
    graph: &Graph,
    transactions: Option<&Transactions>,
    tag: Option<&str>,
    interval: std::time::Duration,
) -> Result<(), RunError> {
    let Some(transactions) = transactions else {
        return Ok(());
    };
    Transactions::fence(graph, &transactions.id_of(tag), interval).map(|_| ())
}

/// `checkpoint` with the paths it keeps as the run opens them, from the
/// pipeline file's directory `base`.
fn opened_from(mut checkpoint: Checkpoint, base: &Path) -> Checkpoint {
    for input in &mut checkpoint.inputs {
        if let Some(file) = &mut input.file {
            *file = from_pipeline(base, file);
        }
    }
    for sink in &mut checkpoint.sinks {
        sink.path = from_pipeline(base, &sink.path);
    }
    checkpoint
}

/// The Kafka transactions of `graph`'s Kafka sinks, if it writes in them,
/// committed with checkpoints every `interval`, in the state directory
/// `dir`.
///
/// # Errors
///
/// The transactions cannot start.
fn start_transactions(
    graph: &Graph,
    instance: Instance,
    dir: &Path,
    interval: std::time::Duration,
) -> Result<Option<Arc<Transactions>>, RunError> {
    if !graph.transactions {
        return Ok(None);
    }
    let id = transactional_id(graph, dir);
    let tag = instance.tag();
    Transactions::start(graph, &id, tag.as_deref(), interval).map(Some)
}

/// The process's own checkpoint in `store` to resume from, if any: its
/// newest, or with `transactions` the one whose transaction the brokers
/// committed. Warnings about damaged checkpoints go to `warnings`.
///
/// # Errors
///
/// No checkpoint reads back; with transactions, one the brokers name is
/// missing.
fn own(
    store: &Store,
    instance: Instance,
    transactions: Option<&Transactions>,
    warnings: &mut Vec<String>,
) -> Result<Option<Checkpoint>, RunError> {
    let (loaded, damaged) = load(store)?;
    warnings.extend(damaged);
    match (transactions, loaded) {
        (Some(transactions), Some(newest)) if instance.dealt_of().is_some() => {
            // Its partitions may be taken from elsewhere: only what
            // committed stays.
            if let Some(id) = id_then(&newest, transactions, warnings) {
                let marker = transactions.committed().map_err(|error| {
                    RunError::Checkpoint(format!("kafka transactions as `{id}`: {error}"))
                })?;
                warnings.extend(keep_committed(store, &id, marker)?);
                let (loaded, damaged) = load(store)?;
                warnings.extend(damaged);
                return Ok(loaded);
            }
            Ok(Some(newest))
        }
        (Some(transactions), Some(newest)) => committed(store, newest, transactions, warnings),
        (_, loaded) => Ok(loaded),
    }
}

/// The newest checkpoint in `store` that reads back, and warnings about
/// newer ones that do not.
///
/// # Errors
///
/// None reads back.
fn load(store: &Store) -> Result<(Option<Checkpoint>, Vec<String>), RunError> {
    store.load().map_err(|error| {
        RunError::Checkpoint(format!(
            "{error}; run with --fresh to start over (every output is then written anew)"
        ))
    })
}

/// The transactional id `newest` was taken with, when it is that of
/// `transactions`, the brokers then knowing whether its transaction
/// committed; `None` for a checkpoint taken before transactions were on,
/// or under another id (a warning says so: the run resumes from it).
fn id_then(
    newest: &Checkpoint,
    transactions: &Transactions,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let then = transactional_id_of(newest)?;
    if then != transactions.id() {
        warnings.push(format!(
            "the transactional id was `{then}` when checkpoint {} was taken, and is `{}` now: \
             the brokers cannot say whether its transaction committed, so the run resumes \
             from it",
            newest.sequence,
            transactions.id()
        ));
        return None;
    }
    Some(then)
}

/// The transactional id `checkpoint` was taken with, if its run wrote in
/// transactions.
fn transactional_id_of(checkpoint: &Checkpoint) -> Option<String> {
    (checkpoint.fingerprint.iter())
        .find(|(part, _)| part == crate::checkpoint::TRANSACTIONS)
        .map(|(_, id)| id.clone())
}

/// Drops the checkpoints in `store` (held) whose transactions did not
/// commit (they are aborted once the id is fenced off), so the outcomes
/// they count as written are not: those numbered after `marker`, the last
/// checkpoint whose transaction the brokers committed as `id`. Where
/// `marker` names neither checkpoint the store keeps (or is `None`: the
/// brokers forgot it), the older of two that follow one another committed
/// all the same, the newer having been saved after it. Gives warnings
/// saying which went, and why.
///
/// # Errors
///
/// A checkpoint cannot be removed.
fn keep_committed(store: &Store, id: &str, marker: Option<u64>) -> Result<Vec<String>, RunError> {
    let failed = |error: crate::checkpoint::StoreError| RunError::Checkpoint(error.to_string());
    let held = store.sequences().map_err(failed)?;
    let mut warnings = Vec::new();
    let keep = match (marker, &held[..]) {
        (Some(marker), [newest, ..]) if marker >= *newest || held.contains(&marker) => Some(marker),
        // Saved after the one before it committed (or by a run that
        // resumed from it): the one before committed.
        (_, [newest, before, ..]) if before + 1 == *newest => {
            warnings.push(format!(
                "{}; checkpoint {before} in `{}` committed, since checkpoint {newest} was saved \
                 after it",
                not_held(marker, id),
                store.dir().display()
            ));
            Some(*before)
        }
        _ => marker,
    };
    let discarded = store.discard_after(keep).map_err(failed)?;
    if !discarded.is_empty() {
        let numbers: Vec<String> = discarded.iter().map(u64::to_string).collect();
        let committed = keep.map_or_else(
            || "none".to_string(),
            |keep| format!("that of checkpoint {keep} last"),
        );
        warnings.push(format!(
            "checkpoint {} in `{}` was saved, but its transaction as `{id}` did not commit (the \
             brokers committed {committed}): dropped; its partitions are taken from the \
             checkpoint that holds them newest of those committed, and what was decided after \
             is decided again",
            numbers.join(", "),
            store.dir().display()
        ));
    }
    Ok(warnings)
}

/// Settles the checkpoints in `store` (held) of another process whose
/// Kafka sinks wrote in transactions, to take partitions over from them:
/// fences its transactional id off (aborting its open transaction), and
/// drops its checkpoints whose transactions did not commit. Gives
/// warnings saying which went.
///
/// # Errors
///
/// Its checkpoint does not read back, or the brokers do not answer.
fn settle(
    store: &Store,
    graph: &Graph,
    interval: std::time::Duration,
) -> Result<Vec<String>, RunError> {
    let (newest, mut warnings) = load(store)?;
    let Some(id) = newest.as_ref().and_then(transactional_id_of) else {
        return Ok(warnings);
    };
    let marker = Transactions::fence(graph, &id, interval)?;
    warnings.extend(keep_committed(store, &id, marker)?);
    Ok(warnings)
}

/// The transactional id of `graph`'s Kafka sinks when their properties
/// name none: the pipeline's name and its state directory `dir`'s (a
/// checksum of its full path), so that the same pipeline run from its
/// state again fences off what ran before, and another does not. With a
/// state topic, the topic's name instead of the directory's: processes
/// on other machines, each with a state directory of its own, take
/// partitions over from one another through it, and fence one another
/// off.
fn transactional_id(graph: &Graph, dir: &Path) -> String {
    let name = graph.name.as_deref().unwrap_or("pipeline");
    if let Some(topic) = &graph.state_topic {
        return format!("runner-{name}-{topic}");
    }
    let full = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let checksum = crate::checkpoint::encoding::crc32(&[full.display().to_string().as_bytes()]);
    format!("runner-{name}-{checksum:08x}")
}

/// What a run whose Kafka sinks write in transactions resumes from, its
/// newest checkpoint being `newest`: the checkpoint whose transaction the
/// brokers committed last. When the run stopped (or died) after saving a
/// checkpoint and before its transaction committed, that is the one
/// before: the records of the transaction were aborted, and are decided
/// again. When none committed, or the run went on to its end after its
/// last checkpoint, it starts over.
///
/// # Errors
///
/// The brokers do not answer, or the checkpoint they name is not here.
fn committed(
    store: &Store,
    newest: Checkpoint,
    transactions: &Transactions,
    warnings: &mut Vec<String>,
) -> Result<Option<Checkpoint>, RunError> {
    let cleared = |store: &Store| {
        store
            .clear()
            .map_err(|error| RunError::Checkpoint(error.to_string()))
    };
    if id_then(&newest, transactions, warnings).is_none() {
        // Taken before transactions were turned on (the brokers have what
        // it says was written), or under another id.
        return Ok(Some(newest));
    }
    let marker = transactions.committed().map_err(|error| {
        RunError::Checkpoint(format!(
            "kafka transactions as `{}`: {error}",
            transactions.id()
        ))
    })?;
    match marker {
        Some(last) if last == newest.sequence => Ok(Some(newest)),
        Some(last) if last + 1 == newest.sequence => {
            let before = (store.load_at(last))
                .map_err(|error| RunError::Checkpoint(error.to_string()))?
                .ok_or_else(|| missing(store, last))?;
            warnings.push(format!(
                "the transaction of checkpoint {} did not commit: resuming from checkpoint \
                 {last}, whose did (what was decided after it is decided again)",
                newest.sequence
            ));
            Ok(Some(before))
        }
        Some(last) if last > newest.sequence => {
            // The run read its inputs to their end and committed it all.
            warnings.push(format!(
                "the brokers committed a transaction after checkpoint {} (as `{}`): the run \
                 read its inputs to their end; starting over",
                newest.sequence,
                transactions.id()
            ));
            cleared(store)?;
            Ok(None)
        }
        _ => {
            // Saved after the one before it committed (or by a run that
            // resumed from it): the one before committed.
            let before = (newest.sequence.checked_sub(1))
                .map(|before| store.load_at(before))
                .transpose()
                .map_err(|error| RunError::Checkpoint(error.to_string()))?
                .flatten();
            if let Some(before) = before {
                warnings.push(format!(
                    "{}; checkpoint {} committed, since checkpoint {} was saved after it: \
                     resuming from it (what was decided after it is decided again)",
                    not_held(marker, transactions.id()),
                    before.sequence,
                    newest.sequence
                ));
                return Ok(Some(before));
            }
            match marker {
                None => {
                    warnings.push(format!(
                        "no transaction of this pipeline committed (as `{}`): starting over",
                        transactions.id()
                    ));
                    cleared(store)?;
                    Ok(None)
                }
                Some(last) => Err(missing(store, last)),
            }
        }
    }
}

/// What the brokers say of the transactional `id` whose number, `marker`,
/// names no checkpoint a state directory holds.
fn not_held(marker: Option<u64>, id: &str) -> String {
    match marker {
        Some(marker) => format!(
            "the brokers committed the transaction of checkpoint {marker} last (as `{id}`), \
             which the state directory no longer holds"
        ),
        None => format!(
            "the brokers hold no number of a committed transaction as `{id}` (Kafka forgets a \
             group's offsets `offsets.retention.minutes` after their last commit, a week by \
             default)"
        ),
    }
}

/// The error of a run whose brokers committed checkpoint `sequence` last,
/// which `store` does not hold.
fn missing(store: &Store, sequence: u64) -> RunError {
    RunError::Checkpoint(format!(
        "the brokers committed the transaction of checkpoint {sequence} last, which `{}` does \
         not hold: run with --fresh to start over (every output is then written anew)",
        store.dir().display()
    ))
}

/// Notes that the connected topics have `count` partitions each: the
/// checkpoints say so from now on, for processes that resume them or take
/// their keys over.
///
/// A process alone that resumes a checkpoint taken with another count goes
/// on (it holds every key, whatever its partition), and its checkpoints
/// keep the count the checkpoint had: the partitions its keys were read
/// from are of that count, so processes sharing the topics refuse to take
/// them over (a warning says so).
///
/// # Errors
///
/// A process sharing the topics resumes, or takes over, a checkpoint taken
/// with another count: keys' partitions changed with it, so their state is
/// no longer where their events go.
pub(super) fn partitions(
    checkpointing: Option<&mut Checkpointing>,
    count: Option<usize>,
    warnings: &mut Vec<String>,
) -> Result<(), RunError> {
    let (Some(checkpointing), Some(count)) = (checkpointing, count) else {
        return Ok(());
    };
    let mut count = count.to_string();
    if let Some(then) = checkpointing.partitions_then.take()
        && then != count
    {
        if checkpointing.instance.is_shared() {
            return Err(RunError::Checkpoint(format!(
                "the connected topics have {count} partitions each, and had {then} when the \
                 checkpoint this process resumes from was taken: a key's partition changed \
                 with the count, so its state is not with the process that now reads its \
                 events; run with --fresh to start over (every output is then written anew, \
                 and Kafka sources start at their `start`)"
            )));
        }
        warnings.push(format!(
            "the connected topics have {count} partitions each, and had {then} when the \
             checkpoint was taken: this process reads them all, and goes on, but processes \
             sharing them (--instance) cannot take its keys over; they start over (--fresh)"
        ));
        count = then;
    }
    (checkpointing.fingerprint).push((crate::checkpoint::PARTITIONS.to_string(), count));
    Ok(())
}

impl Checkpointing {
    /// Removes the checkpoints of other numbers of processes once every
    /// process of this number has one of its own newer than theirs: all
    /// of their partitions are taken over (one of this number left from
    /// before them, not). A failure is only logged; the next checkpoint
    /// tries again.
    fn retire_taken_over(&mut self) {
        let root = self.root.clone();
        let transactions = self.transactions.clone();
        let committed = |dir: &Path| committed_newest(transactions.as_deref(), &root, dir);
        if let Some(of) = self.instance.dealt_of() {
            // Once this process's first checkpoint holds its partitions
            // (committed, where the run writes in transactions), the
            // checkpoints it took them from may hold none newest.
            let own = self.instance.state_dir(&self.root);
            if !self.retired_superseded && committed(&own) {
                match layouts::retire_superseded(&self.root, of, &own, &committed) {
                    Ok(()) => self.retired_superseded = true,
                    Err(error) => tracing::warn!(%error, "checkpoints taken over from are left"),
                }
            }
            return;
        }
        let Some(after) = self.retire.iter().filter_map(Layout::newest).max() else {
            return;
        };
        if !layouts::complete(&self.root, self.instance, after, &committed) {
            return;
        }
        match layouts::retire(&self.root, &self.retire) {
            Ok(()) => self.retire.clear(),
            Err(error) => tracing::warn!(%error, "checkpoints taken over from are left"),
        }
    }
}

/// Whether the newest checkpoint in the state directory `dir` (within the
/// pipeline's, `root`) is one the brokers hold the outcomes of, where the
/// run's Kafka sinks write in `transactions`: its transaction committed,
/// as the brokers keep the number under its process's transactional id
/// (asked, not fenced: it may be running). Without transactions, every
/// checkpoint is.
fn committed_newest(transactions: Option<&Transactions>, root: &Path, dir: &Path) -> bool {
    let Some(transactions) = transactions else {
        return true;
    };
    let Some(newest) = Store::new(dir).newest() else {
        return false;
    };
    match transactions.committed_of(Instance::tag_of_state_dir(root, dir)) {
        Ok(marker) => marker.is_some_and(|marker| marker >= newest),
        Err(error) => {
            tracing::warn!(%error, dir = %dir.display(), "kafka transactions not asked");
            false
        }
    }
}

/// What saving a checkpoint on a thread of its own takes.
struct Save {
    store: Store,
    /// The pipeline file's directory, which the sinks' paths are kept
    /// relative to.
    base: PathBuf,
    /// Each sink's answer to the checkpoint's barrier, to sync.
    barriers: Vec<crate::runtime::sink::Barrier>,
    /// Each Kafka source's offsets in the checkpoint, to commit.
    commits: Vec<(GroupOffsets, Vec<(u32, u64)>)>,
    transactions: Option<Arc<Transactions>>,
    /// The state topic, and the process's tag its snapshots carry.
    state: Option<(Arc<StateTopic>, Option<String>)>,
    /// When the checkpoint began.
    began: Instant,
}

impl Save {
    /// Saves `checkpoint` once every sink's files are synced, then commits
    /// the Kafka sources' offsets it holds, in the Kafka sinks' transaction
    /// if they write in one (which commits it).
    fn save(mut self, mut checkpoint: Checkpoint) -> Result<Saved, String> {
        let saved = self.sync_and_save(&mut checkpoint);
        let bytes = match (saved, &self.transactions) {
            (Ok(bytes), _) => bytes,
            (Err(error), Some(transactions)) => {
                transactions.fail(error.clone());
                return Err(error);
            }
            (Err(error), None) => return Err(error),
        };
        tracing::info!(
            sequence = checkpoint.sequence,
            bytes,
            took_ms = u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX),
            "checkpoint saved"
        );
        let commits = (self.commits.iter()).map(|(offsets, partitions)| (offsets, &partitions[..]));
        match &self.transactions {
            Some(transactions) => {
                if let Some((state, tag)) = &self.state {
                    let written = state.write(transactions, &checkpoint, tag.as_deref());
                    if let Err(error) = &written {
                        transactions.fail(error.clone());
                    }
                    tracing::debug!(
                        bytes = written?,
                        "partitions' state sent to the state topic"
                    );
                }
                transactions.commit(checkpoint.sequence, commits)?;
            }
            None => GroupOffsets::commit_all(commits),
        }
        Ok(Saved {
            buffer: checkpoint.matcher,
            bytes,
            took: self.began.elapsed(),
        })
    }

    /// Syncs every sink's files, keeps their lengths in `checkpoint`, and
    /// saves it; the bytes written.
    fn sync_and_save(&mut self, checkpoint: &mut Checkpoint) -> Result<u64, String> {
        for barrier in std::mem::take(&mut self.barriers) {
            if let Some(mut sink) = barrier.sync()? {
                sink.path = to_pipeline(&self.base, &sink.path);
                checkpoint.sinks.push(sink);
            }
        }
        self.store
            .save(checkpoint)
            .map_err(|error| error.to_string())
    }
}

/// A path the run opened, as a checkpoint keeps it: relative to the
/// pipeline file's directory `base`, so that the run resumes however the
/// pipeline file is named and wherever it is run from.
fn to_pipeline(base: &Path, path: &str) -> String {
    Path::new(path)
        .strip_prefix(base)
        .map_or_else(|_| path.to_string(), |path| path.display().to_string())
}

/// A path a checkpoint keeps, as the run opens it: `base` joined with it
/// (as sources and sinks resolve the pipeline's paths).
pub(super) fn from_pipeline(base: &Path, path: &str) -> String {
    if path.is_empty() || Path::new(path).is_absolute() {
        path.to_string()
    } else {
        base.join(path).display().to_string()
    }
}

impl Driver {
    /// Puts back the watermarks and the match operator's state of
    /// `checkpoint`, and keeps its bytes to encode the next one into. Of a
    /// checkpoint put together from other processes', this one takes only
    /// the keys and offsets of its own partitions, of the `partitions` the
    /// topics have (every key, for a process alone).
    pub(super) fn restore(
        &mut self,
        mut checkpoint: Checkpoint,
        partitions: Option<usize>,
    ) -> Result<(), RunError> {
        let owned = (self.checkpointing.as_ref())
            .filter(|checkpointing| checkpointing.took_over.is_some())
            .map(|c| partitions.map_or(0..u32::MAX, |count| c.instance.partitions(count)));
        if let Some(owned) = &owned {
            for input in &mut checkpoint.inputs {
                input
                    .partitions
                    .retain(|(partition, _)| owned.contains(partition));
            }
        }
        let damaged =
            |error| RunError::Checkpoint(format!("the checkpoint cannot be read: {error}"));
        let inputs: Vec<_> = checkpoint
            .inputs
            .iter()
            .map(|input| (input.max_seen, input.finished, input.idle))
            .collect();
        self.watermarks
            .restore(&inputs, Watermark::from_raw(checkpoint.watermark));
        for (queue, input) in self.inputs.iter_mut().zip(&checkpoint.inputs) {
            // Idle until it speaks, as it was: the merge does not wait for it.
            queue.idle = input.idle;
            queue.buffer.partitions.clone_from(&input.partitions);
            if let Some(file) = &input.file {
                queue.buffer.taken = Some(Taken {
                    file: Arc::from(file.as_str()),
                    head: input.file_head,
                    at: At {
                        offset: input.offset,
                        line: input.line,
                    },
                });
            }
        }
        // A run of workers kept a state per worker, one without a state of
        // its one matcher; either resumes on any number of workers.
        let states = if checkpoint.workers.is_empty() {
            vec![checkpoint.matcher]
        } else {
            checkpoint.workers
        };
        let picked = (self.checkpointing.as_mut()).and_then(|c| c.picked.take());
        let kept = Kept {
            states,
            format: StateFormat::of_version(checkpoint.version),
            owned,
            picked,
        };
        let loaded = self.engine.load(kept).map_err(damaged)?;
        self.summary.resumed_from = Some(Resumed {
            sequence: checkpoint.sequence,
            pending: loaded.waiting,
            remembered: loaded.remembered,
            of: self.checkpointing.as_ref().and_then(|c| c.took_over),
            from_topic: self.checkpointing.as_ref().map_or(0, |c| c.from_topic),
            took: std::time::Duration::ZERO,
        });
        // Read, a state's bytes are the buffer to encode the next into.
        if let Some(checkpointing) = &mut self.checkpointing {
            checkpointing.spare = loaded.states.into_iter().next().unwrap_or_default();
        }
        Ok(())
    }

    /// Whether a checkpoint is due.
    pub(super) fn checkpoint_due(&self, now: Instant) -> bool {
        self.checkpointing.as_ref().is_some_and(|c| now >= c.next)
    }

    /// Takes a checkpoint: the positions, watermarks and state as they are
    /// now, with every file sink's length once it has written what was
    /// decided until now. The sinks are synced and the checkpoint saved on
    /// a thread of its own while the run goes on; a checkpoint due while
    /// the last is still being saved waits for it. The `last` checkpoint of
    /// a run is saved before this returns.
    ///
    /// # Errors
    ///
    /// A sink failed, or the last checkpoint could not be saved.
    pub(super) async fn checkpoint(&mut self, last: bool) -> Result<(), RunError> {
        let Some(checkpointing) = &mut self.checkpointing else {
            return Ok(());
        };
        if let Some(job) = checkpointing
            .in_flight
            .take_if(|job| last || job.is_finished())
        {
            self.settle(job)?;
        } else if checkpointing.in_flight.is_some() {
            checkpointing.next = Instant::now() + RECHECK;
            return Ok(());
        }
        // What this checkpoint holds the run up, not the wait for the last.
        let began = Instant::now();
        self.route().await?;
        // Workers wait, their outcomes sent, until every sink has its
        // barrier behind those outcomes.
        let paused = self.engine.pause().await?;
        let mut barriers = Vec::new();
        for target in &mut self.targets {
            match target.barrier().await {
                Ok(barrier) => barriers.extend(barrier),
                Err(error) => {
                    if let Some(paused) = paused {
                        paused.release();
                    }
                    return Err(error);
                }
            }
        }
        let workers = paused.map_or_else(Vec::new, |mut paused| {
            let states = std::mem::take(&mut paused.states);
            paused.release();
            states
        });
        let Some(checkpointing) = &mut self.checkpointing else {
            return Ok(());
        };
        let spare = std::mem::take(&mut checkpointing.spare);
        let mut checkpoint = self.snapshot(spare, workers);
        let Some(checkpointing) = &mut self.checkpointing else {
            return Ok(());
        };
        checkpoint.sequence = checkpointing.sequence;
        checkpoint
            .fingerprint
            .clone_from(&checkpointing.fingerprint);
        for input in &mut checkpoint.inputs {
            if let Some(file) = &mut input.file {
                *file = to_pipeline(&checkpointing.base, file);
            }
        }
        let store = checkpointing.store.clone();
        let base = checkpointing.base.clone();
        // Kafka groups' offsets move once the checkpoint holds them.
        let commits: Vec<_> = self
            .inputs
            .iter()
            .zip(&checkpoint.inputs)
            .filter_map(|(input, position)| {
                Some((input.offsets.clone()?, position.partitions.clone()))
            })
            .collect();
        let saving = Save {
            store,
            base,
            barriers,
            commits,
            transactions: checkpointing.transactions.clone(),
            state: (checkpointing.state.clone()).map(|state| (state, checkpointing.instance.tag())),
            began,
        };
        let job = std::thread::Builder::new()
            .name("checkpoint".to_string())
            .spawn(move || saving.save(checkpoint))
            .map_err(RunError::Start)?;
        checkpointing.sequence += 1;
        checkpointing.next = Instant::now() + checkpointing.interval;
        let pause = began.elapsed();
        self.summary.longest_checkpoint = self.summary.longest_checkpoint.max(pause);
        self.summary.last_checkpoint.pause = pause;
        if last {
            self.settle(job)
        } else {
            checkpointing.in_flight = Some(job);
            Ok(())
        }
    }

    /// After a run whose Kafka sinks write in transactions: commits the
    /// open transaction, holding what was decided since the last
    /// checkpoint, with the sources' offsets at their ends, if the run read
    /// its inputs to their end (`finished`), and numbered past the last
    /// checkpoint, which a run that starts again then knows to start over
    /// from; else aborts it, and what it held is decided again from the
    /// last checkpoint.
    ///
    /// # Errors
    ///
    /// The commit failed.
    pub(super) fn end_transactions(&mut self, finished: bool) -> Result<(), RunError> {
        let Some(checkpointing) = &mut self.checkpointing else {
            return Ok(());
        };
        let Some(transactions) = checkpointing.transactions.clone() else {
            return Ok(());
        };
        if let Some(job) = checkpointing.in_flight.take() {
            self.settle(job)?;
        }
        let Some(checkpointing) = &self.checkpointing else {
            return Ok(());
        };
        if !finished {
            transactions.abort();
            return Ok(());
        }
        // Read to its end, the run has nothing to resume: nor has a run
        // that would take its partitions from the state topic.
        if let Some(state) = &checkpointing.state {
            let tag = checkpointing.instance.tag();
            let read: std::collections::BTreeSet<u32> = (self.inputs.iter())
                .flat_map(|input| {
                    input
                        .buffer
                        .partitions
                        .iter()
                        .map(|&(partition, _)| partition)
                })
                .collect();
            (state.delete(&transactions, checkpointing.sequence, tag.as_deref(), &read))
                .map_err(RunError::Save)?;
        }
        let commits = (self.inputs.iter())
            .filter_map(|input| Some((input.offsets.as_ref()?, &input.buffer.partitions[..])));
        transactions
            .commit(checkpointing.sequence, commits)
            .map_err(RunError::Save)
    }

    /// Whether the run's Kafka sinks write in transactions.
    pub(super) fn transactional(&self) -> bool {
        (self.checkpointing.as_ref()).is_some_and(|c| c.transactions.is_some())
    }

    /// Stops the transactions of a run that failed: sinks waiting for a
    /// commit give up.
    pub(super) fn fail_transactions(&self, why: &RunError) {
        if let Some(transactions) =
            (self.checkpointing.as_ref()).and_then(|c| c.transactions.as_ref())
        {
            transactions.fail(why.to_string());
        }
    }

    /// The positions, watermarks and state of the run now, in a checkpoint
    /// without its number, fingerprint and sinks.
    fn snapshot(&self, buffer: Vec<u8>, workers: Vec<Vec<u8>>) -> Checkpoint {
        let inputs = self
            .inputs
            .iter()
            .zip(&self.summary.sources)
            .enumerate()
            .map(|(index, (input, source))| {
                let (file, file_head, at) = input
                    .buffer
                    .taken
                    .as_ref()
                    .map_or((None, None, At::default()), |taken| {
                        (Some(taken.file.to_string()), taken.head, taken.at)
                    });
                InputPosition {
                    name: source.name.clone(),
                    file,
                    file_head,
                    offset: at.offset,
                    line: at.line,
                    max_seen: self.watermarks.max_seen(index),
                    finished: input.finished && input.buffer.is_empty(),
                    idle: input.idle,
                    partitions: input.buffer.partitions.clone(),
                }
            })
            .collect();
        let mut encoder = Encoder::reusing(buffer);
        if let Engine::Local(matcher) = &self.engine {
            matcher.save(&mut encoder);
        }
        Checkpoint {
            version: crate::checkpoint::VERSION,
            sequence: 0,
            taken_at: super::system_time(),
            fingerprint: Vec::new(),
            inputs,
            watermark: self.watermarks.current().to_raw(),
            sinks: Vec::new(),
            matcher: encoder.into_bytes(),
            workers,
        }
    }

    /// Waits for a checkpoint's thread to save it, counts it, and keeps its
    /// buffer for the next.
    fn settle(&mut self, job: Saving) -> Result<(), RunError> {
        match job.join() {
            Ok(Ok(saved)) => {
                self.summary.checkpoints += 1;
                if let Some(checkpointing) = &mut self.checkpointing {
                    checkpointing.spare = saved.buffer;
                    self.summary.last_checkpoint.took = saved.took;
                    self.summary.last_checkpoint.bytes = saved.bytes;
                    checkpointing.retire_taken_over();
                }
                Ok(())
            }
            Ok(Err(error)) => Err(RunError::Save(error)),
            Err(_) => Err(RunError::Save("its thread failed".to_string())),
        }
    }

    /// Whether the run took its partitions over from the checkpoints of
    /// another number of processes.
    pub(super) fn took_over(&self) -> bool {
        (self.checkpointing.as_ref()).is_some_and(|c| c.took_over.is_some())
    }

    /// After a run that read its inputs to their end: nothing is left to
    /// resume, so the checkpoints go. But while checkpoints of another
    /// number of processes are left, which a later start would take over
    /// from again, the run keeps a last checkpoint of its own instead: it
    /// says the partitions are taken, and where they are.
    pub(super) async fn finish_checkpoints(&mut self) -> Result<(), RunError> {
        let retiring =
            |driver: &Self| (driver.checkpointing.as_ref()).is_some_and(|c| !c.retire.is_empty());
        if retiring(self) {
            self.checkpoint(true).await?;
            if retiring(self) {
                return Ok(());
            }
        }
        self.forget_checkpoints()
    }

    /// After a run that read its inputs to their end: nothing is left to
    /// resume, so the checkpoints go.
    fn forget_checkpoints(&mut self) -> Result<(), RunError> {
        if let Some(job) = self
            .checkpointing
            .as_mut()
            .and_then(|checkpointing| checkpointing.in_flight.take())
        {
            // Moot, whatever became of it.
            let _ = self.settle(job);
        }
        let Some(checkpointing) = &mut self.checkpointing else {
            return Ok(());
        };
        checkpointing
            .store
            .clear()
            .map_err(|error| RunError::Checkpoint(error.to_string()))?;
        if let Some(lock) = checkpointing.lock.take() {
            checkpointing.store.release(lock);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in a scratch directory named for `name`, holding
    /// checkpoints numbered `numbers`.
    fn holding(name: &str, numbers: &[u64]) -> Store {
        let dir =
            std::env::temp_dir().join(format!("runner-committed-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::new(dir);
        let mut checkpoint = crate::checkpoint::tests::sample();
        for &number in numbers {
            checkpoint.sequence = number;
            store.save(&checkpoint).unwrap();
        }
        store
    }

    #[test]
    fn the_checkpoint_the_brokers_name_stays_and_those_after_it_go() {
        let store = holding("named", &[4, 5]);
        let warnings = keep_committed(&store, "tx", Some(4)).unwrap();
        assert_eq!(store.sequences().unwrap(), vec![4]);
        assert!(warnings[0].starts_with("checkpoint 5 in"), "{warnings:?}");
        assert!(keep_committed(&store, "tx", Some(4)).unwrap().is_empty());
        // A number past the newest: every checkpoint committed.
        assert!(keep_committed(&store, "tx", Some(9)).unwrap().is_empty());
        assert_eq!(store.sequences().unwrap(), vec![4]);
    }

    #[test]
    fn without_the_number_the_one_before_a_saved_checkpoint_counts_as_committed() {
        // Forgotten by the brokers (offsets expire), or older than both.
        for marker in [None, Some(2)] {
            let store = holding("forgotten", &[4, 5]);
            let warnings = keep_committed(&store, "tx", marker).unwrap();
            assert_eq!(store.sequences().unwrap(), vec![4], "{marker:?}");
            assert!(
                warnings[0].contains("checkpoint 4 in") && warnings[0].contains("committed"),
                "{warnings:?}"
            );
        }
        // Alone, or not following one another, nothing says they did.
        for numbers in [&[5][..], &[3, 5]] {
            let store = holding("alone", numbers);
            keep_committed(&store, "tx", None).unwrap();
            assert_eq!(store.sequences().unwrap(), Vec::<u64>::new(), "{numbers:?}");
        }
    }
}
