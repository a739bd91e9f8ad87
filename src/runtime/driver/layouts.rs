//! Processes that shared a pipeline's Kafka partitions in another number
//! before: their checkpoints, each holding the keys and offsets of its own
//! partitions, are divided among the processes that share them now.
//!
//! A process that starts with no checkpoint of its own, in a state
//! directory holding the checkpoints of `N` processes (or of one alone),
//! takes over its partitions from them: every partition's offset, and
//! every key whose partition it now reads (a key's state keeps the
//! partition its first event came from). The old processes' file sinks
//! are cut back to their checkpoints, so they hold what was decided up to
//! them, once; what was decided after is decided again by the new owner.
//! The old checkpoints stay until every process of the new number has
//! taken over and saved a checkpoint of its own; then they go.
//!
//! A process its consumer group dealt a range of partitions (`--join`),
//! and one by number that finds the checkpoints of several other numbers
//! or of a group, takes each partition from the checkpoint that holds it
//! newest, of whichever process, alone, by number or dealt
//! ([`resolve_picked`]): every take-over saves a checkpoint numbered above
//! those it took from, so the newest holds a partition's state as its last
//! owner left it. A group's checkpoint goes once each of its partitions is
//! held newer elsewhere; those a process by number took over from, once
//! every process of its number has a checkpoint of its own.
//!
//! Where the Kafka sinks write in transactions, a process settles each
//! checkpoint directory before it takes from it: it fences off the
//! transactional id of the process that kept it and drops its
//! checkpoints whose transactions did not commit.
//!
//! Where the pipeline keeps a state topic, its partitions' snapshots are
//! one more holder of each partition's state, beside the directories: a
//! process on a state directory of its own takes a partition from the
//! topic where the topic's snapshot is newer than every checkpoint here.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::checkpoint::{Checkpoint, InputPosition, LAYOUT_PARTS, PARTITIONS, SinkLength, Store};
use crate::config::SinkKind;
use crate::plan::Graph;
use crate::runtime::Instance;
use crate::runtime::error::RunError;
use crate::runtime::sink::{Settling, Snapshot, StateTopic, Transactions};

/// The file, in a pipeline's state directory, that one process at a time
/// locks to take over from or retire another number of processes.
const LAYOUT_LOCK: &str = "layout.lock";

/// How long a process that its consumer group dealt partitions waits for
/// the processes that held them to let go of their state directories.
const LET_GO: std::time::Duration = std::time::Duration::from_secs(60);

/// The checkpoints of the processes that shared a pipeline's partitions
/// in one number, or as their consumer group dealt them out.
#[derive(Clone, Debug)]
pub(super) struct Layout {
    /// How many processes; 0 for those of a consumer group (`--join`).
    count: u32,
    /// The state directory of each one that ran (at least one has a
    /// checkpoint).
    dirs: Vec<PathBuf>,
}

impl Layout {
    /// The layouts in the pipeline's state directory `dir` of another
    /// number of processes than `instance`'s, with checkpoints: those of a
    /// process alone are in `dir` itself, of instance `i` of `n` in
    /// `instance-i-of-n` within it (there from its start, checkpoint or
    /// not).
    pub(super) fn others(dir: &Path, instance: Instance) -> Vec<Self> {
        let mut layouts: Vec<Self> = Vec::new();
        let count = instance.count().unwrap_or(0);
        if instance.is_shared() && Store::new(dir).has_checkpoint() {
            layouts.push(Self {
                count: 1,
                dirs: vec![dir.to_path_buf()],
            });
        }
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().and_then(|name| name.to_str());
            let theirs = match name.and_then(|name| name.strip_prefix("instance-")) {
                Some(rest) => (rest.split_once("-of-"))
                    .and_then(|(_, count)| count.parse::<u32>().ok())
                    .filter(|&count| count > 0),
                None => name.and_then(dealt).map(|_| 0),
            };
            let Some(theirs) = theirs.filter(|&theirs| theirs != count) else {
                continue;
            };
            match layouts.iter_mut().find(|layout| layout.count == theirs) {
                Some(layout) => layout.dirs.push(path),
                None => layouts.push(Self {
                    count: theirs,
                    dirs: vec![path],
                }),
            }
        }
        // A process of theirs without a checkpoint yet is one of them too:
        // a take-over must find it stopped.
        layouts.retain(|layout| layout.dirs.iter().any(|d| Store::new(d).has_checkpoint()));
        layouts
    }

    /// `2 processes`, or `one process`.
    pub(super) fn processes(count: u32) -> String {
        match count {
            0 => "processes of a consumer group (--join)".to_string(),
            1 => "one process".to_string(),
            count => format!("{count} processes"),
        }
    }

    /// Its directories, for messages.
    pub(super) fn describe(&self) -> String {
        let dirs: Vec<String> = (self.dirs.iter())
            .map(|dir| format!("`{}`", dir.display()))
            .collect();
        format!("{} of {}", dirs.join(", "), Self::processes(self.count))
    }

    /// The sequence number of its newest checkpoint.
    pub(super) fn newest(&self) -> Option<u64> {
        self.dirs
            .iter()
            .filter_map(|dir| Store::new(dir).newest())
            .max()
    }
}

