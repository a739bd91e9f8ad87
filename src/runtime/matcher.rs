//! The connect-and-match operator over any number of sides.
//!
//! # The rule
//!
//! Each side waits a declared time for the others: an event of side `s` at
//! event time `t` waits until its deadline `t + wait(s)`. The events of one
//! key that belong together form a *group*. An arriving event joins the
//! oldest group of its key that has no event of its side yet and that it fits
//! in time: every member's deadline must reach the latest member's time,
//! `max(times) <= min(deadlines)`. Otherwise it starts a new group.
//!
//! A group with an event of every side is *complete*: it is matched, or
//! mismatched if a rule does not hold, and leaves the pending state.
//! A group's deadline is the earliest of its members' deadlines; when the
//! watermark reaches it (`watermark >= deadline`) no event that could
//! complete the group can still arrive on time, so it times out, naming the
//! side whose wait ran out and the sides that are missing.
//!
//! Because the watermark trails event time by one millisecond more than the
//! lag, a counterpart whose event time equals the deadline still matches.
//!
//! # After a key is done
//!
//! A completed or timed-out key is remembered for the retention, in event
//! time: until its last event's time (its deadline, for a timeout) plus the
//! retention. An event of that key within the retention is a *duplicate*,
//! except a late counterpart of a timeout: the alert's missing sides, once
//! they have all arrived, *resolve* it. A second event for a side that is
//! still waiting is a duplicate too. An event behind the watermark with
//! nothing to join is *late*. The watermark ends the retention, and late
//! events that resolved only part of an alert are then reported late.
//!
//! Every rule above compares event times, so the outcomes do not depend on
//! how the inputs interleave, for every event that is not late; but for
//! whether a duplicate came while its first was waiting or after its group
//! completed.

//!
//! # State
//!
//! Per key with state there is an *entry*: the key, its groups (a chain,
//! oldest first) and what is remembered of it once done. Entries, groups
//! and memories live in slabs, vectors whose free slots are reused, and a
//! hash table of entry indexes finds a key's entry; the key itself is
//! stored once, in its entry. Each group's members (record, event time and
//! side) sit in flat vectors, a slot per side but one: the event of the
//! last side completes the group, so it never waits in one. A group's
//! deadline is worked out from its members. Timers (deadlines and ends of
//! retention) are queues in time order; a timer whose group or memory has
//! moved on is stale and skipped when it comes up. So a pending key costs
//! its event and under a hundred bytes (`cargo bench --bench matcher`), and
//! an event allocates nothing of its own. A key read from Kafka keeps the
//! partition its first event came from, four bytes more in a column beside
//! the entries, so that its state can go where the partition goes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

mod state;

pub(crate) use state::Divided;
pub use state::{PendingGroup, StateFormat};

use super::event::{Event, Key};
use super::operator::{Detail, Operator, Outcome, Prior, no_records};
use crate::expr::{Compiled, Env, Record, Value};
use crate::plan::{MAX_SIDES, Side};
use crate::time::{Duration, EventTime, Watermark};

/// A named rule a complete match must satisfy.
#[derive(Debug)]
pub struct Rule {
    /// Its name, as a mismatch reports it.
    pub name: Arc<str>,
    /// The compiled rule, a `bool`.
    pub compiled: Compiled,
}

impl From<crate::plan::RuleNode> for Rule {
    fn from(rule: crate::plan::RuleNode) -> Self {
        Self {
            name: rule.name.into(),
            compiled: rule.rule.compiled,
        }
    }
}

/// No slot: the end of a chain, or nothing remembered.
const NONE: u32 = u32::MAX;

/// The match operator's state: per key, its pending groups and what is
/// remembered of it after it is done; and the timers of both.
#[derive(Debug)]
pub struct Matcher {
    /// How long each side waits, by side.
    waits: Box<[Duration]>,
    rules: Arc<[Rule]>,
    /// How long, in event time, a done key is remembered.
    retention: Duration,
    hasher: DefaultHashBuilder,
    /// The entry of each key with state, by index into `entries`.
    index: HashTable<u32>,
    entries: Slab<Entry>,
    groups: Slab<Group>,
    /// Each group's members, `sides - 1` slots per group slot (a group
    /// with every side is complete, and gone), filled in arrival order:
    /// the member's record, or `None` for a slot still free,
    records: Vec<Option<Record>>,
    /// its event time,
    times: Vec<EventTime>,
    /// and its side.
    members: Vec<u8>,
    memories: Slab<Memory>,
    /// Counterparts too late for a group, in event time, but within the
    /// retention after its deadline: they resolve its timeout once it
    /// fires. By group slot; rare.
    too_late: HashMap<u32, Vec<Event>>,
    /// Each pending group's deadline; stale once the group is gone or its
    /// deadline moved.
    deadlines: Timers,
    /// Where each memory's retention ends; stale once it is replaced.
    expiries: Timers,
    /// The id the next group or memory gets. Ids order timers that fall
    /// on the same time; 32 bits wrap after some four billion groups and
    /// memories, where timers on the same millisecond either side of the
    /// wrap fire newest first (the outcomes are the same, in another order).
    next_id: u32,
    watermark: Watermark,
    /// Events held: in pending groups, and late arrivals of alerts.
    held: usize,
    /// Keys with a pending group.
    waiting: usize,
    /// The most keys that had a pending group at once.
    peak_waiting: usize,
    /// In a matcher that lists a checkpoint (which knows no waits): each
    /// group's deadline as saved, by slot.
    listed: Option<HashMap<u32, EventTime>>,
    /// The Kafka partition of each entry's key, by entry slot, `NONE` where
    /// it is not known: the partition its first event came from. Empty
    /// until an event comes from a partition, so that a run on files pays
    /// nothing for it.
    partitions: Vec<u32>,
}

/// A key with state.
#[derive(Debug)]
struct Entry {
    key: Key,
    /// Its oldest pending group, or `NONE`.
    first: u32,
    /// What is remembered of it after its last group was done, or `NONE`.
    memory: u32,
}

/// A pending group; its records and times are in the matcher's flat
/// vectors, and its deadline, the earliest of its members', follows from
/// them.
#[derive(Debug)]
struct Group {
    id: u32,
    /// The key's entry; `NONE` once the group is done, which makes its
    /// timers stale until the slot is reused.
    entry: u32,
    /// The key's next younger group, or `NONE`.
    next: u32,
}

