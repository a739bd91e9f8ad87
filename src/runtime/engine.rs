//! The match operator of a run: one matcher on the driver's thread, or
//! several workers, each a thread with its own matcher for the keys that
//! hash to it.
//!
//! With workers, the driver still merges the inputs and tracks the
//! watermark; it sends each worker its keys' events and every watermark, in
//! order, in batches. A worker matches, fires its timers and hands its
//! outcomes to the sink threads. Every key's outcomes keep their order, but
//! outcomes of different keys reach a sink in the order the workers get
//! there, which may differ from run to run.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::error::RunError;
use super::event::{Event, Key};
use super::matcher::{Matcher, StateFormat};
use super::operator::{Operator, Outcome};
use super::router::Router;
use super::sink::{Batch, Message};
use crate::checkpoint::encoding::{Decoder, Encoder, crc32};
use crate::config::OutcomeKind;
use crate::time::{EventTime, Watermark};

/// Outcomes fired from timers between two renderings: what the end of input
/// holds in memory at once, however many keys are pending.
pub(crate) const FIRE_BATCH: usize = 4096;

/// Work items a worker's batch collects before it is sent.
const WORK_AT: usize = 1024;

/// Outcomes a worker collects for a sink before sending them.
const SEND_AT: usize = 1024;

/// Batches a worker may have queued.
const QUEUE: usize = 4;

/// One thing for a worker to do, in order.
enum Work {
    Event(Event),
    Watermark(Watermark),
    /// For a checkpoint: send every outcome decided so far to the sinks,
    /// hand over the matcher's state, and wait for the go, so that no later
    /// outcome reaches a sink before the checkpoint's barrier does.
    Snapshot {
        state: oneshot::Sender<Vec<u8>>,
        go: oneshot::Receiver<()>,
    },
    /// For a resumed run: read back the state a checkpoint kept of this
    /// worker, or, from a run of another number of workers, the keys of
    /// their states that hash to this one; answer with its waiting and
    /// remembered keys.
    Load {
        kept: Arc<Kept>,
        only: Only,
        done: std::sync::mpsc::Sender<Result<(usize, usize), String>>,
    },
}

/// The match operator's states a checkpoint kept, to read back.
pub(crate) struct Kept {
    /// One per worker of the run that took it (or its one matcher's); or
    /// those of every process that shared the partitions before.
    pub(crate) states: Vec<Vec<u8>>,
    /// How they are written.
    pub(crate) format: StateFormat,
    /// With the states of other processes: the partitions this one owns,
    /// whose keys it takes (every one, `0..u32::MAX`, for a process
    /// alone).
    pub(crate) owned: Option<Range<u32>>,
    /// Of states taken each for some partitions: those of each state, in
    /// order, whose keys it takes (a state's keys of others are older than
    /// another state's).
    pub(crate) picked: Option<Vec<Vec<u32>>>,
}

/// What reading back a checkpoint's states found.
pub(crate) struct Loaded {
    /// Keys with events waiting.
    pub(crate) waiting: usize,
    /// Keys remembered after they were done.
    pub(crate) remembered: usize,
    /// The states read, whose buffers may be written again.
    pub(crate) states: Vec<Vec<u8>>,
}

/// What of a checkpoint's states a worker takes.
#[derive(Clone, Copy)]
enum Only {
    /// The one state at this index, whole: the checkpoint had as many
    /// workers.
    State(usize),
    /// From every state, the keys of the worker at this index of this
    /// many.
    Keys(usize, usize),
}

/// Workers stopped at a checkpoint: each one's state, and the go each
/// waits for.
pub(crate) struct Paused {
    pub(crate) states: Vec<Vec<u8>>,
    go: Vec<oneshot::Sender<()>>,
}

impl Paused {
    /// Lets the workers go on.
    pub(crate) fn release(self) {
        for go in self.go {
            let _ = go.send(());
        }
    }
}

/// The match operator, local or spread over workers.
pub(crate) enum Engine {
    /// One matcher, on the driver's thread.
    Local(Box<Matcher>),
    /// Matchers on worker threads.
    Workers(Workers),
}

