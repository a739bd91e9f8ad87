//! Event-time semantics of the match operator, driven directly: no tokio,
//! no clock. Every step is checked against the accounting invariant: each
//! input event is in exactly one outcome, or still pending.

use runner::config::OutcomeKind;
use runner::expr::{self, Record, RecordType, Scope, SideScope, Type, Value};
use runner::plan::Side;
use runner::runtime::{Condition, Event, Key, Matcher, Operator, Outcome, Watermarks};
use runner::time::{Duration, EventTime, Watermark};
use std::fmt::Write as _;
use std::sync::Arc;

/// A matcher and its watermarks, fed event by event like the driver does.
struct Harness {
    matcher: Matcher,
    watermarks: Watermarks,
    received: usize,
    outcomes: Vec<Outcome>,
}

impl Harness {
    /// Sides with these waits and lags, in milliseconds.
    fn new(waits: &[i64], lags: &[i64]) -> Self {
        Self::with_condition(waits, lags, None)
    }

    fn with_condition(waits: &[i64], lags: &[i64], condition: Option<Condition>) -> Self {
        Self {
            matcher: Matcher::new(waits.iter().map(|&w| Duration::from_millis(w)), condition),
            watermarks: Watermarks::new(lags.iter().map(|&l| Duration::from_millis(l))),
            received: 0,
            outcomes: Vec::new(),
        }
    }

    /// An event of `side` for `key` at `time`; returns what it caused.
    fn event(&mut self, side: usize, key: &str, time: i64) -> Vec<String> {
        self.event_with(side, key, time, Record::new(vec![Value::Int(time)]))
    }

    fn event_with(&mut self, side: usize, key: &str, time: i64, record: Record) -> Vec<String> {
        let before = self.outcomes.len();
        let time = EventTime::from_millis(time);
        self.received += 1;
        self.matcher.on_event(
            Event {
                side: Side(side),
                time,
                key: Key::from(key),
                record,
            },
            &mut self.outcomes,
        );
        if let Some(watermark) = self.watermarks.observe(side, time) {
            self.matcher.on_watermark(watermark, &mut self.outcomes);
        }
        self.check();
        self.outcomes[before..].iter().map(describe).collect()
    }

    /// The end of `side`'s input.
    fn finish(&mut self, side: usize) -> Vec<String> {
        let before = self.outcomes.len();
        if let Some(watermark) = self.watermarks.finish(side) {
            self.matcher.on_watermark(watermark, &mut self.outcomes);
        }
        self.check();
        self.outcomes[before..].iter().map(describe).collect()
    }

    /// The end of all input.
    fn end(&mut self) -> Vec<String> {
        let before = self.outcomes.len();
        self.matcher.on_end(&mut self.outcomes);
        self.check();
        assert_eq!(
            self.matcher.pending(),
            0,
            "state is left behind after the end"
        );
        assert_eq!(
            self.matcher.pending_keys(),
            0,
            "keys are left behind after the end"
        );
        self.outcomes[before..].iter().map(describe).collect()
    }

    fn check(&self) {
        let accounted: usize = self.outcomes.iter().map(Outcome::events).sum();
        assert_eq!(
            accounted + self.matcher.pending_events(),
            self.received,
            "events lost or counted twice: {} in outcomes, {} pending, {} received",
            accounted,
            self.matcher.pending_events(),
            self.received
        );
    }
}

/// `matched k [1000,1500]`, `timed_out k [1000,-] expired 0`.
fn describe(outcome: &Outcome) -> String {
    let times: Vec<String> = outcome
        .records
        .iter()
        .zip(outcome.times.iter())
        .map(|(record, time)| {
            record
                .as_ref()
                .map_or("-".to_string(), |_| time.millis().to_string())
        })
        .collect();
    let mut text = format!(
        "{} {} [{}]",
        outcome.kind.name(),
        outcome.key.value(),
        times.join(",")
    );
    if let Some(Side(side)) = outcome.expired {
        let _ = write!(text, " expired {side}");
    }
    text
}

fn no_outcome() -> Vec<String> {
    Vec::new()
}

