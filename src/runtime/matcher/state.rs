//! A matcher's state in a checkpoint: every key with its pending groups,
//! what was too late for them, and its memory, with the ids that order
//! timers. Timers are rebuilt from the groups and memories when it is read
//! back, stale ones left behind.

use std::hash::BuildHasher;

use hashbrown::HashMap;

use super::{Alert, Entry, Matcher, Memory, NONE, Timer};
use crate::checkpoint::encoding::{DecodeError, Decoder, Encoder};
use crate::expr::Record;
use crate::plan::Side;
use crate::runtime::event::{Event, Key};
use crate::runtime::operator::{Prior, no_records};
use crate::time::{Duration, EventTime, Watermark};

/// Which keys of a state to read: given each key and the partition it
/// came from, if known, whether to take it.
type Keep<'a> = &'a mut dyn FnMut(&Key, Option<u32>) -> bool;

/// How a matcher's state was written, which follows from its checkpoint's
/// format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFormat {
    /// Versions 2 and 3: keys without their partitions.
    Unpartitioned,
    /// From version 4: each key followed by its partition.
    Partitioned,
}

impl StateFormat {
    /// What a matcher writes of its state ([`Matcher::state`]).
    pub const CURRENT: Self = Self::Partitioned;

    /// The format of the states in a checkpoint of format `version`.
    pub fn of_version(version: u32) -> Self {
        if version >= 4 {
            Self::Partitioned
        } else {
            Self::Unpartitioned
        }
    }
}

impl Matcher {
    /// Everything the matcher holds, as a checkpoint keeps it.
    pub fn state(&self) -> Vec<u8> {
        let mut out = Encoder::new();
        self.save(&mut out);
        out.into_bytes()
    }

    /// Reads back into this matcher, which must be empty, what
    /// [`state`](Self::state) gave for a matcher with the same sides.
    ///
    /// # Errors
    ///
    /// Data that is damaged or was written for other sides.
    pub fn restore_state(&mut self, state: &[u8]) -> Result<(), DecodeError> {
        self.load(&mut Decoder::new(state), StateFormat::CURRENT)
    }

    /// Writes everything the matcher holds.
    pub(crate) fn save(&self, out: &mut Encoder) {
        out.varint(u64::from(self.next_id));
        out.int(self.watermark.to_raw());
        out.usize(self.peak_waiting);
        // In the order the entries are stored, which is near the order of
        // their groups and records: read in that order, memory is read
        // ahead, not jumped about in.
        let mut entries: Vec<u32> = self.index.iter().copied().collect();
        entries.sort_unstable();
        out.usize(entries.len());
        for entry in entries {
            let Entry { key, first, memory } = &self.entries[entry];
            out.value(key.value());
            // The partition, from 1; 0 where none is known.
            out.varint(self.partition(entry).map_or(0, |p| u64::from(p) + 1));
            out.usize(self.chain(*first).count());
            for group in self.chain(*first) {
                out.varint(u64::from(self.groups[group].id));
                out.time(self.group_deadline(group));
                // By side, as an alert's records are.
                for side in 0..self.sides() {
                    let member = self.span(group).find_map(|slot| {
                        let record = self.records[slot].as_ref()?;
                        (usize::from(self.members[slot]) == side)
                            .then(|| (self.times[slot], record))
                    });
                    match member {
                        Some((time, record)) => {
                            out.bool(true);
                            out.time(time);
                            out.record(record);
                        }
                        None => out.bool(false),
                    }
                }
                let held = if self.too_late.is_empty() {
                    &[][..]
                } else {
                    self.too_late.get(&group).map_or(&[][..], Vec::as_slice)
                };
                out.usize(held.len());
                for event in held {
                    out.usize(event.side.0);
                    out.time(event.time);
                    out.record(&event.record);
                }
            }
            if *memory == NONE {
                out.bool(false);
                continue;
            }
            out.bool(true);
            let Memory {
                id,
                until,
                prior,
                alert,
            } = &self.memories[*memory];
            out.varint(u64::from(*id));
            out.time(*until);
            out.u8(match prior {
                Prior::Waiting => 0,
                Prior::Completed => 1,
                Prior::TimedOut => 2,
            });
            match alert {
                None => out.bool(false),
                Some(alert) => {
                    out.bool(true);
                    out.usize(alert.expired.0);
                    out.time(alert.deadline);
                    Self::save_sides(&alert.records, &alert.times, out);
                    for arrived in &alert.arrived {
                        out.bool(*arrived);
                    }
                }
            }
        }
    }

    /// The groups of a chain, from `first`.
    fn chain(&self, first: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors((first != NONE).then_some(first), |&group| {
            let next = self.groups[group].next;
            (next != NONE).then_some(next)
        })
    }