/// The checkpoints of other numbers of processes (or of a consumer
/// group's) in the pipeline's state directory `dir`, which `instance`,
/// with no checkpoint of its own, takes its partitions over from when it
/// starts: where they are, and of how many processes, for people.
pub fn other_checkpoints(dir: &Path, instance: Instance) -> Vec<String> {
    (Layout::others(dir, instance).iter())
        .map(Layout::describe)
        .collect()
}

/// What a process found of other numbers of processes.
#[derive(Default)]
pub(super) struct Resolved {
    /// Their checkpoints, to remove once every process of this number has
    /// taken over.
    pub(super) others: Vec<Layout>,
    /// How many processes this one took over from.
    pub(super) took_over: Option<u32>,
    /// Of a take-over that took each partition from the checkpoint that
    /// holds it newest: the partitions taken from each state of the
    /// checkpoint put together, in order (its keys of others are older
    /// than another's).
    pub(super) picked: Option<Picked>,
    /// How many partitions it took from the state topic.
    pub(super) from_topic: usize,
    /// The highest number on the state topic, of any partition's snapshot
    /// or its deletion: the run numbers its checkpoints after it.
    pub(super) topic_newest: Option<u64>,
    /// About damaged checkpoints.
    pub(super) warnings: Vec<String>,
}

/// What `instance` does about the checkpoints of other numbers of
/// processes in the pipeline's state directory `dir`, given its own to
/// resume from, if any, unless `fresh`: with none of its own, it takes
/// over from those of one other number (`resume` becomes what they hold),
/// or, of several numbers or a group's, takes each partition from the
/// checkpoint holding it newest; with its own, it refuses newer ones,
/// which took its partitions over since. Where the pipeline keeps a state
/// topic holding snapshots newer than every checkpoint here, each
/// partition is taken from where it is newest, the topic included.
///
/// # Errors
///
/// Newer checkpoints of another number, checkpoints that do not agree on
/// the partitions' count, a state topic that cannot be read, or a
/// take-over that fails.
pub(super) fn resolve(
    dir: &Path,
    instance: Instance,
    resume: &mut Option<Checkpoint>,
    fresh: bool,
    pipeline: &Pipeline<'_>,
) -> Result<Resolved, RunError> {
    let mut warnings = Vec::new();
    let found = match &pipeline.topic {
        Some(topic) => Some(read_topic(topic, dir, instance, !fresh, &mut warnings)?),
        None => None,
    };
    let topic_newest = found.as_ref().and_then(|found| found.newest);
    // Started over, the run takes nothing from the topic, but numbers its
    // checkpoints after those there still.
    let found = found.filter(|_| !fresh);
    let mut resolved = resolve_found(dir, instance, resume, fresh, pipeline, found)?;
    resolved.warnings.splice(0..0, warnings);
    resolved.topic_newest = topic_newest;
    Ok(resolved)
}

/// What [`resolve`] does, given the snapshots `found` on the state topic.
fn resolve_found(
    dir: &Path,
    instance: Instance,
    resume: &mut Option<Checkpoint>,
    fresh: bool,
    pipeline: &Pipeline<'_>,
    found: Option<Found>,
) -> Result<Resolved, RunError> {
    if let Some(of) = instance.dealt_of() {
        return resolve_picked(dir, instance, of, resume, pipeline, None, found);
    }
    let others = Layout::others(dir, instance);
    // Snapshots on the state topic newer than any checkpoint here: each
    // partition is taken from where it is newest.
    if let Some(found) = found.filter(|found| {
        let here = (others.iter().filter_map(Layout::newest))
            .chain(resume.as_ref().map(|own| own.sequence))
            .max();
        found.newest_held() > here
    }) {
        let of = found.of;
        let others = Some(others);
        return resolve_picked(dir, instance, of, resume, pipeline, others, Some(found));
    }
    let kept = |others| Resolved {
        others,
        ..Resolved::default()
    };
    if let Some(own) = resume {
        if let Some(newer) = (others.iter()).find(|layout| layout.newest() > Some(own.sequence)) {
            let run = if newer.count == 0 {
                "run with --join as they did"
            } else {
                "run as many processes as they were"
            };
            return Err(RunError::Checkpoint(format!(
                "the state directory holds checkpoints of {}, newer than this process's own in \
                 `{}`: they took its partitions over since; {run}, or run with --fresh to start \
                 over (every output is then written anew, and Kafka sources start at their \
                 `start`)",
                newer.describe(),
                instance.state_dir(dir).display()
            )));
        }
        return Ok(kept(others));
    }
    match &others[..] {
        [] => Ok(kept(others)),
        _ if fresh => Ok(kept(others)),
        [layout] if layout.count != 0 => {
            let taking = Taking {
                settle: pipeline.settle,
                ..Taking::default()
            };
            let (checkpoint, warnings, _) = take_over(layout, dir, pipeline, taking)?;
            *resume = Some(checkpoint);
            let took_over = Some(layout.count);
            Ok(Resolved {
                others,
                took_over,
                warnings,
                ..Resolved::default()
            })
        }
        // Of several numbers, or of a group: each partition from the
        // checkpoint that holds it newest.
        _ => {
            let of = partition_count(&others)?;
            resolve_picked(dir, instance, of, resume, pipeline, Some(others), None)
        }
    }
}