/// Worker threads and what the driver has for them.
pub(crate) struct Workers {
    workers: Vec<Worker>,
    /// Where a key is encoded to find its worker.
    scratch: Vec<u8>,
}

impl Workers {
    /// The worker of `key`: by the CRC-32 of the key as a checkpoint
    /// encodes it, so that a run resumed from a checkpoint sends each key
    /// to the worker holding its state. A hasher seeded per process, or
    /// one whose output may change with a crate's version, would not.
    fn worker_of(&mut self, key: &Key) -> usize {
        worker_of(key, self.workers.len(), &mut self.scratch)
    }
}

/// The worker of `key` among `count`, encoding it in `scratch`.
fn worker_of(key: &Key, count: usize, scratch: &mut Vec<u8>) -> usize {
    let mut encoder = Encoder::reusing(std::mem::take(scratch));
    encoder.value(key.value());
    *scratch = encoder.into_bytes();
    let crc = u64::from(crc32(&[scratch]));
    usize::try_from(crc % count.max(1) as u64).unwrap_or(0)
}

/// Reads the states a checkpoint kept into `matcher`: what `only` says of
/// them, of the partitions owned.
fn load(matcher: &mut Matcher, kept: &Kept, only: Only) -> Result<(), String> {
    let damaged = |error: crate::checkpoint::encoding::DecodeError| error.to_string();
    match only {
        Only::State(index) => {
            let state = kept.states.get(index).map_or(&[][..], Vec::as_slice);
            matcher
                .load(&mut Decoder::new(state), kept.format)
                .map_err(damaged)
        }
        Only::Keys(index, count) => {
            let mut scratch = Vec::new();
            let mut unplaced = 0_usize;
            for (at, state) in kept.states.iter().enumerate() {
                let picked = kept.picked.as_ref().and_then(|picked| picked.get(at));
                let mut keep = |key: &Key, partition: Option<u32>| {
                    let owned = match (&kept.owned, partition) {
                        (None, _) => true,
                        (Some(owned), Some(partition)) => {
                            owned.contains(&partition)
                                && picked.is_none_or(|picked| picked.contains(&partition))
                        }
                        (Some(_), None) => {
                            unplaced += 1;
                            false
                        }
                    };
                    owned && (count == 1 || worker_of(key, count, &mut scratch) == index)
                };
                matcher
                    .load_keeping(&mut Decoder::new(state), kept.format, &mut keep)
                    .map_err(damaged)?;
            }
            if unplaced > 0 {
                return Err(format!(
                    "{unplaced} of its keys do not say which Kafka partition they came from, \
                     so that they cannot go to the process that reads it now"
                ));
            }
            Ok(())
        }
    }
}

struct Worker {
    /// `None` once closed, which ends the worker.
    sender: Option<mpsc::Sender<Vec<Work>>>,
    pending: Vec<Work>,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<Report>>,
}

/// What a worker publishes while it runs.
struct Shared {
    /// Its earliest timer, in milliseconds; `i64::MAX` for none.
    next_timer: AtomicI64,
    /// Keys with events waiting.
    waiting: AtomicUsize,
}

/// What a worker did, when it ends.
#[derive(Default)]
pub(crate) struct Report {
    /// Outcomes emitted, by kind, in the order of [`OutcomeKind::ALL`].
    pub(crate) outcomes: [u64; 7],
    pub(crate) pending_events: usize,
    pub(crate) waiting_keys: usize,
    pub(crate) peak_waiting_keys: usize,
    /// Every outcome, when the run keeps them.
    pub(crate) log: Option<Vec<Outcome>>,
    /// Whether a sink stopped taking its outcomes.
    pub(crate) broken: bool,
}

