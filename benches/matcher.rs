//! The match operator alone: events per second with no parsing and no
//! output, the memory a pending key costs beyond its record and one
//! remembered for the retention, and the time to save and restore the
//! state of that many pending keys.
//!
//!     cargo bench --bench matcher [-- EVENTS]
//!
//! Prints `name value unit` lines (`bench/run` puts them in BENCHMARKS.md).

use std::hint::black_box;
use std::time::Instant;

use runner::expr::{Record, Value};
use runner::plan::Side;
use runner::runtime::{Event, Key, Matcher, Operator, Outcome, Watermarks};
use runner::time::{Duration, EventTime, Watermark};

/// Bytes resident, from `/proc/self/statm` (0 where there is none).
fn resident() -> isize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: isize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// An app order or a platform notification, as the files example reads
/// them: a few strings, integers and a time.
fn record(side: usize, id: &str, time: i64) -> Record {
    let mut values = vec![Value::from(id), Value::Int(1999), Value::from("EUR")];
    if side == 1 {
        values.push(Value::from("success"));
    } else {
        values.push(Value::from("u-0042"));
    }
    values.push(Value::Timestamp(EventTime::from_millis(time)));
    Record::new(values)
}

/// Events of `orders` orders in event-time order: each order's app event,
/// and its notification 2s later, but for every 20th (missing) and with
/// every 100th sent twice.
fn events(orders: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(orders * 2);
    for n in 0..orders {
        let id = format!("A-{n:08}");
        let time = i64::try_from(n).unwrap_or(i64::MAX) * 10;
        events.push(event(0, &id, time));
        if n % 20 != 0 {
            events.push(event(1, &id, time + 2_000));
        }
        if n % 100 == 1 {
            events.push(event(1, &id, time + 2_500));
        }
    }
    events.sort_by_key(|event| event.time);
    events
}

fn event(side: usize, id: &str, time: i64) -> Event {
    Event {
        side: Side(side),
        time: EventTime::from_millis(time),
        key: Key::from(id),
        record: record(side, id, time),
        partition: None,
    }
}

fn matcher(wait: i64) -> Matcher {
    Matcher::new(
        [Duration::from_millis(wait); 2],
        Vec::new(),
        Duration::from_millis(60_000),
    )
}

/// Events per second through the matcher and its watermarks.
fn throughput(orders: usize) -> f64 {
    let events = events(orders);
    let count = events.len();
    let mut matcher = matcher(30_000);
    let mut watermarks = Watermarks::new([Duration::from_millis(1_000); 2]);
    let mut out: Vec<Outcome> = Vec::with_capacity(1024);
    let start = Instant::now();
    for event in events {
        let (side, time) = (event.side.0, event.time);
        matcher.on_event(event, &mut out);
        if let Some(watermark) = watermarks.observe(side, time) {
            matcher.on_watermark(watermark, &mut out);
        }
        if out.len() >= 1024 {
            black_box(&out);
            out.clear();
        }
    }
    matcher.on_end(&mut out);
    black_box(&out);
    #[allow(clippy::cast_precision_loss)] // A rate.
    let rate = count as f64 / start.elapsed().as_secs_f64();
    rate
}

/// Bytes resident per pending key: of its record and key, and of the
/// matcher's state beyond them. `keys` app events that wait for good, in
/// the matcher given back.
fn per_pending_key(keys: usize) -> (f64, f64, Matcher) {
    let mut events: Vec<Event> = Vec::with_capacity(keys);
    let before_records = resident();
    events.extend((0..keys).map(|n| event(0, &format!("A-{n:08}"), i64::try_from(n).unwrap_or(0))));
    let vec_bytes = isize::try_from(keys * std::mem::size_of::<Event>()).unwrap_or(0);
    let event_bytes = resident() - before_records - vec_bytes;
    let mut matcher = matcher(i64::MAX / 4);
    let mut out = Vec::new();
    let before = resident();
    // The records and keys move into the matcher; the vector that held the
    // events is given back to the system when it is dropped.
    for event in events {
        matcher.on_event(event, &mut out);
    }
    assert_eq!(matcher.waiting_keys(), keys);
    let state = resident() - before + vec_bytes;
    black_box(&matcher);
    #[allow(clippy::cast_precision_loss)] // Averages.
    let record = event_bytes as f64 / keys as f64;
    #[allow(clippy::cast_precision_loss)]
    let overhead = state as f64 / keys as f64;
    (record, overhead, matcher)
}

/// Bytes resident per remembered key: one whose order and payment
/// matched, remembered for the retention (its records are not kept). The
/// events are made as they go in, so at most one record is alive at a
/// time.
fn per_remembered_key(keys: usize) -> (f64, Matcher) {
    let mut matcher = Matcher::new(
        [Duration::from_millis(30_000); 2],
        Vec::new(),
        Duration::from_millis(i64::MAX / 4),
    );
    let mut out = Vec::new();
    let before = resident();
    for n in 0..keys {
        let id = format!("R-{n:08}");
        let time = i64::try_from(n).unwrap_or(0);
        matcher.on_event(event(0, &id, time), &mut out);
        matcher.on_event(event(1, &id, time + 1), &mut out);
        if n % 1024 == 0 {
            // The completed groups' deadlines, stale, go as the watermark
            // passes them, as in a run.
            matcher.on_watermark(
                Watermark::bounded(EventTime::from_millis(time), Duration::ZERO),
                &mut out,
            );
        }
        out.clear();
    }
    assert_eq!(matcher.remembered_keys(), keys);
    let state = resident() - before;
    black_box(&matcher);
    #[allow(clippy::cast_precision_loss)] // An average.
    let bytes = state as f64 / keys as f64;
    (bytes, matcher)
}

/// Seconds to write `matcher`'s state as a checkpoint holds it and to read
/// it back into an empty matcher, and the bytes it takes.
fn checkpoint(matcher: &Matcher) -> (f64, f64, usize) {
    let start = Instant::now();
    let state = matcher.state();
    let saved = start.elapsed().as_secs_f64();
    let mut restored = self::matcher(i64::MAX / 4);
    let start = Instant::now();
    restored
        .restore_state(&state)
        .expect("its own state reads back");
    let loaded = start.elapsed().as_secs_f64();
    assert_eq!(restored.waiting_keys(), matcher.waiting_keys());
    black_box(&restored);
    (saved, loaded, state.len())
}

fn main() {
    let orders = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<usize>().ok())
        .unwrap_or(1_000_000);
    // Memory first, while the heap holds nothing freed to reuse (the
    // pending keys' matcher is kept while remembered keys are measured).
    let (record, overhead, pending) = per_pending_key(orders);
    let (remembered, kept) = per_remembered_key(orders);
    drop(kept);
    println!("pending_record_bytes {record:.1} bytes");
    println!("pending_key_overhead_bytes {overhead:.1} bytes");
    let (saved, loaded, bytes) = checkpoint(&pending);
    drop(pending);
    println!("remembered_key_bytes {remembered:.1} bytes");
    println!("checkpoint_save_seconds {saved:.3} s");
    println!("checkpoint_restore_seconds {loaded:.3} s");
    println!("checkpoint_bytes {bytes} bytes");
    // Warm up, then take the best of three.
    throughput(orders / 10);
    let rate = (0..3).map(|_| throughput(orders)).fold(0.0, f64::max);
    println!("matcher_events_per_second {rate:.0} events/s");
}