/// A key remembered after its group completed or timed out.
#[derive(Debug)]
struct Memory {
    id: u32,
    /// The end of the retention, in event time.
    until: EventTime,
    prior: Prior,
    /// For a timeout not yet resolved: the alert and what arrived since.
    alert: Option<Box<Alert>>,
}

#[derive(Debug)]
struct Alert {
    expired: Side,
    deadline: EventTime,
    records: Box<[Option<Record>]>,
    times: Box<[EventTime]>,
    /// Which sides arrived after the alert.
    arrived: Box<[bool]>,
}

/// A timer: when, the id of its group or memory (which orders timers at
/// the same time), and the slot to look it up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: EventTime,
    id: u32,
    slot: u32,
}

/// Timers, earliest first: a wheel of buckets of about a second of event
/// time each, and a heap. A timer goes into its bucket unsorted, in
/// constant time; each bucket is sorted once, when it comes first (latest
/// first, so the earliest pops off its end). A timer for the first bucket
/// or before it (a straggler), or beyond the wheel's reach (a far future,
/// which would need a bucket for every second until it), goes to the
/// heap, at a logarithm's cost.
#[derive(Debug, Default)]
struct Timers {
    /// Buckets from `base` on; the first, if any, is not empty.
    wheel: VecDeque<Vec<Timer>>,
    /// The bucket number of the wheel's first bucket.
    base: i64,
    heap: BinaryHeap<Reverse<Timer>>,
    /// Emptied buckets, kept for their memory.
    spare: Vec<Vec<Timer>>,
}

impl Timers {
    /// Milliseconds of a bucket, as a power of two: 1.024 s.
    const SHIFT: u32 = 10;
    /// Buckets the wheel reaches ahead of its first: about 18 hours.
    const REACH: i64 = 1 << 16;

    fn push(&mut self, timer: Timer) {
        let bucket = timer.at.millis() >> Self::SHIFT;
        if self.wheel.is_empty() {
            // The first bucket, sorted as it holds one timer.
            self.base = bucket;
            let mut first = self.spare.pop().unwrap_or_default();
            first.push(timer);
            self.wheel.push_back(first);
            return;
        }
        let Some(offset) = bucket
            .checked_sub(self.base)
            .filter(|offset| (1..Self::REACH).contains(offset))
        else {
            // The first bucket stays sorted, latest first, as it was when
            // it came first: a timer for it goes to the heap too. Inserted
            // in order, it would move every later one, and timers come
            // mostly latest: a second of event time holding a million
            // keys' deadlines took minutes.
            self.heap.push(Reverse(timer));
            return;
        };
        let offset = offset.unsigned_abs() as usize;
        while self.wheel.len() <= offset {
            let bucket = self.spare.pop().unwrap_or_default();
            self.wheel.push_back(bucket);
        }
        self.wheel[offset].push(timer);
    }

    /// The earliest timer.
    fn peek(&self) -> Option<Timer> {
        let wheel = self.wheel.front().and_then(|first| first.last());
        match (wheel, self.heap.peek()) {
            (Some(a), Some(Reverse(b))) => Some(*a.min(b)),
            (a, b) => a.copied().or(b.map(|Reverse(t)| *t)),
        }
    }

    /// Takes the earliest timer.
    fn pop(&mut self) -> Option<Timer> {
        let wheel = self.wheel.front().and_then(|first| first.last());
        let from_heap = match (wheel, self.heap.peek()) {
            (Some(a), Some(Reverse(b))) => b < a,
            (None, Some(_)) => true,
            _ => false,
        };
        if from_heap {
            return self.heap.pop().map(|Reverse(timer)| timer);
        }
        let first = self.wheel.front_mut()?;
        let timer = first.pop();
        if first.is_empty() {
            // The next bucket with timers comes first, sorted.
            while self.wheel.front().is_some_and(Vec::is_empty) {
                self.spare.extend(self.wheel.pop_front());
                self.base += 1;
            }
            if let Some(next) = self.wheel.front_mut() {
                // Timers mostly come in order: reversed, the bucket is
                // nearly sorted latest first, which the sort finds in runs.
                next.reverse();
                next.sort_by(|a, b| b.cmp(a));
            }
        }
        timer
    }
}

/// A vector whose removed slots are reused.
#[derive(Debug)]
struct Slab<T> {
    items: Vec<T>,
    free: Vec<u32>,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Self {
            items: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Stores `item` in a free slot, or a new one; returns the slot.
    fn insert(&mut self, item: T) -> u32 {
        if let Some(slot) = self.free.pop() {
            self.items[slot as usize] = item;
            slot
        } else {
            self.items.push(item);
            u32::try_from(self.items.len() - 1).unwrap_or(NONE)
        }
    }

    /// Marks `slot` free; its item stays until the slot is reused.
    fn remove(&mut self, slot: u32) {
        self.free.push(slot);
    }

    /// Slots in use.
    fn len(&self) -> usize {
        self.items.len() - self.free.len()
    }
}

impl<T> std::ops::Index<u32> for Slab<T> {
    type Output = T;