impl Engine {
    /// `count` workers matching like `matcher`, routing by `router` to the
    /// sink threads behind `sinks` (by target); one worker is the driver
    /// itself.
    pub(crate) fn start(
        matcher: Matcher,
        count: usize,
        router: &Arc<Router>,
        sinks: &[Option<mpsc::Sender<Message>>],
        log: bool,
    ) -> Result<Self, RunError> {
        if count <= 1 {
            return Ok(Self::Local(Box::new(matcher)));
        }
        let workers = (0..count)
            .map(|index| {
                let (sender, receiver) = mpsc::channel(QUEUE);
                let shared = Arc::new(Shared {
                    next_timer: AtomicI64::new(i64::MAX),
                    waiting: AtomicUsize::new(0),
                });
                let work = Matching {
                    matcher: matcher.empty_like(),
                    router: router.clone(),
                    sinks: sinks.to_vec(),
                    pending: vec![Vec::new(); sinks.len()],
                    hits: Vec::new(),
                    shared: shared.clone(),
                    report: Report {
                        log: log.then(Vec::new),
                        ..Report::default()
                    },
                };
                let thread = std::thread::Builder::new()
                    .name(format!("worker {index}"))
                    .spawn(move || work.run(receiver))
                    .map_err(RunError::Start)?;
                Ok(Worker {
                    sender: Some(sender),
                    pending: Vec::with_capacity(WORK_AT),
                    shared,
                    thread: Some(thread),
                })
            })
            .collect::<Result<_, RunError>>()?;
        Ok(Self::Workers(Workers {
            workers,
            scratch: Vec::new(),
        }))
    }

    /// Takes one event: matched now, or queued for its key's worker.
    pub(crate) fn on_event(&mut self, event: Event, out: &mut Vec<Outcome>) {
        match self {
            Self::Local(matcher) => matcher.on_event(event, out),
            Self::Workers(workers) => {
                let worker = workers.worker_of(&event.key);
                workers.workers[worker].pending.push(Work::Event(event));
            }
        }
    }

    /// Moves the watermark; timers fire in [`fire_due`](Self::fire_due),
    /// or in the workers.
    pub(crate) fn advance_to(&mut self, watermark: Watermark) {
        match self {
            Self::Local(matcher) => matcher.advance_to(watermark),
            Self::Workers(workers) => {
                for worker in &mut workers.workers {
                    worker.pending.push(Work::Watermark(watermark));
                }
            }
        }
    }

    /// Whether routing has work beyond handing out outcomes: timers the
    /// watermark reached, or (with workers) events and watermarks to send.
    pub(crate) fn has_due(&self) -> bool {
        match self {
            Self::Local(matcher) => matcher.has_due(),
            Self::Workers(_) => true,
        }
    }

    /// Fires a batch of due timers into `out`; returns whether more is
    /// due. Workers fire their own.
    pub(crate) fn fire_due(&mut self, out: &mut Vec<Outcome>, limit: usize) -> bool {
        match self {
            Self::Local(matcher) => matcher.fire_due(out, limit),
            Self::Workers(_) => false,
        }
    }

    /// Sends the workers what is queued for them: all of it, or only full
    /// batches.
    ///
    /// # Errors
    ///
    /// A worker that stopped: a sink it writes to failed.
    pub(crate) async fn dispatch(&mut self, all: bool) -> Result<(), RunError> {
        let Self::Workers(workers) = self else {
            return Ok(());
        };
        for worker in &mut workers.workers {
            if worker.pending.is_empty() || (!all && worker.pending.len() < WORK_AT) {
                continue;
            }
            let batch = std::mem::replace(&mut worker.pending, Vec::with_capacity(WORK_AT));
            let Some(sender) = &worker.sender else {
                continue;
            };
            if sender.send(batch).await.is_err() {
                return Err(stopped_worker());
            }
        }
        Ok(())
    }

    /// Stops every worker where it is for a checkpoint, with everything
    /// sent before handed to the workers, and returns their states; `None`
    /// for a local matcher.
    ///
    /// # Errors
    ///
    /// A worker that stopped: a sink it writes to failed.
    pub(crate) async fn pause(&mut self) -> Result<Option<Paused>, RunError> {
        let Self::Workers(workers) = self else {
            return Ok(None);
        };
        let mut states = Vec::new();
        let mut go = Vec::new();
        for worker in &mut workers.workers {
            let (state, answer) = oneshot::channel();
            let (release, wait) = oneshot::channel();
            worker.pending.push(Work::Snapshot { state, go: wait });
            states.push(answer);
            go.push(release);
        }
        self.dispatch(true).await?;
        let mut paused = Paused {
            states: Vec::with_capacity(states.len()),
            go,
        };
        for answer in states {
            let Ok(state) = answer.await else {
                paused.release();
                return Err(stopped_worker());
            };
            paused.states.push(state);
        }
        Ok(Some(paused))
    }

