//! One of several processes running the same pipeline over Kafka: which
//! partitions it reads, and what it keeps apart from the others.
//!
//! Instance `i` of `n` reads the `i`th of `n` contiguous ranges of every
//! Kafka source's partitions, as Kafka's range assignor deals them out: each
//! instance gets `P / n` partitions, the first `P % n` one more. The
//! connected topics must have the same number of partitions, and their
//! producers must send a key to the same partition of each (the same
//! partitioner over the match key): then partition `p` of every topic is
//! read by the same instance, and a key's events on every side meet there.
//!
//! With `--join`, a consumer group deals the ranges out instead
//! ([`Instance::dealt`]): a process is then its range, `partitions 3-5 of
//! 8`, for as long as the group leaves it that range.

use std::fmt;
use std::path::{Path, PathBuf};

/// Which of the processes sharing a pipeline's partitions this one is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instance(Share);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Share {
    /// Instance `number` (from 1) of `count`, as `--instance` says.
    Numbered { number: u32, count: u32 },
    /// Partitions `first..end` of the `of` each connected topic has, as
    /// the processes' consumer group dealt them out (`--join`).
    Dealt { first: u32, end: u32, of: u32 },
}

impl Default for Instance {
    fn default() -> Self {
        Self::ALONE
    }
}

impl Instance {
    /// The only process: every partition.
    pub const ALONE: Self = Self(Share::Numbered {
        number: 1,
        count: 1,
    });

    /// Instance `number` (from 1) of `count`; `None` unless
    /// `1 <= number <= count`.
    pub fn new(number: u32, count: u32) -> Option<Self> {
        (1..=count)
            .contains(&number)
            .then_some(Self(Share::Numbered { number, count }))
    }

    /// The process the consumer group dealt `partitions` of the `of` each
    /// connected topic has; `None` unless they are some of them.
    pub fn dealt(partitions: std::ops::Range<u32>, of: u32) -> Option<Self> {
        (!partitions.is_empty() && partitions.end <= of).then_some(Self(Share::Dealt {
            first: partitions.start,
            end: partitions.end,
            of,
        }))
    }

    /// Reads `2/3`.
    pub fn parse(text: &str) -> Option<Self> {
        let (number, count) = text.split_once('/')?;
        Self::new(number.trim().parse().ok()?, count.trim().parse().ok()?)
    }

    /// Whether other processes share the partitions.
    pub fn is_shared(self) -> bool {
        match self.0 {
            Share::Numbered { count, .. } => count > 1,
            Share::Dealt { .. } => true,
        }
    }

    /// How many processes share the partitions by number (`--instance`);
    /// `None` for partitions a consumer group dealt.
    pub fn count(self) -> Option<u32> {
        match self.0 {
            Share::Numbered { count, .. } => Some(count),
            Share::Dealt { .. } => None,
        }
    }

    /// How many partitions each connected topic had when the consumer
    /// group dealt this instance its own; `None` for one by number.
    pub fn dealt_of(self) -> Option<u32> {
        match self.0 {
            Share::Numbered { .. } => None,
            Share::Dealt { of, .. } => Some(of),
        }
    }

    /// The positions, among `partitions` partitions in id order, this
    /// instance reads: a contiguous range, empty when there are fewer
    /// partitions than instances and this one comes after them.
    pub fn range(self, partitions: usize) -> std::ops::Range<usize> {
        match self.0 {
            Share::Numbered { number, count } => {
                let (count, index) = (count as usize, number as usize - 1);
                let (each, extra) = (partitions / count, partitions % count);
                let start = index * each + index.min(extra);
                start..start + each + usize::from(index < extra)
            }
            Share::Dealt { first, end, .. } => {
                (first as usize).min(partitions)..(end as usize).min(partitions)
            }
        }
    }

    /// The partitions, of `partitions` numbered from 0 as Kafka numbers
    /// them, this instance reads: [`range`](Self::range) as partition
    /// numbers.
    pub fn partitions(self, partitions: usize) -> std::ops::Range<u32> {
        let range = self.range(partitions);
        let number = |at: usize| u32::try_from(at).unwrap_or(u32::MAX);
        number(range.start)..number(range.end)
    }

    /// What tells this instance's directory and files from the others':
    /// `2-of-3`, or `partitions-0-2-of-8`; `None` alone.
    pub fn tag(self) -> Option<String> {
        match self.0 {
            _ if !self.is_shared() => None,
            Share::Numbered { number, count } => Some(format!("{number}-of-{count}")),
            Share::Dealt { first, end, of } => {
                Some(format!("partitions-{first}-{}-of-{of}", end - 1))
            }
        }
    }

    /// Where this instance keeps its checkpoints, within a pipeline's
    /// state directory `dir`: `dir` itself when alone, else a directory of
    /// its own in it (`instance-2-of-3`, `partitions-0-2-of-8`).
    pub fn state_dir(self, dir: &Path) -> PathBuf {
        match (self.0, self.tag()) {
            (Share::Numbered { .. }, Some(tag)) => dir.join(format!("instance-{tag}")),
            (Share::Dealt { .. }, Some(tag)) => dir.join(tag),
            (_, None) => dir.to_path_buf(),
        }
    }