    fn save_sides(records: &[Option<Record>], times: &[EventTime], out: &mut Encoder) {
        for (record, time) in records.iter().zip(times) {
            match record {
                Some(record) => {
                    out.bool(true);
                    out.time(*time);
                    out.record(record);
                }
                None => out.bool(false),
            }
        }
    }

    /// Reads back into this matcher, which must be empty, what
    /// [`save`](Self::save) wrote for a matcher with the same sides.
    ///
    /// # Errors
    ///
    /// Data that is damaged or was written for other sides.
    pub(crate) fn load(
        &mut self,
        input: &mut Decoder<'_>,
        format: StateFormat,
    ) -> Result<(), DecodeError> {
        self.load_some(input, format, None)
    }

    /// Adds to this matcher the keys of what [`save`](Self::save) wrote
    /// (for a matcher with the same sides) that `keep` takes, given each
    /// key and the partition it came from, if known: the state of other
    /// workers or processes, each holding other keys, is divided among new
    /// ones this way. Ids go on from the newest, and the watermark from the
    /// least (each worker's is the run's, so they are the same; were they
    /// not, the least fires no wait early).
    ///
    /// # Errors
    ///
    /// Data that is damaged or was written for other sides, or a key this
    /// matcher already holds.
    pub(crate) fn load_keeping(
        &mut self,
        input: &mut Decoder<'_>,
        format: StateFormat,
        keep: Keep<'_>,
    ) -> Result<(), DecodeError> {
        self.load_some(input, format, Some(keep))
    }

    /// Reads the keys `keep` takes, or all of them.
    fn load_some(
        &mut self,
        input: &mut Decoder<'_>,
        format: StateFormat,
        mut keep: Option<Keep<'_>>,
    ) -> Result<(), DecodeError> {
        let next_id = id(input)?;
        // The id ahead of the other, as ids wrap: the next group's is
        // newer than every group's loaded.
        if self.entries.len() == 0 || next_id.wrapping_sub(self.next_id) < 1 << 31 {
            self.next_id = next_id;
        }
        let watermark = Watermark::from_raw(input.int()?);
        if self.entries.len() == 0 || watermark < self.watermark {
            self.watermark = watermark;
        }
        let peak = usize::try_from(input.varint()?).unwrap_or(usize::MAX);
        let keys = input.count(3)?;
        let filtering = keep.is_some();
        if !filtering {
            // Room for every key at once: growing would hash them all
            // again. (Keeping some, room for all would stay unused.)
            let (entries, hasher) = (&self.entries, &self.hasher);
            self.index
                .reserve(keys, |&e| BuildHasher::hash_one(hasher, &entries[e].key));
            self.entries.items.reserve(keys);
            self.groups.items.reserve(keys);
            // A group per key, most often: its slots.
            self.records.reserve(keys.saturating_mul(self.slots()));
            self.times.reserve(keys.saturating_mul(self.slots()));
            self.members.reserve(keys.saturating_mul(self.slots()));
        }

        // The keys not kept are read into a matcher of their own, thrown
        // away now and then.
        let mut others = None;
        for _ in 0..keys {
            let key = Key::new(input.value()?);
            let partition = partition(input, format)?;
            let target = if keep.as_mut().is_none_or(|keep| keep(&key, partition)) {
                &mut *self
            } else {
                let others = others.get_or_insert_with(|| self.empty_like());
                if others.entries.len() >= 4096 {
                    *others = self.empty_like();
                }
                others
            };
            target.load_entry(key, partition, input)?;
        }
        // A state read whole keeps its peak; of one divided, only what
        // was read is known to have waited at once.
        let peak = if filtering { 0 } else { peak };
        self.peak_waiting = self.peak_waiting.max(peak).max(self.waiting);
        Ok(())
    }

