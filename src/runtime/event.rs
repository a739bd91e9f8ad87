//! Events as the match operator sees them, and their keys.

use std::hash::{Hash, Hasher};

use crate::expr::{Record, Value};
use crate::plan::Side;
use crate::time::EventTime;

/// One input record, timestamped and keyed.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Which side of the match it arrives on.
    pub side: Side,
    /// Its event time.
    pub time: EventTime,
    /// Its key.
    pub key: Key,
    /// Its fields.
    pub record: Record,
    /// The Kafka partition it was read from; `None` from other inputs. A
    /// key's state is kept with the partition its first event came from,
    /// so that it can go where the partition goes.
    pub partition: Option<u32>,
}

/// A match key: a string, integer, boolean or timestamp (the planner
/// rejects other key types, floats among them).
#[derive(Clone, Debug)]
pub struct Key(Value);

impl Key {
    /// The key holding `value`.
    pub fn new(value: Value) -> Self {
        Self(value)
    }

    /// The key's value.
    pub fn value(&self) -> &Value {
        &self.0
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            // Bitwise, so equality stays reflexive even for a NaN that a
            // planner bug let through.
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (a, b) => a == b,
        }
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(&self.0).hash(state);
        match &self.0 {
            Value::Null => {}
            Value::Bool(b) => b.hash(state),
            Value::Int(i) => i.hash(state),
            Value::Float(x) => x.to_bits().hash(state),
            Value::Str(s) => s.hash(state),
            Value::Timestamp(t) => t.hash(state),
            Value::Duration(d) => d.hash(state),
            // Records are never keys (the planner rejects them); hashing
            // their length keeps the impl total without walking them.
            Value::Record(record) => record.values().len().hash(state),
        }
    }
}

impl From<&str> for Key {
    fn from(key: &str) -> Self {
        Self(Value::from(key))
    }
}
