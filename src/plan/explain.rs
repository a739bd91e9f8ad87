//! `runner explain`: the compiled graph as text, every expression printed
//! back as canonical source. Deterministic, so it can be diffed and tested.

use std::fmt;

use super::graph::{Bound, Graph, Input, SourceNode};
use crate::config::{Clock, Format, OutcomeKind, SinkFormat, SinkKind};
use crate::expr::Kind;
use crate::time::Duration;

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pipeline {}",
            self.name.as_deref().unwrap_or("(unnamed)")
        )?;
        for source in &self.sources {
            write_source(f, source)?;
        }
        self.write_match(f)?;
        self.write_outputs(f)
    }
}

/// A source with the operators fused into its task: the timestamp and
/// watermark assigner and the key-by.
fn write_source(f: &mut fmt::Formatter<'_>, source: &SourceNode) -> fmt::Result {
    let input = match &source.input {
        Input::Inline(records) => {
            let plural = if records.len() == 1 { "" } else { "s" };
            format!("inline, {} record{plural}", records.len())
        }
        Input::Files {
            path,
            format,
            follow,
            ..
        } => {
            let follow = if *follow { ", followed" } else { "" };
            format!("{} lines of {path}{follow}", format_name(format))
        }
        Input::Stdin { format } => format!("{} lines of standard input", format_name(format)),
        Input::Kafka(kafka) => {
            let bounded = if kafka.bounded {
                ", bounded by its ends at the start"
            } else {
                ""
            };
            format!(
                "{} values of kafka topic {} at {}, group {}{bounded}",
                format_name(&kafka.format),
                kafka.topic.value,
                kafka.brokers.value,
                kafka.group.value
            )
        }
    };
    writeln!(f, "\nsource {}: {input}", source.name)?;
    row(f, "schema", &source.layout)?;
    let kafka = matches!(source.input, Input::Kafka(_));
    match &source.event_time {
        Some(event_time) => {
            let unit = if event_time.ty.kind == Kind::Int {
                " (milliseconds since the epoch)"
            } else {
                ""
            };
            row(f, "event time", format_args!("{}{unit}", typed(event_time)))?;
        }
        None if kafka => row(f, "event time", "each message's timestamp")?,
        None => row(f, "time", "processing time: when each record is read")?,
    }
    if source.event_time.is_some() || kafka {
        let over = if kafka {
            ", per partition; the least over partitions neither idle nor at their end"
        } else {
            ""
        };
        row(
            f,
            "watermark",
            format_args!("max event time - {} - 1ms{over}", source.watermark_lag),
        )?;
    }
    if let Some(idle) = source.idle_timeout {
        row(f, "idle after", format_args!("{idle} without events"))?;
    }
    row(f, "key by", typed(&source.key))?;
    row(f, "feeds", format_args!("match side {}", source.side.0))
}

impl Graph {
    /// The match operator: its sides with their waits, how its watermark is
    /// combined, its condition and the outcomes it can emit.
    fn write_match(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .matcher
            .sides
            .iter()
            .map(|side| side.name.as_str())
            .collect();
        writeln!(
            f,
            "\nmatch: connect {} on key : {}",
            names.join(", "),
            self.matcher.key_type
        )?;
        let width = names.iter().map(|name| name.len()).max().unwrap_or(0);
        for (index, side) in self.matcher.sides.iter().enumerate() {
            row(
                f,
                &format!("side {index}"),
                format_args!("{:width$}  waits {}", side.name, side.wait),
            )?;
        }
        match self.matcher.clock {
            Clock::Event => {
                let sides = if self.sources.iter().any(|s| s.idle_timeout.is_some()) {
                    "the sides that are not idle"
                } else {
                    "the sides"
                };
                row(
                    f,
                    "watermark",
                    format_args!("minimum over {sides}; +inf once a side's input ends"),
                )?;
                if let Some(grace) = self.matcher.idle_grace {
                    row(
                        f,
                        "all idle",
                        format_args!("after {grace}, the watermark follows the wall clock"),
                    )?;
                }
            }
            Clock::Processing => row(f, "watermark", "the wall clock")?,
        }
        if self.matcher.rules.is_empty() {
            row(f, "rules", "none")?;
        }
        for rule in &self.matcher.rules {
            row(f, "rule", format_args!("{}: {}", rule.name, rule.rule.expr))?;
        }
        row(
            f,
            "retention",
            format_args!("{} after a key is done", self.matcher.retention),
        )?;
        let emits: Vec<&str> = OutcomeKind::ALL
            .iter()
            .filter(|kind| match kind {
                OutcomeKind::Mismatched => !self.matcher.rules.is_empty(),
                OutcomeKind::Resolved => self.matcher.retention > Duration::ZERO,
                // Only lines read from data can be malformed.
                OutcomeKind::Malformed => self
                    .sources
                    .iter()
                    .any(|source| !matches!(source.input, Input::Inline(_))),
                _ => true,
            })
            .map(|kind| kind.name())
            .collect();
        row(f, "emits", emits.join(", "))?;
        let kafka_sinks = (self.sinks.iter()).any(|sink| matches!(sink.kind, SinkKind::Kafka(_)));
        let transactions = match (self.transactions, &self.state_topic) {
            (true, Some(topic)) if !kafka_sinks => format!(
                "; each partition's state (to `{topic}`) committed with each, in a transaction"
            ),
            (true, Some(topic)) => format!(
                "; Kafka sinks' records and each partition's state (to `{topic}`) committed \
                 with each, in a transaction"
            ),
            (true, None) => {
                "; Kafka sinks' records committed with each, in a transaction".to_string()
            }
            (false, _) => String::new(),
        };
        match self.checkpoint {
            Some(interval) => row(
                f,
                "checkpoint",
                format_args!(
                    "every {interval}: positions, watermarks, keyed state, timers, retention, file sink lengths{transactions}"
                ),
            ),
            None => row(f, "checkpoint", "none"),
        }
    }