    /// Divides a state [`save`](Self::save) wrote (for a matcher with this
    /// one's sides) by the partition each key came from: for each
    /// partition with keys, its keys alone, and with them what the state
    /// says of its ids and watermark (given alone too, with no keys, for
    /// the partitions that have none). Keys from no partition are left
    /// out. Each state's keys are copied as they are encoded; they are
    /// read (into a matcher thrown away now and then) only to find where
    /// each ends.
    ///
    /// # Errors
    ///
    /// Data that is damaged or was written for other sides.
    pub(crate) fn split_by_partition(
        &self,
        state: &[u8],
    ) -> Result<(Divided, std::collections::BTreeMap<u32, Divided>), DecodeError> {
        let mut input = Decoder::new(state);
        let next_id = id(&mut input)?;
        let watermark = input.int()?;
        let _peak = input.varint()?;
        let keys = input.count(3)?;
        let mut divided = std::collections::BTreeMap::<u32, Divided>::new();
        let mut scratch = self.empty_like();
        for _ in 0..keys {
            let start = input.position();
            let key = Key::new(input.value()?);
            let partition = partition(&mut input, StateFormat::CURRENT)?;
            if scratch.entries.len() >= 4096 {
                scratch = self.empty_like();
            }
            scratch.load_entry(key, partition, &mut input)?;
            if let Some(partition) = partition {
                let into = divided.entry(partition).or_default();
                into.keys += 1;
                into.entries
                    .extend_from_slice(&state[start..input.position()]);
            }
        }
        if !input.done() {
            return Err(DecodeError("it goes on after its end".to_string()));
        }
        for into in divided.values_mut() {
            into.next_id = next_id;
            into.watermark = watermark;
        }
        let none = Divided {
            next_id,
            watermark,
            ..Divided::default()
        };
        Ok((none, divided))
    }

    /// Reads the groups and memory of `key`.
    fn load_entry(
        &mut self,
        key: Key,
        partition: Option<u32>,
        input: &mut Decoder<'_>,
    ) -> Result<(), DecodeError> {
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, &key);
        if self.find(&key, hash).is_some() {
            return Err(DecodeError("a key is given twice".to_string()));
        }
        let entry = self.add_entry(key, hash);
        self.set_partition(entry, partition);
        let groups = input.count(2)?;
        for _ in 0..groups {
            self.load_group(entry, input)?;
        }
        if input.bool()? {
            self.load_memory(entry, input)?;
        } else if groups == 0 {
            return Err(DecodeError(
                "a key has neither groups nor a memory".to_string(),
            ));
        }
        Ok(())
    }

    /// Reads one pending group of `entry`, appended to its chain.
    fn load_group(&mut self, entry: u32, input: &mut Decoder<'_>) -> Result<(), DecodeError> {
        let sides = self.sides();
        let id = id(input)?;
        let deadline = input.time()?;
        let group = self.add_group(id, deadline, entry);
        let mut slots = self.span(group);
        for side in 0..sides {
            if !input.bool()? {
                continue;
            }
            let time = input.time()?;
            let record = input.record()?;
            let Some(slot) = slots.next() else {
                return Err(DecodeError(
                    "a pending group has an event of every side".to_string(),
                ));
            };
            self.put(slot, Side(side), time, record);
        }
        if slots.len() == self.slots() {
            return Err(DecodeError("a pending group has no event".to_string()));
        }
        let derived = self.group_deadline(group);
        match &mut self.listed {
            Some(listed) => {
                listed.insert(group, deadline);
            }
            None if derived != deadline => {
                return Err(DecodeError(format!(
                    "a group's deadline, {deadline}, is not what the waits give, {derived}"
                )));
            }
            None => {}
        }
        let held = input.count(3)?;
        for _ in 0..held {
            let side = Side(Self::side(sides, input)?);
            let time = input.time()?;
            let record = input.record()?;
            let key = self.entries[entry].key.clone();
            self.too_late.entry(group).or_default().push(Event {
                side,
                time,
                key,
                record,
                partition: None,
            });
            self.held += 1;
        }
        Ok(())
    }

    /// Reads the memory of `entry`.
    fn load_memory(&mut self, entry: u32, input: &mut Decoder<'_>) -> Result<(), DecodeError> {
        let sides = self.sides();
        let id = id(input)?;
        let until = input.time()?;
        let prior = match input.u8()? {
            0 => Prior::Waiting,
            1 => Prior::Completed,
            2 => Prior::TimedOut,
            other => return Err(DecodeError(format!("{other} is not a prior outcome"))),
        };
        let alert = if input.bool()? {
            let expired = Side(Self::side(sides, input)?);
            let deadline = input.time()?;
            let mut records = no_records(sides);
            let mut times = vec![EventTime::from_millis(0); sides].into_boxed_slice();
            Self::load_sides(&mut records, &mut times, input)?;
            let mut arrived = Vec::with_capacity(sides);
            for _ in 0..sides {
                arrived.push(input.bool()?);
            }
            self.held += arrived.iter().filter(|a| **a).count();
            Some(Box::new(Alert {
                expired,
                deadline,
                records,
                times,
                arrived: arrived.into(),
            }))
        } else {
            None
        };
        let memory = self.memories.insert(Memory {
            id,
            until,
            prior,
            alert,
        });
        self.entries[entry].memory = memory;
        self.expiries.push(Timer {
            at: until,
            id,
            slot: entry,
        });
        Ok(())
    }

    /// Reads a record and time per side into `records` and `times`;
    /// returns how many were present.
    fn load_sides(
        records: &mut [Option<Record>],
        times: &mut [EventTime],
        input: &mut Decoder<'_>,
    ) -> Result<usize, DecodeError> {
        let mut present = 0;
        for (record, time) in records.iter_mut().zip(times.iter_mut()) {
            if input.bool()? {
                *time = input.time()?;
                *record = Some(input.record()?);
                present += 1;
            } else {
                *record = None;
            }
        }
        // A missing side's time is never read, so it is left as it was.
        Ok(present)
    }

    /// A matcher of `sides` sides to list a checkpoint's state with, for
    /// which the waits are not known: each group's deadline is kept as the
    /// checkpoint gives it.
    pub fn for_listing(sides: usize) -> Self {
        let mut matcher = Self::new(vec![Duration::ZERO; sides], Vec::new(), Duration::ZERO);
        matcher.listed = Some(HashMap::new());
        matcher
    }

    fn side(sides: usize, input: &mut Decoder<'_>) -> Result<usize, DecodeError> {
        let side = usize::try_from(input.varint()?).unwrap_or(usize::MAX);
        if side < sides {
            Ok(side)
        } else {
            Err(DecodeError(format!("side {side} of {sides}")))
        }
    }
}

