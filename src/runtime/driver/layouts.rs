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

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::checkpoint::{Checkpoint, InputPosition, LAYOUT_PARTS, PARTITIONS, SinkLength, Store};
use crate::config::SinkKind;
use crate::plan::Graph;
use crate::runtime::Instance;
use crate::runtime::error::RunError;

/// The file, in a pipeline's state directory, that one process at a time
/// locks to take over from or retire another number of processes.
const LAYOUT_LOCK: &str = "layout.lock";

/// The checkpoints of the processes that shared a pipeline's partitions
/// in one number.
#[derive(Clone, Debug)]
pub(super) struct Layout {
    /// How many processes.
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
            let count = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_prefix("instance-"))
                .and_then(|rest| rest.split_once("-of-"))
                .and_then(|(_, count)| count.parse::<u32>().ok());
            let Some(count) = count.filter(|&count| count != instance.count()) else {
                continue;
            };
            match layouts.iter_mut().find(|layout| layout.count == count) {
                Some(layout) => layout.dirs.push(path),
                None => layouts.push(Self {
                    count,
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

/// The checkpoints of other numbers of processes in the pipeline's state
/// directory `dir`, which `instance`, with no checkpoint of its own, takes
/// its partitions over from when it starts (or, of several numbers,
/// refuses to): where they are, and of how many processes, for people.
pub fn other_checkpoints(dir: &Path, instance: Instance) -> Vec<String> {
    Layout::others(dir, instance)
        .iter()
        .map(Layout::describe)
        .collect()
}

/// What a process found of other numbers of processes.
pub(super) struct Resolved {
    /// Their checkpoints, to remove once every process of this number has
    /// taken over.
    pub(super) others: Vec<Layout>,
    /// How many processes this one took over from.
    pub(super) took_over: Option<u32>,
    /// About damaged checkpoints.
    pub(super) warnings: Vec<String>,
}

/// What `instance` does about the checkpoints of other numbers of
/// processes in the pipeline's state directory `dir`, given its own to
/// resume from, if any, unless `fresh`: with none of its own, it takes
/// over from those of one other number (`resume` becomes what they hold);
/// with its own, it refuses newer ones, which took its partitions over
/// since.
///
/// # Errors
///
/// Newer checkpoints of another number, checkpoints of several other
/// numbers, or a take-over that fails.
pub(super) fn resolve(
    dir: &Path,
    instance: Instance,
    resume: &mut Option<Checkpoint>,
    fresh: bool,
    fingerprint: &[(String, String)],
    graph: &Graph,
    base: &Path,
) -> Result<Resolved, RunError> {
    let others = Layout::others(dir, instance);
    let kept = |others| Resolved {
        others,
        took_over: None,
        warnings: Vec::new(),
    };
    if let Some(own) = resume {
        if let Some(newer) = (others.iter()).find(|layout| layout.newest() > Some(own.sequence)) {
            return Err(RunError::Checkpoint(format!(
                "the state directory holds checkpoints of {}, newer than this process's own in \
                 `{}`: they took its partitions over since; run as many processes as they were, \
                 or run with --fresh to start over (every output is then written anew, and \
                 Kafka sources start at their `start`)",
                newer.describe(),
                instance.state_dir(dir).display()
            )));
        }
        return Ok(kept(others));
    }
    match &others[..] {
        [] => Ok(kept(others)),
        _ if fresh => Ok(kept(others)),
        [layout] => {
            let files: Vec<(String, String)> = (graph.sinks.iter())
                .filter_map(|sink| match &sink.kind {
                    SinkKind::File { path, .. } => Some((sink.name.clone(), path.value.clone())),
                    _ => None,
                })
                .collect();
            let (checkpoint, warnings) = take_over(layout, dir, fingerprint, base, &files)?;
            *resume = Some(checkpoint);
            let took_over = Some(layout.count);
            Ok(Resolved {
                others,
                took_over,
                warnings,
            })
        }
        several => {
            let described: Vec<String> = several.iter().map(Layout::describe).collect();
            Err(RunError::Checkpoint(format!(
                "the state directory holds checkpoints of several other numbers of processes \
                 ({}): which to take over from is not clear; remove those no longer wanted, or \
                 run with --fresh to start over (every output is then written anew, and Kafka \
                 sources start at their `start`)",
                described.join("; ")
            )))
        }
    }
}

/// Holds the pipeline's state directory `dir` for a take-over or a
/// retirement: processes that start at once take over one at a time.
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
/// and the lengths the file sinks of this process (`files`: each sink's
/// name and path, relative to the pipeline file's directory `base`) have
/// now, to write on after. The old processes' file sinks are cut back to
/// their checkpoints. `fingerprint` is this run's, which theirs must fit
/// but for the instance.
///
/// # Errors
///
/// An old process still runs, a checkpoint cannot be read or does not fit
/// the pipeline, or was taken by a version that did not keep its keys'
/// partitions; a file sink cannot be cut back.
pub(super) fn take_over(
    layout: &Layout,
    dir: &Path,
    fingerprint: &[(String, String)],
    base: &Path,
    files: &[(String, String)],
) -> Result<(Checkpoint, Vec<String>), RunError> {
    let _held = hold(dir)?;
    let mut warnings = Vec::new();
    let mut taken: Vec<Checkpoint> = Vec::new();
    // How many partitions each topic had, as their checkpoints say.
    let mut partitions = None;
    // Held until they are read and their files cut back.
    let mut locks = Vec::new();
    for old in &layout.dirs {
        let store = Store::new(old);
        locks.push(store.lock().map_err(|error| {
            RunError::Checkpoint(format!(
                "cannot take over from {}: {error}; stop every one of them before starting \
                 processes of another number",
                layout.describe()
            ))
        })?);
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
        let unshared = |parts: &[(String, String)]| -> Vec<(String, String)> {
            (parts.iter())
                .filter(|(part, _)| !LAYOUT_PARTS.contains(&part.as_str()))
                .cloned()
                .collect()
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
        taken.push(checkpoint);
    }
    drop(locks);
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
    Ok((merged, warnings))
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
/// than `after` in the pipeline's state directory `dir`.
pub(super) fn complete(dir: &Path, instance: Instance, after: u64) -> bool {
    (1..=instance.count()).all(|number| {
        Instance::new(number, instance.count()).is_some_and(|each| {
            Store::new(each.state_dir(dir))
                .newest()
                .is_some_and(|newest| newest > after)
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
            if !old.exists() {
                continue;
            }
            let store = Store::new(old);
            let Ok(lock) = store.lock() else {
                continue;
            };
            if store.has_checkpoint() {
                store
                    .clear()
                    .map_err(|error| RunError::Checkpoint(error.to_string()))?;
                removed += 1;
            }
            // Its lock file goes, and the directory with it if empty.
            store.release(lock);
        }
        if removed > 0 {
            tracing::info!(
                processes = layout.count,
                "checkpoints of the processes taken over from removed"
            );
        }
    }
    let _ = std::fs::remove_file(dir.join(LAYOUT_LOCK));
    drop(held);
    Ok(())
}
