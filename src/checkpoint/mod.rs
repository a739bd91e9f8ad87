//! Checkpoints: what a run needs to resume exactly where it left off.
//!
//! A checkpoint is taken between two events: every source's position (the
//! file and byte just after the last line merged), every input's
//! watermark, the match operator's state (pending groups, what was too
//! late for them, memories of done keys) and every file sink's length once
//! everything decided before it is written and synced. A run that resumes
//! re-reads each source from its position, cuts each file sink back to its
//! length, and goes on: a file sink ends up byte for byte as if the run had
//! never stopped. Standard output gets again what was written after the
//! checkpoint (at least once).
//!
//! On disk, under the state directory, each checkpoint is one file:
//! `RUNNERCK`, the format version, the length and CRC-32 of the body, and
//! the body. It is written to a temporary file, synced and renamed into
//! place, so a crash leaves the previous checkpoint or the new one, never
//! half of one; the previous one is kept, to fall back to if the newest
//! turns out damaged.

pub(crate) mod encoding;
mod inspect;
mod store;

pub use encoding::DecodeError;
pub use inspect::inspect;
pub use store::{Lock, Store, StoreError};
pub(crate) use store::{from_bytes, to_bytes};

use encoding::{Decoder, Encoder};

use crate::time::EventTime;

/// The part of the fingerprint of checkpoints of earlier versions that said
/// how many workers the run matched on, when a run resumed only on as many;
/// a run now leaves it out.
pub const WORKERS: &str = "the workers";

/// The part of a fingerprint that says which of the processes sharing the
/// partitions took the checkpoint, when several do.
pub const INSTANCE: &str = "the instance";

/// The part of a fingerprint that says how many partitions each connected
/// Kafka topic had, when several processes share them: a key's partition
/// follows from the count, and with it the process that owns the key.
pub const PARTITIONS: &str = "the partitions";

/// The part of a fingerprint that says the run's Kafka sinks wrote in
/// transactions, as which transactional id: the brokers then hold the
/// number of the last checkpoint whose records they committed.
pub const TRANSACTIONS: &str = "the kafka transactions";

/// The parts of a fingerprint that say how the processes that took a
/// checkpoint were laid out (and, with transactions, which id each wrote
/// as), not what the pipeline is: a checkpoint with others resumes, or is
/// taken over from, all the same.
pub const LAYOUT_PARTS: [&str; 4] = [INSTANCE, WORKERS, PARTITIONS, TRANSACTIONS];

/// The format version written; a checkpoint of another version is not
/// read, except versions 2, which lacks the offsets of Kafka partitions,
/// and 3, which lacks the partitions of the keys in its states.
pub const VERSION: u32 = 4;

/// Where one source was, and its watermark.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputPosition {
    /// The source's name.
    pub name: String,
    /// The file its last merged line came from (`""` for inline records),
    /// relative to the pipeline file's directory unless the pipeline gives
    /// it absolute; `None` if nothing was merged yet.
    pub file: Option<String>,
    /// The CRC-32 of that file's first bytes (up to 1 KiB) and how many: a
    /// file at its path that begins otherwise is another file.
    pub file_head: Option<(u32, u32)>,
    /// The byte after that line (for inline records, the record's number).
    pub offset: u64,
    /// That line's number.
    pub line: u64,
    /// The newest event time merged from the source.
    pub max_seen: Option<EventTime>,
    /// Whether the source had ended.
    pub finished: bool,
    /// Whether the source was idle: silent past its idle timeout, so that
    /// the watermark went on without it.
    pub idle: bool,
    /// For a Kafka source, each partition merged from and the offset after
    /// its last message merged, by partition.
    pub partitions: Vec<(u32, u64)>,
}

/// A file sink's length at the checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkLength {
    /// The sink's name.
    pub name: String,
    /// Its file, relative to the pipeline file's directory unless the
    /// pipeline gives it absolute.
    pub path: String,
    /// Bytes written and synced.
    pub length: u64,
}

