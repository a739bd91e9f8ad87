//! `--metrics-addr`: the run's progress as Prometheus metrics over HTTP,
//! and a health check.
//!
//! The page is rendered from each progress report (every 200ms) on the
//! driver's thread, and served as it stands by a thread of its own with
//! plain blocking sockets: a scrape never touches the run, and the run
//! never waits for a scrape. HTTP is the little a scraper needs (`GET` or
//! `HEAD` of `/metrics` and `/health`, one request per connection), not a
//! server framework.

use std::fmt::Write as _;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use runner::runtime::Progress;
use runner::time::Watermark;

/// The page the metrics thread serves, rendered by the run.
#[derive(Clone)]
pub(super) struct Page {
    text: Arc<Mutex<String>>,
    pipeline: Arc<str>,
}

impl Page {
    /// Renders `progress` as the page to serve.
    pub(super) fn update(&self, progress: &Progress<'_>) {
        let text = render(&self.pipeline, progress, SystemTime::now());
        *self.text.lock().unwrap_or_else(PoisonError::into_inner) = text;
    }

    /// Serves the page of a process that runs nothing now: up, but with
    /// no counts (a `--join` process between two dealings, whose next
    /// run counts from zero).
    pub(super) fn between_runs(&self) {
        *self.text.lock().unwrap_or_else(PoisonError::into_inner) = up(&self.pipeline);
    }

    fn text(&self) -> String {
        self.text
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Listens on `addr` and serves the metrics of the pipeline `pipeline`
/// from a thread of its own; returns the page to keep current and the
/// address it is served at (the port the system chose, for port 0).
///
/// # Errors
///
/// The address cannot be listened on (taken, or not this machine's).
pub(super) fn serve(addr: SocketAddr, pipeline: &str) -> io::Result<(Page, SocketAddr)> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let page = Page {
        text: Arc::new(Mutex::new(up(pipeline))),
        pipeline: pipeline.into(),
    };
    let served = page.clone();
    std::thread::Builder::new()
        .name("metrics".to_string())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                // A client that goes away mid-request is its own problem.
                let _ = answer(stream, &served);
            }
        })?;
    Ok((page, bound))
}

/// The most a request's head may take.
const MAX_HEAD: usize = 8 * 1024;

/// Reads one request from `stream` and answers it.
fn answer(mut stream: TcpStream, page: &Page) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut head = Vec::new();
    let mut chunk = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let path = target.split('?').next().unwrap_or_default();
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", page.text()),
        ("GET" | "HEAD", "/health") => ("200 OK", "ok\n".to_string()),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "not found: the metrics are at /metrics, the health check at /health\n".to_string(),
        ),
        _ => ("405 Method Not Allowed", "only GET and HEAD\n".to_string()),
    };
    let kind = if path == "/metrics" && status.starts_with("200") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// The page before the first report: the run is up.
fn up(pipeline: &str) -> String {
    let mut page = Metrics::new(pipeline);
    page.up();
    page.out
}

/// The page for `progress`, with lags measured against `now`.
fn render(pipeline: &str, progress: &Progress<'_>, now: SystemTime) -> String {
    let mut page = Metrics::new(pipeline);
    page.up();
    counts(&mut page, progress);
    partitions(&mut page, progress);
    watermarks(&mut page, progress, now);
    checkpoints(&mut page, progress);
    page.out
}

/// What Kafka sources read per partition, and how far behind they are.
#[allow(clippy::cast_precision_loss)] // Counts as Prometheus floats.
fn partitions(page: &mut Metrics, progress: &Progress<'_>) {
    if progress.partitions.is_empty() {
        return;
    }
    page.counter(
        "runner_kafka_messages_total",
        "Messages read from Kafka, by source and partition.",
    );
    for read in &progress.partitions {
        let partition = read.partition.to_string();
        let labels = [("source", read.source.as_str()), ("partition", &partition)];
        page.sample("runner_kafka_messages_total", &labels, read.messages as f64);
    }
    page.gauge(
        "runner_kafka_consumer_lag",
        "Messages in each Kafka partition not read yet: its end offset minus the consumer's \
         position, absent until the client's statistics (every second) have told the end.",
    );
    for read in &progress.partitions {
        if let Some(lag) = read.lag {
            let partition = read.partition.to_string();
            let labels = [("source", read.source.as_str()), ("partition", &partition)];
            page.sample("runner_kafka_consumer_lag", &labels, lag as f64);
        }
    }
}

