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
//! how the inputs interleave, for every event that is not late.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::event::{Event, Key};
use super::operator::{Detail, Operator, Outcome, Prior};
use crate::expr::{Compiled, Env, Record, Value};
use crate::plan::Side;
use crate::time::{Duration, EventTime, Watermark};

/// A named rule a complete match must satisfy.
#[derive(Debug)]
pub struct Rule {
    /// Its name, as a mismatch reports it.
    pub name: Arc<str>,
    /// The compiled rule, a `bool`.
    pub compiled: Compiled,
}

/// The match operator's state: per key, its pending groups and what is
/// remembered of it after it is done; and the timers of both.
#[derive(Debug)]
pub struct Matcher {
    /// How long each side waits, by side.
    waits: Box<[Duration]>,
    rules: Vec<Rule>,
    /// How long, in event time, a done key is remembered.
    retention: Duration,
    /// State per key; a key with nothing pending or remembered is removed.
    keys: HashMap<Key, KeyState>,
    /// Each pending group's deadline and id, to its key.
    deadlines: BTreeMap<(EventTime, u64), Key>,
    /// Where each remembered key's retention ends, with its id, to its key.
    expiries: BTreeMap<(EventTime, u64), Key>,
    /// The id the next group or memory gets; ids only grow.
    next_id: u64,
    watermark: Watermark,
    /// Events held: in pending groups, and late arrivals of alerts.
    held: usize,
    /// Keys with a pending group.
    waiting: usize,
    /// The most keys that had a pending group at once.
    peak_waiting: usize,
}

#[derive(Debug, Default)]
struct KeyState {
    /// Pending groups, oldest first.
    groups: Vec<Group>,
    /// What is remembered of the key's last completed or timed-out group.
    done: Option<Done>,
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
    /// Counterparts too late for the group, in event time, but within the
    /// retention after its deadline: they resolve its timeout once it fires.
    too_late: Vec<Event>,
}

/// A key remembered after its group completed or timed out.
#[derive(Debug)]
struct Done {
    id: u64,
    /// The end of the retention, in event time.
    until: EventTime,
    prior: Prior,
    /// For a timeout not yet resolved: the alert and what arrived since.
    alert: Option<Alert>,
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

/// An outcome about one event, among `sides` sides.
fn single(
    sides: usize,
    key: Key,
    side: Side,
    time: EventTime,
    record: Record,
    detail: Detail,
) -> Outcome {
    let mut records = vec![None; sides].into_boxed_slice();
    records[side.0] = Some(record);
    Outcome {
        key,
        records,
        times: vec![time; sides].into_boxed_slice(),
        detail,
    }
}

impl Group {
    fn is_complete(&self) -> bool {
        self.records.iter().all(Option::is_some)
    }

    fn events(&self) -> usize {
        self.records.iter().flatten().count()
    }
}

impl Matcher {
    /// A matcher with one side per wait, the rules a complete group must
    /// satisfy, and how long a done key is remembered.
    pub fn new(
        waits: impl IntoIterator<Item = Duration>,
        rules: Vec<Rule>,
        retention: Duration,
    ) -> Self {
        Self {
            waits: waits.into_iter().collect(),
            rules,
            retention,
            keys: HashMap::new(),
            deadlines: BTreeMap::new(),
            expiries: BTreeMap::new(),
            next_id: 0,
            watermark: Watermark::MIN,
            held: 0,
            waiting: 0,
            peak_waiting: 0,
        }
    }

    /// How many keys have a group waiting for its other sides.
    pub fn waiting_keys(&self) -> usize {
        self.waiting
    }

    /// The most keys that had a group waiting at once.
    pub fn peak_waiting_keys(&self) -> usize {
        self.peak_waiting
    }