/// Everything a run needs to resume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The format version it was written in: [`VERSION`] for one taken
    /// now; not written in the body (the file's header has it).
    pub version: u32,
    /// Counts up from 1 within a run and across resumed runs.
    pub sequence: u64,
    /// The wall-clock time it was taken.
    pub taken_at: EventTime,
    /// What must not change for the checkpoint to fit the pipeline: parts
    /// by name (`source app: schema`), each as text.
    pub fingerprint: Vec<(String, String)>,
    /// Each source, in side order.
    pub inputs: Vec<InputPosition>,
    /// The match operator's watermark, raw.
    pub watermark: i64,
    /// Each file sink.
    pub sinks: Vec<SinkLength>,
    /// The match operator's state, encoded; empty with workers.
    pub matcher: Vec<u8>,
    /// With workers, each one's state, in worker order.
    pub workers: Vec<Vec<u8>>,
}

impl Checkpoint {
    /// The body of the file, everything but the header, in two parts: all
    /// but the match operator's state, and that state (which is large, and
    /// is written as it is rather than copied).
    pub(crate) fn encode(&self) -> (Vec<u8>, &[u8]) {
        let mut out = Encoder::new();
        out.varint(self.sequence);
        out.time(self.taken_at);
        out.usize(self.fingerprint.len());
        for (part, text) in &self.fingerprint {
            out.str(part);
            out.str(text);
        }
        out.usize(self.inputs.len());
        for input in &self.inputs {
            out.str(&input.name);
            match &input.file {
                Some(file) => {
                    out.bool(true);
                    out.str(file);
                }
                None => out.bool(false),
            }
            match input.file_head {
                Some((crc, length)) => {
                    out.bool(true);
                    out.varint(u64::from(crc));
                    out.varint(u64::from(length));
                }
                None => out.bool(false),
            }
            out.varint(input.offset);
            out.varint(input.line);
            match input.max_seen {
                Some(time) => {
                    out.bool(true);
                    out.time(time);
                }
                None => out.bool(false),
            }
            out.bool(input.finished);
            out.bool(input.idle);
            out.usize(input.partitions.len());
            for &(partition, offset) in &input.partitions {
                out.varint(u64::from(partition));
                out.varint(offset);
            }
        }
        out.int(self.watermark);
        out.usize(self.sinks.len());
        for sink in &self.sinks {
            out.str(&sink.name);
            out.str(&sink.path);
            out.varint(sink.length);
        }
        out.usize(self.workers.len());
        for state in &self.workers {
            out.bytes(state);
        }
        out.usize(self.matcher.len());
        (out.into_bytes(), &self.matcher)
    }

    /// Reads a body [`encode`](Self::encode) wrote, in format `version`.
    pub(crate) fn decode(body: &[u8], version: u32) -> Result<Self, DecodeError> {
        let mut input = Decoder::new(body);
        let sequence = input.varint()?;
        let taken_at = input.time()?;
        let parts = input.count(2)?;
        let mut fingerprint = Vec::with_capacity(parts);
        for _ in 0..parts {
            fingerprint.push((input.str()?.to_string(), input.str()?.to_string()));
        }
        let count = input.count(6)?;
        let mut inputs = Vec::with_capacity(count);
        for _ in 0..count {
            let name = input.str()?.to_string();
            let file = if input.bool()? {
                Some(input.str()?.to_string())
            } else {
                None
            };
            let file_head = if input.bool()? {
                let crc = u32::try_from(input.varint()?);
                let length = u32::try_from(input.varint()?);
                match (crc, length) {
                    (Ok(crc), Ok(length)) => Some((crc, length)),
                    _ => return Err(DecodeError("a file head out of range".to_string())),
                }
            } else {
                None
            };
            let offset = input.varint()?;
            let line = input.varint()?;
            let max_seen = if input.bool()? {
                Some(input.time()?)
            } else {
                None
            };
            let finished = input.bool()?;
            let idle = input.bool()?;
            let mut partitions = Vec::new();
            if version >= 3 {
                for _ in 0..input.count(2)? {
                    let partition = u32::try_from(input.varint()?)
                        .map_err(|_| DecodeError("a partition out of range".to_string()))?;
                    partitions.push((partition, input.varint()?));
                }
            }
            inputs.push(InputPosition {
                name,
                file,
                file_head,
                offset,
                line,
                max_seen,
                finished,
                idle,
                partitions,
            });
        }
        let watermark = input.int()?;
        let count = input.count(3)?;
        let mut sinks = Vec::with_capacity(count);
        for _ in 0..count {
            sinks.push(SinkLength {
                name: input.str()?.to_string(),
                path: input.str()?.to_string(),
                length: input.varint()?,
            });
        }
        let count = input.count(1)?;
        let mut workers = Vec::with_capacity(count);
        for _ in 0..count {
            workers.push(input.bytes()?.to_vec());
        }
        let matcher = input.bytes()?.to_vec();
        if !input.done() {
            return Err(DecodeError("it goes on after its end".to_string()));
        }
        Ok(Self {
            version,
            sequence,
            taken_at,
            fingerprint,
            inputs,
            watermark,
            sinks,
            matcher,
            workers,
        })
    }