/// How many partitions each connected topic had when the checkpoints of
/// `layouts` were taken, as their directories' names (of a group's) or
/// their checkpoints say.
///
/// # Errors
///
/// They say different counts, or none does (taken by a version that did
/// not say).
fn partition_count(layouts: &[Layout]) -> Result<u32, RunError> {
    let mut counts: Vec<u32> = Vec::new();
    for dir in layouts.iter().flat_map(|layout| &layout.dirs) {
        let named = (dir.file_name().and_then(|name| name.to_str())).and_then(dealt);
        let count = match named {
            Some((_, of)) => Some(of),
            None => match Store::new(dir).load() {
                Ok((Some(checkpoint), _)) => (checkpoint.fingerprint.iter())
                    .find(|(part, _)| part == PARTITIONS)
                    .and_then(|(_, count)| count.parse().ok()),
                _ => None,
            },
        };
        counts.extend(count.filter(|count| !counts.contains(count)));
    }
    let described: Vec<String> = layouts.iter().map(Layout::describe).collect();
    match counts[..] {
        [count] => Ok(count),
        [] => Err(RunError::Checkpoint(format!(
            "the state directory holds checkpoints of several other numbers of processes ({}), \
             which do not say how many partitions each topic had: which to take over from is \
             not clear; remove those no longer wanted, or run with --fresh to start over (every \
             output is then written anew, and Kafka sources start at their `start`)",
            described.join("; ")
        ))),
        [one, other, ..] => Err(RunError::Checkpoint(format!(
            "cannot take over from {}: their checkpoints were taken with {one} and {other} \
             partitions per topic; run with --fresh to start over (every output is then written \
             anew, and Kafka sources start at their `start`)",
            described.join("; ")
        ))),
    }
}

/// What a take-over needs of the pipeline: the graph, its file's
/// directory `base` (which paths in checkpoints are relative to), the
/// run's fingerprint, and, for a run whose Kafka sinks write in
/// transactions, how to settle another process's checkpoints.
pub(super) struct Pipeline<'a> {
    pub(super) graph: &'a Graph,
    pub(super) base: &'a Path,
    pub(super) fingerprint: &'a [(String, String)],
    pub(super) settle: Option<Settle<'a>>,
    /// The state topic, where the pipeline keeps one.
    pub(super) topic: Option<Topic<'a>>,
}

/// A pipeline's state topic, read through the run's Kafka transactions,
/// and how to fence off another process's transactional id (by its tag)
/// before its snapshots are taken.
pub(super) struct Topic<'a> {
    pub(super) state: &'a StateTopic,
    pub(super) transactions: &'a Transactions,
    pub(super) fence: &'a dyn Fn(Option<&str>) -> Result<(), RunError>,
}

/// Of the snapshots on the state topic, those of the partitions a process
/// reads, and of how many partitions each topic had when they were taken.
pub(super) struct Found {
    of: u32,
    snapshots: BTreeMap<u32, Snapshot>,
    /// The highest number on the topic, of any partition's snapshot or
    /// its deletion.
    newest: Option<u64>,
}

impl Found {
    /// The number of the newest snapshot of the partitions it holds.
    fn newest_held(&self) -> Option<u64> {
        (self.snapshots.values())
            .map(|snapshot| snapshot.checkpoint.sequence)
            .max()
    }
}

