//! Live inputs in tokio's paused time: idle sources, the all-idle grace,
//! processing-time waits, stopping and resuming. Each test feeds lines to the sources
//! itself ([`Options::feed`]) and moves the clock, so nothing sleeps.

use std::time::Duration;

use runner::diagnostic::SourceFile;
use runner::runtime::{Options, Outputs, SharedBuffer, Summary, run_with};
use runner::time::EventTime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Two sources, `app` and `bank`, keyed by `id`, waiting 5s; `extra` is
/// added to `app`, `bank_extra` to `bank` and `matching` to `match`.
fn pipeline(app_extra: &str, bank_extra: &str, matching: &str) -> String {
    format!(
        r#"
sources:
  app:
    type: inline
    schema: {{id: string, ts: int}}
    event_time: ts
    watermark_lag: 0s
    records: []
{app_extra}
  bank:
    type: inline
    schema: {{id: string, ts: int}}
    event_time: ts
    watermark_lag: 0s
    records: []
{bank_extra}
connect: {{app: id, bank: id}}
match:
  wait: 5s
{matching}
sinks:
  out: {{type: stdout}}
outputs:
  - {{outcome: matched, sink: out, template: 'concat("matched ", key)'}}
  - {{outcome: timed_out, side: app, sink: out, template: 'concat("timed_out ", key, " at ", to_string(app.ts))'}}
  - {{outcome: late, sink: out, template: 'concat("late ", key)'}}
"#
    )
}

/// A running pipeline, its feeds and what it has written so far.
struct Live {
    app: Option<mpsc::Sender<String>>,
    bank: Option<mpsc::Sender<String>>,
    out: SharedBuffer,
    stop: Option<oneshot::Sender<()>>,
    run: JoinHandle<Result<Summary, runner::runtime::RunError>>,
}

impl Live {
    fn start(text: &str) -> Self {
        Self::start_with(text, |options| options)
    }

    /// Starts with options beyond the feeds, the wall clock and the stop.
    fn start_with(text: &str, configure: impl FnOnce(Options) -> Options) -> Self {
        let file = SourceFile::new("live.yaml", text);
        let graph = match runner::compile(&file) {
            Ok(graph) => graph,
            Err(diagnostics) => panic!("{diagnostics:?}"),
        };
        let (app, app_lines) = mpsc::channel(16);
        let (bank, bank_lines) = mpsc::channel(16);
        let (stop, stopped) = oneshot::channel::<()>();
        // Captured buffers are written by the run itself: what it has
        // decided is there as soon as it waits.
        let (outputs, mut buffers) = Outputs::capture(1);
        let out = buffers.remove(0);
        let options = configure(Options::new())
            .feed("app", app_lines)
            .feed("bank", bank_lines)
            .wall_clock_at(EventTime::from_millis(1_000_000))
            .stop_on(async move {
                let _ = stopped.await;
            });
        let run = tokio::spawn(run_with(graph, outputs, options));
        Self {
            app: Some(app),
            bank: Some(bank),
            out,
            stop: Some(stop),
            run,
        }
    }

