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
//! mismatched if the match condition does not hold, and leaves the state.
//! A group's deadline is the earliest of its members' deadlines; when the
//! watermark reaches it (`watermark >= deadline`) no event that could
//! complete the group can still arrive on time, so it times out, naming the
//! side whose wait ran out and the sides that are missing.
//!
//! Because the watermark trails event time by one millisecond more than the
//! lag, a counterpart whose event time equals the deadline still matches.
//! The result depends only on event times, not on how the inputs interleave,
//! for every event that is not late.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::event::{Event, Key};
use super::operator::{Operator, Outcome};
use crate::config::OutcomeKind;
use crate::expr::{Compiled, Env, Record, Value};
use crate::plan::Side;
use crate::time::{Duration, EventTime, Watermark};

/// A match condition and its canonical text, for mismatch reasons.
#[derive(Debug)]
pub struct Condition {
    /// The compiled condition, a `bool`.
    pub compiled: Compiled,
    /// How it reads: `third_party.status == "success"`.
    pub text: String,
}

/// The match operator's state: pending groups per key and their timers.
#[derive(Debug)]
pub struct Matcher {
    /// How long each side waits, by side.
    waits: Box<[Duration]>,
    condition: Option<Condition>,
    /// The reason given for a condition that evaluates to false.
    condition_failed: Option<Arc<str>>,
    /// Pending groups per key, oldest first; a key with none is removed.
    groups: HashMap<Key, Vec<Group>>,
    /// Each pending group's deadline and id, to its key: the timer index.
    timers: BTreeMap<(EventTime, u64), Key>,
    /// The id the next group gets; ids only grow, so they order groups by age.
    next_id: u64,
    watermark: Watermark,
}

#[derive(Debug)]
struct Group {
    id: u64,
    /// The earliest deadline of the members: when the group times out.
    deadline: EventTime,
    /// The latest event time of the members.
    latest: EventTime,
    /// Each side's record; `None` while the side is missing.
    records: Box<[Option<Record>]>,
    /// Each side's event time, where a record is present.
    times: Box<[EventTime]>,
}

impl Group {
    fn is_complete(&self) -> bool {
        self.records.iter().all(Option::is_some)
    }
}

impl Matcher {
    /// A matcher with one side per wait, and an optional condition that a
    /// complete group must satisfy to be matched.
    pub fn new(waits: impl IntoIterator<Item = Duration>, condition: Option<Condition>) -> Self {
        let condition_failed = condition
            .as_ref()
            .map(|c| Arc::from(format!("`{}` does not hold", c.text)));
        Self {
            waits: waits.into_iter().collect(),
            condition,
            condition_failed,
            groups: HashMap::new(),
            timers: BTreeMap::new(),
            next_id: 0,
            watermark: Watermark::MIN,
        }
    }

    /// How many groups are waiting.
    pub fn pending(&self) -> usize {
        self.timers.len()
    }

    /// How many keys have waiting groups.
    pub fn pending_keys(&self) -> usize {
        self.groups.len()
    }

    /// How many events wait in groups.
    pub fn pending_events(&self) -> usize {
        self.groups
            .values()
            .flatten()
            .map(|group| group.records.iter().flatten().count())
            .sum()
    }

    fn deadline(&self, side: Side, time: EventTime) -> EventTime {
        time.saturating_add(self.waits[side.0])
    }

    /// Whether an event of `side` at `time` may join `group`.
    fn fits(&self, group: &Group, side: Side, time: EventTime) -> bool {
        group.records[side.0].is_none()
            && group.latest.max(time) <= group.deadline.min(self.deadline(side, time))
    }

