//! A sink that cannot keep up slows the sources down instead of growing
//! memory: every queue between them is bounded, so while the sink is
//! blocked a run takes in only so much, however much is offered.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use runner::config::OutcomeKind;
use runner::diagnostic::SourceFile;
use runner::runtime::{Options, Outputs, run_with};
use tokio::sync::mpsc;

/// A writer that blocks until it is opened, then counts lines.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<(bool, usize)>, Condvar)>);

impl Gate {
    fn open(&self) {
        let (state, opened) = &*self.0;
        state.lock().unwrap().0 = true;
        opened.notify_all();
    }

    fn lines(&self) -> usize {
        self.0.0.lock().unwrap().1
    }
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (state, opened) = &*self.0;
        let mut state = opened
            .wait_while(state.lock().unwrap(), |(open, _)| !*open)
            .unwrap();
        state.1 += memchr::memchr_iter(b'\n', buf).count();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const PIPELINE: &str = r"
sources:
  app: {type: inline, schema: {id: string, ts: int}, event_time: ts, watermark_lag: 0s, records: []}
  bank: {type: inline, schema: {id: string, ts: int}, event_time: ts, watermark_lag: 0s, records: []}
connect: {app: id, bank: id}
match: {wait: 5s}
sinks:
  out: {type: stdout}
outputs:
  - {outcome: matched, sink: out, template: key}
  - {outcome: timed_out, sink: out, template: key}
";

#[tokio::test]
async fn a_blocked_sink_stops_the_intake_and_loses_nothing() {
    let graph = runner::compile(&SourceFile::new("backpressure.yaml", PIPELINE))
        .unwrap_or_else(|diagnostics| panic!("{diagnostics:?}"));
    let (app, app_lines) = mpsc::channel::<String>(16);
    let (bank, bank_lines) = mpsc::channel::<String>(16);
    let gate = Gate::default();
    let options = Options::new()
        .feed("app", app_lines)
        .feed("bank", bank_lines);
    let run = tokio::spawn(run_with(graph, Outputs::stdout_to(gate.clone()), options));
    // Offer a million orders, each on both sides, until the run stops
    // taking them.
    let mut taken: u64 = 0;
    for n in 0..1_000_000 {
        let line = format!(r#"{{"id": "o{n}", "ts": {n}}}"#);
        let both = async {
            app.send(line.clone()).await.unwrap();
            bank.send(line).await.unwrap();
        };
        if tokio::time::timeout(Duration::from_secs(2), both)
            .await
            .is_err()
        {
            break;
        }
        taken += 1;
    }
    assert_eq!(gate.lines(), 0, "the sink is blocked");
    assert!(
        taken < 100_000,
        "a blocked sink must stop the intake, not buffer it: {taken} orders taken"
    );
    // Opened, the sink takes everything, and the run ends with all of it.
    gate.open();
    for n in taken + 1..taken + 1_000 {
        let line = format!(r#"{{"id": "o{n}", "ts": {n}}}"#);
        app.send(line.clone()).await.unwrap();
        bank.send(line).await.unwrap();
    }
    drop((app, bank));
    let summary = run.await.unwrap().unwrap();
    let matched = summary.count(OutcomeKind::Matched);
    let timed_out = summary.count(OutcomeKind::TimedOut);
    assert_eq!(
        matched,
        taken + 999,
        "every order sent on both sides matched"
    );
    // The order offered when the intake stopped may have gone in on one side.
    assert!(timed_out <= 1, "{timed_out}");
    assert_eq!(
        gate.lines() as u64,
        matched + timed_out,
        "and all of it written"
    );
}
