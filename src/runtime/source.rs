//! Sources: tasks that read records, assign event times and keys, and send
//! events to the driver in batches.
//!
//! Each source runs as its own task and owns the sending half of a bounded
//! channel; the driver owns the receiving half. A source ends by dropping
//! its sender, which the driver sees as the end of that input.

use tokio::sync::mpsc;

use super::error::RunError;
use super::event::{Event, Key};
use crate::diagnostic::Span;
use crate::expr::{Env, Record, Value};
use crate::plan::{Bound, Input, Side, SourceNode};
use crate::time::EventTime;

/// Events per batch: large enough to make channel traffic cheap, small
/// enough to keep the driver's buffers small.
pub(crate) const BATCH: usize = 1024;

/// What a source sends: a batch of events, or the error that stopped it.
pub(crate) type Batch = Result<Vec<Event>, RunError>;

/// Runs `source` to its end, sending its events on `events`.
pub(crate) async fn run(source: SourceNode, events: mpsc::Sender<Batch>) {
    let SourceNode {
        name,
        side,
        input,
        event_time,
        key,
        ..
    } = source;
    let Input::Inline(records) = input;
    let mut batch = Vec::with_capacity(BATCH.min(records.len()));
    for inline in records {
        match event(&name, side, &event_time, &key, inline.record, inline.span) {
            Ok(event) => batch.push(event),
            Err(error) => {
                // The driver stops at the error; nothing after it is read.
                let _ = events.send(Ok(std::mem::take(&mut batch))).await;
                let _ = events.send(Err(error)).await;
                return;
            }
        }
        if batch.len() == BATCH
            && events
                .send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))))
                .await
                .is_err()
        {
            return;
        }
    }
    if !batch.is_empty() {
        let _ = events.send(Ok(batch)).await;
    }
}

/// Assigns the event time and key of one record.
fn event(
    source: &str,
    side: Side,
    event_time: &Bound,
    key: &Bound,
    record: Record,
    at: Span,
) -> Result<Event, RunError> {
    let slots = [Some(record)];
    let env = Env::records(&slots);
    let failed = |what: &str, bound: &Bound, error: crate::expr::EvalError| RunError::Eval {
        message: format!("cannot evaluate {what} of `{source}` for a record: {error}"),
        failing: bound.file_span(error.span),
        record: Some(at),
    };
    let time = match event_time
        .compiled
        .eval(&env)
        .map_err(|e| failed("the `event_time`", event_time, e))?
    {
        Value::Int(ms) => EventTime::from_millis(ms),
        Value::Timestamp(time) => time,
        other => {
            return Err(RunError::Eval {
                message: format!("the `event_time` of `{source}` gave `{other}`, not a time"),
                failing: event_time.text.span,
                record: Some(at),
            });
        }
    };
    let key = Key::new(
        key.compiled
            .eval(&env)
            .map_err(|e| failed("the key", key, e))?,
    );
    let [Some(record)] = slots else {
        unreachable!("the slot was filled above and only read since")
    };
    Ok(Event {
        side,
        time,
        key,
        record,
    })
}