    /// Reads back, before any event, the states a checkpoint kept: one per
    /// worker of the run that took it (or the one matcher's, for a run
    /// without workers), or those of the processes that shared the
    /// partitions before. On as many workers, each takes its own; on
    /// another number, or from other processes, each takes the keys that
    /// hash to it (of the partitions owned) from all of them. Returns the
    /// keys waiting and remembered in all, and the states' buffers, if
    /// they are free again.
    ///
    /// # Errors
    ///
    /// A state cannot be read, or a worker did not start.
    pub(crate) fn load(&mut self, kept: Kept) -> Result<Loaded, String> {
        let whole = kept.owned.is_none();
        let workers = match self {
            Self::Local(matcher) => {
                let only = match kept.states.len() {
                    1 if whole => Only::State(0),
                    _ => Only::Keys(0, 1),
                };
                load(matcher, &kept, only)?;
                return Ok(Loaded {
                    waiting: matcher.waiting_keys(),
                    remembered: matcher.remembered_keys(),
                    states: kept.states,
                });
            }
            Self::Workers(workers) => workers,
        };
        let count = workers.workers.len();
        let same = whole && kept.states.len() == count;
        let kept = Arc::new(kept);
        let mut answers = Vec::new();
        for (index, worker) in workers.workers.iter_mut().enumerate() {
            let (done, answer) = std::sync::mpsc::channel();
            let load = Work::Load {
                kept: kept.clone(),
                only: if same {
                    Only::State(index)
                } else {
                    Only::Keys(index, count)
                },
                done,
            };
            let sent = worker
                .sender
                .as_ref()
                .is_some_and(|sender| sender.try_send(vec![load]).is_ok());
            if !sent {
                return Err("a worker did not start".to_string());
            }
            answers.push(answer);
        }
        let (mut waiting, mut remembered) = (0, 0);
        for answer in answers {
            let (w, r) = answer
                .recv()
                .map_err(|_| "a worker stopped".to_string())??;
            waiting += w;
            remembered += r;
        }
        Ok(Loaded {
            waiting,
            remembered,
            // Each worker let go of them before it answered.
            states: Arc::try_unwrap(kept).map_or_else(|_| Vec::new(), |kept| kept.states),
        })
    }

    /// The earliest event time at which a timer may fire.
    pub(crate) fn next_timer(&self) -> Option<EventTime> {
        match self {
            Self::Local(matcher) => matcher.next_timer(),
            Self::Workers(workers) => workers
                .workers
                .iter()
                .map(|worker| worker.shared.next_timer.load(Ordering::Relaxed))
                .min()
                .filter(|time| *time != i64::MAX)
                .map(EventTime::from_millis),
        }
    }

    /// Keys with events waiting now.
    pub(crate) fn waiting_keys(&self) -> usize {
        match self {
            Self::Local(matcher) => matcher.waiting_keys(),
            Self::Workers(workers) => workers
                .workers
                .iter()
                .map(|worker| worker.shared.waiting.load(Ordering::Relaxed))
                .sum(),
        }
    }

    /// Ends the workers, after what is queued, and adds up what they did;
    /// for a local matcher, what it holds.
    pub(crate) fn finish(&mut self) -> Report {
        match self {
            Self::Local(matcher) => Report {
                pending_events: matcher.pending_events(),
                waiting_keys: matcher.waiting_keys(),
                peak_waiting_keys: matcher.peak_waiting_keys(),
                ..Report::default()
            },
            Self::Workers(workers) => {
                let mut total = Report::default();
                for worker in &mut workers.workers {
                    // Closing the channel ends the worker once it is done.
                    worker.sender = None;
                    let Some(thread) = worker.thread.take() else {
                        continue;
                    };
                    let report = thread.join().unwrap_or(Report {
                        broken: true,
                        ..Report::default()
                    });
                    for (sum, count) in total.outcomes.iter_mut().zip(report.outcomes) {
                        *sum += count;
                    }
                    total.pending_events += report.pending_events;
                    total.waiting_keys += report.waiting_keys;
                    total.peak_waiting_keys += report.peak_waiting_keys;
                    total.broken |= report.broken;
                    if let Some(log) = report.log {
                        total.log.get_or_insert_with(Vec::new).extend(log);
                    }
                }
                total
            }
        }
    }
}

