//! `runner run`: a pipeline until its inputs end or it is stopped, with
//! progress on a terminal and a summary on stderr.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use runner::checkpoint::Store;
use runner::config::{OutcomeKind, SinkKind};
use runner::diagnostic::SourceFile;
use runner::plan::{Graph, Input};
use runner::runtime::{self, Instance, Options, Outputs, Progress, RunError, Summary};

use super::args::{LogFormat, RunArgs};
use super::metrics;
use super::{FAILED, USAGE, print, report};

/// Exit status of a run stopped before its bounded inputs ended, as a
/// shell reports a process interrupted by Ctrl-C.
const INTERRUPTED: u8 = 130;

/// Where a pipeline's checkpoints go: `dir`, or `.runner/<file stem>`
/// beside the pipeline file.
fn state_dir(path: &Path, dir: Option<&str>) -> PathBuf {
    if let Some(dir) = dir {
        return PathBuf::from(dir);
    }
    path.parent()
        .unwrap_or_else(|| Path::new(""))
        .join(".runner")
        .join(stem(path))
}

/// `runner state inspect`: what the pipeline's last checkpoint holds, and
/// what its state topic holds, if it keeps one.
pub(super) fn inspect(
    file: &SourceFile,
    path: &Path,
    dir: Option<&str>,
    instance: Instance,
) -> ExitCode {
    let (graph, diagnostics) = runner::check(file);
    if !diagnostics.is_empty() {
        report(&diagnostics, file);
    }
    let Some(graph) = graph else {
        return ExitCode::from(FAILED);
    };
    let dir = state_dir(path, dir);
    let listing = match directory_listing(&graph, &dir, instance) {
        Ok(listing) => listing,
        Err(code) => return code,
    };
    let printed = print(&listing);
    if graph.state_topic.is_none() || printed != ExitCode::SUCCESS {
        return printed;
    }
    match runtime::state_topic_listing(&graph, &dir) {
        Ok(listing) => {
            let (listing, warnings) = listing.unwrap_or_default();
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            print(&listing)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(USAGE)
        }
    }
}

/// What the newest checkpoint in the state directory `dir` of `graph`
/// holds, for `instance`; errors told on stderr, with the exit code.
fn directory_listing(graph: &Graph, dir: &Path, instance: Instance) -> Result<String, ExitCode> {
    let store = Store::new(instance.state_dir(dir));
    let (checkpoint, warnings) = store.load().map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(USAGE)
    })?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    let Some(checkpoint) = checkpoint else {
        let others = runner::runtime::other_checkpoints(dir, instance);
        return Ok(match &others[..] {
            [] => format!(
                "no checkpoint in `{}`: the pipeline has not run, or ran to its end\n",
                store.dir().display()
            ),
            [one] => format!(
                "no checkpoint in `{}` yet: started, this process takes its partitions over from \
                 the checkpoints of {one} (`state inspect` with their `--instance` or \
                 `--state-dir` lists them)\n",
                store.dir().display(),
            ),
            several => format!(
                "no checkpoint in `{}` yet: started, this process takes each of its partitions \
                 over from the checkpoint that holds it newest, of {} (`state inspect` with \
                 their `--instance` or `--state-dir` lists them)\n",
                store.dir().display(),
                several.join("; ")
            ),
        });
    };
    // Whatever the processes' layout was, the pipeline is what must match.
    let mut now = graph.fingerprint();
    now.extend(
        (checkpoint.fingerprint.iter())
            .filter(|(part, _)| runner::checkpoint::LAYOUT_PARTS.contains(&part.as_str()))
            .cloned(),
    );
    if let Some(why) = checkpoint.mismatch(&now) {
        eprintln!("warning: the pipeline changed since the checkpoint was taken ({why})");
    }
    runner::checkpoint::inspect(&checkpoint).map_err(|error| {
        eprintln!("error: `{}`: {error}", store.dir().display());
        ExitCode::from(USAGE)
    })
}