/// What was read and decided so far, and what is waiting.
#[allow(clippy::cast_precision_loss)] // Counts as Prometheus floats.
fn counts(page: &mut Metrics, progress: &Progress<'_>) {
    page.counter("runner_events_total", "Events read and merged, by source.");
    for source in progress.sources {
        page.sample(
            "runner_events_total",
            &[("source", &source.name)],
            source.events as f64,
        );
    }
    page.counter(
        "runner_malformed_lines_total",
        "Lines that were not records, by source.",
    );
    for source in progress.sources {
        let labels = [("source", source.name.as_str())];
        page.sample(
            "runner_malformed_lines_total",
            &labels,
            source.malformed as f64,
        );
    }
    page.counter("runner_outcomes_total", "Outcomes emitted, by kind.");
    for (kind, count) in progress.outcomes {
        page.sample(
            "runner_outcomes_total",
            &[("outcome", kind.name())],
            *count as f64,
        );
    }
    page.counter(
        "runner_read_bytes_total",
        "Bytes read from files, standard input and Kafka message values.",
    );
    page.sample("runner_read_bytes_total", &[], progress.read as f64);
    page.gauge(
        "runner_pending_keys",
        "Keys with events waiting for another side.",
    );
    page.sample("runner_pending_keys", &[], progress.pending_keys as f64);
}

/// Each source's watermark and its lag behind `now`, and the match's.
#[allow(clippy::cast_precision_loss)] // Milliseconds of event time fit a float's 53 bits.
fn watermarks(page: &mut Metrics, progress: &Progress<'_>, now: SystemTime) {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    page.gauge(
        "runner_watermark_seconds",
        "How far event time has progressed, by source, in seconds since the epoch: +Inf once \
         the source has ended, absent before its first event.",
    );
    for (source, watermark) in progress.sources.iter().zip(&progress.source_watermarks) {
        if let Some(seconds) = seconds(*watermark) {
            page.sample(
                "runner_watermark_seconds",
                &[("source", &source.name)],
                seconds,
            );
        }
    }
    page.gauge(
        "runner_watermark_lag_seconds",
        "How far each source's watermark is behind the wall clock, in seconds.",
    );
    for (source, watermark) in progress.sources.iter().zip(&progress.source_watermarks) {
        if let Some(seconds) = seconds(*watermark).filter(|s| s.is_finite()) {
            let labels = [("source", source.name.as_str())];
            page.sample("runner_watermark_lag_seconds", &labels, now - seconds);
        }
    }
    page.gauge(
        "runner_operator_watermark_seconds",
        "The watermark of the match, the least of the sources', in seconds since the epoch.",
    );
    if let Some(time) = progress.watermark {
        let seconds = time.millis() as f64 / 1000.0;
        page.sample("runner_operator_watermark_seconds", &[], seconds);
    }
}

/// How many checkpoints, and what the last one took.
#[allow(clippy::cast_precision_loss)] // Counts and sizes as Prometheus floats.
fn checkpoints(page: &mut Metrics, progress: &Progress<'_>) {
    page.counter("runner_checkpoints_total", "Checkpoints written.");
    page.sample("runner_checkpoints_total", &[], progress.checkpoints as f64);
    let last = progress.last_checkpoint;
    page.gauge(
        "runner_checkpoint_pause_seconds",
        "How long the last checkpoint held the run up.",
    );
    page.sample(
        "runner_checkpoint_pause_seconds",
        &[],
        last.pause.as_secs_f64(),
    );
    page.gauge(
        "runner_checkpoint_duration_seconds",
        "From the start of the last checkpoint until it was synced to disk.",
    );
    page.sample(
        "runner_checkpoint_duration_seconds",
        &[],
        last.took.as_secs_f64(),
    );
    page.gauge(
        "runner_checkpoint_bytes",
        "The size of the last checkpoint's file.",
    );
    page.sample("runner_checkpoint_bytes", &[], last.bytes as f64);
}

/// A watermark in seconds since the epoch: +Inf at the end of input,
/// `None` before the first event.
#[allow(clippy::cast_precision_loss)] // Milliseconds of event time fit a float's 53 bits.
fn seconds(watermark: Watermark) -> Option<f64> {
    match watermark {
        Watermark::MIN => None,
        Watermark::MAX => Some(f64::INFINITY),
        _ => watermark.time().map(|time| time.millis() as f64 / 1000.0),
    }
}

/// The text exposition format, every sample labelled with the pipeline.
struct Metrics {
    out: String,
    pipeline: String,
}

impl Metrics {
    fn new(pipeline: &str) -> Self {
        Self {
            out: String::new(),
            pipeline: pipeline.to_string(),
        }
    }

    /// `runner_up`: the run is going.
    fn up(&mut self) {
        self.gauge("runner_up", "Whether the run is going.");
        self.sample("runner_up", &[], 1.0);
    }