/// The newest committed snapshot on the state topic of each partition
/// `instance` reads: the topic is read once; unless the run is not
/// `taking` (it starts over), the transactional ids of the other
/// processes that wrote snapshots newer than the checkpoints in the
/// pipeline's state directory `dir` are fenced off (their open
/// transactions are aborted, those being committed settle), and the
/// topic's partitions holding this process's are read again once no
/// transaction is open on them.
///
/// # Errors
///
/// The topic cannot be read, a snapshot does not read back, or the
/// snapshots say different counts of partitions.
fn read_topic(
    topic: &Topic<'_>,
    dir: &Path,
    instance: Instance,
    taking: bool,
    warnings: &mut Vec<String>,
) -> Result<Found, RunError> {
    let read = |only: Option<&Settling<'_>>, warnings: &mut Vec<String>| {
        (topic.state.read(topic.transactions, only, warnings)).map_err(RunError::Checkpoint)
    };
    let mut snapshots = read(None, warnings)?;
    let newest = topic.state.highest();
    let mut counts: Vec<&str> = Vec::new();
    for snapshot in snapshots.values() {
        let count = (snapshot.checkpoint.fingerprint.iter())
            .find(|(part, _)| part == PARTITIONS)
            .map(|(_, count)| count.as_str());
        counts.extend(count.filter(|count| !counts.contains(count)));
    }
    let of = match (instance.dealt_of(), &counts[..]) {
        (Some(of), _) => of,
        (None, []) => 0,
        (None, [count]) => count.parse().unwrap_or(0),
        (None, [one, other, ..]) => {
            return Err(RunError::Checkpoint(format!(
                "the state topic `{}` holds snapshots taken with {one} and {other} partitions \
                 per topic: which to take is not clear; run with --fresh to start over (every \
                 output is then written anew, and Kafka sources start at their `start`)",
                topic.state.topic()
            )));
        }
    };
    if let Some(count) = topic.state.partitions().filter(|&count| count < of) {
        warnings.push(format!(
            "the state topic `{}` has {count} partitions, fewer than the {of} of each source's \
             topic: the snapshots of several partitions share one, and a process reading them \
             waits for every transaction open on it; give it {of}",
            topic.state.topic()
        ));
    }
    let mine = instance.partitions(of as usize);
    let own = instance.tag();
    // A snapshot no newer than a checkpoint here is not taken: its writer
    // need not be fenced off.
    let here = holders(dir, of);
    // Each writer fenced off, with the newest number of its snapshots
    // taken then.
    let mut fenced: Vec<(Option<String>, u64)> = Vec::new();
    for partition in mine.clone() {
        let newest_here = (here.iter())
            .filter(|holder| holder.holds.contains(&partition))
            .map(|holder| holder.newest)
            .max();
        if let Some(snapshot) = snapshots.get(&partition).filter(|_| taking)
            && Some(snapshot.checkpoint.sequence) > newest_here
            && snapshot.tag != own
        {
            let sequence = snapshot.checkpoint.sequence;
            if let Some((_, newest)) = fenced.iter_mut().find(|(tag, _)| *tag == snapshot.tag) {
                *newest = (*newest).max(sequence);
            } else {
                (topic.fence)(snapshot.tag.as_deref())?;
                fenced.push((snapshot.tag.clone(), sequence));
            }
        }
    }
    if taking && !mine.is_empty() {
        // Again, their writers fenced off, once their transactions settled:
        // the first read ends before the first transaction open. A writer
        // fenced off just now that wrote nothing newer since has no
        // transaction open on them (the fence aborted it).
        let fence = |tag: Option<&str>, newest: u64| {
            let settled =
                (fenced.iter()).any(|(fenced, then)| fenced.as_deref() == tag && newest <= *then);
            if settled {
                return Ok(());
            }
            (topic.fence)(tag).map_err(|error| error.to_string())
        };
        let settling = Settling {
            partitions: &mine.clone().collect(),
            own: own.as_deref(),
            fence: &fence,
        };
        snapshots = read(Some(&settling), &mut Vec::new())?;
    }
    snapshots.retain(|partition, _| mine.contains(partition));
    Ok(Found {
        of,
        snapshots,
        newest,
    })
}

/// Fences off the process that kept the checkpoints of a state directory
/// (its store, held) from writing in its Kafka transactions, and drops
/// those of its checkpoints whose transactions did not commit; gives
/// warnings saying which.
pub(super) type Settle<'a> = &'a dyn Fn(&Store) -> Result<Vec<String>, RunError>;

/// Each file sink of `graph`: its name and path.
fn file_sinks(graph: &Graph) -> Vec<(String, String)> {
    (graph.sinks.iter())
        .filter_map(|sink| match &sink.kind {
            SinkKind::File { path, .. } => Some((sink.name.clone(), path.value.clone())),
            _ => None,
        })
        .collect()
}

/// The partitions a state directory named `partitions-0-2-of-8` holds,
/// and of how many: those a consumer group dealt the process that kept it.
fn dealt(name: &str) -> Option<(std::ops::Range<u32>, u32)> {
    let rest = name.strip_prefix("partitions-")?;
    let (range, of) = rest.split_once("-of-")?;
    let (first, last) = range.split_once('-')?;
    let (first, last, of): (u32, u32, u32) =
        (first.parse().ok()?, last.parse().ok()?, of.parse().ok()?);
    (first <= last && last < of).then_some((first..last + 1, of))
}

/// A state directory in a pipeline's, with checkpoints: of a process
/// alone, of one of a number, or of partitions a consumer group dealt.
#[derive(Debug)]
struct Holder {
    dir: PathBuf,
    /// The partitions its checkpoints hold, of those each topic has now.
    holds: std::ops::Range<u32>,
    /// Its newest checkpoint's sequence number.
    newest: u64,
}

/// The state directories in the pipeline's state directory `dir` with
/// checkpoints, and which of the `partitions` each topic has they hold.
/// One of a consumer group's of another count of partitions holds its
/// numbers of that count: taking its keys over is refused as for another
/// count by number.
fn holders(dir: &Path, partitions: u32) -> Vec<Holder> {
    let mut found = Vec::new();
    let mut look = |path: PathBuf, holds: std::ops::Range<u32>| {
        if let Some(newest) = Store::new(&path).newest() {
            found.push(Holder {
                dir: path,
                holds,
                newest,
            });
        }
    };
    look(dir.to_path_buf(), 0..partitions);
    let mut entries: Vec<_> = (std::fs::read_dir(dir).into_iter().flatten().flatten())
        .map(|entry| entry.path())
        .collect();
    entries.sort();
    for path in entries {
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        let holds = match name.strip_prefix("instance-") {
            Some(rest) => rest.split_once("-of-").and_then(|(number, count)| {
                Instance::new(number.parse().ok()?, count.parse().ok()?)
            }),
            None => None,
        }
        .map(|instance| instance.partitions(partitions as usize))
        .or_else(|| dealt(name).map(|(holds, _)| holds));
        if let Some(holds) = holds {
            look(path, holds);
        }
    }
    found
}