/// A key's pending group, as a checkpoint listing shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingGroup {
    /// The key.
    pub key: crate::expr::Value,
    /// When the group times out.
    pub deadline: EventTime,
    /// Each side's event time, where it has an event.
    pub sides: Vec<Option<EventTime>>,
    /// The Kafka partition the key came from, if it is known.
    pub partition: Option<u32>,
}

impl Matcher {
    /// Every pending group, earliest deadline first.
    pub fn pending_groups(&self) -> Vec<PendingGroup> {
        let mut groups = Vec::new();
        for &entry in &self.index {
            let mut group = self.entries[entry].first;
            while group != NONE {
                let mut sides = vec![None; self.sides()];
                for (side, time) in self.members_of(group) {
                    sides[side.0] = Some(time);
                }
                groups.push(PendingGroup {
                    key: self.entries[entry].key.value().clone(),
                    deadline: (self.listed.as_ref())
                        .and_then(|listed| listed.get(&group).copied())
                        .unwrap_or_else(|| self.group_deadline(group)),
                    sides,
                    partition: self.partition(entry),
                });
                group = self.groups[group].next;
            }
        }
        groups.sort_by_cached_key(|group| (group.deadline, group.key.to_string()));
        groups
    }

    /// How many keys are remembered after they were done.
    pub fn remembered_keys(&self) -> usize {
        self.memories.len()
    }
}

/// An id as a checkpoint keeps it: a varint, of which the low 32 bits are
/// the id (earlier versions kept 64).
/// The keys of one partition, of a state divided by partition
/// ([`Matcher::split_by_partition`]): their entries as encoded, and what
/// the state they came from says of the ids and the watermark.
#[derive(Debug, Default)]
pub(crate) struct Divided {
    pub(crate) next_id: u32,
    pub(crate) watermark: i64,
    pub(crate) keys: usize,
    pub(crate) entries: Vec<u8>,
}

impl Divided {
    /// Adds the keys of `other`, another state's share of the same
    /// partition (another worker's: its keys are others).
    pub(crate) fn absorb(&mut self, other: &Self) {
        // The id ahead of the other, as ids wrap.
        if other.next_id.wrapping_sub(self.next_id) < 1 << 31 {
            self.next_id = other.next_id;
        }
        self.watermark = self.watermark.min(other.watermark);
        self.keys += other.keys;
        self.entries.extend_from_slice(&other.entries);
    }

    /// The state these keys make, as [`Matcher::save`] writes one.
    pub(crate) fn state(&self) -> Vec<u8> {
        let mut out = Encoder::new();
        out.varint(u64::from(self.next_id));
        out.int(self.watermark);
        out.usize(0);
        out.usize(self.keys);
        out.raw(&self.entries);
        out.into_bytes()
    }
}

/// The partition a key came from, as a state in `format` has it after the
/// key: from 1, 0 where none is known.
fn partition(input: &mut Decoder<'_>, format: StateFormat) -> Result<Option<u32>, DecodeError> {
    Ok(match format {
        StateFormat::Unpartitioned => None,
        StateFormat::Partitioned => match input.varint()? {
            0 => None,
            from_1 => Some(
                u32::try_from(from_1 - 1)
                    .ok()
                    .filter(|&p| p != NONE)
                    .ok_or_else(|| DecodeError("a partition out of range".to_string()))?,
            ),
        },
    })
}

fn id(input: &mut Decoder<'_>) -> Result<u32, DecodeError> {
    Ok(u32::try_from(input.varint()? & u64::from(u32::MAX)).unwrap_or(0))
}