    fn counter(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} counter");
    }

    fn gauge(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} gauge");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{name}{{pipeline=\"{}\"", escape(&self.pipeline));
        for (label, text) in labels {
            let _ = write!(self.out, ",{label}=\"{}\"", escape(text));
        }
        self.out.push_str("} ");
        if value.is_infinite() {
            self.out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(self.out, "{value}");
        }
        self.out.push('\n');
    }
}

/// A label value with its backslashes, quotes and line breaks escaped.
fn escape(text: &str) -> String {
    text.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use runner::config::OutcomeKind;
    use runner::runtime::{CheckpointTaken, PartitionProgress, SourceSummary};
    use runner::time::EventTime;

    #[test]
    fn progress_reads_as_prometheus_text() {
        let sources = [
            SourceSummary {
                name: "app".into(),
                events: 12,
                malformed: 1,
            },
            SourceSummary {
                name: "bank \"eu\"".into(),
                events: 7,
                malformed: 0,
            },
        ];
        let outcomes = [(OutcomeKind::Matched, 5), (OutcomeKind::TimedOut, 2)];
        let progress = Progress {
            read: 2048,
            size: None,
            events: 19,
            pending_keys: 3,
            done: false,
            sources: &sources,
            source_watermarks: vec![
                Watermark::bounded(EventTime::from_millis(10_501), runner::time::Duration::ZERO),
                Watermark::MAX,
            ],
            outcomes: &outcomes,
            watermark: Some(EventTime::from_millis(10_500)),
            checkpoints: 2,
            last_checkpoint: CheckpointTaken {
                pause: Duration::from_millis(3),
                took: Duration::from_millis(250),
                bytes: 4096,
            },
            partitions: vec![
                PartitionProgress {
                    source: "app".into(),
                    partition: 0,
                    messages: 9,
                    lag: Some(4),
                },
                PartitionProgress {
                    source: "app".into(),
                    partition: 1,
                    messages: 3,
                    lag: None,
                },
            ],
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(70);
        let page = render("bill_check", &progress, now);
        for line in [
            "# TYPE runner_events_total counter",
            r#"runner_events_total{pipeline="bill_check",source="app"} 12"#,
            r#"runner_events_total{pipeline="bill_check",source="bank \"eu\""} 7"#,
            r#"runner_malformed_lines_total{pipeline="bill_check",source="app"} 1"#,
            r#"runner_outcomes_total{pipeline="bill_check",outcome="matched"} 5"#,
            r#"runner_outcomes_total{pipeline="bill_check",outcome="timed_out"} 2"#,
            r#"runner_read_bytes_total{pipeline="bill_check"} 2048"#,
            r#"runner_pending_keys{pipeline="bill_check"} 3"#,
            r#"runner_watermark_seconds{pipeline="bill_check",source="app"} 10.5"#,
            r#"runner_watermark_seconds{pipeline="bill_check",source="bank \"eu\""} +Inf"#,
            r#"runner_watermark_lag_seconds{pipeline="bill_check",source="app"} 59.5"#,
            r#"runner_operator_watermark_seconds{pipeline="bill_check"} 10.5"#,
            r#"runner_checkpoints_total{pipeline="bill_check"} 2"#,
            r#"runner_checkpoint_pause_seconds{pipeline="bill_check"} 0.003"#,
            r#"runner_checkpoint_duration_seconds{pipeline="bill_check"} 0.25"#,
            r#"runner_checkpoint_bytes{pipeline="bill_check"} 4096"#,
            r#"runner_kafka_messages_total{pipeline="bill_check",source="app",partition="0"} 9"#,
            r#"runner_kafka_messages_total{pipeline="bill_check",source="app",partition="1"} 3"#,
            r#"runner_kafka_consumer_lag{pipeline="bill_check",source="app",partition="0"} 4"#,
        ] {
            assert!(page.lines().any(|l| l == line), "no `{line}` in\n{page}");
        }
        // A partition whose end is not known yet has no lag to speak of.
        assert!(!page.contains(
            r#"runner_kafka_consumer_lag{pipeline="bill_check",source="app",partition="1"}"#
        ));
        // An ended source has no lag to speak of.
        assert!(
            !page.contains(r#"runner_watermark_lag_seconds{pipeline="bill_check",source="bank"#)
        );
        // Every sample's metric is introduced by its HELP and TYPE lines.
        for line in page.lines().filter(|line| !line.starts_with('#')) {
            let name = line.split('{').next().unwrap_or_default();
            assert!(page.contains(&format!("# TYPE {name} ")), "{line}");
        }
    }
}