pub(super) fn run(file: &SourceFile, path: &Path, args: &RunArgs) -> ExitCode {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let (graph, diagnostics) = runner::check(file);
    if !diagnostics.is_empty() {
        report(&diagnostics, file);
    }
    let Some(graph) = graph else {
        return ExitCode::from(FAILED);
    };
    if let Some(format) = args.log {
        log_to_stderr(format);
    }
    let live = graph.sources.iter().any(|source| {
        matches!(
            source.input,
            Input::Files { follow: true, .. } | Input::Stdin { .. }
        ) || matches!(&source.input, Input::Kafka(kafka) if !kafka.bounded)
    });
    let malformed_routed = graph
        .routes
        .iter()
        .any(|route| route.outcome == OutcomeKind::Malformed);
    let state = state_dir(path, args.state_dir.as_deref());
    let progress = !args.quiet && shows_progress(&graph);
    let page = match args.metrics_addr {
        Some(addr) => {
            let pipeline = graph.name.clone().unwrap_or_else(|| stem(path));
            match metrics::serve(addr, &pipeline) {
                Ok((page, bound)) => {
                    if !args.quiet {
                        eprintln!("runner: metrics at http://{bound}/metrics");
                    }
                    Some(page)
                }
                Err(error) => {
                    eprintln!("error: cannot serve metrics at {addr}: {error}");
                    return ExitCode::from(USAGE);
                }
            }
        }
        None => None,
    };
    let runs = Runs {
        args,
        base,
        state,
        progress,
        page,
        live,
        malformed_routed,
    };
    if args.join {
        return joined(&graph, file, &runs);
    }
    let result = runtime::run_blocking_with(
        graph,
        Outputs::stdio(),
        runs.options(args.instance, when(stopped_by_signal())),
    );
    runs.ended(result, args.instance, file)
        .unwrap_or_else(|code| code)
}

/// How each run of a pipeline is set up and told about.
struct Runs<'a> {
    args: &'a RunArgs,
    /// The pipeline file's directory.
    base: PathBuf,
    /// The pipeline's state directory.
    state: PathBuf,
    /// Whether progress is drawn on stderr.
    progress: bool,
    page: Option<metrics::Page>,
    /// Whether a source reads on until stopped.
    live: bool,
    malformed_routed: bool,
}

impl Runs<'_> {
    /// The options of a run as `instance`, which `stop` stops.
    fn options(
        &self,
        instance: Instance,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Options {
        let mut options = Options::new()
            .relative_to(&self.base)
            .stop_on(stop)
            .workers(self.args.workers)
            .instance(instance)
            .checkpoints(&self.state, self.args.fresh);
        let (progress, page) = (self.progress, self.page.clone());
        if progress || page.is_some() {
            options = options.progress(move |report| {
                if progress {
                    draw(report);
                }
                if let Some(page) = &page {
                    page.update(report);
                }
            });
        }
        options
    }

    /// Tells how a run as `instance` ended: `Ok` with its exit code when
    /// the pipeline may run again (it stopped, or read its inputs to their
    /// end), `Err` with it when the run failed.
    fn ended(
        &self,
        result: Result<Summary, RunError>,
        instance: Instance,
        file: &SourceFile,
    ) -> Result<ExitCode, ExitCode> {
        if self.progress {
            clear_progress();
        }
        if self.args.state_dir.is_none() {
            remove_if_empty(&self.state, instance);
        }
        match &result {
            Ok(summary) => tracing::info!(
                events = summary.sources.iter().map(|s| s.events).sum::<u64>(),
                elapsed_ms = u64::try_from(summary.elapsed.as_millis()).unwrap_or(u64::MAX),
                stopped = summary.stopped,
                checkpoints = summary.checkpoints,
                "run ended"
            ),
            Err(error) => tracing::error!(%error, "run failed"),
        }
        match result {
            Ok(summary) => {
                for warning in &summary.warnings {
                    eprintln!("warning: {warning}");
                }
                if !self.args.quiet {
                    let _ = std::io::stderr()
                        .write_all(render(&summary, self.malformed_routed, instance).as_bytes());
                }
                if summary.stopped && !self.live {
                    Ok(ExitCode::from(INTERRUPTED))
                } else {
                    Ok(ExitCode::SUCCESS)
                }
            }
            // `runner pipeline.yaml | head`: the reader has all it wanted.
            Err(error) if error.is_broken_pipe() => Ok(ExitCode::SUCCESS),
            Err(error) => Err(failed(
                &error,
                file,
                &Store::new(instance.state_dir(&self.state)),
            )),
        }
    }
}