    fn index(&self, slot: u32) -> &T {
        &self.items[slot as usize]
    }
}

impl<T> std::ops::IndexMut<u32> for Slab<T> {
    fn index_mut(&mut self, slot: u32) -> &mut T {
        &mut self.items[slot as usize]
    }
}

/// An outcome about one event, among `sides` sides.
fn single(
    sides: usize,
    key: Key,
    side: Side,
    time: EventTime,
    record: Record,
    detail: Detail,
) -> Outcome {
    let mut records = no_records(sides);
    records[side.0] = Some(record);
    Outcome {
        key,
        records,
        times: vec![time; sides].into_boxed_slice(),
        detail,
    }
}

/// Where an arriving event goes.
enum Next {
    /// The same side of a group still waiting, in event time.
    Duplicate,
    /// Into this group, due at this deadline.
    Join(u32, EventTime),
    /// Held with this group, to resolve its timeout.
    TooLate(u32),
    /// Against this entry's memory of a done key.
    Remembered(u32),
    /// Behind the watermark, with nothing to join or resolve.
    Late,
    /// A new group, for this entry if the key has one.
    Open(Option<u32>),
}

impl Matcher {
    /// A matcher with one side per wait, the rules a complete group must
    /// satisfy, and how long a done key is remembered.
    ///
    /// # Panics
    ///
    /// With more than 256 waits: a member's side is kept in a byte (the
    /// planner refuses more sides, E305).
    pub fn new(
        waits: impl IntoIterator<Item = Duration>,
        rules: Vec<Rule>,
        retention: Duration,
    ) -> Self {
        let waits: Box<[Duration]> = waits.into_iter().collect();
        assert!(
            waits.len() <= MAX_SIDES,
            "a match takes at most {MAX_SIDES} sides"
        );
        Self {
            waits,
            rules: rules.into(),
            retention,
            hasher: DefaultHashBuilder::default(),
            index: HashTable::new(),
            entries: Slab::new(),
            groups: Slab::new(),
            records: Vec::new(),
            times: Vec::new(),
            members: Vec::new(),
            memories: Slab::new(),
            too_late: HashMap::new(),
            deadlines: Timers::default(),
            expiries: Timers::default(),
            next_id: 0,
            watermark: Watermark::MIN,
            held: 0,
            waiting: 0,
            peak_waiting: 0,
            listed: None,
            partitions: Vec::new(),
        }
    }

    /// A matcher with nothing in it, and the same sides, rules and
    /// retention: for another worker.
    #[must_use]
    pub fn empty_like(&self) -> Self {
        let mut matcher = Self::new(Vec::new(), Vec::new(), self.retention);
        matcher.waits.clone_from(&self.waits);
        matcher.rules = self.rules.clone();
        matcher
    }

    /// How many groups are waiting.
    pub fn pending(&self) -> usize {
        self.groups.len()
    }

    /// How many keys have state: pending groups or a memory.
    pub fn pending_keys(&self) -> usize {
        self.entries.len()
    }

    /// How many events are held: waiting in groups, or arrived late for an
    /// alert not yet resolved.
    pub fn pending_events(&self) -> usize {
        self.held
    }

    /// How many keys have a group waiting for its other sides.
    pub fn waiting_keys(&self) -> usize {
        self.waiting
    }

    /// The most keys that had a group waiting at once.
    pub fn peak_waiting_keys(&self) -> usize {
        self.peak_waiting
    }

