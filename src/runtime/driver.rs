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
use super::matcher::{Matcher, Rule};
use super::operator::{Operator, Outcome};
use super::router::Router;
use super::sink::{self, FLUSH_AT, Outputs};
use super::source::{self, Batch};
use super::watermarks::Watermarks;
use crate::config::OutcomeKind;
use crate::plan::Graph;

/// Batches a source may have queued.
const QUEUE: usize = 4;

pub(crate) async fn drive(graph: Graph, outputs: Outputs) -> Result<Summary, RunError> {
    let mut driver = Driver::start(graph, outputs);
    let result = driver.run().await;
    driver.summary.pending_events = driver.operator.pending_events();
    // Whatever was rendered is written, also when the run failed.
    let closed = driver.close().await;
    result.and(closed).map(|()| driver.summary)
}

/// Everything one run owns.
struct Driver {
    inputs: Vec<InputQueue>,
    watermarks: Watermarks,
    operator: Matcher,
    router: Router,
    /// Rendered output not yet handed to its target, by target.
    buffers: Vec<String>,
    targets: Vec<Target>,
    /// What the operator emitted and the router has not rendered yet.
    out: Vec<Outcome>,
    summary: Summary,
}

/// One input of the merge.
struct InputQueue {
    /// Batches from the source task; closed when the source ends.
    receiver: mpsc::Receiver<Batch>,
    /// Events received and not yet merged.
    buffer: VecDeque<Event>,
    finished: bool,
}

/// A sink target's channel and task.
struct Target {
    name: String,
    /// The driver's end of the channel to the task; `None` once closed,
    /// which ends the task.
    sender: Option<mpsc::Sender<Vec<u8>>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Driver {
    /// Starts the source and sink tasks of `graph`.
    fn start(graph: Graph, outputs: Outputs) -> Self {
        let Graph {
            sources,
            matcher,
            routes,
            sinks,
            ..
        } = graph;
        let log = outputs.logs();
        let (writers, target_of) = outputs.open(&sinks);
        let targets: Vec<Target> = writers
            .into_iter()
            .map(|(name, writer)| {
                let (sender, task) = sink::spawn(writer);
                Target {
                    name,
                    sender: Some(sender),
                    task: Some(task),
                }
            })
            .collect();
        let router = Router::new(&matcher, routes, |sink| target_of[sink]);
        let waits: Vec<_> = matcher.sides.iter().map(|side| side.wait).collect();
        let rules = matcher
            .rules
            .into_iter()
            .map(|rule| Rule {
                name: rule.name.into(),
                compiled: rule.rule.compiled,
            })
            .collect();
        let summary = Summary {
            events: sources
                .iter()
                .map(|source| (source.name.clone(), 0))
                .collect(),
            outcomes: OutcomeKind::ALL.iter().map(|kind| (*kind, 0)).collect(),
            pending_events: 0,
            log: log.then(Vec::new),
        };
        Self {
            watermarks: Watermarks::new(sources.iter().map(|source| source.watermark_lag)),
            operator: Matcher::new(waits, rules, matcher.retention),
            inputs: sources
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
                .collect(),
            buffers: vec![String::new(); targets.len()],
            targets,
            router,
            out: Vec::new(),
            summary,
        }
    }

    /// Merges every input to its end, then fires what is still pending.
    async fn run(&mut self) -> Result<(), RunError> {
        loop {
            self.fill().await?;
            self.route().await?;
            let Some(input) = self.next() else { break };
            self.step(input);
            self.route().await?;
        }
        self.operator.on_end(&mut self.out);
        self.route().await
    }

    /// Waits until every input has an event buffered or has ended. An input
    /// that ends stops holding back the watermark, which may fire timers.
    async fn fill(&mut self) -> Result<(), RunError> {
        for (index, input) in self.inputs.iter_mut().enumerate() {
            while !input.finished && input.buffer.is_empty() {
                match input.receiver.recv().await {
                    Some(Ok(batch)) => input.buffer.extend(batch),
                    Some(Err(error)) => return Err(error),
                    None => {
                        input.finished = true;
                        if let Some(watermark) = self.watermarks.finish(index) {
                            self.operator.on_watermark(watermark, &mut self.out);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The input whose buffered head is earliest, the first listed on a tie;
    /// `None` when every input has ended.
    fn next(&self) -> Option<usize> {
        self.inputs
            .iter()
            .enumerate()
            .filter_map(|(index, input)| input.buffer.front().map(|event| (event.time, index)))
            .min()
            .map(|(_, index)| index)
    }

    /// Feeds the head of `input` to the operator, then the watermark it
    /// moves.
    fn step(&mut self, input: usize) {
        let Some(event) = self.inputs[input].buffer.pop_front() else {
            return;
        };
        let time = event.time;
        self.summary.events[input].1 += 1;
        self.operator.on_event(event, &mut self.out);
        if let Some(watermark) = self.watermarks.observe(input, time) {
            self.operator.on_watermark(watermark, &mut self.out);
        }
    }

    /// Renders what the operator emitted, and hands full buffers to their
    /// targets; a slow target makes this wait, which holds the sources back.
    async fn route(&mut self) -> Result<(), RunError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let (router, buffers, summary) = (&self.router, &mut self.buffers, &mut self.summary);
        let rendered = self.out.drain(..).try_for_each(|outcome| {
            if let Some((_, count)) = summary
                .outcomes
                .iter_mut()
                .find(|(kind, _)| *kind == outcome.kind())
            {
                *count += 1;
            }
            if let Some(log) = &mut summary.log {
                log.push(outcome.clone());
            }
            router.render(&outcome, buffers)
        });
        for (buffer, target) in self.buffers.iter_mut().zip(&mut self.targets) {
            if buffer.len() >= FLUSH_AT {
                send(buffer, target).await?;
            }
        }
        rendered
    }

    /// Flushes and closes every target, waiting for its task.
    async fn close(&mut self) -> Result<(), RunError> {
        let mut result = Ok(());
        for (buffer, target) in self.buffers.iter_mut().zip(&mut self.targets) {
            let sent = send(buffer, target).await;
            target.sender = None;
            let finished = finish(target).await;
            result = result.and(sent).and(finished);
        }
        result
    }
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

/// Waits for the target's task and reports how its writing ended.
async fn finish(target: &mut Target) -> Result<(), RunError> {
    let Some(task) = target.task.take() else {
        return Ok(());
    };
    let written = task
        .await
        .unwrap_or_else(|join| Err(std::io::Error::other(join)));
    written.map_err(|source| RunError::Write {
        sink: target.name.clone(),
        source,
    })
}