    /// The routes, in the order they are tried, then the sinks.
    fn write_outputs(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, route) in self.routes.iter().enumerate() {
            let sink = &self.sinks[route.sink.0].name;
            match route.side {
                Some(side) => {
                    let side = &self.matcher.sides[side.0].name;
                    let which = match route.outcome {
                        OutcomeKind::TimedOut | OutcomeKind::Resolved => {
                            format!("wait of {side} ran out")
                        }
                        _ => format!("on side {side}"),
                    };
                    writeln!(
                        f,
                        "\noutput #{index}: {} ({which}) -> sink {sink}",
                        route.outcome.name()
                    )?;
                }
                None => writeln!(
                    f,
                    "\noutput #{index}: {} -> sink {sink}",
                    route.outcome.name()
                )?,
            }
            match &route.template {
                Some(template) => row(f, "template", &template.expr)?,
                None => row(f, "template", "none: one JSON object per outcome")?,
            }
            if let Some(key) = &route.key {
                row(f, "record key", &key.expr)?;
            }
        }
        for sink in &self.sinks {
            let kind = match &sink.kind {
                SinkKind::Stdout => "stdout".to_string(),
                SinkKind::Stderr => "stderr".to_string(),
                SinkKind::File { path, format } => {
                    let format = match format {
                        SinkFormat::Jsonl => "jsonl",
                        SinkFormat::Csv => "csv",
                    };
                    format!("{format} file {}", path.value)
                }
                SinkKind::Kafka(kafka) => {
                    let key = if kafka.key.is_some() {
                        "keyed as each output says"
                    } else {
                        "keyed by the match key"
                    };
                    format!(
                        "kafka topic {} at {}, {key}",
                        kafka.topic.value, kafka.brokers.value
                    )
                }
            };
            writeln!(f, "\nsink {}: {kind}", sink.name)?;
        }
        Ok(())
    }
}

/// `jsonl`, or `csv` with its layout: `csv (header, ';')`.
fn format_name(format: &Format) -> String {
    match format {
        Format::Jsonl => "jsonl".to_string(),
        Format::Csv(csv) => {
            let mut parts = Vec::new();
            match &csv.columns {
                Some(columns) => {
                    let names: Vec<&str> = columns.iter().map(|c| c.value.as_str()).collect();
                    parts.push(format!("columns {}", names.join(", ")));
                    if csv.header {
                        parts.push("header skipped".to_string());
                    }
                }
                None => parts.push("header".to_string()),
            }
            if csv.delimiter != b',' {
                parts.push(format!("delimiter {:?}", char::from(csv.delimiter)));
            }
            format!("csv ({})", parts.join(", "))
        }
    }
}

/// One aligned `label value` line.
fn row(f: &mut fmt::Formatter<'_>, label: &str, value: impl fmt::Display) -> fmt::Result {
    writeln!(f, "  {label:<11} {value}")
}

/// An expression in canonical form with its type: `order_id : string`.
fn typed(bound: &Bound) -> String {
    format!("{} : {}", bound.expr, bound.ty)
}