/// What `instance` resumes from, of the `of` partitions each topic has:
/// each partition's state where it is newest, in the pipeline's state
/// directory `dir`. Where that is its own checkpoint for all of them (or
/// nowhere), it resumes as any process does; else it takes them over from
/// the directories that hold them newest, its own among them where it is.
/// A process its group dealt partitions (`by_number` is `None`) waits for
/// the processes that held them to let go; one by number, with no
/// checkpoint of its own, finds them stopped or refuses, and removes the
/// checkpoints of the layouts `by_number` once every process of its
/// number has one of its own.
fn resolve_picked(
    dir: &Path,
    instance: Instance,
    of: u32,
    resume: &mut Option<Checkpoint>,
    pipeline: &Pipeline<'_>,
    by_number: Option<Vec<Layout>>,
    found: Option<Found>,
) -> Result<Resolved, RunError> {
    let dealt = by_number.is_none();
    let own = instance.state_dir(dir);
    let own_newest = resume.as_ref().map(|checkpoint| checkpoint.sequence);
    let mine = instance.partitions(of as usize);
    let mut warnings = Vec::new();
    let mut others: Vec<Holder> = (holders(dir, of).into_iter())
        .filter(|holder| holder.dir != own)
        .collect();
    if let Some(settle) = pipeline.settle {
        // Their newest, once those whose transactions did not commit are
        // dropped, is what the brokers hold the outcomes of.
        let patience = std::time::Instant::now() + LET_GO;
        let _held = hold(dir)?;
        for holder in &others {
            if mine
                .clone()
                .any(|partition| holder.holds.contains(&partition))
            {
                let layout = (by_number.iter().flatten())
                    .find(|layout| layout.dirs.contains(&holder.dir))
                    .cloned()
                    .unwrap_or_else(|| Layout {
                        count: 0,
                        dirs: vec![holder.dir.clone()],
                    });
                let store = Store::new(&holder.dir);
                let lock = lock_old(&store, &layout, dealt, patience)?;
                warnings.extend(settle(&store)?);
                drop(lock);
            }
        }
        others = (holders(dir, of).into_iter())
            .filter(|holder| holder.dir != own)
            .collect();
    }
    // Each directory taken from, and the partitions taken from it; and
    // the snapshots taken from the state topic.
    let mut from: Vec<PathBuf> = Vec::new();
    let mut picks: Vec<Vec<u32>> = Vec::new();
    let mut snapshots = found.map(|found| found.snapshots).unwrap_or_default();
    for partition in mine {
        let newest = (others.iter())
            .filter(|holder| holder.holds.contains(&partition))
            .max_by_key(|holder| holder.newest);
        let here = newest.map(|holder| holder.newest).max(own_newest);
        // A directory's checkpoint before the topic's as new: it says how
        // far its file sinks are to be cut back.
        if (snapshots.get(&partition)).is_some_and(|topic| Some(topic.checkpoint.sequence) > here) {
            continue;
        }
        snapshots.remove(&partition);
        let pick = match newest {
            Some(holder) if own_newest.is_none_or(|own| holder.newest > own) => &holder.dir,
            _ if own_newest.is_some() => &own,
            _ => continue,
        };
        if let Some(at) = from.iter().position(|dir| dir == pick) {
            picks[at].push(partition);
        } else {
            from.push(pick.clone());
            picks.push(vec![partition]);
        }
    }
    let retire = by_number.unwrap_or_default();
    if from.iter().all(|picked| *picked == own) && snapshots.is_empty() {
        return Ok(Resolved {
            others: retire,
            warnings,
            ..Resolved::default()
        });
    }
    let writers: std::collections::BTreeSet<_> = snapshots.values().map(|s| &s.tag).collect();
    let taken_from = u32::try_from(from.len() + writers.len()).unwrap_or(u32::MAX);
    let layout = Layout {
        // For messages: a group's, or as many processes as directories.
        count: if dealt { 0 } else { taken_from },
        dirs: from,
    };
    // Processes by number take over from stopped processes only.
    let also: Vec<(&Layout, &Path)> = (retire.iter())
        .flat_map(|old| old.dirs.iter().map(move |path| (old, path.as_path())))
        .filter(|(_, path)| !layout.dirs.iter().any(|taken| taken == path))
        .collect();
    let from_topic = snapshots.len();
    let taking = Taking {
        own: Some(own.as_path()),
        waits: dealt,
        picks: Some(&picks),
        settle: None,
        also: &also,
        snapshots: snapshots.into_values().collect(),
    };
    let (checkpoint, taken, picked) = take_over(&layout, dir, pipeline, taking)?;
    warnings.extend(taken);
    *resume = Some(checkpoint);
    Ok(Resolved {
        others: retire,
        took_over: Some(taken_from),
        from_topic,
        topic_newest: None,
        picked,
        warnings,
    })
}