    /// The earliest event time at which a timer may fire: a group's
    /// deadline or the end of a key's retention. The watermark must pass
    /// it. (A stale timer may come first; firing it does nothing.)
    pub fn next_timer(&self) -> Option<EventTime> {
        let deadline = self.deadlines.peek().map(|timer| timer.at);
        let expiry = self.expiries.peek().map(|timer| timer.at);
        match (deadline, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the watermark has reached a timer, which
    /// [`fire_due`](Self::fire_due) would fire.
    pub fn has_due(&self) -> bool {
        self.next_timer()
            .is_some_and(|time| self.watermark.reached(time))
    }

    /// The watermark the operator has reached.
    pub fn watermark(&self) -> Watermark {
        self.watermark
    }

    /// Moves the watermark to `watermark` (if that is later) without
    /// firing anything: [`fire_due`](Self::fire_due) does, a batch at a
    /// time.
    pub fn advance_to(&mut self, watermark: Watermark) {
        self.watermark = self.watermark.max(watermark);
    }

    /// Fires what the watermark has reached, earliest first, until `out`
    /// holds `limit` outcomes; returns whether more is due. So the end of a
    /// million pending keys comes out a batch at a time instead of all at
    /// once.
    pub fn fire_due(&mut self, out: &mut Vec<Outcome>, limit: usize) -> bool {
        self.fire_until(out, limit)
    }

    fn sides(&self) -> usize {
        self.waits.len()
    }

    fn deadline(&self, side: Side, time: EventTime) -> EventTime {
        time.saturating_add(self.waits[side.0])
    }

    fn id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// When `group` times out: the earliest of its members' deadlines.
    fn group_deadline(&self, group: u32) -> EventTime {
        self.members_of(group)
            .map(|(side, time)| self.deadline(side, time))
            .min()
            .unwrap_or(EventTime::from_millis(i64::MAX))
    }

    /// Slots per group: one fewer than the sides.
    fn slots(&self) -> usize {
        self.sides().saturating_sub(1).max(1)
    }

    /// The slots of group `group` in the flat vectors.
    fn span(&self, group: u32) -> std::ops::Range<usize> {
        let start = group as usize * self.slots();
        start..start + self.slots()
    }

    /// The side and event time of each member of `group`, in arrival
    /// order.
    fn members_of(&self, group: u32) -> impl Iterator<Item = (Side, EventTime)> + '_ {
        self.span(group)
            .take_while(|&slot| self.records[slot].is_some())
            .map(|slot| (Side(usize::from(self.members[slot])), self.times[slot]))
    }

    /// The slot of `group`'s member of `side`, if it has one.
    fn member(&self, group: u32, side: Side) -> Option<usize> {
        self.span(group)
            .find(|&slot| self.records[slot].is_some() && usize::from(self.members[slot]) == side.0)
    }

    /// The entry of `key`, whose hash is `hash`, if it has state.
    fn find(&self, key: &Key, hash: u64) -> Option<u32> {
        self.index
            .find(hash, |&entry| self.entries[entry].key == *key)
            .copied()
    }

    /// The latest event time among the members of `group`.
    fn latest(&self, group: u32) -> EventTime {
        self.members_of(group)
            .map(|(_, time)| time)
            .max()
            .unwrap_or(EventTime::from_millis(i64::MIN))
    }

    /// Whether an event of `side` at `time` fits in time in `group`, due
    /// at `deadline`, which has no event of `side`.
    fn fits(&self, group: u32, deadline: EventTime, side: Side, time: EventTime) -> bool {
        self.latest(group).max(time) <= deadline.min(self.deadline(side, time))
    }

    /// The outcome of a complete group: the rules that fail, if any.
    fn judge(&self, key: &Key, records: &[Option<Record>]) -> Detail {
        if self.rules.is_empty() {
            return Detail::Matched;
        }
        let values = [key.value().clone()];
        let env = Env {
            records,
            values: &values,
        };
        let failed: Vec<Arc<str>> = self
            .rules
            .iter()
            .filter_map(|rule| match rule.compiled.eval(&env) {
                Ok(Value::Bool(true)) => None,
                Ok(_) => Some(rule.name.clone()),
                Err(error) => Some(Arc::from(format!(
                    "{} (cannot be evaluated: {error})",
                    rule.name
                ))),
            })
            .collect();
        if failed.is_empty() {
            Detail::Matched
        } else {
            Detail::Mismatched {
                failed: failed.into(),
            }
        }
    }

    /// Where an event of `side` for the key of `entry` (if it has one) at
    /// `time` goes.
    fn route(&self, entry: Option<u32>, side: Side, time: EventTime) -> Next {
        let Some(entry) = entry else {
            return if self.watermark.is_late(time) {
                Next::Late
            } else {
                Next::Open(None)
            };
        };
        let mut group = self.entries[entry].first;
        while group != NONE {
            let deadline = self.group_deadline(group);
            let too_late = time > deadline && time <= deadline.saturating_add(self.retention);
            let has_side = self.member(group, side).is_some()
                || self
                    .too_late
                    .get(&group)
                    .is_some_and(|held| held.iter().any(|e| e.side == side));
            if has_side {
                // Still waiting, in event time: this is the same event again.
                if time <= deadline || too_late {
                    return Next::Duplicate;
                }
            } else if self.fits(group, deadline, side, time) {
                return Next::Join(group, deadline);
            } else if too_late {
                // Past the deadline but within the retention: it will
                // resolve the timeout, whenever that fires.
                return Next::TooLate(group);
            }
            group = self.groups[group].next;
        }
        let memory = self.entries[entry].memory;
        if memory != NONE && time <= self.memories[memory].until {
            Next::Remembered(entry)
        } else if self.watermark.is_late(time) {
            Next::Late
        } else {
            Next::Open(Some(entry))
        }
    }

    /// Starts a new group with `event`, and its timer; and the key's entry
    /// if it has none (`hash` is the key's).
    fn open(&mut self, entry: Option<u32>, event: Event, hash: u64) {
        let Event {
            side,
            time,
            key,
            record,
            partition,
        } = event;
        let entry = entry.unwrap_or_else(|| self.add_entry(key, hash));
        // The first partition known for the key: a key remembered from a
        // checkpoint that did not say gets it from its next event.
        if partition.is_some() && self.partition(entry).is_none() {
            self.set_partition(entry, partition);
        }
        let id = self.id();
        let deadline = self.deadline(side, time);
        let group = self.add_group(id, deadline, entry);
        self.put(self.span(group).start, side, time, record);
    }

    /// Fills `slot` with a member.
    fn put(&mut self, slot: usize, side: Side, time: EventTime, record: Record) {
        self.records[slot] = Some(record);
        self.times[slot] = time;
        // At most 256 sides (`new`).
        self.members[slot] = u8::try_from(side.0).unwrap_or(u8::MAX);
        self.held += 1;
    }

    /// A new, empty group of `entry` due at `deadline`, with its timer,
    /// appended to the entry's groups (a key's groups are oldest first),
    /// and room for its slots.
    fn add_group(&mut self, id: u32, deadline: EventTime, entry: u32) -> u32 {
        let group = self.groups.insert(Group {
            id,
            entry,
            next: NONE,
        });
        let span = self.span(group);
        if self.records.len() < span.end {
            self.records.resize(span.end, None);
            self.times.resize(span.end, EventTime::from_millis(0));
            self.members.resize(span.end, 0);
        }
        self.deadlines.push(Timer {
            at: deadline,
            id,
            slot: group,
        });
        let first = self.entries[entry].first;
        if first == NONE {
            self.entries[entry].first = group;
            self.waiting += 1;
            self.peak_waiting = self.peak_waiting.max(self.waiting);
        } else {
            let mut last = first;
            while self.groups[last].next != NONE {
                last = self.groups[last].next;
            }
            self.groups[last].next = group;
        }
        group
    }

    /// A new entry for `key`, whose hash is `hash`, with nothing in it yet
    /// and no partition known.
    fn add_entry(&mut self, key: Key, hash: u64) -> u32 {
        let entry = self.entries.insert(Entry {
            key,
            first: NONE,
            memory: NONE,
        });
        if let Some(partition) = self.partitions.get_mut(entry as usize) {
            // A slot reused.
            *partition = NONE;
        }
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index
            .insert_unique(hash, entry, |&e| hasher.hash_one(&entries[e].key));
        entry
    }

    /// Notes that `entry`'s key came from `partition`, if it came from one.
    fn set_partition(&mut self, entry: u32, partition: Option<u32>) {
        let Some(partition) = partition else { return };
        let slot = entry as usize;
        if self.partitions.len() <= slot {
            self.partitions
                .resize(self.entries.items.len().max(slot + 1), NONE);
        }
        self.partitions[slot] = partition;
    }

    /// The partition `entry`'s key came from, if that is known.
    fn partition(&self, entry: u32) -> Option<u32> {
        self.partitions
            .get(entry as usize)
            .copied()
            .filter(|&partition| partition != NONE)
    }

    /// Drops an entry once nothing is left in it.
    fn tidy(&mut self, entry: u32) {
        let Entry { first, memory, .. } = self.entries[entry];
        if first != NONE || memory != NONE {
            return;
        }
        let hash = self.hasher.hash_one(&self.entries[entry].key);
        if let Ok(found) = self.index.find_entry(hash, |&e| e == entry) {
            found.remove();
        }
        self.entries.remove(entry);
    }

    /// Takes `group` out of its key's chain and frees it; returns its
    /// records and times by side (an absent side's time is the first
    /// member's: never shown, but defined).
    fn take_group(&mut self, group: u32) -> (Box<[Option<Record>]>, Box<[EventTime]>) {
        let Group { entry, next, .. } = self.groups[group];
        if self.entries[entry].first == group {
            self.entries[entry].first = next;
            if next == NONE {
                self.waiting -= 1;
            }
        } else {
            let mut previous = self.entries[entry].first;
            while self.groups[previous].next != group {
                previous = self.groups[previous].next;
            }
            self.groups[previous].next = next;
        }
        // Marks the slot's timers stale until it is reused.
        self.groups[group].entry = NONE;
        self.groups.remove(group);
        let span = self.span(group);
        let mut records = no_records(self.sides());
        let mut times = vec![self.times[span.start]; self.sides()].into_boxed_slice();
        for slot in span {
            let Some(record) = self.records[slot].take() else {
                break;
            };
            let side = usize::from(self.members[slot]);
            records[side] = Some(record);
            times[side] = self.times[slot];
        }
        (records, times)
    }

    /// Adds `event` to `group`, due at `due`; emits the group if that
    /// completes it.
    fn join(&mut self, event: Event, group: u32, due: EventTime, out: &mut Vec<Outcome>) {
        let Event {
            side,
            time,
            key,
            record,
            ..
        } = event;
        if let Some(free) = self.span(group).find(|&slot| self.records[slot].is_none()) {
            let deadline = self.deadline(side, time);
            if deadline < due {
                // The old timer goes stale: it no longer matches the deadline.
                self.deadlines.push(Timer {
                    at: deadline,
                    id: self.groups[group].id,
                    slot: group,
                });
            }
            self.put(free, side, time, record);
            return;
        }
        // Every other side is in: the group is complete.
        let latest = self.latest(group).max(time);
        let entry = self.groups[group].entry;
        let (mut records, mut times) = self.take_group(group);
        records[side.0] = Some(record);
        times[side.0] = time;
        self.held -= records.len() - 1;
        let detail = self.judge(&key, &records);
        out.push(Outcome {
            key,
            records,
            times,
            detail,
        });
        let until = latest.saturating_add(self.retention);
        self.remember(entry, until, Prior::Completed, None, out);
        self.tidy(entry);
    }

    /// Remembers a done key until `until`, replacing what was remembered;
    /// late arrivals of a replaced alert are reported late.
    fn remember(
        &mut self,
        entry: u32,
        until: EventTime,
        prior: Prior,
        alert: Option<Box<Alert>>,
        out: &mut Vec<Outcome>,
    ) {
        if self.retention == Duration::ZERO && alert.is_none() {
            return;
        }
        let id = self.id();
        let memory = Memory {
            id,
            until,
            prior,
            alert,
        };
        let old = self.entries[entry].memory;
        let slot = if old == NONE {
            self.memories.insert(memory)
        } else {
            let old_memory = std::mem::replace(&mut self.memories[old], memory);
            self.forget(entry, old_memory, out);
            old
        };
        self.entries[entry].memory = slot;
        self.expiries.push(Timer {
            at: until,
            id,
            slot: entry,
        });
    }

    /// Ends a memory: late arrivals that did not resolve its alert are late.
    fn forget(&mut self, entry: u32, memory: Memory, out: &mut Vec<Outcome>) {
        let Some(alert) = memory.alert else { return };
        for (side, arrived) in alert.arrived.iter().enumerate() {
            if !arrived {
                continue;
            }
            if let Some(record) = alert.records[side].clone() {
                self.held -= 1;
                let (side, time) = (Side(side), alert.times[side]);
                out.push(single(
                    self.sides(),
                    self.entries[entry].key.clone(),
                    side,
                    time,
                    record,
                    Detail::Late { side },
                ));
            }
        }
    }

    /// Fires every deadline, then every end of retention, the watermark has
    /// reached, earliest first.
    fn fire(&mut self, out: &mut Vec<Outcome>) {
        self.fire_until(out, usize::MAX);
    }

    /// As [`fire`](Self::fire), but stops once `out` holds `limit`
    /// outcomes; returns whether it stopped with more due.
    fn fire_until(&mut self, out: &mut Vec<Outcome>, limit: usize) -> bool {
        while let Some(timer) = self.deadlines.peek() {
            if !self.watermark.reached(timer.at) {
                break;
            }
            if out.len() >= limit {
                return true;
            }
            self.deadlines.pop();
            let live = (self.groups.items.get(timer.slot as usize))
                .is_some_and(|g| g.entry != NONE && g.id == timer.id);
            if !live || self.group_deadline(timer.slot) != timer.at {
                continue;
            }
            self.time_out(timer.slot, timer.at, out);
        }
        while let Some(timer) = self.expiries.peek() {
            if !self.watermark.reached(timer.at) {
                break;
            }
            if out.len() >= limit {
                return true;
            }
            self.expiries.pop();
            let entry = timer.slot;
            let memory = self
                .entries
                .items
                .get(entry as usize)
                .map_or(NONE, |e| e.memory);
            if memory == NONE
                || self.memories[memory].id != timer.id
                || self.memories[memory].until != timer.at
            {
                continue;
            }
            self.entries[entry].memory = NONE;
            self.memories.remove(memory);
            let done = std::mem::replace(
                &mut self.memories[memory],
                Memory {
                    id: 0,
                    until: EventTime::from_millis(0),
                    prior: Prior::Completed,
                    alert: None,
                },
            );
            self.forget(entry, done, out);
            self.tidy(entry);
        }
        false
    }

    /// Times `group`, due at `deadline`, out: the alert, then what was too
    /// late for it.
    fn time_out(&mut self, group: u32, deadline: EventTime, out: &mut Vec<Outcome>) {
        let entry = self.groups[group].entry;
        // The side whose own deadline is the group's: the first to give up.
        let expired = self
            .members_of(group)
            .filter(|&(side, time)| self.deadline(side, time) == deadline)
            .map(|(side, _)| side)
            .min()
            .unwrap_or(Side(0));
        let too_late = self.too_late.remove(&group).unwrap_or_default();
        let (records, times) = self.take_group(group);
        self.held -= records.iter().flatten().count() + too_late.len();
        let key = self.entries[entry].key.clone();
        out.push(Outcome {
            key,
            records: records.clone(),
            times: times.clone(),
            detail: Detail::TimedOut { expired },
        });
        let arrived = vec![false; records.len()].into_boxed_slice();
        let alert = Alert {
            expired,
            deadline,
            records,
            times,
            arrived,
        };
        let until = deadline.saturating_add(self.retention);
        self.remember(entry, until, Prior::TimedOut, Some(Box::new(alert)), out);
        // What was too late for the group arrives at its alert now, as it
        // would have after the timeout.
        for event in too_late {
            self.remembered(entry, event, out);
        }
        self.tidy(entry);
    }

    /// An event of a remembered key: a late counterpart of an alert, or a
    /// duplicate.
    fn remembered(&mut self, entry: u32, event: Event, out: &mut Vec<Outcome>) {
        let Event {
            side,
            time,
            key,
            record,
            ..
        } = event;
        let sides = self.sides();
        let slot = self.entries[entry].memory;
        let memory = &mut self.memories[slot];
        let prior = memory.prior;
        let resolving = memory
            .alert
            .as_mut()
            .filter(|alert| alert.records[side.0].is_none());
        let Some(alert) = resolving else {
            out.push(single(
                sides,
                key,
                side,
                time,
                record,
                Detail::Duplicate { side, of: prior },
            ));
            return;
        };
        alert.records[side.0] = Some(record);
        alert.times[side.0] = time;
        alert.arrived[side.0] = true;
        self.held += 1;
        if alert.records.iter().any(Option::is_none) {
            return;
        }
        let Some(alert) = memory.alert.take() else {
            unreachable!("the alert was just completed")
        };
        memory.prior = Prior::Completed;
        let Alert {
            expired,
            deadline,
            records,
            times,
            arrived,
        } = *alert;
        self.held -= arrived.iter().filter(|arrived| **arrived).count();
        out.push(Outcome {
            key,
            records,
            times,
            detail: Detail::Resolved {
                expired,
                deadline,
                arrived,
            },
        });
    }
}

impl Operator for Matcher {
    fn on_event(&mut self, event: Event, out: &mut Vec<Outcome>) {
        let (side, time) = (event.side, event.time);
        let hash = self.hasher.hash_one(&event.key);
        let entry = self.find(&event.key, hash);
        match self.route(entry, side, time) {
            Next::Duplicate => {
                let Event { key, record, .. } = event;
                let detail = Detail::Duplicate {
                    side,
                    of: Prior::Waiting,
                };
                out.push(single(self.sides(), key, side, time, record, detail));
            }
            Next::Join(group, due) => self.join(event, group, due, out),
            Next::TooLate(group) => {
                self.held += 1;
                self.too_late.entry(group).or_default().push(event);
            }
            Next::Remembered(entry) => self.remembered(entry, event, out),
            Next::Late => {
                let Event { key, record, .. } = event;
                out.push(single(
                    self.sides(),
                    key,
                    side,
                    time,
                    record,
                    Detail::Late { side },
                ));
            }
            Next::Open(entry) => self.open(entry, event, hash),
        }
        // A late event may have tightened a group whose deadline the
        // watermark has already passed.
        self.fire(out);
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Vec<Outcome>) {
        self.watermark = self.watermark.max(watermark);
        self.fire(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::encoding::{Decoder, Encoder};

    fn event(side: usize, key: &str, millis: i64) -> Event {
        Event {
            side: Side(side),
            time: EventTime::from_millis(millis),
            key: Key::from(key),
            record: Record::new(vec![Value::from(key)]),
            partition: None,
        }
    }

    fn matcher() -> Matcher {
        Matcher::new(
            [Duration::from_millis(1_000), Duration::from_millis(3_000)],
            Vec::new(),
            Duration::from_millis(10_000),
        )
    }

    /// Outcomes of keys that match, time out, are tightened (leaving a
    /// stale timer) and come again within the retention.
    fn run(mut matcher: Matcher) -> Vec<Outcome> {
        let mut out = Vec::new();
        for n in 0..40_i64 {
            // Every third key waits alone; the others come again.
            let key = if n % 3 == 0 {
                format!("alone{n}")
            } else {
                format!("k{}", n % 13)
            };
            matcher.on_event(event(1, &key, n * 100), &mut out);
            if n % 3 != 0 {
                matcher.on_event(event(0, &key, n * 100 + 7), &mut out);
            }
            matcher.on_watermark(
                Watermark::bounded(EventTime::from_millis(n * 100), Duration::ZERO),
                &mut out,
            );
        }
        matcher.on_end(&mut out);
        out
    }

    #[test]
    fn ids_wrap_without_changing_outcomes() {
        let first = run(matcher());
        let mut wrapping = matcher();
        wrapping.next_id = u32::MAX - 20;
        assert_eq!(run(wrapping), first);
        assert!(
            first
                .iter()
                .any(|o| matches!(o.detail, Detail::TimedOut { .. }))
        );
        assert!(first.iter().any(|o| matches!(o.detail, Detail::Matched)));
        assert!(
            first
                .iter()
                .any(|o| matches!(o.detail, Detail::Duplicate { .. }))
        );
    }

    #[test]
    fn a_state_saved_with_other_waits_is_refused_but_listed() {
        let mut saved = matcher();
        let mut out = Vec::new();
        saved.on_event(event(1, "a", 5_000), &mut out);
        let state = saved.state();
        let mut shorter = Matcher::new(
            [Duration::from_millis(1_000), Duration::from_millis(2_000)],
            Vec::new(),
            Duration::from_millis(10_000),
        );
        let error = shorter.restore_state(&state).expect_err("other waits");
        assert!(error.0.contains("not what the waits give"), "{error:?}");
        let mut listing = Matcher::for_listing(2);
        listing.restore_state(&state).expect("listed");
        assert_eq!(listing.pending_groups(), saved.pending_groups());
        assert_eq!(
            listing.pending_groups()[0].deadline,
            EventTime::from_millis(8_000)
        );
    }

    /// A matcher of three sides: waits of 1, 3 and 5 s, a retention of 20 s.
    fn three() -> Matcher {
        Matcher::new(
            [1_000, 3_000, 5_000].map(Duration::from_millis),
            Vec::new(),
            Duration::from_millis(20_000),
        )
    }

    /// A matcher of three sides holding state of every kind: groups with
    /// one and two members, alerts with late arrivals, counterparts too
    /// late for a group, memories.
    fn three_with_state() -> Matcher {
        let mut matcher = three();
        let mut out = Vec::new();
        for n in 0..30_i64 {
            let key = format!("k{}", n % 7);
            let side = usize::try_from(n % 3).unwrap_or(0);
            matcher.on_event(event(side, &key, n * 700), &mut out);
            if n % 5 == 0 {
                matcher.on_watermark(
                    Watermark::bounded(EventTime::from_millis(n * 700), Duration::ZERO),
                    &mut out,
                );
            }
        }
        // Pending groups of one and of two members.
        for n in 0..6_i64 {
            let key = format!("p{n}");
            matcher.on_event(event(0, &key, 21_000 + n * 10), &mut out);
            if n % 2 == 0 {
                matcher.on_event(event(1, &key, 21_005 + n * 10), &mut out);
            }
        }
        matcher
    }

    #[test]
    fn a_damaged_state_is_an_error_or_a_matcher_that_works_never_a_panic() {
        let saved = three_with_state();
        let mut out = Vec::new();
        let state = saved.state();
        let mut restored = three();
        restored.restore_state(&state).expect("its own state");
        assert_eq!(restored.pending_groups(), saved.pending_groups());
        assert!(saved.pending() > 0 && saved.remembered_keys() > 0);
        let mut seed: u64 = 11;
        let mut next = |below: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(seed >> 33).unwrap_or(0) % below
        };
        let mut damaged = Vec::new();
        for at in 0..state.len() {
            damaged.push(state[..at].to_vec());
            let mut flipped = state.clone();
            flipped[at] ^= 1 << next(8);
            damaged.push(flipped);
            let mut random = state.clone();
            random[at] = u8::try_from(next(256)).unwrap_or(0);
            damaged.push(random);
        }
        let mut read = 0;
        for bytes in damaged {
            let mut matcher = three();
            if matcher.restore_state(&bytes).is_ok() {
                read += 1;
                let _ = matcher.pending_groups();
                matcher.on_event(event(2, "k1", 40_000), &mut out);
                matcher.on_end(&mut out);
                let _ = matcher.state();
            }
            out.clear();
        }
        // Damage to a record's value, a time or an id reads back as other
        // data: those matchers ran on.
        assert!(read > 100, "{read}");
    }

    /// Asserts that `parts` hold between them the pending groups and the
    /// remembered keys of `whole`, each once.
    fn assert_divides(parts: &[Matcher], whole: &Matcher) {
        let mut split: Vec<_> = parts.iter().flat_map(Matcher::pending_groups).collect();
        split.sort_by_cached_key(|group| (group.deadline, group.key.to_string()));
        assert_eq!(split, whole.pending_groups());
        assert_eq!(
            parts.iter().map(Matcher::remembered_keys).sum::<usize>(),
            whole.remembered_keys()
        );
    }

    #[test]
    fn a_state_divided_by_keys_and_put_together_again_runs_on_the_same() {
        let whole = three_with_state();
        let state = whole.state();
        assert!(whole.pending() > 0 && whole.remembered_keys() > 0);
        // Two workers, each with the keys of its own.
        let even = |key: &Key| key.value().to_string().ends_with(['0', '2', '4', '6', '8']);
        let mut halves = [three(), three()];
        for (half, wanted) in halves.iter_mut().zip([true, false]) {
            half.load_keeping(
                &mut Decoder::new(&state),
                StateFormat::CURRENT,
                &mut |key, _| even(key) == wanted,
            )
            .expect("read");
        }
        assert!(halves.iter().all(|half| half.pending() > 0));
        // Of a divided state, only what each half holds is known to have
        // waited at once, not the whole's peak.
        assert!(
            halves
                .iter()
                .all(|half| half.peak_waiting_keys() == half.waiting_keys())
        );
        assert_divides(&halves, &whole);
        // And one again: it goes on as the whole state does.
        let mut joined = three();
        for half in &halves {
            joined
                .load_keeping(
                    &mut Decoder::new(&half.state()),
                    StateFormat::CURRENT,
                    &mut |_, _| true,
                )
                .expect("read");
        }
        assert_eq!(joined.pending_groups(), whole.pending_groups());
        let mut restored = three();
        restored.restore_state(&state).expect("read");
        let go_on = |matcher: &mut Matcher| {
            let mut out = Vec::new();
            for n in 60..90_i64 {
                let key = format!("k{}", n % 17);
                matcher.on_event(
                    event(usize::try_from(n % 3).unwrap_or(0), &key, n * 400),
                    &mut out,
                );
            }
            matcher.on_end(&mut out);
            out
        };
        assert_eq!(go_on(&mut joined), go_on(&mut restored));
        // A key in two states is damage.
        let mut twice = three();
        twice.restore_state(&state).expect("read");
        let error = twice
            .load_keeping(
                &mut Decoder::new(&state),
                StateFormat::CURRENT,
                &mut |_, _| true,
            )
            .expect_err("keys held already");
        assert!(error.to_string().contains("twice"), "{error}");
    }

    /// The partition of the test keys `k0` to `k7`: their digit's rest
    /// by 4.
    fn partition_of(key: &Value) -> u32 {
        let digit = key.to_string().bytes().last().unwrap_or(b'0');
        u32::from(digit - b'0') % 4
    }

    /// A matcher of three sides holding keys `k0` to `k7` from their
    /// partitions, some pending and some remembered.
    fn partitioned() -> Matcher {
        let mut whole = three();
        let mut out = Vec::new();
        for n in 0..60_i64 {
            let key = format!("k{}", n % 8);
            let mut event = event(usize::try_from(n % 3).unwrap_or(0), &key, n * 450);
            event.partition = Some(partition_of(&Value::from(key.as_str())));
            whole.on_event(event, &mut out);
            if n == 40 {
                whole.on_watermark(
                    Watermark::bounded(EventTime::from_millis(n * 450), Duration::ZERO),
                    &mut out,
                );
            }
        }
        whole
    }

    #[test]
    fn a_key_keeps_its_partition_and_a_state_divides_by_partition() {
        let whole = partitioned();
        assert!(whole.pending() > 0 && whole.remembered_keys() > 0);
        let state = whole.state();
        let mut parts = Vec::new();
        for owned in [0..1, 1..4] {
            let mut part = three();
            part.load_keeping(
                &mut Decoder::new(&state),
                StateFormat::CURRENT,
                &mut |key, partition| {
                    assert_eq!(partition, Some(partition_of(key.value())), "{key:?}");
                    owned.contains(&partition_of(key.value()))
                },
            )
            .expect("read");
            assert!(part.pending() > 0, "{owned:?}");
            for group in part.pending_groups() {
                assert_eq!(group.partition, Some(partition_of(&group.key)));
                assert!(owned.contains(&partition_of(&group.key)), "{owned:?}");
            }
            // Its own state says the partitions again.
            let mut again = three();
            again
                .load_keeping(
                    &mut Decoder::new(&part.state()),
                    StateFormat::CURRENT,
                    &mut |key, partition| partition == Some(partition_of(key.value())),
                )
                .expect("read");
            assert_eq!(again.pending_groups(), part.pending_groups());
            parts.push(part);
        }
        assert_divides(&parts, &whole);
    }

    #[test]
    fn a_state_split_by_partition_reads_back_as_the_whole_divided() {
        let whole = partitioned();
        let state = whole.state();
        let (none, divided) = whole.split_by_partition(&state).expect("divided");
        assert_eq!(divided.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3]);
        let mut parts = Vec::new();
        for (partition, part) in divided {
            let mut read = three();
            read.restore_state(&part.state()).expect("read");
            for group in read.pending_groups() {
                assert_eq!(group.partition, Some(partition), "{group:?}");
            }
            // The same as reading the whole keeping the partition's keys.
            let mut kept = three();
            kept.load_keeping(
                &mut Decoder::new(&state),
                StateFormat::CURRENT,
                &mut |_, of| of == Some(partition),
            )
            .expect("read");
            assert_eq!(read.pending_groups(), kept.pending_groups());
            assert_eq!(read.remembered_keys(), kept.remembered_keys());
            parts.push(read);
        }
        assert_divides(&parts, &whole);
        // A partition without keys: a state with none, which reads back.
        let mut empty = three();
        empty.restore_state(&none.state()).expect("read");
        assert_eq!((empty.pending(), empty.remembered_keys()), (0, 0));
        // Two shares of one partition (two workers' keys) make one state.
        let mut halves = Vec::new();
        for half in [0..4, 4..8] {
            let mut part = three();
            part.load_keeping(
                &mut Decoder::new(&state),
                StateFormat::CURRENT,
                &mut |key, _| {
                    let digit = key.value().to_string().bytes().last().unwrap_or(b'0');
                    half.contains(&(digit - b'0'))
                },
            )
            .expect("read");
            halves.push(part.state());
        }
        let shares: Vec<_> = (halves.iter())
            .map(|half| whole.split_by_partition(half).expect("divided").1)
            .collect();
        let mut joined = shares.into_iter().fold(
            std::collections::BTreeMap::<u32, crate::runtime::matcher::Divided>::new(),
            |mut joined, share| {
                for (partition, part) in share {
                    match joined.get_mut(&partition) {
                        Some(into) => into.absorb(&part),
                        None => {
                            joined.insert(partition, part);
                        }
                    }
                }
                joined
            },
        );
        let mut again = Vec::new();
        for part in joined.values_mut() {
            let mut read = three();
            read.restore_state(&part.state()).expect("read");
            again.push(read);
        }
        assert_divides(&again, &whole);
        assert!(whole.split_by_partition(&state[..state.len() - 1]).is_err());
    }