/// What a worker that ended early leaves the driver with.
fn stopped_worker() -> RunError {
    RunError::Start(std::io::Error::other(
        "a worker stopped: a sink it writes to failed",
    ))
}

/// A worker at work, on its thread.
struct Matching {
    matcher: Matcher,
    router: Arc<Router>,
    /// The sink threads' channels, by target (`None`: not this worker's).
    sinks: Vec<Option<mpsc::Sender<Message>>>,
    /// Outcomes not sent yet, by target.
    pending: Vec<Batch>,
    /// The routes of one outcome, room kept from one to the next.
    hits: Vec<(usize, usize)>,
    shared: Arc<Shared>,
    report: Report,
}

impl Matching {
    fn run(mut self, mut receiver: mpsc::Receiver<Vec<Work>>) -> Report {
        let mut out = Vec::new();
        while let Some(batch) = receiver.blocking_recv() {
            for work in batch {
                match work {
                    Work::Event(event) => self.matcher.on_event(event, &mut out),
                    Work::Watermark(watermark) => self.matcher.advance_to(watermark),
                    Work::Snapshot { state, go } => {
                        if !self.route(&mut out, true) {
                            return self.end();
                        }
                        let mut encoder = Encoder::new();
                        self.matcher.save(&mut encoder);
                        let _ = state.send(encoder.into_bytes());
                        // Gone, the driver gave up on the checkpoint.
                        let _ = go.blocking_recv();
                    }
                    Work::Load { kept, only, done } => {
                        let loaded = load(&mut self.matcher, &kept, only).map(|()| {
                            (self.matcher.waiting_keys(), self.matcher.remembered_keys())
                        });
                        drop(kept);
                        let _ = done.send(loaded);
                    }
                }
                loop {
                    let more = self.matcher.fire_due(&mut out, FIRE_BATCH);
                    if !self.route(&mut out, false) {
                        return self.end();
                    }
                    if !more {
                        break;
                    }
                }
            }
            let next = self
                .matcher
                .next_timer()
                .map_or(i64::MAX, EventTime::millis);
            self.shared.next_timer.store(next, Ordering::Relaxed);
            self.shared
                .waiting
                .store(self.matcher.waiting_keys(), Ordering::Relaxed);
            // Nothing more queued: what is decided goes to the sinks now.
            if receiver.is_empty() && !self.route(&mut out, true) {
                return self.end();
            }
        }
        self.route(&mut out, true);
        self.end()
    }

    /// Hands `out` to the targets of its routes, sending full batches (all
    /// of them with `all`); false when a sink has stopped.
    fn route(&mut self, out: &mut Vec<Outcome>, all: bool) -> bool {
        for outcome in out.drain(..) {
            if let Some(index) = OutcomeKind::ALL.iter().position(|k| *k == outcome.kind()) {
                self.report.outcomes[index] += 1;
            }
            if let Some(log) = &mut self.report.log {
                log.push(outcome.clone());
            }
            let pending = &mut self.pending;
            self.router
                .hand_out(outcome, &mut self.hits, |route, target, outcome| {
                    pending[target].push((route, outcome));
                });
        }
        for (pending, sink) in self.pending.iter_mut().zip(&self.sinks) {
            if pending.is_empty() || (!all && pending.len() < SEND_AT) {
                continue;
            }
            let Some(sink) = sink else {
                pending.clear();
                continue;
            };
            let batch = std::mem::replace(pending, Vec::with_capacity(SEND_AT));
            if sink.blocking_send(Message::Outcomes(batch)).is_err() {
                self.report.broken = true;
                return false;
            }
        }
        true
    }

    fn end(mut self) -> Report {
        self.report.pending_events = self.matcher.pending_events();
        self.report.waiting_keys = self.matcher.waiting_keys();
        self.report.peak_waiting_keys = self.matcher.peak_waiting_keys();
        self.report
    }
}
