//! The driver: one loop that merges the inputs, advances watermarks, feeds
//! the operator and routes what it emits.
//!
//! Inputs are merged in event-time order: the next event is the earliest
//! head among the inputs (ties go to the side listed first), waiting until
//! every input that has not ended has an event buffered. So a bounded run
//! is deterministic, byte for byte, whatever the tasks' scheduling, and it
//! sees events in the order a live system would have.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use super::Summary;
use super::error::RunError;
use super::event::Event;
use super::matcher::{Condition, Matcher};
use super::operator::{Operator, Outcome};
use super::router::Router;
use super::sink::{self, FLUSH_AT, Outputs};
use super::source::{self, Batch};
use super::watermarks::Watermarks;
use crate::config::{OutcomeKind, SinkKind};
use crate::plan::Graph;

/// Batches a source may have queued.
const QUEUE: usize = 4;

/// One input of the merge.
struct InputQueue {
    /// Batches from the source task; closed when the source ends.
    receiver: mpsc::Receiver<Batch>,
    /// Events received and not yet merged.
    buffer: VecDeque<Event>,
    finished: bool,
}

/// A sink target's channel and task; its pending output is kept beside it,
/// in the driver's buffers, so rendering borrows nothing else.
struct Target {
    name: &'static str,
    /// `None` once closed at the end of the run.
    sender: Option<mpsc::Sender<Vec<u8>>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub(crate) async fn drive(graph: Graph, outputs: Outputs) -> Result<Summary, RunError> {
    let Graph {
        sources,
        matcher,
        routes,
        sinks,
        ..
    } = graph;
    let (stdout, stdout_task) = sink::spawn(outputs.stdout);
    let mut targets = vec![Target {
        name: "stdout",
        sender: Some(stdout),
        task: Some(stdout_task),
    }];
    let mut buffers = vec![String::new(); targets.len()];
    let router = Router::new(&matcher, routes, |sink| match sinks[sink].kind {
        SinkKind::Stdout => 0,
    });
    let condition = matcher.condition.map(|bound| Condition {
        text: bound.expr.to_string(),
        compiled: bound.compiled,
    });
    let mut operator = Matcher::new(matcher.sides.iter().map(|side| side.wait), condition);
    let mut watermarks = Watermarks::new(sources.iter().map(|source| source.watermark_lag));
    let mut summary = Summary {
        events: sources
            .iter()
            .map(|source| (source.name.clone(), 0))
            .collect(),
        outcomes: OutcomeKind::ALL.iter().map(|kind| (*kind, 0)).collect(),
        pending_events: 0,
    };
    let mut inputs: Vec<InputQueue> = sources
        .into_iter()
        .map(|source| {
            let (sender, receiver) = mpsc::channel(QUEUE);
            tokio::spawn(source::run(source, sender));
            InputQueue {
                receiver,
                buffer: VecDeque::new(),
                finished: false,
            }
        })
        .collect();
    let mut out: Vec<Outcome> = Vec::new();
    let result = async {
        loop {
            for (index, input) in inputs.iter_mut().enumerate() {
                while !input.finished && input.buffer.is_empty() {
                    match input.receiver.recv().await {
                        Some(Ok(batch)) => input.buffer.extend(batch),
                        Some(Err(error)) => return Err(error),
                        None => {
                            input.finished = true;
                            if let Some(watermark) = watermarks.finish(index) {
                                operator.on_watermark(watermark, &mut out);
                            }
                        }
                    }
                }
            }
            route(&router, &mut out, &mut buffers, &mut targets, &mut summary).await?;
            let next = inputs
                .iter()
                .enumerate()
                .filter_map(|(index, input)| input.buffer.front().map(|event| (event.time, index)))
                .min();
            let Some((time, index)) = next else { break };
            let event = inputs[index]
                .buffer
                .pop_front()
                .expect("the chosen input has a buffered event");
            summary.events[index].1 += 1;
            operator.on_event(event, &mut out);
            if let Some(watermark) = watermarks.observe(index, time) {
                operator.on_watermark(watermark, &mut out);
            }
            route(&router, &mut out, &mut buffers, &mut targets, &mut summary).await?;
        }
        operator.on_end(&mut out);
        route(&router, &mut out, &mut buffers, &mut targets, &mut summary).await
    }
    .await;
    summary.pending_events = operator.pending_events();
    // Whatever was rendered is written, also when the run failed.
    let closed = close(&mut buffers, &mut targets).await;
    result.and(closed).map(|()| summary)
}

/// Renders `out` into the target buffers, sending those that are full.
async fn route(
    router: &Router,
    out: &mut Vec<Outcome>,
    buffers: &mut [String],
    targets: &mut [Target],
    summary: &mut Summary,
) -> Result<(), RunError> {
    if out.is_empty() {
        return Ok(());
    }
    let rendered = out.drain(..).try_for_each(|outcome| {
        if let Some((_, count)) = summary
            .outcomes
            .iter_mut()
            .find(|(kind, _)| *kind == outcome.kind)
        {
            *count += 1;
        }
        router.render(&outcome, buffers)
    });
    for (buffer, target) in buffers.iter_mut().zip(targets) {
        if buffer.len() >= FLUSH_AT {
            send(buffer, target).await?;
        }
    }
    rendered
}

/// Hands `buffer` to the target's task.
async fn send(buffer: &mut String, target: &mut Target) -> Result<(), RunError> {
    if buffer.is_empty() {
        return Ok(());
    }
    let chunk = std::mem::take(buffer).into_bytes();
    let Some(sender) = &target.sender else {
        return Ok(());
    };
    if sender.send(chunk).await.is_err() {
        // The task stopped early: its result says why.
        target.sender = None;
        return finish(target).await;
    }
    Ok(())
}

/// Flushes and closes every target, waiting for its task.
async fn close(buffers: &mut [String], targets: &mut [Target]) -> Result<(), RunError> {
    let mut result = Ok(());
    for (buffer, target) in buffers.iter_mut().zip(targets) {
        let sent = send(buffer, target).await;
        target.sender = None;
        let finished = finish(target).await;
        result = result.and(sent).and(finished);
    }
    result
}

async fn finish(target: &mut Target) -> Result<(), RunError> {
    let Some(task) = target.task.take() else {
        return Ok(());
    };
    let written = task
        .await
        .unwrap_or_else(|join| Err(std::io::Error::other(join)));
    written.map_err(|source| RunError::Write {
        sink: target.name.to_string(),
        source,
    })
}