/// Removes the checkpoints, in the pipeline's state directory `dir`, that
/// hold no partition's newest state (of the `partitions` each topic has):
/// each of theirs is held newer elsewhere, so no process takes it from
/// them again. A directory still locked is left alone. `own`, this
/// process's, holds its partitions' newest. Only a directory whose newest
/// checkpoint is `committed` (its Kafka transaction, where the run writes
/// in them) holds a partition newer than another.
pub(super) fn retire_superseded(
    dir: &Path,
    partitions: u32,
    own: &Path,
    committed: &dyn Fn(&Path) -> bool,
) -> Result<(), RunError> {
    let held = hold(dir)?;
    let found = holders(dir, partitions);
    let counted: Vec<bool> = found.iter().map(|holder| committed(&holder.dir)).collect();
    for holder in &found {
        if holder.dir == own {
            continue;
        }
        let superseded = holder.holds.clone().all(|partition| {
            (found.iter().zip(&counted)).any(|(other, &counts)| {
                counts
                    && other.dir != holder.dir
                    && other.holds.contains(&partition)
                    && other.newest > holder.newest
            })
        });
        if superseded && clear_if_free(&holder.dir)? {
            tracing::info!(
                dir = %holder.dir.display(),
                "checkpoints whose partitions are held newer elsewhere removed"
            );
        }
    }
    drop(held);
    Ok(())
}

/// Removes the checkpoints in the state directory `dir` unless a process
/// holds it (one started again since); whether there were any. Its lock
/// file goes, and the directory with it if that leaves it empty.
fn clear_if_free(dir: &Path) -> Result<bool, RunError> {
    let store = Store::new(dir);
    let Ok(lock) = store.lock() else {
        return Ok(false);
    };
    let had = store.has_checkpoint();
    if had {
        store
            .clear()
            .map_err(|error| RunError::Checkpoint(error.to_string()))?;
    }
    store.release(lock);
    Ok(had)
}

