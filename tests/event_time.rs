//! Event-time semantics of the match operator, driven directly: no tokio,
//! no clock. Every step is checked against the accounting invariant: each
//! input event is in exactly one outcome, or still pending.

use runner::expr::{self, Record, RecordType, Scope, SideScope, Type, Value};
use runner::plan::Side;
use runner::runtime::{Detail, Event, Key, Matcher, Operator, Outcome, Rule, Watermarks};
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
    /// Sides with these waits and lags, in milliseconds; no rules and no
    /// retention, so a done key is forgotten at once.
    fn new(waits: &[i64], lags: &[i64]) -> Self {
        Self::with(waits, lags, Vec::new(), 0)
    }

    /// With rules, and a retention in milliseconds.
    fn with(waits: &[i64], lags: &[i64], rules: Vec<Rule>, retention: i64) -> Self {
        Self {
            matcher: Matcher::new(
                waits.iter().map(|&w| Duration::from_millis(w)),
                rules,
                Duration::from_millis(retention),
            ),
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
                partition: None,
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
        let accounted: usize = self.outcomes.iter().map(Outcome::inputs).sum();
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

/// `matched k [1000,1500]`, `timed_out k [1000,-] side 0`,
/// `mismatched k [1,1] failed amount`.
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
        outcome.kind().name(),
        outcome.key.value(),
        times.join(",")
    );
    match &outcome.detail {
        Detail::TimedOut { expired } => {
            let _ = write!(text, " expired {}", expired.0);
        }
        Detail::Duplicate { side, of } => {
            let _ = write!(text, " side {} of {}", side.0, of.name());
        }
        Detail::Late { side } => {
            let _ = write!(text, " side {}", side.0);
        }
        Detail::Resolved {
            expired,
            deadline,
            arrived,
        } => {
            let arrived: Vec<String> = arrived
                .iter()
                .enumerate()
                .filter(|(_, late)| **late)
                .map(|(side, _)| side.to_string())
                .collect();
            let _ = write!(
                text,
                " expired {} deadline {} arrived {}",
                expired.0,
                deadline.millis(),
                arrived.join(",")
            );
        }
        Detail::Mismatched { failed } => {
            let failed: Vec<&str> = failed.iter().map(AsRef::as_ref).collect();
            let _ = write!(text, " failed {}", failed.join(","));
        }
        Detail::Matched | Detail::Malformed(_) => {}
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
    // the app's c arrives, so the platform's c times out, and the app's c is
    // late (with no retention, nothing remembers the timeout to resolve).
    let mut h = Harness::new(&[1_000, 1_000], &[0, 0]);
    h.event(1, "c", 9_000);
    h.event(1, "d", 11_000);
    assert_eq!(h.event(0, "b", 12_000), ["timed_out c [-,9000] expired 1"]);
    assert_eq!(h.event(0, "c", 8_500), ["late c [8500,-] side 0"]);
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
fn a_second_event_of_a_waiting_side_is_a_duplicate() {
    let mut h = Harness::new(&[5_000, 5_000], &[0, 0]);
    h.event(0, "k", 1_000);
    assert_eq!(
        h.event(0, "k", 1_200),
        ["duplicate k [1200,-] side 0 of waiting"]
    );
    assert_eq!(h.matcher.pending_events(), 1);
    assert_eq!(h.event(1, "k", 2_000), ["matched k [1000,2000]"]);
    assert_eq!(h.end(), no_outcome());
}

#[test]
fn an_event_after_the_waiting_one_would_give_up_starts_a_new_group() {
    // The first app event waits until 6s; one at 7s is a new attempt.
    let mut h = Harness::new(&[5_000, 5_000], &[10_000, 10_000]);
    h.event(0, "k", 1_000);
    assert_eq!(h.event(0, "k", 7_000), no_outcome());
    assert_eq!(
        h.end(),
        [
            "timed_out k [1000,-] expired 0",
            "timed_out k [7000,-] expired 0"
        ]
    );
}

#[test]
fn within_the_retention_an_event_of_a_done_key_is_a_duplicate() {
    let mut h = Harness::with(&[5_000, 5_000], &[0, 0], Vec::new(), 10_000);
    h.event(0, "k", 1_000);
    assert_eq!(h.event(1, "k", 2_000), ["matched k [1000,2000]"]);
    // Re-sent by the platform 8s after the match: within 10s, a duplicate.
    assert_eq!(
        h.event(1, "k", 10_000),
        ["duplicate k [-,10000] side 1 of completed"]
    );
    assert_eq!(
        h.event(0, "k", 12_000),
        ["duplicate k [12000,-] side 0 of completed"]
    );
    // After the retention (2s + 10s), the key starts afresh.
    assert_eq!(h.event(0, "k", 12_001), no_outcome());
    assert_eq!(h.end(), ["timed_out k [12001,-] expired 0"]);
}

#[test]
fn a_late_counterpart_resolves_the_timeout_it_was_missing_from() {
    let mut h = Harness::with(&[5_000, 5_000], &[0, 0], Vec::new(), 60_000);
    h.event(0, "k", 1_000);
    h.event(0, "x", 30_000);
    assert_eq!(h.event(1, "y", 30_000), ["timed_out k [1000,-] expired 0"]);
    // The platform's notification for `k`, 27s late: behind the watermark,
    // within the retention, and what the alert was missing.
    assert_eq!(
        h.event(1, "k", 3_000),
        ["resolved k [1000,3000] expired 0 deadline 6000 arrived 1"]
    );
    // A second copy is a duplicate of what is now complete.
    assert_eq!(
        h.event(1, "k", 3_500),
        ["duplicate k [-,3500] side 1 of completed"]
    );
    assert_eq!(
        h.end(),
        [
            "timed_out x [30000,-] expired 0",
            "timed_out y [-,30000] expired 1"
        ]
    );
}

#[test]
fn a_counterpart_too_late_for_its_group_resolves_the_alert_whenever_it_arrives() {
    // The platform's k waits until 6s; the app's k comes at 9s: too late,
    // but within the retention. Before the timeout fires or after it, the
    // result is the same: the alert, then its resolution.
    for app_first in [true, false] {
        let mut h = Harness::with(&[5_000, 5_000], &[10_000, 10_000], Vec::new(), 60_000);
        h.event(1, "k", 1_000);
        if app_first {
            assert_eq!(
                h.event(0, "k", 9_000),
                no_outcome(),
                "held until the timeout fires"
            );
            assert_eq!(h.matcher.pending_events(), 2);
        }
        for side in 0..2 {
            h.event(side, "tick", 30_000);
        }
        if !app_first {
            h.event(0, "k", 9_000);
        }
        let outcomes: Vec<String> = h
            .outcomes
            .iter()
            .map(describe)
            .filter(|o| o.contains(" k "))
            .collect();
        assert_eq!(
            outcomes,
            [
                "timed_out k [-,1000] expired 1",
                "resolved k [9000,1000] expired 1 deadline 6000 arrived 0"
            ],
            "app first: {app_first}"
        );
    }
}

#[test]
fn a_late_event_of_a_side_the_alert_had_is_a_duplicate() {
    let mut h = Harness::with(&[5_000, 5_000], &[0, 0], Vec::new(), 60_000);
    h.event(0, "k", 1_000);
    h.event(0, "x", 30_000);
    h.event(1, "y", 30_000);
    assert_eq!(
        h.event(0, "k", 1_500),
        ["duplicate k [1500,-] side 0 of timed_out"]
    );
}

#[test]
fn a_late_event_with_nothing_to_join_is_late() {
    let mut h = Harness::new(&[5_000, 5_000], &[0, 0]);
    h.event(0, "x", 30_000);
    h.event(1, "y", 30_000);
    assert_eq!(h.event(1, "k", 3_000), ["late k [-,3000] side 1"]);
}

#[test]
fn three_sides_resolve_only_when_every_missing_side_arrives() {
    let mut h = Harness::with(&[1_000, 1_000, 1_000], &[0, 0, 0], Vec::new(), 10_000);
    h.event(0, "k", 1_000);
    for side in 0..3 {
        h.event(side, "tick", 5_000);
    }
    assert_eq!(
        h.outcomes.iter().map(describe).collect::<Vec<_>>(),
        [
            "matched tick [5000,5000,5000]",
            "timed_out k [1000,-,-] expired 0"
        ]
    );
    assert_eq!(
        h.event(1, "k", 1_200),
        no_outcome(),
        "one of two missing sides: held"
    );
    assert_eq!(
        h.matcher.pending_events(),
        1,
        "the late payment waits for the settlement"
    );
    assert_eq!(
        h.event(2, "k", 1_300),
        ["resolved k [1000,1200,1300] expired 0 deadline 2000 arrived 1,2"]
    );
}

#[test]
fn a_partial_resolution_is_late_when_the_retention_ends() {
    let mut h = Harness::with(&[1_000, 1_000, 1_000], &[0, 0, 0], Vec::new(), 10_000);
    h.event(0, "k", 1_000);
    for side in 0..3 {
        h.event(side, "tick", 5_000);
    }
    h.event(1, "k", 1_200);
    // The retention of `k` ends at 2s + 10s.
    for side in 0..3 {
        h.event(side, "tock", 12_001);
    }
    assert!(
        h.outcomes
            .iter()
            .map(describe)
            .any(|o| o == "late k [-,1200,-] side 1"),
        "{:?}",
        h.outcomes
    );
    assert_eq!(
        h.matcher.pending_events(),
        0,
        "nothing of `k` is held any more"
    );
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

fn rule(name: &str, text: &str) -> Rule {
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
    let parsed = expr::parse(text).unwrap();
    let typed = expr::check(&parsed, &Scope::outcome(&sides, &[("key", Type::STRING)])).unwrap();
    Rule {
        name: name.into(),
        compiled: expr::compile(&typed),
    }
}

#[test]
fn a_complete_match_whose_rules_fail_is_a_mismatch_naming_them() {
    let rules = vec![
        rule("amount", "app.amount == bank.amount"),
        rule("positive", "100 / bank.amount > 0"),
    ];
    let mut h = Harness::with(&[5_000, 5_000], &[0, 0], rules, 0);
    let amount = |n: i64| Record::new(vec![Value::Int(n)]);
    h.event_with(0, "a", 1_000, amount(5));
    assert_eq!(
        h.event_with(1, "a", 1_000, amount(5)),
        ["matched a [1000,1000]"]
    );
    h.event_with(0, "b", 1_000, amount(-5));
    assert_eq!(
        h.event_with(1, "b", 1_000, amount(-6)),
        ["mismatched b [1000,1000] failed amount,positive"]
    );
    h.event_with(0, "z", 1_000, amount(0));
    assert_eq!(
        h.event_with(1, "z", 1_000, amount(0)),
        ["mismatched z [1000,1000] failed positive (cannot be evaluated: division by zero)"]
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
        // Without and with memories of done keys.
        let retention = if seed % 2 == 0 { 0 } else { 8_000 };
        for interleaving in 0..4 {
            let mut order = Lcg(seed * 31 + interleaving);
            let mut h = Harness::with(&[5_000, 5_000], &[LAG, LAG], Vec::new(), retention);
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
