//! `runner state inspect`: what a checkpoint holds, for people.

use std::fmt::Write as _;

use super::encoding::Decoder;
use super::{Checkpoint, InputPosition};
use crate::plan::MAX_SIDES;
use crate::runtime::Matcher;
use crate::runtime::StateFormat;
use crate::time::Watermark;

/// A listing of `checkpoint`: where each source was, the watermark, each
/// file sink's length, and every pending key with its sides' event times
/// and its deadline.
///
/// # Errors
///
/// The match operator's state in the checkpoint cannot be read.
pub fn inspect(checkpoint: &Checkpoint) -> Result<String, String> {
    let sides = checkpoint.inputs.len();
    if sides > MAX_SIDES {
        return Err(format!(
            "it has {sides} inputs; a match takes at most {MAX_SIDES}"
        ));
    }
    // One matcher, or one per worker.
    let states = if checkpoint.workers.is_empty() {
        std::slice::from_ref(&checkpoint.matcher)
    } else {
        &checkpoint.workers[..]
    };
    let mut matchers = Vec::with_capacity(states.len());
    for state in states {
        let mut matcher = Matcher::for_listing(sides);
        matcher
            .load(
                &mut Decoder::new(state),
                StateFormat::of_version(checkpoint.version),
            )
            .map_err(|error| format!("the match state cannot be read: {error}"))?;
        matchers.push(matcher);
    }
    let mut rows: Vec<(String, String)> = Vec::new();
    for source in &checkpoint.inputs {
        rows.push((format!("source {}", source.name), place(source)));
    }
    let watermark = Watermark::from_raw(checkpoint.watermark);
    let watermark = watermark
        .time()
        .map_or_else(|| watermark.to_string(), |t| t.to_string());
    rows.push(("watermark".to_string(), watermark));
    for sink in &checkpoint.sinks {
        rows.push((
            format!("sink {}", sink.name),
            format!("{}, {} bytes", sink.path, sink.length),
        ));
    }
    if let Some((_, id)) =
        (checkpoint.fingerprint.iter()).find(|(part, _)| part == super::TRANSACTIONS)
    {
        rows.push((
            "transactions".to_string(),
            format!(
                "Kafka sinks written as `{id}`; the offset of the group `{id}` is the last \
                 checkpoint whose transaction committed"
            ),
        ));
    }
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("1 {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    if matchers.len() > 1 {
        rows.push((
            "workers".to_string(),
            format!("{}, each with the keys that hash to it", matchers.len()),
        ));
    }
    let waiting = matchers.iter().map(Matcher::waiting_keys).sum();
    let remembered = matchers.iter().map(Matcher::remembered_keys).sum();
    rows.push(("pending".to_string(), plural(waiting, "key")));
    rows.push((
        "remembered".to_string(),
        format!("{}, done within the retention", plural(remembered, "key")),
    ));
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "checkpoint {}, taken {}",
        checkpoint.sequence, checkpoint.taken_at
    );
    for (label, value) in rows {
        let _ = writeln!(out, "  {label:width$}  {value}");
    }
    for group in matchers.iter().flat_map(Matcher::pending_groups) {
        let sides: Vec<String> = checkpoint
            .inputs
            .iter()
            .zip(&group.sides)
            .map(|(input, time)| match time {
                Some(time) => format!("{} {time}", input.name),
                None => format!("{} missing", input.name),
            })
            .collect();
        let partition = group
            .partition
            .map_or_else(String::new, |partition| format!(" (partition {partition})"));
        let _ = writeln!(
            out,
            "    {}{partition}  {}; deadline {}",
            group.key,
            sides.join(", "),
            group.deadline
        );
    }
    Ok(out)
}

/// Where `source` was: in its file, or in each Kafka partition; its newest
/// event time, and whether it was idle.
fn place(source: &InputPosition) -> String {
    let partitions: Vec<String> = source
        .partitions
        .iter()
        .map(|(partition, offset)| format!("partition {partition} at offset {offset}"))
        .collect();
    let place = match (&source.file, source.finished) {
        (_, true) => "ended".to_string(),
        // A Kafka source: where each partition merged from is.
        _ if !partitions.is_empty() => partitions.join(", "),
        (None, false) => "nothing read yet".to_string(),
        (Some(file), false) if file.is_empty() => format!("up to record {}", source.line),
        (Some(file), false) => format!(
            "{file}, up to line {} (byte {})",
            source.line, source.offset
        ),
    };
    let newest = source
        .max_seen
        .map(|time| format!("; newest event {time}"))
        .unwrap_or_default();
    let idle = if source.idle && !source.finished {
        "; idle"
    } else {
        ""
    };
    format!("{place}{newest}{idle}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_of_more_sides_than_a_match_takes_is_refused() {
        let mut checkpoint = super::super::tests::sample();
        checkpoint.workers.clear();
        let input = checkpoint.inputs[1].clone();
        checkpoint.inputs = vec![input; 257];
        assert_eq!(
            inspect(&checkpoint),
            Err("it has 257 inputs; a match takes at most 256".to_string())
        );
    }
}