/// Holds the pipeline's state directory `dir` for a take-over or a
/// retirement: processes that start at once take over one at a time. The
/// lock's file stays once made: one removed while another process waits
/// on it would let a third lock a new one at once.
fn hold(dir: &Path) -> Result<File, RunError> {
    let failed = |error: std::io::Error| {
        RunError::Checkpoint(format!(
            "cannot lock `{}`: {error}",
            dir.join(LAYOUT_LOCK).display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LAYOUT_LOCK))
        .map_err(failed)?;
    file.lock().map_err(failed)?;
    Ok(file)
}

/// What this process resumes from, taking over from `layout` in the
/// pipeline's state directory `dir`: one checkpoint holding every old
/// process's states and partitions' offsets (the run keeps of them what is
/// its own, once it knows its partitions), the least of their watermarks,
/// and the lengths the file sinks of this process have now, to write on
/// after. The old processes' file sinks are cut back to their
/// checkpoints. `pipeline.fingerprint` is this run's, which theirs must
/// fit but for the instance. With `taking.own`, this process's state
/// directory (which it holds already) may be among the layout's, for a
/// process that a consumer group dealt partitions: it waits a while for
/// the others' processes to let theirs go, as they do once the group takes
/// their partitions from them; with `taking.picks`, it takes from each
/// directory only the partitions picked from it, and says which of each
/// state of the checkpoint put together.
///
/// # Errors
///
/// An old process still runs, a checkpoint cannot be read or does not fit
/// the pipeline, or was taken by a version that did not keep its keys'
/// partitions; a file sink cannot be cut back.
pub(super) fn take_over(
    layout: &Layout,
    dir: &Path,
    pipeline: &Pipeline<'_>,
    taking: Taking<'_>,
) -> Result<(Checkpoint, Vec<String>, Option<Picked>), RunError> {
    let (fingerprint, base) = (pipeline.fingerprint, pipeline.base);
    let files = file_sinks(pipeline.graph);
    let own = taking.own;
    let _held = hold(dir)?;
    let mut warnings = Vec::new();
    let mut taken: Vec<Checkpoint> = Vec::new();
    // The partitions taken from each state of the checkpoints taken.
    let mut picked: Vec<Vec<u32>> = Vec::new();
    // How many partitions each topic had, as their checkpoints say.
    let mut partitions = None;
    // Held until they are read and their files cut back.
    let mut locks = Vec::new();
    let patience = std::time::Instant::now() + LET_GO;
    for &(old, path) in taking.also {
        locks.push(lock_old(&Store::new(path), old, false, patience)?);
    }
    for (at, old) in layout.dirs.iter().enumerate() {
        let store = Store::new(old);
        if Some(old.as_path()) != own {
            locks.push(lock_old(&store, layout, taking.waits, patience)?);
            if let Some(settle) = taking.settle {
                warnings.extend(settle(&store)?);
            }
        }
        let (checkpoint, damaged) = store.load().map_err(|error| {
            RunError::Checkpoint(format!(
                "cannot take over from {}: {error}",
                layout.describe()
            ))
        })?;
        warnings.extend(damaged);
        let Some(mut checkpoint) = checkpoint else {
            continue;
        };
        let count = (checkpoint.fingerprint.iter())
            .find(|(part, _)| part == PARTITIONS)
            .map(|(_, count)| count.clone());
        match (&partitions, count) {
            (Some(one), Some(other)) if *one != other => {
                return Err(RunError::Checkpoint(format!(
                    "cannot take over from {}: their checkpoints were taken with {one} and \
                     {other} partitions per topic",
                    layout.describe()
                )));
            }
            (_, count) => partitions = partitions.or(count),
        }
        checkpoint.fingerprint = unshared(&checkpoint.fingerprint);
        if let Some(why) = checkpoint.mismatch(&unshared(fingerprint)) {
            return Err(RunError::Checkpoint(format!(
                "cannot take over from the checkpoint in `{}`: the pipeline changed since it was \
                 taken ({why}); run with --fresh to start over (every output is then written \
                 anew, and Kafka sources start at their `start`)",
                old.display()
            )));
        }
        if checkpoint.version < 4 {
            return Err(RunError::Checkpoint(format!(
                "cannot take over from the checkpoint in `{}`: an earlier version of runner took \
                 it, whose keys do not say which partition they came from; run the {} once \
                 more with this version (each resumes, and its next checkpoint says), then \
                 start these again",
                old.display(),
                Layout::processes(layout.count),
            )));
        }
        for sink in &checkpoint.sinks {
            cut_back(base, sink)?;
        }
        if let Some(picks) = taking.picks {
            // Only what it holds newest: its offsets of the others are
            // older than another's, and so are its keys of them.
            let mine = &picks[at];
            for input in &mut checkpoint.inputs {
                (input.partitions).retain(|(partition, _)| mine.contains(partition));
            }
            let states = checkpoint.workers.len().max(1);
            picked.extend(std::iter::repeat_n(mine.clone(), states));
        }
        taken.push(checkpoint);
    }
    drop(locks);
    for snapshot in taking.snapshots {
        picked.push(vec![snapshot.partition]);
        taken.push(from_topic(snapshot, fingerprint, &mut partitions)?);
    }
    let own = files
        .iter()
        .filter_map(|(name, path)| {
            let length = std::fs::metadata(base.join(path)).ok()?.len();
            Some(SinkLength {
                name: name.clone(),
                path: path.clone(),
                length,
            })
        })
        .collect();
    let mut merged = merge(taken, fingerprint, own);
    if let Some(count) = partitions {
        (merged.fingerprint).push((PARTITIONS.to_string(), count));
    }
    Ok((merged, warnings, taking.picks.map(|_| picked)))
}

/// The parts of a fingerprint that say what the pipeline is, not how
/// processes were laid out.
fn unshared(parts: &[(String, String)]) -> Vec<(String, String)> {
    (parts.iter())
        .filter(|(part, _)| !LAYOUT_PARTS.contains(&part.as_str()))
        .cloned()
        .collect()
}

/// The checkpoint of a partition's `snapshot` from the state topic, which
/// must fit the pipeline of `fingerprint` but for the layout, and say the
/// count of `partitions` the checkpoints taken with it say (it is kept
/// there, if they say none).
///
/// # Errors
///
/// It does not fit, or says another count.
fn from_topic(
    snapshot: Snapshot,
    fingerprint: &[(String, String)],
    partitions: &mut Option<String>,
) -> Result<Checkpoint, RunError> {
    let mut checkpoint = snapshot.checkpoint;
    let count = (checkpoint.fingerprint.iter())
        .find(|(part, _)| part == PARTITIONS)
        .map(|(_, count)| count.clone());
    match (&*partitions, count) {
        (Some(one), Some(other)) if *one != other => {
            return Err(RunError::Checkpoint(format!(
                "cannot take partition {} over from the state topic: its snapshot was taken \
                 with {other} partitions per topic, the checkpoints taken with it with {one}",
                snapshot.partition
            )));
        }
        (_, count) => *partitions = partitions.take().or(count),
    }
    checkpoint.fingerprint = unshared(&checkpoint.fingerprint);
    if let Some(why) = checkpoint.mismatch(&unshared(fingerprint)) {
        return Err(RunError::Checkpoint(format!(
            "cannot take partition {} over from the state topic: the pipeline changed since its \
             snapshot was taken ({why}); run with --fresh to start over (every output is then \
             written anew, and Kafka sources start at their `start`)",
            snapshot.partition
        )));
    }
    Ok(checkpoint)
}

/// The partitions taken from each state of a checkpoint put together.
pub(super) type Picked = Vec<Vec<u32>>;

/// How a take-over takes: `own`, this process's state directory (which it
/// holds already), may be among the layout's; `picks`, one per directory
/// of the layout, are the partitions to take from each, where each is
/// taken from the directory that holds it newest (every partition the
/// checkpoints hold otherwise); `settle` settles each other directory
/// once it is held, before it is read.
#[derive(Default)]
pub(super) struct Taking<'a> {
    pub(super) own: Option<&'a Path>,
    /// Whether to wait a while for the processes holding the directories
    /// to let go of them (as a consumer group takes their partitions).
    pub(super) waits: bool,
    pub(super) picks: Option<&'a [Vec<u32>]>,
    pub(super) settle: Option<Settle<'a>>,
    /// State directories of processes taken over from that hold none of
    /// the partitions taken (each with its layout, for messages): held
    /// all the same while the others are read, since none may still run.
    pub(super) also: &'a [(&'a Layout, &'a Path)],
    /// Partitions' snapshots from the state topic, taken after the
    /// directories' checkpoints (they hold no file sinks to cut back).
    pub(super) snapshots: Vec<Snapshot>,
}