    /// The first part of `now` that differs from this checkpoint's, as a
    /// sentence: why the checkpoint does not fit the pipeline.
    pub fn mismatch(&self, now: &[(String, String)]) -> Option<String> {
        for (part, text) in now {
            match self.fingerprint.iter().find(|(p, _)| p == part) {
                None => return Some(format!("{part}: new")),
                Some((_, then)) if then != text => {
                    return Some(format!("{part}: `{then}` then, `{text}` now"));
                }
                Some(_) => {}
            }
        }
        self.fingerprint
            .iter()
            .find(|(part, _)| !now.iter().any(|(p, _)| p == part))
            .map(|(part, _)| format!("{part}: gone"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Checkpoint {
        Checkpoint {
            version: VERSION,
            sequence: 7,
            taken_at: EventTime::from_millis(1_700_000_000_000),
            fingerprint: vec![
                ("source app: schema".into(), "(id: string)".into()),
                ("match: waits".into(), "5s, 5s".into()),
            ],
            inputs: vec![
                InputPosition {
                    name: "app".into(),
                    file: Some("data/app.jsonl".into()),
                    file_head: Some((0xCBF4_3926, 1024)),
                    offset: 1234,
                    line: 17,
                    max_seen: Some(EventTime::from_millis(99)),
                    finished: false,
                    idle: true,
                    partitions: vec![(0, 17), (3, 1 << 40)],
                },
                InputPosition {
                    name: "bank".into(),
                    finished: true,
                    ..InputPosition::default()
                },
            ],
            watermark: -1,
            sinks: vec![SinkLength {
                name: "out".into(),
                path: "out/x.jsonl".into(),
                length: 4096,
            }],
            matcher: vec![1, 2, 3],
            workers: vec![vec![4, 5], Vec::new()],
        }
    }

    #[test]
    fn a_checkpoint_comes_back_as_it_went() {
        let checkpoint = sample();
        let (head, matcher) = checkpoint.encode();
        let body = [head.as_slice(), matcher].concat();
        assert_eq!(Checkpoint::decode(&body, VERSION), Ok(checkpoint));
    }

    #[test]
    fn a_version_2_checkpoint_is_read_without_partitions() {
        // Version 2 wrote an input's place without Kafka partitions after it.
        let mut out = Encoder::new();
        out.varint(3);
        out.time(EventTime::from_millis(5));
        out.usize(0);
        out.usize(1);
        out.str("app");
        out.bool(true);
        out.str("data/app.jsonl");
        out.bool(false);
        out.varint(10);
        out.varint(2);
        out.bool(false);
        out.bool(false);
        out.bool(true);
        out.int(-1);
        out.usize(0);
        out.usize(0);
        out.usize(0);
        let body = out.into_bytes();
        let checkpoint = Checkpoint::decode(&body, 2).expect("a version 2 checkpoint");
        let input = &checkpoint.inputs[0];
        assert_eq!((input.offset, input.line, input.idle), (10, 2, true));
        assert!(input.partitions.is_empty());
        // Read as version 3, the same bytes are cut short.
        assert!(Checkpoint::decode(&body, VERSION).is_err());
    }

    #[test]
    fn a_changed_pipeline_is_told_by_its_first_difference() {
        let checkpoint = sample();
        let mut now = checkpoint.fingerprint.clone();
        assert_eq!(checkpoint.mismatch(&now), None);
        now[1].1 = "5s, 10s".into();
        assert_eq!(
            checkpoint.mismatch(&now).as_deref(),
            Some("match: waits: `5s, 5s` then, `5s, 10s` now")
        );
        now.remove(1);
        assert_eq!(
            checkpoint.mismatch(&now).as_deref(),
            Some("match: waits: gone")
        );
    }
}