    async fn app(&self, id: &str, ts: i64) {
        let line = format!(r#"{{"id": "{id}", "ts": {ts}}}"#);
        self.app
            .as_ref()
            .expect("app is open")
            .send(line)
            .await
            .expect("the run is reading");
    }

    async fn bank(&self, id: &str, ts: i64) {
        let line = format!(r#"{{"id": "{id}", "ts": {ts}}}"#);
        self.bank
            .as_ref()
            .expect("bank is open")
            .send(line)
            .await
            .expect("the run is reading");
    }

    /// Lets `seconds` of (paused) time pass, the run doing all it can.
    async fn pass(&self, seconds: f64) {
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    }

    fn lines(&self) -> Vec<String> {
        self.out.contents().lines().map(str::to_string).collect()
    }

    async fn end(mut self) -> (Summary, Vec<String>) {
        self.app = None;
        self.bank = None;
        let out = self.out.clone();
        let summary = self
            .run
            .await
            .expect("the run does not panic")
            .expect("the run succeeds");
        (
            summary,
            out.contents().lines().map(str::to_string).collect(),
        )
    }

    async fn stop(mut self) -> (Summary, Vec<String>) {
        let _ = self.stop.take().expect("not stopped yet").send(());
        let out = self.out.clone();
        let summary = self
            .run
            .await
            .expect("the run does not panic")
            .expect("the run succeeds");
        (
            summary,
            out.contents().lines().map(str::to_string).collect(),
        )
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_source_holds_everything_back_until_it_is_idle() {
    let live = Live::start(&pipeline(
        "    idle_timeout: 10s",
        "    idle_timeout: 10s",
        "",
    ));
    live.app("a", 0).await;
    live.app("b", 20_000).await;
    live.pass(9.0).await;
    assert_eq!(
        live.lines(),
        Vec::<String>::new(),
        "bank may still send events older than app's: nothing is decided"
    );
    live.pass(2.0).await;
    assert_eq!(
        live.lines(),
        ["timed_out a at 0"],
        "bank is idle: app's watermark alone moves, past a's deadline but not b's"
    );
    // Bank speaks again: it rejoins, and its event completes b (app, silent
    // as well, is idle too and holds nothing back).
    live.bank("b", 21_000).await;
    live.pass(0.1).await;
    assert_eq!(live.lines(), ["timed_out a at 0", "matched b"]);
    // Rejoined, bank holds app back again: c waits until bank is idle.
    live.app("c", 60_000).await;
    live.pass(5.0).await;
    assert_eq!(live.lines().len(), 2, "{:?}", live.lines());
    live.pass(10.0).await;
    assert_eq!(
        live.lines().len(),
        2,
        "c is merged, but its deadline is not reached: {:?}",
        live.lines()
    );
    let (summary, lines) = live.end().await;
    assert_eq!(
        lines,
        ["timed_out a at 0", "matched b", "timed_out c at 60000"]
    );
    assert_eq!(summary.pending_events, 0);
}

#[tokio::test(start_paused = true)]
async fn events_behind_the_watermark_of_an_idle_period_are_late() {
    let live = Live::start(&pipeline(
        "    idle_timeout: 1s",
        "    idle_timeout: 1s",
        "  retention: 0s",
    ));
    live.app("a", 10_000).await;
    live.app("b", 30_000).await;
    live.pass(2.0).await;
    assert_eq!(live.lines(), ["timed_out a at 10000"]);
    // Bank's event for a comes after a's alert and retention: late.
    live.bank("a", 11_000).await;
    live.pass(0.1).await;
    assert_eq!(live.lines(), ["timed_out a at 10000", "late a"]);
    live.end().await;
}

#[tokio::test(start_paused = true)]
async fn without_a_grace_all_idle_sources_freeze_the_watermark() {
    let live = Live::start(&pipeline(
        "    idle_timeout: 1s",
        "    idle_timeout: 1s",
        "",
    ));
    live.app("a", 0).await;
    live.pass(3_600.0).await;
    assert_eq!(
        live.lines(),
        Vec::<String>::new(),
        "with every source idle nothing moves event time"
    );
    let (summary, lines) = live.stop().await;
    assert!(summary.stopped);
    assert_eq!(
        lines,
        Vec::<String>::new(),
        "stopping does not time keys out"
    );
    assert_eq!((summary.pending_keys, summary.pending_events), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn after_the_grace_the_watermark_follows_the_wall_clock() {
    let live = Live::start(&pipeline(
        "    idle_timeout: 1s",
        "    idle_timeout: 1s",
        "  idle_grace: 30s",
    ));
    live.app("a", 0).await;
    live.pass(1.5).await;
    live.app("b", 1_000).await;
    live.pass(20.0).await;
    assert_eq!(
        live.lines(),
        Vec::<String>::new(),
        "within the grace the watermark waits for traffic"
    );
    live.pass(12.0).await;
    // 31s after the last event everything is idle past the grace: event
    // time is taken to be 1000 + 31s, past both deadlines.
    assert_eq!(live.lines(), ["timed_out a at 0", "timed_out b at 1000"]);
    // Traffic resumes where it would be now: a fresh key still matches,
    // once app, which rejoined with c, has had its second to send more.
    live.app("c", 40_000).await;
    live.bank("c", 40_500).await;
    live.pass(0.5).await;
    assert_eq!(live.lines().len(), 2);
    live.pass(1.0).await;
    assert_eq!(live.lines()[2..], ["matched c"]);
    live.end().await;
}

#[tokio::test(start_paused = true)]
async fn the_grace_fires_each_deadline_when_the_wall_clock_reaches_it() {
    let live = Live::start(
        &pipeline(
            "    idle_timeout: 1s",
            "    idle_timeout: 1s",
            "  idle_grace: 2s\n  wait: {app: 5s, bank: 5s}",
        )
        .replace("  wait: 5s\n", ""),
    );
    live.app("a", 0).await;
    live.app("b", 3_000).await;
    // Silent from here, and idle after 1s. Event time is taken to run on
    // from 3000 as the wall clock does: a's deadline (5000) would be
    // reached after 2s, but the grace holds it to 3s (1s idle + 2s); b's
    // deadline (8000) is reached after 5s.
    live.pass(2.5).await;
    assert_eq!(live.lines(), Vec::<String>::new());
    live.pass(1.0).await;
    assert_eq!(live.lines(), ["timed_out a at 0"]);
    live.pass(1.0).await;
    assert_eq!(live.lines(), ["timed_out a at 0"]);
    live.pass(1.0).await;
    assert_eq!(live.lines(), ["timed_out a at 0", "timed_out b at 3000"]);
    live.end().await;
}

#[tokio::test(start_paused = true)]
async fn processing_time_waits_follow_the_wall_clock() {
    let text = pipeline("", "", "  clock: processing")
        .replace("    event_time: ts\n    watermark_lag: 0s\n", "");
    let live = Live::start(&text);
    live.app("a", 0).await;
    live.pass(4.0).await;
    live.bank("a", 999_999).await;
    live.pass(0.1).await;
    assert_eq!(live.lines(), ["matched a"], "within 5s of wall-clock time");
    live.app("b", 0).await;
    live.pass(4.9).await;
    assert_eq!(live.lines(), ["matched a"]);
    live.pass(0.2).await;
    assert_eq!(
        live.lines(),
        ["matched a", "timed_out b at 0"],
        "5s after b was read, whatever its record says"
    );
    live.end().await;
}

#[tokio::test(start_paused = true)]
async fn a_source_that_ends_is_not_idle_it_is_done() {
    // Bank has no idle timeout, but ending releases the watermark for good.
    let mut live = Live::start(&pipeline("", "", ""));
    live.app("a", 0).await;
    live.app("b", 20_000).await;
    live.pass(60.0).await;
    assert_eq!(live.lines(), Vec::<String>::new());
    live.bank = None;
    live.pass(0.1).await;
    assert_eq!(
        live.lines(),
        ["timed_out a at 0"],
        "b's deadline is not reached yet"
    );
    let (_, lines) = live.end().await;
    assert_eq!(lines, ["timed_out a at 0", "timed_out b at 20000"]);
}

#[tokio::test(start_paused = true)]
async fn a_source_idle_at_the_checkpoint_is_idle_when_the_run_resumes() {
    let text = pipeline(
        "",
        "    idle_timeout: 2s",
        "checkpoint: {enabled: true, interval: 1h}",
    );
    let state = std::env::temp_dir().join(format!("runner-live-idle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let live = Live::start_with(&text, |options| options.checkpoints(&state, false));
    live.bank("b", 1_000).await;
    live.app("a", 2_000).await;
    live.pass(3.0).await;
    // Bank went idle, which let a through; stopped, the run saves that in
    // its last checkpoint.
    let (summary, lines) = live.stop().await;
    assert_eq!(summary.checkpoints, 1);
    assert_eq!(lines, Vec::<String>::new());

    let live = Live::start_with(&text, |options| options.checkpoints(&state, false));
    live.app("c", 20_000).await;
    live.pass(0.5).await;
    assert_eq!(
        live.lines(),
        ["timed_out a at 2000"],
        "bank was idle, so app's watermark alone moves at once, past a's deadline"
    );
    let (summary, _) = live.stop().await;
    assert_eq!(summary.resumed_from.map(|r| r.sequence), Some(1));
    let _ = std::fs::remove_dir_all(&state);
}