/// Locks the state directory of `store`, one of `layout`'s, to take over
/// from it; a process its consumer group dealt partitions (`dealt`) waits
/// until `patience` for the process that holds it to let go.
fn lock_old(
    store: &Store,
    layout: &Layout,
    dealt: bool,
    patience: std::time::Instant,
) -> Result<crate::checkpoint::Lock, RunError> {
    let lock = loop {
        match store.lock() {
            Err(crate::checkpoint::StoreError::Busy { .. })
                if dealt && std::time::Instant::now() < patience =>
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            locked => break locked,
        }
    };
    lock.map_err(|error| {
        let advice = if dealt {
            "the process that holds it did not let go of its partitions"
        } else {
            "stop every one of them before starting processes of another number"
        };
        RunError::Checkpoint(format!(
            "cannot take over from {}: {error}; {advice}",
            layout.describe()
        ))
    })
}

/// Cuts an old process's file sink back to its length at its checkpoint:
/// what it wrote after is decided again by the partitions' new owners.
fn cut_back(base: &Path, sink: &SinkLength) -> Result<(), RunError> {
    let path = super::checkpointing::from_pipeline(base, &sink.path);
    let failed = |error: std::io::Error| {
        RunError::Checkpoint(format!(
            "cannot cut `{path}` back to its checkpoint: {error}"
        ))
    };
    let file = match OpenOptions::new().write(true).open(&path) {
        Ok(file) => file,
        // Removed since: there is nothing to cut.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(failed(error)),
    };
    let now = file.metadata().map_err(failed)?.len();
    if now < sink.length {
        return Err(RunError::Checkpoint(format!(
            "`{path}` has {now} bytes, fewer than the {} it had at the checkpoint: it was changed \
             since",
            sink.length
        )));
    }
    if now > sink.length {
        file.set_len(sink.length).map_err(failed)?;
        file.sync_all().map_err(failed)?;
    }
    Ok(())
}

/// One checkpoint of the checkpoints `taken` of other processes: all their
/// states and partitions, the least of their watermarks and newest event
/// times (which fires no wait early), and the sinks `own`.
fn merge(
    taken: Vec<Checkpoint>,
    fingerprint: &[(String, String)],
    own: Vec<SinkLength>,
) -> Checkpoint {
    let mut merged = Checkpoint {
        version: crate::checkpoint::VERSION,
        sequence: 0,
        taken_at: crate::time::EventTime::from_millis(i64::MIN),
        fingerprint: fingerprint.to_vec(),
        inputs: Vec::new(),
        watermark: i64::MAX,
        sinks: own,
        matcher: Vec::new(),
        workers: Vec::new(),
    };
    for checkpoint in taken {
        merged.version = merged.version.min(checkpoint.version);
        merged.sequence = merged.sequence.max(checkpoint.sequence);
        merged.taken_at = merged.taken_at.max(checkpoint.taken_at);
        merged.watermark = merged.watermark.min(checkpoint.watermark);
        if merged.inputs.is_empty() {
            merged.inputs = (checkpoint.inputs.iter())
                .map(|input| InputPosition {
                    name: input.name.clone(),
                    finished: true,
                    idle: true,
                    ..InputPosition::default()
                })
                .collect();
        }
        for (into, input) in merged.inputs.iter_mut().zip(checkpoint.inputs) {
            into.max_seen = match (into.max_seen, input.max_seen) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            into.finished &= input.finished;
            into.idle &= input.idle;
            into.partitions.extend(input.partitions);
        }
        if checkpoint.workers.is_empty() {
            merged.workers.push(checkpoint.matcher);
        } else {
            merged.workers.extend(checkpoint.workers);
        }
    }
    for input in &mut merged.inputs {
        input.partitions.sort_unstable();
    }
    merged
}

/// Whether every process of `instance`'s number has a checkpoint newer
/// than `after` in the pipeline's state directory `dir`, and `committed`
/// (its Kafka transaction, where the run writes in them).
pub(super) fn complete(
    dir: &Path,
    instance: Instance,
    after: u64,
    committed: &dyn Fn(&Path) -> bool,
) -> bool {
    let Some(count) = instance.count() else {
        return false;
    };
    (1..=count).all(|number| {
        Instance::new(number, count).is_some_and(|each| {
            let dir = each.state_dir(dir);
            Store::new(&dir)
                .newest()
                .is_some_and(|newest| newest > after)
                && committed(&dir)
        })
    })
}

/// Removes the checkpoints of `layouts`, which every process of the number
/// running now has taken over from: a later start would take over from
/// them again. A directory still locked (a process of the old number
/// started again) is left alone.
pub(super) fn retire(dir: &Path, layouts: &[Layout]) -> Result<(), RunError> {
    let held = hold(dir)?;
    for layout in layouts {
        let mut removed = 0;
        for old in &layout.dirs {
            // Another process of this number may have been first.
            if old.exists() && clear_if_free(old)? {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(
                processes = layout.count,
                "checkpoints of the processes taken over from removed"
            );
        }
    }
    drop(held);
    Ok(())
}