#[test]
fn out_of_order_input_within_the_lag_still_matches() {
    let mut h = Harness::new(&[1_000, 1_000], &[2_000, 0]);
    h.event(1, "c", 9_000);
    h.event(1, "d", 11_000);
    assert_eq!(
        h.event(0, "b", 12_000),
        no_outcome(),
        "the app's lag keeps c's deadline (10s) ahead of the watermark"
    );
    assert_eq!(h.event(0, "c", 8_500), ["matched c [8500,9000]"]);
}

#[test]
fn input_later_than_the_lag_finds_its_counterpart_timed_out() {
    // The same input with no lag: the watermark passes c's deadline before
    // the app's c arrives, so the platform's c times out, and the late app
    // event, alone, times out at once.
    let mut h = Harness::new(&[1_000, 1_000], &[0, 0]);
    h.event(1, "c", 9_000);
    h.event(1, "d", 11_000);
    assert_eq!(h.event(0, "b", 12_000), ["timed_out c [-,9000] expired 1"]);
    assert_eq!(h.event(0, "c", 8_500), ["timed_out c [8500,-] expired 0"]);
}

#[test]
fn a_timer_fires_only_when_the_slower_input_advances() {
    let mut h = Harness::new(&[5_000, 5_000], &[0, 0]);
    h.event(0, "k1", 1_000);
    assert_eq!(
        h.event(0, "k2", 20_000),
        no_outcome(),
        "the platform has seen nothing yet"
    );
    assert_eq!(h.watermarks.current(), Watermark::MIN);
    assert_eq!(
        h.event(1, "k2", 20_500),
        [
            "matched k2 [20000,20500]",
            "timed_out k1 [1000,-] expired 0"
        ]
    );
}

#[test]
fn both_sides_at_the_same_timestamp_match() {
    let mut h = Harness::new(&[0, 0], &[0, 0]);
    h.event(0, "k", 1_000);
    assert_eq!(h.event(1, "k", 1_000), ["matched k [1000,1000]"]);
}

#[test]
fn a_counterpart_exactly_at_the_deadline_matches() {
    let mut h = Harness::new(&[5_000, 5_000], &[0, 0]);
    h.event(0, "k", 1_000);
    assert_eq!(h.event(1, "k", 6_000), ["matched k [1000,6000]"]);
}

#[test]
fn a_counterpart_one_millisecond_after_the_deadline_does_not() {
    let mut h = Harness::new(&[5_000, 5_000], &[0, 0]);
    h.event(0, "k", 1_000);
    h.finish(0);
    assert_eq!(h.event(1, "k", 6_001), ["timed_out k [1000,-] expired 0"]);
    assert_eq!(h.end(), ["timed_out k [-,6001] expired 1"]);
}

#[test]
fn the_watermark_reaching_the_deadline_fires_the_timer() {
    // The rule is `watermark >= deadline`, and the watermark trails the
    // newest event by the lag plus one millisecond.
    let mut h = Harness::new(&[5_000, 5_000], &[0, 0]);
    h.event(0, "k", 1_000);
    h.finish(0);
    assert_eq!(
        h.event(1, "x", 6_000),
        no_outcome(),
        "watermark 5999 has not reached 6000"
    );
    assert_eq!(
        h.event(1, "y", 6_001),
        ["timed_out k [1000,-] expired 0"],
        "watermark 6000 has"
    );
}

#[test]
fn the_end_of_input_fires_every_timer_earliest_first() {
    let mut h = Harness::new(&[3_600_000, 3_600_000], &[5_000, 0]);
    h.event(0, "a", 3_000);
    h.event(0, "b", 1_000);
    h.event(0, "c", 2_000);
    h.event(1, "d", 100_000);
    assert_eq!(
        h.end(),
        [
            "timed_out b [1000,-] expired 0",
            "timed_out c [2000,-] expired 0",
            "timed_out a [3000,-] expired 0",
            "timed_out d [-,100000] expired 1",
        ]
    );
}