    #[test]
    fn a_state_written_before_keys_had_partitions_reads_back_without_them() {
        let mut matcher = three();
        let mut out = Vec::new();
        matcher.on_event(event(0, "only", 1_000), &mut out);
        let state = matcher.state();
        // Format version 3 wrote a key's groups right after it: the same
        // bytes without the 0 (no partition) that follows the key now.
        let mut key = Encoder::new();
        key.value(&Value::from("only"));
        let key = key.into_bytes();
        let at = state
            .windows(key.len())
            .position(|bytes| bytes == key)
            .expect("the key")
            + key.len();
        assert_eq!(state[at], 0);
        let old = [&state[..at], &state[at + 1..]].concat();
        let mut read = three();
        let mut partitions = Vec::new();
        read.load_keeping(
            &mut Decoder::new(&old),
            StateFormat::of_version(3),
            &mut |_, partition| {
                partitions.push(partition);
                true
            },
        )
        .expect("read");
        assert_eq!(partitions, [None]);
        assert_eq!(read.pending_groups(), matcher.pending_groups());
        // The key's next group, from partition 5, tells its partition.
        let mut later = event(0, "only", 1_000_000);
        later.partition = Some(5);
        read.on_event(later, &mut out);
        let groups = read.pending_groups();
        assert_eq!(groups.len(), 2);
        assert!(groups.iter().all(|group| group.partition == Some(5)));
    }

