//! Records written out go back to the thread that read them, to be freed
//! there.
//!
//! A source's thread allocates each record; the thread that writes it out
//! is the last to hold it. The allocator frees a block from another
//! thread's memory by a slower path than its own (an atomic hand-over, and
//! often a look at the page's owner): in the bill check, freeing records
//! was a fifth of the work of the thread writing the matches. So sink
//! threads gather the records they are done with per side and hand each
//! full bundle back to that side's source thread, which frees it between
//! the batches it sends. A bundle that finds its source gone, or behind,
//! is freed where it is.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::operator::Outcome;
use crate::expr::Record;

/// Records a bundle gathers before it goes back.
const BUNDLE: usize = 256;

/// Bundles a source may have waiting to be freed.
const WAITING: usize = 16;

/// Where a source's thread receives the records written out, to free.
pub(crate) type Returned = Receiver<Vec<Record>>;

/// The way back to each side's source thread, where it has one.
#[derive(Clone)]
pub(crate) struct Ways(Vec<Option<SyncSender<Vec<Record>>>>);

impl Ways {
    /// A way back for each side that `returns` says takes its records back,
    /// and each such side's end of it.
    pub(crate) fn new(returns: impl Iterator<Item = bool>) -> (Self, Vec<Option<Returned>>) {
        let (senders, receivers) = returns
            .map(|back| {
                if back {
                    let (sender, receiver) = sync_channel(WAITING);
                    (Some(sender), Some(receiver))
                } else {
                    (None, None)
                }
            })
            .unzip();
        (Self(senders), receivers)
    }
}

/// What one sink thread gathers to send back.
pub(crate) struct Returns {
    ways: Ways,
    /// Each side's bundle being gathered.
    bundles: Vec<Vec<Record>>,
}

impl Returns {
    pub(crate) fn new(ways: Ways) -> Self {
        Self {
            bundles: vec![Vec::new(); ways.0.len()],
            ways,
        }
    }

    /// Takes the records of `outcome`, written out, whose sides take them
    /// back.
    pub(crate) fn take(&mut self, outcome: &mut Outcome) {
        for ((slot, way), bundle) in (outcome.records.iter_mut())
            .zip(&self.ways.0)
            .zip(&mut self.bundles)
        {
            let Some(way) = way else {
                continue;
            };
            let Some(record) = slot.take() else {
                continue;
            };
            if bundle.capacity() == 0 {
                bundle.reserve_exact(BUNDLE);
            }
            bundle.push(record);
            if bundle.len() == BUNDLE {
                // Full, or the source is gone: freed here instead.
                let _ = way.try_send(std::mem::take(bundle));
            }
        }
    }
}

/// Frees the records returned to a source's thread.
pub(crate) fn free(returned: Option<&Returned>) {
    if let Some(returned) = returned {
        while let Ok(bundle) = returned.try_recv() {
            drop(bundle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Value;
    use crate::runtime::{Detail, Key};
    use crate::time::EventTime;

    fn matched(id: i64) -> Outcome {
        let record = |side: &str| Record::new(vec![Value::from(side), Value::Int(id)]);
        Outcome {
            key: Key::new(Value::Int(id)),
            records: vec![Some(record("app")), Some(record("bank"))].into(),
            times: vec![EventTime::from_millis(id); 2].into(),
            detail: Detail::Matched,
        }
    }

    #[test]
    fn records_go_back_to_their_side_in_bundles() {
        let bundle = i64::try_from(BUNDLE).unwrap();
        // The first side's source takes its records back, the second's
        // (gone, say, or not a file) does not.
        let (ways, mut returned) = Ways::new([true, false].into_iter());
        let first = returned[0].take().expect("a way back for the first side");
        assert!(returned[1].is_none());
        let mut returns = Returns::new(ways);
        let mut bundles = Vec::new();
        for id in 0..2 * bundle {
            let mut outcome = matched(id);
            returns.take(&mut outcome);
            // Taken from the first side only.
            assert!(outcome.records[0].is_none() && outcome.records[1].is_some());
            bundles.extend(first.try_iter());
        }
        assert_eq!(bundles.len(), 2);
        let ids: Vec<Value> = (bundles.iter().flatten())
            .map(|record| record.get(1).clone())
            .collect();
        let expected: Vec<Value> = (0..2 * bundle).map(Value::Int).collect();
        assert_eq!(ids, expected);
        assert!(
            bundles
                .iter()
                .flatten()
                .all(|r| *r.get(0) == Value::from("app"))
        );
        // The source's thread frees whatever came back.
        for id in 0..bundle {
            returns.take(&mut matched(id));
        }
        free(Some(&first));
        assert!(first.try_recv().is_err());
        // A source gone: a full bundle is freed where it is, not kept.
        drop(first);
        for id in 0..bundle {
            returns.take(&mut matched(id));
        }
        assert!(returns.bundles[0].is_empty());
    }
}