#[test]
fn an_empty_source_holds_nothing_back() {
    let mut h = Harness::new(&[5_000, 5_000], &[0, 0]);
    assert_eq!(h.finish(1), no_outcome());
    h.event(0, "a", 1_000);
    h.event(0, "b", 2_000);
    assert_eq!(
        h.event(0, "c", 9_000),
        [
            "timed_out a [1000,-] expired 0",
            "timed_out b [2000,-] expired 0"
        ],
        "the app's own watermark decides once the other input has ended"
    );
}

#[test]
fn a_source_that_never_ends_and_never_speaks_holds_everything_back() {
    let mut h = Harness::new(&[5_000, 5_000], &[0, 0]);
    h.event(0, "a", 1_000);
    assert_eq!(h.event(0, "c", 90_000), no_outcome());
    assert_eq!(
        h.end(),
        [
            "timed_out a [1000,-] expired 0",
            "timed_out c [90000,-] expired 0"
        ]
    );
}

#[test]
fn a_key_that_completes_starts_afresh() {
    let mut h = Harness::new(&[5_000, 5_000], &[0, 0]);
    h.event(0, "k", 1_000);
    assert_eq!(h.event(1, "k", 2_000), ["matched k [1000,2000]"]);
    assert_eq!(
        h.matcher.pending_keys(),
        0,
        "a completed key leaves no state"
    );
    h.event(0, "k", 10_000);
    assert_eq!(h.event(1, "k", 11_000), ["matched k [10000,11000]"]);
    h.event(0, "k", 30_000);
    assert_eq!(h.end(), ["timed_out k [30000,-] expired 0"]);
}

#[test]
fn a_second_event_of_a_waiting_side_is_kept_not_dropped() {
    let mut h = Harness::new(&[5_000, 5_000], &[0, 0]);
    h.event(0, "k", 1_000);
    h.event(0, "k", 1_200);
    assert_eq!(h.matcher.pending_events(), 2);
    assert_eq!(
        h.event(1, "k", 2_000),
        ["matched k [1000,2000]"],
        "the oldest group takes the counterpart"
    );
    assert_eq!(h.end(), ["timed_out k [1200,-] expired 0"]);
}

#[test]
fn three_sides_time_out_at_the_earliest_wait_and_name_what_is_missing() {
    // Orders wait 10s, payments 2s, settlements 60s.
    let mut h = Harness::new(&[10_000, 2_000, 60_000], &[0, 0, 0]);
    h.event(0, "o", 1_000);
    h.event(1, "o", 1_500);
    h.event(2, "x", 4_000);
    h.event(0, "x", 4_000);
    assert_eq!(
        h.event(1, "x", 4_000),
        [
            "matched x [4000,4000,4000]",
            "timed_out o [1000,1500,-] expired 1"
        ],
        "every input is past 3.5s, when the payment gave up; the order would have waited until 11s"
    );
    assert_eq!(h.end(), no_outcome());
}

#[test]
fn three_sides_match_when_all_arrive_in_time() {
    let mut h = Harness::new(&[10_000, 10_000, 10_000], &[0, 0, 0]);
    h.event(2, "o", 9_000);
    h.event(0, "o", 1_000);
    assert_eq!(h.event(1, "o", 5_000), ["matched o [1000,5000,9000]"]);
}

#[test]
fn an_event_outside_the_group_window_starts_its_own_group() {
    // o@1000 waits until 6000 and p@7000 waits until 12000: 7000 is past
    // o's deadline, so they never form a group, whatever their order.
    for order in [[0, 1], [1, 0]] {
        let mut h = Harness::new(&[5_000, 5_000], &[10_000, 10_000]);
        for side in order {
            h.event(side, "k", if side == 0 { 1_000 } else { 7_000 });
        }
        assert_eq!(
            h.end(),
            [
                "timed_out k [1000,-] expired 0",
                "timed_out k [-,7000] expired 1"
            ]
        );
    }
}