    #[test]
    fn timers_come_out_in_order_however_they_go_in() {
        let mut state: u64 = 7;
        let mut next = |below: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % below
        };
        let mut timers = Timers::default();
        let mut expected = Vec::new();
        let mut straggled = false;
        let mut time = 0;
        for id in 0..5_000 {
            // Mostly ahead of the last, sometimes a little behind, now and
            // then far behind, or a day ahead (beyond the wheel).
            time += i64::try_from(next(10)).unwrap_or(0);
            let at = match next(20) {
                0 | 1 => time - i64::try_from(next(5_000)).unwrap_or(0),
                2..=5 => time - i64::try_from(next(20)).unwrap_or(0),
                6 => time + 86_400_000 + i64::try_from(next(5_000)).unwrap_or(0),
                7 => time + i64::try_from(next(60_000)).unwrap_or(0),
                _ => time,
            };
            let timer = Timer {
                at: EventTime::from_millis(at),
                id,
                slot: 0,
            };
            timers.push(timer);
            straggled |= !timers.heap.is_empty();
            expected.push(timer);
            if next(4) == 0 {
                // Taking from the front as the watermark would.
                expected.sort();
                assert_eq!(timers.pop(), Some(expected.remove(0)));
            }
        }
        expected.sort();
        assert_eq!(timers.peek(), expected.first().copied());
        let mut popped = Vec::new();
        while let Some(timer) = timers.pop() {
            popped.push(timer);
        }
        assert_eq!(popped, expected);
        assert!(straggled, "the far stragglers went to the heap");
    }
}