/// `--join`: runs the pipeline on the partitions its consumer group deals
/// this process, a run per dealing, until Ctrl-C or SIGTERM; then leaves
/// the group.
fn joined(graph: &Graph, file: &SourceFile, runs: &Runs<'_>) -> ExitCode {
    let membership = match runtime::Membership::join(graph) {
        Ok(membership) => membership,
        Err(error) => return failed(&error, file, &Store::new(&runs.state)),
    };
    if !runs.args.quiet {
        eprintln!(
            "runner: joined the consumer group `{}`: waiting for its partitions",
            membership.group()
        );
    }
    let stop = stopped_by_signal();
    loop {
        let term = match membership.next(&stop) {
            Ok(Some(term)) => term,
            Ok(None) => break,
            Err(error) => return failed(&error, file, &Store::new(&runs.state)),
        };
        let (signalled, taken_back) = (when(stop.clone()), membership.taken_back(term));
        let stop_term = async move {
            tokio::select! {
                () = signalled => {}
                () = taken_back => {}
            }
        };
        // Each run takes a graph of its own: compiled again, as it was.
        let Some(graph) = runner::check(file).0 else {
            return ExitCode::from(FAILED);
        };
        let result = runtime::run_blocking_with(
            graph,
            Outputs::stdio(),
            runs.options(term.instance, stop_term),
        );
        // Its last checkpoint is saved: the group may deal its partitions.
        membership.done();
        if let Some(page) = &runs.page {
            page.between_runs();
        }
        if let Err(code) = runs.ended(result, term.instance, file) {
            return code;
        }
        if *stop.borrow() {
            break;
        }
    }
    membership.leave();
    ExitCode::SUCCESS
}

/// Removes the pipeline's default state directory `state` once no
/// instance's checkpoints are left in it (an instance's directory is
/// within it), and `.runner` beside the pipeline once no pipeline's are.
fn remove_if_empty(state: &Path, instance: Instance) {
    if instance.is_shared() {
        let _ = std::fs::remove_dir(state);
    }
    if let Some(runner) = state.parent() {
        let _ = std::fs::remove_dir(runner);
    }
}

/// Writes the run's log to stderr, a line of text or JSON per event.
fn log_to_stderr(format: LogFormat) {
    let log = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .with_ansi(false);
    // Set once per process, before anything logs.
    let _ = match format {
        LogFormat::Text => log.try_init(),
        LogFormat::Json => log.json().flatten_event(true).try_init(),
    };
}

/// Reports why a run failed and gives its exit code; for an input or
/// output that failed mid-run, says which checkpoint a run again resumes
/// from.
fn failed(error: &RunError, file: &SourceFile, store: &Store) -> ExitCode {
    if let Some(diagnostic) = error.to_diagnostic() {
        report(&[diagnostic], file);
        return match error {
            RunError::Eval { .. } => ExitCode::from(FAILED),
            _ => ExitCode::from(USAGE),
        };
    }
    // Not about the pipeline: input or output that cannot be read or written.
    eprintln!("error: {error}");
    // One that failed mid-run (a full disk, a file gone): once it is put
    // right, the same pipeline resumes.
    if matches!(
        error,
        RunError::Read { .. } | RunError::Write { .. } | RunError::Save(_)
    ) && let Some(sequence) = store.newest()
    {
        eprintln!(
            "runner: checkpoint {sequence} in `{}` is kept: run the pipeline again to resume \
             from it, reading again what came after it",
            store.dir().display()
        );
    }
    ExitCode::from(USAGE)
}