fn amount_condition() -> Condition {
    let layout = Arc::new(RecordType {
        name: "side".into(),
        fields: vec![runner::expr::Field {
            name: "amount".into(),
            ty: Type::INT,
        }],
    });
    let sides = ["app", "bank"].map(|name| SideScope {
        name: name.into(),
        layout: layout.clone(),
        nullable: false,
    });
    let text = "app.amount == bank.amount and 100 / bank.amount > 0";
    let parsed = expr::parse(text).unwrap();
    let typed = expr::check(&parsed, &Scope::outcome(&sides, Type::STRING, false)).unwrap();
    Condition {
        compiled: expr::compile(&typed),
        text: parsed.to_string(),
    }
}

#[test]
fn a_failed_condition_is_a_mismatch_with_its_reason() {
    let mut h = Harness::with_condition(&[5_000, 5_000], &[0, 0], Some(amount_condition()));
    let amount = |n: i64| Record::new(vec![Value::Int(n)]);
    h.event_with(0, "a", 1_000, amount(5));
    h.event_with(1, "a", 1_000, amount(5));
    h.event_with(0, "b", 1_000, amount(5));
    h.event_with(1, "b", 1_000, amount(6));
    h.event_with(0, "z", 1_000, amount(0));
    h.event_with(1, "z", 1_000, amount(0));
    let kinds: Vec<(OutcomeKind, Option<&str>)> = h
        .outcomes
        .iter()
        .map(|outcome| (outcome.kind, outcome.reason.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            (OutcomeKind::Matched, None),
            (
                OutcomeKind::Mismatched,
                Some("`app.amount == bank.amount and 100 / bank.amount > 0` does not hold")
            ),
            (
                OutcomeKind::Mismatched,
                Some(
                    "`app.amount == bank.amount and 100 / bank.amount > 0` could not be evaluated: division by zero"
                )
            ),
        ]
    );
}

/// A small deterministic generator, so the property test needs no crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

#[test]
fn outcomes_do_not_depend_on_how_inputs_interleave_within_the_lag() {
    const LAG: i64 = 3_000;
    for seed in 0..200 {
        let mut rng = Lcg(seed);
        // Two inputs, each in event-time order except for swaps within LAG.
        let mut inputs: [Vec<(String, i64)>; 2] = [Vec::new(), Vec::new()];
        for key in 0..30 {
            let time = i64::try_from(rng.next(60_000)).unwrap();
            for (side, input) in inputs.iter_mut().enumerate() {
                if rng.next(5) > 0 {
                    let jitter = i64::try_from(rng.next(8_000)).unwrap();
                    input.push((
                        format!("k{key}"),
                        time + jitter + i64::try_from(side).unwrap(),
                    ));
                }
            }
        }
        for input in &mut inputs {
            input.sort_by_key(|(_, time)| *time);
            for i in 1..input.len() {
                if input[i].1 - input[i - 1].1 < LAG && rng.next(2) == 0 {
                    input.swap(i - 1, i);
                }
            }
        }
        let mut results = Vec::new();
        for interleaving in 0..4 {
            let mut order = Lcg(seed * 31 + interleaving);
            let mut h = Harness::new(&[5_000, 5_000], &[LAG, LAG]);
            let mut next = [0, 0];
            while next[0] < inputs[0].len() || next[1] < inputs[1].len() {
                let side = if next[0] == inputs[0].len() {
                    1
                } else if next[1] == inputs[1].len() {
                    0
                } else {
                    // Take either input, as long as neither runs more than
                    // the lag ahead of the other: beyond that an event would
                    // be late, and lateness is allowed to change outcomes.
                    let (a, b) = (inputs[0][next[0]].1, inputs[1][next[1]].1);
                    if a > b + LAG / 2 {
                        1
                    } else if b > a + LAG / 2 {
                        0
                    } else {
                        usize::try_from(order.next(2)).unwrap()
                    }
                };
                let (key, time) = &inputs[side][next[side]];
                next[side] += 1;
                h.event(side, key, *time);
                if next[side] == inputs[side].len() {
                    h.finish(side);
                }
            }
            h.end();
            let mut outcomes: Vec<String> = h.outcomes.iter().map(describe).collect();
            outcomes.sort();
            results.push(outcomes);
        }
        assert!(
            results.windows(2).all(|pair| pair[0] == pair[1]),
            "seed {seed}: {results:#?}"
        );
    }
}