    /// The earliest event time at which a timer fires: a group's deadline
    /// or the end of a key's retention. The watermark must pass it.
    pub fn next_timer(&self) -> Option<EventTime> {
        let deadline = self.deadlines.first_key_value().map(|((time, _), _)| *time);
        let expiry = self.expiries.first_key_value().map(|((time, _), _)| *time);
        match (deadline, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The watermark the operator has reached.
    pub fn watermark(&self) -> Watermark {
        self.watermark
    }

    /// How many groups are waiting.
    pub fn pending(&self) -> usize {
        self.deadlines.len()
    }

    /// How many keys have state: pending groups or a memory.
    pub fn pending_keys(&self) -> usize {
        self.keys.len()
    }

    /// How many events are held: waiting in groups, or arrived late for an
    /// alert not yet resolved.
    pub fn pending_events(&self) -> usize {
        self.held
    }

    fn deadline(&self, side: Side, time: EventTime) -> EventTime {
        time.saturating_add(self.waits[side.0])
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Whether an event of `side` at `time` may join `group`.
    fn fits(&self, group: &Group, side: Side, time: EventTime) -> bool {
        group.records[side.0].is_none()
            && group.latest.max(time) <= group.deadline.min(self.deadline(side, time))
    }

    /// The outcome of a complete group: the rules that fail, if any.
    fn judge(&self, key: &Key, records: &[Option<Record>]) -> Detail {
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

    /// Remembers a done key until `until`, replacing what was remembered;
    /// late arrivals of a replaced alert are reported late.
    fn remember(
        &mut self,
        key: &Key,
        until: EventTime,
        prior: Prior,
        alert: Option<Alert>,
        out: &mut Vec<Outcome>,
    ) {
        if self.retention == Duration::ZERO && alert.is_none() {
            return;
        }
        let id = self.id();
        let state = self.keys.entry(key.clone()).or_default();
        let old = state.done.replace(Done {
            id,
            until,
            prior,
            alert,
        });
        self.expiries.insert((until, id), key.clone());
        if let Some(old) = old {
            self.expiries.remove(&(old.until, old.id));
            self.forget(key, old, out);
        }
    }

    /// Ends a memory: late arrivals that did not resolve its alert are late.
    fn forget(&mut self, key: &Key, done: Done, out: &mut Vec<Outcome>) {
        let Some(alert) = done.alert else { return };
        for (side, arrived) in alert.arrived.iter().enumerate() {
            if !arrived {
                continue;
            }
            if let Some(record) = alert.records[side].clone() {
                self.held -= 1;
                let (side, time) = (Side(side), alert.times[side]);
                out.push(single(
                    self.waits.len(),
                    key.clone(),
                    side,
                    time,
                    record,
                    Detail::Late { side },
                ));
            }
        }
    }

    /// Drops a key's state once nothing is left in it.
    fn tidy(&mut self, key: &Key) {
        if self
            .keys
            .get(key)
            .is_some_and(|state| state.groups.is_empty() && state.done.is_none())
        {
            self.keys.remove(key);
        }
    }

    /// Fires every deadline, then every end of retention, the watermark has
    /// reached, earliest first.
    fn fire(&mut self, out: &mut Vec<Outcome>) {
        while let Some(entry) = self.deadlines.first_entry() {
            let (deadline, id) = *entry.key();
            if !self.watermark.reached(deadline) {
                break;
            }
            let key = entry.remove();
            let Some(mut group) = self.take_group(&key, id) else {
                continue;
            };
            self.held -= group.events() + group.too_late.len();
            let too_late = std::mem::take(&mut group.too_late);
            // The side whose own deadline is the group's: the first to give up.
            let expired = (0..group.records.len())
                .map(Side)
                .find(|side| {
                    group.records[side.0].is_some()
                        && self.deadline(*side, group.times[side.0]) == group.deadline
                })
                .unwrap_or(Side(0));
            out.push(Outcome {
                key: key.clone(),
                records: group.records.clone(),
                times: group.times.clone(),
                detail: Detail::TimedOut { expired },
            });
            let arrived = vec![false; group.records.len()].into_boxed_slice();
            let alert = Alert {
                expired,
                deadline,
                records: group.records,
                times: group.times,
                arrived,
            };
            let until = deadline.saturating_add(self.retention);
            self.remember(&key, until, Prior::TimedOut, Some(alert), out);
            // What was too late for the group arrives at its alert now, as it
            // would have after the timeout.
            for event in too_late {
                self.remembered(event, out);
            }
            self.tidy(&key);
        }
        while let Some(entry) = self.expiries.first_entry() {
            let (until, id) = *entry.key();
            if !self.watermark.reached(until) {
                break;
            }
            let key = entry.remove();
            let done = self
                .keys
                .get_mut(&key)
                .and_then(|state| state.done.take_if(|done| done.id == id));
            if let Some(done) = done {
                self.forget(&key, done, out);
            }
            self.tidy(&key);
        }
    }

    fn take_group(&mut self, key: &Key, id: u64) -> Option<Group> {
        let groups = &mut self.keys.get_mut(key)?.groups;
        let index = groups.iter().position(|group| group.id == id)?;
        let group = groups.remove(index);
        if groups.is_empty() {
            self.waiting -= 1;
        }
        Some(group)
    }

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
        self.held += 1;
        let Some(state) = self.keys.get_mut(&key) else {
            unreachable!("`on_event` found a group for this key")
        };
        let group = &mut state.groups[index];
        group.records[side.0] = Some(record);
        group.times[side.0] = time;
        group.latest = group.latest.max(time);
        if deadline < group.deadline {
            if let Some(timer_key) = self.deadlines.remove(&(group.deadline, group.id)) {
                self.deadlines.insert((deadline, group.id), timer_key);
            }
            group.deadline = deadline;
        }
        if !group.is_complete() {
            return;
        }
        let group = state.groups.remove(index);
        if state.groups.is_empty() {
            self.waiting -= 1;
        }
        self.deadlines.remove(&(group.deadline, group.id));
        self.held -= group.events();
        let detail = self.judge(&key, &group.records);
        let until = group.latest.saturating_add(self.retention);
        out.push(Outcome {
            key: key.clone(),
            records: group.records,
            times: group.times,
            detail,
        });
        self.remember(&key, until, Prior::Completed, None, out);
        self.tidy(&key);
    }

    /// Starts a new group with `event`, and its timer.
    fn open(&mut self, event: Event) {
        let Event {
            side,
            time,
            key,
            record,
        } = event;
        let sides = self.waits.len();
        let mut records = vec![None; sides].into_boxed_slice();
        records[side.0] = Some(record);
        let id = self.id();
        let group = Group {
            id,
            deadline: self.deadline(side, time),
            latest: time,
            records,
            times: vec![time; sides].into_boxed_slice(),
            too_late: Vec::new(),
        };
        self.held += 1;
        self.deadlines.insert((group.deadline, id), key.clone());
        let groups = &mut self.keys.entry(key).or_default().groups;
        if groups.is_empty() {
            self.waiting += 1;
            self.peak_waiting = self.peak_waiting.max(self.waiting);
        }
        groups.push(group);
    }

    /// An event of a remembered key: a late counterpart of an alert, or a
    /// duplicate.
    fn remembered(&mut self, event: Event, out: &mut Vec<Outcome>) {
        let Event {
            side,
            time,
            key,
            record,
        } = event;
        let sides = self.waits.len();
        let Some(done) = self
            .keys
            .get_mut(&key)
            .and_then(|state| state.done.as_mut())
        else {
            unreachable!("`on_event` found a memory for this key")
        };
        let prior = done.prior;
        let resolving = done
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
        let Some(alert) = done.alert.take() else {
            unreachable!("the alert was just completed")
        };
        done.prior = Prior::Completed;
        self.held -= alert.arrived.iter().filter(|arrived| **arrived).count();
        out.push(Outcome {
            key,
            records: alert.records,
            times: alert.times,
            detail: Detail::Resolved {
                expired: alert.expired,
                deadline: alert.deadline,
                arrived: alert.arrived,
            },
        });
    }
}

/// Where an arriving event goes.
enum Next {
    /// The same side of a group still waiting, in event time.
    Duplicate,
    /// Into the group at this index.
    Join(usize),
    /// Held with the group at this index, to resolve its timeout.
    TooLate(usize),
    /// Against a key done within the retention.
    Remembered,
    /// Behind the watermark, with nothing to join or resolve.
    Late,
    /// A new group.
    Open,
}

impl Operator for Matcher {
    fn on_event(&mut self, event: Event, out: &mut Vec<Outcome>) {
        let (side, time) = (event.side, event.time);

        let state = self.keys.get(&event.key);
        let retention = self.retention;
        let waiting = state.and_then(|state| {
            state.groups.iter().enumerate().find_map(|(index, group)| {
                let too_late =
                    time > group.deadline && time <= group.deadline.saturating_add(retention);
                if group.records[side.0].is_some() || group.too_late.iter().any(|e| e.side == side)
                {
                    // Still waiting, in event time: this is the same event again.
                    (time <= group.deadline || too_late).then_some(Next::Duplicate)
                } else if self.fits(group, side, time) {
                    Some(Next::Join(index))
                } else {
                    // Past the deadline but within the retention: it will
                    // resolve the timeout, whenever that fires.
                    too_late.then_some(Next::TooLate(index))
                }
            })
        });
        let next = waiting.unwrap_or_else(|| {
            if state
                .and_then(|state| state.done.as_ref())
                .is_some_and(|done| time <= done.until)
            {
                Next::Remembered
            } else if self.watermark.is_late(time) {
                Next::Late
            } else {
                Next::Open
            }
        });
        match next {
            Next::Duplicate => {
                let Event { key, record, .. } = event;
                let detail = Detail::Duplicate {
                    side,
                    of: Prior::Waiting,
                };
                out.push(single(self.waits.len(), key, side, time, record, detail));
            }
            Next::Join(index) => self.join(event, index, out),
            Next::TooLate(index) => {
                self.held += 1;
                if let Some(state) = self.keys.get_mut(&event.key) {
                    state.groups[index].too_late.push(event);
                }
            }
            Next::Remembered => self.remembered(event, out),
            Next::Late => {
                let Event { key, record, .. } = event;
                out.push(single(
                    self.waits.len(),
                    key,
                    side,
                    time,
                    record,
                    Detail::Late { side },
                ));
            }
            Next::Open => self.open(event),
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