    fn complete(&self, key: Key, group: Group) -> Outcome {
        let (kind, reason) = match &self.condition {
            None => (OutcomeKind::Matched, None),
            Some(condition) => {
                let env = Env {
                    records: &group.records,
                    key: Some(key.value()),
                    ..Env::default()
                };
                match condition.compiled.eval(&env) {
                    Ok(Value::Bool(true)) => (OutcomeKind::Matched, None),
                    Ok(_) => (OutcomeKind::Mismatched, self.condition_failed.clone()),
                    Err(error) => (
                        OutcomeKind::Mismatched,
                        Some(Arc::from(format!(
                            "`{}` could not be evaluated: {error}",
                            condition.text
                        ))),
                    ),
                }
            }
        };
        Outcome {
            kind,
            key,
            records: group.records,
            times: group.times,
            expired: None,
            reason,
        }
    }

    /// Fires every timer the watermark has reached, earliest deadline first.
    fn fire(&mut self, out: &mut Vec<Outcome>) {
        while let Some(entry) = self.timers.first_entry() {
            let (deadline, id) = *entry.key();
            if !self.watermark.reached(deadline) {
                break;
            }
            let key = entry.remove();
            let Some(groups) = self.groups.get_mut(&key) else {
                continue;
            };
            let Some(index) = groups.iter().position(|group| group.id == id) else {
                continue;
            };
            let group = groups.remove(index);
            if groups.is_empty() {
                self.groups.remove(&key);
            }
            // The side whose own deadline is the group's: the first to give up.
            let expired = (0..group.records.len()).map(Side).find(|side| {
                group.records[side.0].is_some()
                    && self.deadline(*side, group.times[side.0]) == group.deadline
            });
            out.push(Outcome {
                kind: OutcomeKind::TimedOut,
                key,
                records: group.records,
                times: group.times,
                expired,
                reason: None,
            });
        }
    }
}

impl Operator for Matcher {
    fn on_event(&mut self, event: Event, out: &mut Vec<Outcome>) {
        let joined = self.groups.get(&event.key).and_then(|groups| {
            groups
                .iter()
                .position(|group| self.fits(group, event.side, event.time))
        });
        match joined {
            Some(index) => self.join(event, index, out),
            None => self.open(event, out),
        }
        // A late event may have started or tightened a group whose deadline
        // the watermark has already passed.
        self.fire(out);
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Vec<Outcome>) {
        self.watermark = self.watermark.max(watermark);
        self.fire(out);
    }
}

impl Matcher {
    /// Adds `event` to the key's group at `index`; emits the group if that
    /// completes it.
    fn join(&mut self, event: Event, index: usize, out: &mut Vec<Outcome>) {
        let Event {
            side,
            time,
            key,
            record,
        } = event;
        let deadline = self.deadline(side, time);
        let Some(groups) = self.groups.get_mut(&key) else {
            unreachable!("`on_event` found a group for this key")
        };
        let group = &mut groups[index];
        group.records[side.0] = Some(record);
        group.times[side.0] = time;
        group.latest = group.latest.max(time);
        if deadline < group.deadline {
            if let Some(timer_key) = self.timers.remove(&(group.deadline, group.id)) {
                self.timers.insert((deadline, group.id), timer_key);
            }
            group.deadline = deadline;
        }
        if !group.is_complete() {
            return;
        }
        let group = groups.remove(index);
        if groups.is_empty() {
            self.groups.remove(&key);
        }
        self.timers.remove(&(group.deadline, group.id));
        out.push(self.complete(key, group));
    }

    /// Starts a new group with `event`, and its timer.
    fn open(&mut self, event: Event, out: &mut Vec<Outcome>) {
        let Event {
            side,
            time,
            key,
            record,
        } = event;
        let sides = self.waits.len();
        let mut records = vec![None; sides].into_boxed_slice();
        records[side.0] = Some(record);
        let id = self.next_id;
        self.next_id += 1;
        let group = Group {
            id,
            deadline: self.deadline(side, time),
            latest: time,
            records,
            times: vec![time; sides].into_boxed_slice(),
        };
        if group.is_complete() {
            // Only with a single side, which the planner rejects; the rule
            // still holds.
            out.push(self.complete(key, group));
            return;
        }
        self.timers.insert((group.deadline, id), key.clone());
        self.groups.entry(key).or_default().push(group);
    }
}
