//! Files and streams that a pipeline would use twice, or in ways that do
//! not fit: two sinks writing one file, a sink overwriting a file a source
//! reads, two sources sharing standard input, a template for a CSV sink.

use super::build::Builder;
use super::graph::{Input, SourceNode};
use crate::config::{SinkFormat, SinkKind, SourceKind, Spanned};
use crate::diagnostic::{Code, Diagnostic};
use crate::time::Duration;

/// How often checkpoints are written unless the pipeline says.
pub(super) const DEFAULT_CHECKPOINT: Duration = Duration::from_millis(10_000);

impl Builder<'_> {
    /// Reports every conflict between the files and streams of sources,
    /// sinks and outputs. Paths are compared as written, after dropping a
    /// leading `./`.
    pub(super) fn file_conflicts(&mut self) {
        let pipeline = self.pipeline;
        let mut stdin: Option<&Spanned<String>> = None;
        let mut read: Vec<&Spanned<String>> = Vec::new();
        for source in &pipeline.sources.items {
            match &source.kind {
                SourceKind::Stdin { .. } => {
                    if let Some(first) = stdin {
                        self.report(
                            Diagnostic::error(
                                Code::FileConflict,
                                format!(
                                    "`{}` and `{}` both read standard input",
                                    first.value, source.name.value
                                ),
                                source.name.span,
                            )
                            .label("second reader of standard input")
                            .secondary(first.span, "first reader")
                            .help("each line of standard input can go to one source only; read the other from a file".to_string()),
                        );
                    } else {
                        stdin = Some(&source.name);
                    }
                }
                SourceKind::File { path, .. } => read.push(path),
                SourceKind::Inline { .. } | SourceKind::Kafka(_) => {}
            }
        }
        let mut written: Vec<(&Spanned<String>, &str)> = Vec::new();
        for sink in &pipeline.sinks.items {
            let SinkKind::File { path, .. } = &sink.kind else {
                continue;
            };
            if let Some((first, first_sink)) = written
                .iter()
                .find(|(first, _)| same_path(&first.value, &path.value))
            {
                self.report(
                    Diagnostic::error(
                        Code::FileConflict,
                        format!(
                            "sinks `{first_sink}` and `{}` both write `{}`",
                            sink.name.value, path.value
                        ),
                        path.span,
                    )
                    .label("written again here")
                    .secondary(first.span, "first written here")
                    .help(
                        "route both outcomes to one sink instead: outputs may share a sink"
                            .to_string(),
                    ),
                );
                continue;
            }
            if let Some(source) = read.iter().find(|source| {
                same_path(&source.value, &path.value)
                    || glob::Pattern::new(&source.value).is_ok_and(|p| p.matches(&path.value))
            }) {
                self.report(
                    Diagnostic::error(
                        Code::FileConflict,
                        format!(
                            "sink `{}` would overwrite `{}`, which a source reads",
                            sink.name.value, path.value
                        ),
                        path.span,
                    )
                    .label("written here")
                    .secondary(source.span, "read here"),
                );
            }
            written.push((path, &sink.name.value));
        }
        self.csv_templates();
        self.resumable();
    }

    /// Checkpoints need every source to be read again from a position:
    /// standard input cannot be. An interval for checkpoints that are off
    /// is a warning.
    pub(super) fn resumable(&mut self) {
        self.interval_unused();
        let pipeline = self.pipeline;
        let Some(enabled) = pipeline
            .checkpoint
            .as_ref()
            .and_then(|c| c.enabled)
            .filter(|e| e.value)
        else {
            return;
        };
        for source in &pipeline.sources.items {
            if let SourceKind::Stdin { .. } = source.kind {
                self.report(
                    Diagnostic::error(
                        Code::NotResumable,
                        format!(
                            "checkpoints are on, but `{}` reads standard input, which cannot be read again",
                            source.name.value
                        ),
                        enabled.span,
                    )
                    .secondary(source.name.span, "reads standard input")
                    .help("read the data from a file, or turn checkpoints off".to_string()),
                );
            }
        }
    }

    /// W006 for a checkpoint interval when no checkpoint is taken: turned
    /// off, or off by default (a source reads standard input, or none
    /// reads files or Kafka).
    fn interval_unused(&mut self) {
        let pipeline = self.pipeline;
        let Some(config) = pipeline.checkpoint.as_ref() else {
            return;
        };
        let Some(interval) = config.interval else {
            return;
        };
        let stdin = pipeline
            .sources
            .items
            .iter()
            .find(|source| matches!(source.kind, SourceKind::Stdin { .. }));
        let files =
            pipeline.sources.items.iter().any(|source| {
                matches!(source.kind, SourceKind::File { .. } | SourceKind::Kafka(_))
            });
        let why = match (config.enabled.map(|e| e.value), stdin) {
            (Some(true), _) => return,
            (Some(false), _) => "checkpoints are turned off with `enabled: false`".to_string(),
            (None, Some(source)) => format!(
                "checkpoints are off: `{}` reads standard input, which cannot be read again",
                source.name.value
            ),
            (None, None) if files => return,
            (None, None) => "checkpoints are off by default when no source reads files or Kafka; turn them on with `enabled: true`".to_string(),
        };
        self.report(
            Diagnostic::warning(Code::Unused, "`interval` has no effect", interval.span)
                .label("no checkpoint is taken")
                .help(why),
        );
    }

    /// How often to write checkpoints: as the pipeline says, by default
    /// every 10s when some source reads files or Kafka and none standard
    /// input.
    pub(super) fn checkpoint_interval(&self, sources: &[SourceNode]) -> Option<Duration> {
        let config = self.pipeline.checkpoint.as_ref();
        let interval = config
            .and_then(|c| c.interval)
            .map_or(DEFAULT_CHECKPOINT, |i| i.value);
        let enabled = config.and_then(|c| c.enabled).map_or_else(
            || {
                sources
                    .iter()
                    .any(|s| matches!(s.input, Input::Files { .. } | Input::Kafka(_)))
                    && !sources
                        .iter()
                        .any(|s| matches!(s.input, Input::Stdin { .. }))
            },
            |e| e.value,
        );
        enabled.then_some(interval)
    }

    /// Whether Kafka sinks (or the state topic, without any) write in a
    /// transaction per checkpoint: only with checkpoints (`checkpointed`),
    /// and Kafka sinks of one cluster, which one producer writes for all.
    pub(super) fn transactions(&mut self, checkpointed: bool) -> bool {
        let pipeline = self.pipeline;
        let Some(asked) = (pipeline.checkpoint.as_ref())
            .and_then(|c| c.transactions)
            .filter(|t| t.value)
        else {
            return false;
        };
        let state_topic = (pipeline.checkpoint.as_ref())
            .and_then(|c| c.state_topic.as_ref())
            .is_some_and(|topic| !topic.value.trim().is_empty());
        let kafka: Vec<&crate::config::KafkaSink> = (pipeline.sinks.items.iter())
            .filter_map(|sink| match &sink.kind {
                SinkKind::Kafka(kafka) => Some(kafka),
                _ => None,
            })
            .collect();
        let problem = if !checkpointed {
            Some((
                asked.span,
                "transactions are committed with checkpoints, which are off".to_string(),
                "turn checkpoints on with `enabled: true`".to_string(),
            ))
        } else if kafka.is_empty() && !state_topic {
            Some((
                asked.span,
                "transactions are for Kafka sinks and the state topic, and no sink writes Kafka"
                    .to_string(),
                "drop `transactions`, or keep the state in a `state_topic`".to_string(),
            ))
        } else if kafka.is_empty() {
            // The state topic's alone: its own check follows.
            None
        } else {
            let first = kafka[0];
            (kafka.iter().skip(1)).find_map(|other| {
                if other.brokers.value != first.brokers.value {
                    return Some((
                        other.brokers.span,
                        "Kafka sinks written in transactions must be of one cluster".to_string(),
                        format!(
                            "one transaction holds every Kafka sink's records: give each the \
                             brokers `{}`",
                            first.brokers.value
                        ),
                    ));
                }
                let differs = (other.properties.iter()).find(|(name, value)| {
                    (first.properties.iter())
                        .any(|(n, v)| n.value == name.value && v.value != value.value)
                })?;
                Some((
                    differs.1.span,
                    format!(
                        "Kafka sinks written in transactions share one producer, and this sets \
                         its `{}` otherwise than the first",
                        differs.0.value
                    ),
                    "give the property one value in every Kafka sink".to_string(),
                ))
            })
        };
        if let Some((span, message, help)) = problem {
            self.report(
                Diagnostic::error(Code::Transactions, message, span)
                    .label("here")
                    .help(help),
            );
            return false;
        }
        true
    }

    /// The compacted Kafka topic each checkpoint's transaction writes every
    /// partition's state to, if the pipeline names one: only with
    /// `transactions`, and where every source reads Kafka (a key's state
    /// goes with its partition). On the Kafka sinks' cluster, or, without
    /// Kafka sinks, the first source's.
    pub(super) fn state_topic(&mut self, transactions: bool) -> Option<String> {
        let pipeline = self.pipeline;
        let topic = (pipeline.checkpoint.as_ref()).and_then(|c| c.state_topic.as_ref())?;
        let not_kafka = (pipeline.sources.items.iter())
            .find(|source| !matches!(source.kind, crate::config::SourceKind::Kafka(_)));
        let problem = if topic.value.trim().is_empty() {
            Some((
                "a state topic needs a name".to_string(),
                "name the compacted topic the state is kept in".to_string(),
            ))
        } else if !transactions {
            Some((
                "the state topic is written in the checkpoints' Kafka transactions, which are off"
                    .to_string(),
                "add `transactions: true`".to_string(),
            ))
        } else {
            not_kafka.map(|source| {
                (
                    format!(
                        "state kept in a Kafka topic is kept by partition, and source `{}` does \
                         not read Kafka",
                        source.name.value
                    ),
                    "read every source from Kafka, or drop `state_topic`".to_string(),
                )
            })
        };
        if let Some((message, help)) = problem {
            self.report(
                Diagnostic::error(Code::Transactions, message, topic.span)
                    .label("here")
                    .help(help),
            );
            return None;
        }
        Some(topic.value.clone())
    }

    /// A CSV sink writes an outcome's fields as columns: an output to one
    /// has no use for a template.
    fn csv_templates(&mut self) {
        let pipeline = self.pipeline;
        for output in &pipeline.outputs {
            let (Some(template), Some(sink)) = (
                &output.template,
                pipeline
                    .sinks
                    .items
                    .iter()
                    .find(|s| s.name.value == output.sink.value),
            ) else {
                continue;
            };
            if let SinkKind::File {
                format: SinkFormat::Csv,
                ..
            } = sink.kind
            {
                self.report(
                    Diagnostic::error(
                        Code::FileConflict,
                        format!(
                            "sink `{}` writes CSV, which has no place for a template",
                            sink.name.value
                        ),
                        template.span,
                    )
                    .label("a template renders a line of text")
                    .secondary(sink.name.span, "a CSV sink writes the outcome's fields as columns")
                    .help("drop the template, or route this output to a `jsonl` file, `stdout` or `stderr`".to_string()),
                );
            }
        }
    }
}

/// Whether two paths as written name the same file.
fn same_path(a: &str, b: &str) -> bool {
    let plain = |path: &str| path.strip_prefix("./").unwrap_or(path).to_string();
    plain(a) == plain(b)
}
