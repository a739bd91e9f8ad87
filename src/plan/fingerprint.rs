//! What a checkpoint must agree with to be resumed: the parts of a
//! pipeline that shape its state. Outputs, sinks and templates are not
//! among them: a resumed run may render differently and write elsewhere.

use super::graph::{Graph, Input};
use crate::config::Format;

/// A format as text, without where it is written.
fn layout(format: &Format) -> String {
    match format {
        Format::Jsonl => "jsonl".to_string(),
        Format::Csv(csv) => {
            let columns: Vec<&str> = csv
                .columns
                .iter()
                .flatten()
                .map(|c| c.value.as_str())
                .collect();
            format!(
                "csv (header {}, columns [{}], delimiter {:?})",
                csv.header,
                columns.join(", "),
                char::from(csv.delimiter)
            )
        }
    }
}

impl Graph {
    /// The parts, by name, each as text.
    pub fn fingerprint(&self) -> Vec<(String, String)> {
        let mut parts = Vec::new();
        for source in &self.sources {
            let name = &source.name;
            let input = match &source.input {
                Input::Inline(records) => format!("inline, {} records", records.len()),
                Input::Files {
                    path,
                    format,
                    follow,
                    ..
                } => format!("{} lines of {path}, follow {follow}", layout(format)),
                Input::Stdin { format } => format!("{} lines of standard input", layout(format)),
                Input::Kafka(kafka) => format!(
                    "{} values of kafka topic {}",
                    layout(&kafka.format),
                    kafka.topic.value
                ),
            };
            parts.push((format!("source `{name}`: input"), input));
            parts.push((
                format!("source `{name}`: schema"),
                source.layout.to_string(),
            ));
            let time = source.event_time.as_ref().map_or_else(
                || match source.input {
                    Input::Kafka(_) => "message timestamps".to_string(),
                    _ => "processing time".to_string(),
                },
                |t| t.expr.to_string(),
            );
            parts.push((format!("source `{name}`: event time"), time));
            parts.push((format!("source `{name}`: key"), source.key.expr.to_string()));
        }
        let matcher = &self.matcher;
        let sides: Vec<String> = matcher
            .sides
            .iter()
            .map(|side| format!("{} waits {}", side.name, side.wait))
            .collect();
        parts.push(("the sides".to_string(), sides.join(", ")));
        let rules: Vec<String> = matcher
            .rules
            .iter()
            .map(|rule| format!("{}: {}", rule.name, rule.rule.expr))
            .collect();
        parts.push(("the rules".to_string(), rules.join("; ")));
        parts.push(("the retention".to_string(), matcher.retention.to_string()));
        parts.push(("the clock".to_string(), format!("{:?}", matcher.clock)));
        parts
    }
}