/// A pipeline's name from its file: `bill_check` for `bill_check.yaml`.
fn stem(path: &Path) -> String {
    path.file_stem().map_or_else(
        || "pipeline".to_string(),
        |stem| stem.to_string_lossy().into_owned(),
    )
}

/// Says `true` on Ctrl-C or SIGTERM, heard on a thread of its own from
/// now on (so a signal that comes while the run starts stops it cleanly
/// too); a second one then ends the process at once.
fn stopped_by_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tell, told) = tokio::sync::watch::channel(false);
    let Ok(watch) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return told;
    };
    // Made here, the listeners hear signals from now on.
    let signals = {
        let _entered = watch.enter();
        Signals::listen()
    };
    let _ = std::thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || {
            let mut signals = signals;
            watch.block_on(signals.next());
            let _ = tell.send(true);
            // Stopping writes out what was read and saves a checkpoint,
            // which may wait on brokers that are gone: a second signal ends
            // the process at once. The last checkpoint saved still holds.
            watch.block_on(signals.next());
            eprintln!(
                "runner: stopped again: exiting now, without waiting for the last checkpoint \
                 (a run resumes from the one before)"
            );
            std::process::exit(i32::from(INTERRUPTED));
        });
    told
}

/// Completes once `stopped` says so.
async fn when(mut stopped: tokio::sync::watch::Receiver<bool>) {
    // Its sender gone, no signal can come any more.
    if stopped.wait_for(|stopped| *stopped).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Listeners for Ctrl-C and SIGTERM.
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Listens from now on; within a tokio runtime.
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next Ctrl-C or SIGTERM.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn one(signal: Option<&mut tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        if signal.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = one(self.interrupt.as_mut()) => {}
                () = one(self.terminate.as_mut()) => {}
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Progress is drawn on stderr when it is a terminal that no sink writes
/// to, since lines written under a progress line would garble both.
fn shows_progress(graph: &Graph) -> bool {
    let reads_files = graph
        .sources
        .iter()
        .any(|source| !matches!(source.input, Input::Inline(_)));
    let stdout_terminal = std::io::stdout().is_terminal();
    let sinks_on_terminal = graph.sinks.iter().any(|sink| match sink.kind {
        SinkKind::Stdout => stdout_terminal,
        SinkKind::Stderr => true,
        SinkKind::File { .. } | SinkKind::Kafka(_) => false,
    });
    reads_files && std::io::stderr().is_terminal() && !sinks_on_terminal
}

/// One progress line, drawn over the last.
fn draw(progress: &Progress) {
    let mut line = String::from("\r\x1b[2K");
    match progress.size {
        Some(size) if size > 0 => {
            let percent = progress.read.saturating_mul(100) / size;
            let _ = write!(line, "reading {percent:>3}% of {}", bytes(size));
        }
        _ => {
            let _ = write!(line, "read {}", bytes(progress.read));
        }
    }
    let _ = write!(
        line,
        " · {} · {} waiting",
        count(progress.events, "event"),
        count(progress.pending_keys as u64, "key")
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn clear_progress() {
    let _ = std::io::stderr().write_all(b"\r\x1b[2K");
}

/// Bytes as whole megabytes: `412 MB`.
fn megabytes(bytes: u64) -> String {
    format!("{} MB", bytes.div_ceil(1_000_000))
}

/// `1 event`, `2 events`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The summary's line about the checkpoint a run resumed from, or the
/// checkpoints of other processes it took over from.
fn resumed_line(resumed: &runner::runtime::Resumed) -> String {
    let from = match resumed.of {
        None => format!("resumed    from checkpoint {}", resumed.sequence),
        Some(1) => format!(
            "took over  its partitions from the checkpoint of one process ({})",
            resumed.sequence
        ),
        Some(processes) => format!(
            "took over  its partitions from the checkpoints of {processes} processes \
             (newest {})",
            resumed.sequence
        ),
    };
    let from = match resumed.from_topic {
        0 => from,
        partitions => format!(
            "{from}, {} of them from the state topic",
            count(partitions as u64, "partition")
        ),
    };
    format!(
        "  {from}: {} pending, {} remembered, read in {:.2}s\n",
        count(resumed.pending as u64, "key"),
        resumed.remembered,
        resumed.took.as_secs_f64()
    )
}

/// A byte count for people: `812 B`, `14.2 MB`.
fn bytes(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // One decimal is all that is shown.
    let n = n as f64;
    match n {
        n if n < 1e3 => format!("{n} B"),
        n if n < 1e6 => format!("{:.1} kB", n / 1e3),
        n if n < 1e9 => format!("{:.1} MB", n / 1e6),
        n => format!("{:.1} GB", n / 1e9),
    }
}

/// The summary written to stderr after a run.
///
/// ```text
/// runner: 6012 events in 0.31s (19394 events/s)
///   read       app 3006 events, 2 malformed lines; bank 3006 events
///   outcomes   matched 2861, mismatched 41, timed_out 60, duplicate 30, late 12, resolved 4, malformed 2
///   pending    0 keys (at most 1022 at once)
///   watermark  2026-11-01T10:59:58Z
/// ```
pub(super) fn render(summary: &Summary, malformed_routed: bool, instance: Instance) -> String {
    let events = summary.events();
    let seconds = summary.elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss)] // A rate for people.
    let rate = if seconds > 0.0 {
        format!(" ({:.0} events/s)", events as f64 / seconds)
    } else {
        String::new()
    };
    let mut out = String::new();
    let verb = if summary.stopped { "stopped after" } else { "" };
    let who = if instance.count().is_none() {
        format!("runner: {instance}:")
    } else if instance.is_shared() {
        format!("runner: instance {instance}:")
    } else {
        "runner:".to_string()
    };
    let _ = writeln!(
        out,
        "{who} {verb}{}{} in {seconds:.2}s{rate}",
        if verb.is_empty() { "" } else { " " },
        count(events, "event")
    );
    let read: Vec<String> = summary
        .sources
        .iter()
        .map(|source| {
            let mut text = format!("{} {}", source.name, count(source.events, "event"));
            if source.malformed > 0 {
                let _ = write!(text, ", {}", count(source.malformed, "malformed line"));
            }
            text
        })
        .collect();
    if let Some(resumed) = &summary.resumed_from {
        out.push_str(&resumed_line(resumed));
    }
    let _ = writeln!(out, "  read       {}", read.join("; "));
    let outcomes: Vec<String> = summary
        .outcomes
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(kind, count)| format!("{} {count}", kind.name()))
        .collect();
    let outcomes = if outcomes.is_empty() {
        "none".to_string()
    } else {
        outcomes.join(", ")
    };
    let _ = writeln!(out, "  outcomes   {outcomes}");
    if summary.count(OutcomeKind::Malformed) > 0 && !malformed_routed {
        let _ = writeln!(
            out,
            "             malformed lines are only counted: route `malformed` to a sink to see them"
        );
    }
    let keys = count(summary.pending_keys as u64, "key");
    let waiting = if summary.stopped && summary.pending_keys > 0 {
        format!(
            "{keys}, {} still waiting",
            count(summary.pending_events as u64, "event")
        )
    } else {
        keys
    };
    let _ = writeln!(
        out,
        "  pending    {waiting} (at most {} at once)",
        summary.peak_pending_keys
    );
    if let Some(watermark) = summary.watermark {
        let _ = writeln!(out, "  watermark  {watermark}");
    }
    if summary.checkpoints > 0 {
        let _ = writeln!(
            out,
            "  saved      {}, the longest holding the run up {:.3}s",
            count(summary.checkpoints, "checkpoint"),
            summary.longest_checkpoint.as_secs_f64()
        );
    }
    if let Some(peak) = summary.peak_memory {
        let at_end = summary
            .memory_at_end_of_input
            .map(|bytes| format!("{} when the input ended, ", megabytes(bytes)))
            .unwrap_or_default();
        let _ = writeln!(out, "  memory     {at_end}{} at most", megabytes(peak));
    }
    out
}