    /// The tag of the instance whose state directory is `dir`, within a
    /// pipeline's state directory `root` ([`state_dir`](Self::state_dir)
    /// read backwards): `None` for `root` itself, a process alone's.
    pub fn tag_of_state_dir<'a>(root: &Path, dir: &'a Path) -> Option<&'a str> {
        if dir == root {
            return None;
        }
        let name = dir.file_name()?.to_str()?;
        Some(name.strip_prefix("instance-").unwrap_or(name))
    }

    /// The file this instance writes for a file sink at `path`: the path
    /// itself when alone, else with `.2-of-3` (or `.partitions-0-2-of-8`)
    /// before its extension, so that instances on one machine do not write
    /// over each other.
    pub fn file_path(self, path: &str) -> String {
        let Some(tag) = self.tag() else {
            return path.to_string();
        };
        let name_at = path.rfind(['/', '\\']).map_or(0, |at| at + 1);
        match path[name_at..].rfind('.') {
            // A name that starts with its only dot has no extension.
            Some(dot) if dot > 0 => {
                let dot = name_at + dot;
                format!("{}.{tag}{}", &path[..dot], &path[dot..])
            }
            _ => format!("{path}.{tag}"),
        }
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Share::Numbered { number, count } => write!(f, "{number}/{count}"),
            Share::Dealt { first, end, of } if end - first == 1 => {
                write!(f, "partition {first} of {of}")
            }
            Share::Dealt { first, end, of } => {
                write!(f, "partitions {first}-{} of {of}", end - 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_directory_gives_back_its_instance_tag() {
        let root = Path::new("state");
        for instance in [
            Instance::ALONE,
            Instance::new(2, 3).unwrap(),
            Instance::dealt(3..6, 8).unwrap(),
        ] {
            let dir = instance.state_dir(root);
            assert_eq!(
                Instance::tag_of_state_dir(root, &dir).map(str::to_string),
                instance.tag()
            );
        }
    }

    #[test]
    fn parses_a_number_of_a_count() {
        assert_eq!(Instance::parse("2/3"), Instance::new(2, 3));
        assert_eq!(Instance::parse("1/1"), Some(Instance::ALONE));
        for bad in ["0/3", "4/3", "3", "/3", "a/b", "1/0", "-1/2", ""] {
            assert_eq!(Instance::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges_deal_partitions_out_as_kafkas_range_assignor_does() {
        let ranges = |partitions, count| {
            (1..=count)
                .map(|number| {
                    Instance::new(number, count)
                        .expect("an instance")
                        .range(partitions)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ranges(8, 3), [0..3, 3..6, 6..8]);
        assert_eq!(Instance::ALONE.range(8), 0..8);
        assert_eq!(ranges(6, 3), [0..2, 2..4, 4..6]);
        assert_eq!(ranges(2, 3), [0..1, 1..2, 2..2]);
        // Every partition exactly once, whatever the counts.
        for partitions in 0..40 {
            for count in 1..12 {
                let covered: Vec<usize> = ranges(partitions, count).into_iter().flatten().collect();
                assert_eq!(covered, (0..partitions).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn a_shared_instance_keeps_its_files_and_state_apart() {
        let second = Instance::new(2, 3).expect("an instance");
        assert_eq!(
            second.file_path("out/alerts.jsonl"),
            "out/alerts.2-of-3.jsonl"
        );
        assert_eq!(second.file_path("out.d/alerts"), "out.d/alerts.2-of-3");
        assert_eq!(second.file_path(".hidden"), ".hidden.2-of-3");
        assert_eq!(second.file_path("a.tar.gz"), "a.tar.2-of-3.gz");
        assert_eq!(
            second.state_dir(Path::new(".runner/x")),
            Path::new(".runner/x/instance-2-of-3")
        );
        let dealt = Instance::dealt(3..6, 8).expect("dealt");
        assert_eq!(
            dealt.file_path("out/alerts.jsonl"),
            "out/alerts.partitions-3-5-of-8.jsonl"
        );
        assert_eq!(
            dealt.state_dir(Path::new(".runner/x")),
            Path::new(".runner/x/partitions-3-5-of-8")
        );
        assert_eq!(dealt.to_string(), "partitions 3-5 of 8");
        assert_eq!(dealt.partitions(8), 3..6);
        assert!(dealt.is_shared() && dealt.count().is_none());
        let one = Instance::dealt(7..8, 8).expect("dealt");
        assert_eq!(one.to_string(), "partition 7 of 8");
        assert_eq!(one.file_path("a.csv"), "a.partitions-7-7-of-8.csv");
        assert_eq!(Instance::dealt(3..3, 8), None);
        assert_eq!(Instance::dealt(6..9, 8), None);
        assert_eq!(Instance::ALONE.file_path("out/a.jsonl"), "out/a.jsonl");
        assert_eq!(
            Instance::ALONE.state_dir(Path::new(".runner/x")),
            Path::new(".runner/x")
        );
    }
}
