//! Errors that stop a run.

use std::io;

use crate::config::Spanned;
use crate::diagnostic::{Code, Diagnostic, Span};

/// Why a run stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An expression failed on an event.
    #[error("{message}")]
    Eval {
        /// What failed and why.
        message: String,
        /// The failing part of the expression, in the pipeline file.
        failing: Span,
        /// The record it failed on, when the record is in the pipeline file.
        record: Option<Span>,
    },
    /// A file a source reads or a sink writes could not be opened.
    #[error("cannot open `{path}`: {message}")]
    Open {
        /// The file, or the glob that matches nothing.
        path: String,
        /// Where the path is written in the pipeline file.
        span: Span,
        /// Why.
        message: String,
    },
    /// An input could not be read to its end.
    #[error("cannot read `{file}` for source `{input}`: {error}")]
    Read {
        /// The source.
        input: String,
        /// The file, or `-` for standard input.
        file: String,
        /// The I/O error.
        error: io::Error,
    },
    /// Processes cannot share this pipeline's partitions.
    #[error("{message}")]
    Shared {
        /// Why.
        message: String,
        /// Where in the pipeline file, if it is written there.
        span: Option<Span>,
    },
    /// A run could not resume from its checkpoint.
    #[error("{0}")]
    Checkpoint(String),
    /// A checkpoint could not be written: its sinks could not be synced or
    /// its file written. The checkpoint before it still holds.
    #[error("cannot write a checkpoint: {0}")]
    Save(String),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Start(#[source] io::Error),
    /// A sink could not be written.
    #[error("cannot write to sink `{sink}`: {source}")]
    Write {
        /// The sink.
        sink: String,
        /// The I/O error.
        source: io::Error,
    },
}

impl RunError {
    /// A Kafka client for `topic` that librdkafka would not make: pointed
    /// at the property it refused, or else at the brokers.
    pub(crate) fn kafka_client(
        error: &rdkafka::error::KafkaError,
        topic: &str,
        brokers: &Spanned<String>,
        properties: &[(Spanned<String>, Spanned<String>)],
    ) -> Self {
        use rdkafka::error::KafkaError;
        let named = |key: &str| properties.iter().find(|(name, _)| name.value == key);
        let span = match error {
            KafkaError::ClientConfig(_, _, key, _) => named(key),
            // Such as `ssl.ca.location failed: ...`: the property whose
            // value librdkafka could not use.
            KafkaError::ClientCreation(message) => message
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
                .find_map(named),
            _ => None,
        }
        .map_or(brokers.span, |(name, _)| name.span);
        Self::Open {
            path: format!("kafka topic {topic}"),
            span,
            message: error.to_string(),
        }
    }

    /// Whether the run stopped because a reader of its output went away (a
    /// closed pipe), which is how `runner ... | head` ends: not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Write { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }

    /// The diagnostic, for errors located in the pipeline file.
    pub fn to_diagnostic(&self) -> Option<Diagnostic> {
        match self {
            Self::Eval {
                message,
                failing,
                record,
            } => {
                let diagnostic = Diagnostic::error(Code::EvalFailed, message.clone(), *failing)
                    .label("failed here");
                Some(match record {
                    Some(record) => diagnostic.secondary(*record, "on this record"),
                    None => diagnostic,
                })
            }
            Self::Open {
                path,
                span,
                message,
            } => Some(
                Diagnostic::error(
                    Code::OpenFailed,
                    format!("cannot open `{path}`: {message}"),
                    *span,
                )
                .label("named here"),
            ),
            Self::Shared {
                message,
                span: Some(span),
            } => Some(
                Diagnostic::error(Code::NotShareable, message.clone(), *span).label("named here"),
            ),
            Self::Start(_)
            | Self::Write { .. }
            | Self::Read { .. }
            | Self::Checkpoint(_)
            | Self::Save(_)
            | Self::Shared { span: None, .. } => None,
        }
    }
}
