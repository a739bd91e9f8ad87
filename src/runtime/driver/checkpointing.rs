//! Checkpoints in a run: resuming from the last one, and taking them.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Driver, Options};
use crate::checkpoint::encoding::{Decoder, Encoder};
use crate::checkpoint::{Checkpoint, InputPosition, Store};
use crate::plan::Graph;
use crate::runtime::engine::Engine;
use crate::runtime::error::RunError;
use crate::runtime::source::At;
use crate::time::Watermark;

/// What a run that writes checkpoints keeps.
pub(super) struct Checkpointing {
    store: Store,
    interval: std::time::Duration,
    /// When the next checkpoint is due.
    pub(super) next: Instant,
    /// The number the next checkpoint gets.
    sequence: u64,
    fingerprint: Vec<(String, String)>,
}

/// Whether `graph` writes checkpoints under `options`, and the checkpoint
/// to resume from, if there is one; warnings about damaged checkpoints go
/// to `warnings`.
///
/// # Errors
///
/// The state cannot be read, or its checkpoint does not fit the pipeline.
pub(super) fn prepare(
    graph: &Graph,
    options: &mut Options,
    now: Instant,
    warnings: &mut Vec<String>,
) -> Result<(Option<Checkpointing>, Option<Checkpoint>), RunError> {
    let (Some(interval), Some((dir, fresh))) = (graph.checkpoint, options.checkpoints.take())
    else {
        return Ok((None, None));
    };
    if options.workers > 1 {
        warnings.push("checkpoints are not written with more than one worker".to_string());
        return Ok((None, None));
    }
    let store = Store::new(dir);
    let failed = |error: crate::checkpoint::StoreError| RunError::Resume(error.to_string());
    let fingerprint = graph.fingerprint();
    let resume = if fresh {
        store.clear().map_err(failed)?;
        None
    } else {
        let (loaded, damaged) = store.load().map_err(|error| {
            RunError::Resume(format!(
                "{error}; run with --fresh to start over (every output is then written anew)"
            ))
        })?;
        warnings.extend(damaged);
        loaded
    };
    if let Some(checkpoint) = &resume
        && let Some(why) = checkpoint.mismatch(&fingerprint)
    {
        return Err(RunError::Resume(format!(
            "cannot resume from the checkpoint in `{}`: the pipeline changed since it was taken \
             ({why}); run with --fresh to start over (every output is then written anew)",
            store.dir().display()
        )));
    }
    let sequence = resume.as_ref().map_or(1, |c| c.sequence + 1);
    let interval = std::time::Duration::from_millis(interval.millis().unsigned_abs());
    Ok((
        Some(Checkpointing {
            store,
            interval,
            next: now + interval,
            sequence,
            fingerprint,
        }),
        resume,
    ))
}

impl Driver {
    /// Puts back the watermarks and the match operator's state of
    /// `checkpoint`.
    pub(super) fn restore(&mut self, checkpoint: &Checkpoint) -> Result<(), RunError> {
        let damaged = |error| RunError::Resume(format!("the checkpoint cannot be read: {error}"));
        let inputs: Vec<_> = checkpoint
            .inputs
            .iter()
            .map(|input| (input.max_seen, input.finished))
            .collect();
        self.watermarks
            .restore(&inputs, Watermark::from_raw(checkpoint.watermark));
        for (queue, input) in self.inputs.iter_mut().zip(&checkpoint.inputs) {
            if let Some(file) = &input.file {
                queue.buffer.taken = Some((
                    Arc::from(file.as_str()),
                    At {
                        offset: input.offset,
                        line: input.line,
                    },
                ));
            }
        }
        let Engine::Local(matcher) = &mut self.engine else {
            return Err(RunError::Resume(
                "a run with workers cannot resume from a checkpoint".to_string(),
            ));
        };
        let mut decoder = Decoder::new(&checkpoint.matcher);
        matcher.load(&mut decoder).map_err(damaged)?;
        self.summary.resumed_from = Some(checkpoint.sequence);
        Ok(())
    }

    /// Whether a checkpoint is due.
    pub(super) fn checkpoint_due(&self, now: Instant) -> bool {
        self.checkpointing.as_ref().is_some_and(|c| now >= c.next)
    }

    /// Takes a checkpoint: what is decided is written out and synced, then
    /// the positions, watermarks, state and sink lengths are saved.
    pub(super) async fn checkpoint(&mut self) -> Result<(), RunError> {
        if self.checkpointing.is_none() {
            return Ok(());
        }
        self.route().await?;
        let mut sinks = Vec::new();
        for target in &mut self.targets {
            sinks.extend(target.barrier().await?);
        }
        let inputs = self
            .inputs
            .iter()
            .zip(&self.summary.sources)
            .enumerate()
            .map(|(index, (input, source))| {
                let (file, at) = input
                    .buffer
                    .taken
                    .as_ref()
                    .map_or((None, At::default()), |(file, at)| {
                        (Some(file.to_string()), *at)
                    });
                InputPosition {
                    name: source.name.clone(),
                    file,
                    offset: at.offset,
                    line: at.line,
                    max_seen: self.watermarks.max_seen(index),
                    finished: input.finished && input.buffer.is_empty(),
                }
            })
            .collect();
        let Engine::Local(matcher) = &self.engine else {
            return Ok(());
        };
        let mut encoder = Encoder::new();
        matcher.save(&mut encoder);
        let Some(checkpointing) = &mut self.checkpointing else {
            return Ok(());
        };
        let checkpoint = Checkpoint {
            sequence: checkpointing.sequence,
            taken_at: super::system_time(),
            fingerprint: checkpointing.fingerprint.clone(),
            inputs,
            watermark: self.watermarks.current().to_raw(),
            sinks,
            matcher: encoder.into_bytes(),
        };
        checkpointing
            .store
            .save(&checkpoint)
            .map_err(|error| RunError::Resume(format!("cannot write a checkpoint: {error}")))?;
        checkpointing.sequence += 1;
        checkpointing.next = Instant::now() + checkpointing.interval;
        self.summary.checkpoints += 1;
        Ok(())
    }

    /// After a run that read its inputs to their end: nothing is left to
    /// resume, so the checkpoints go.
    pub(super) fn forget_checkpoints(&mut self) -> Result<(), RunError> {
        match &self.checkpointing {
            Some(checkpointing) => checkpointing
                .store
                .clear()
                .map_err(|error| RunError::Resume(error.to_string())),
            None => Ok(()),
        }
    }
}
