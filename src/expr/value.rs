//! Runtime values: what expressions compute and records hold.

use std::fmt::{self, Write as _};
use triomphe::ThinArc;

use super::text::Text;
use crate::time::{Duration, EventTime};

/// A value computed by an expression or held in a record field.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Absent.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A 64-bit signed integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// UTF-8 text: short text inline, long text shared.
    Str(Text),
    /// A point in time.
    Timestamp(EventTime),
    /// A span of time.
    Duration(Duration),
    /// A record: a row of values laid out by a schema.
    Record(Record),
}

/// A row of values in the order of its schema's fields; cheap to clone.
///
/// One pointer wide: the count of values is in the allocation, beside them
/// and the reference count (a pending key holds a record per side).
#[derive(Clone)]
pub struct Record(ThinArc<(), Value>);

impl Record {
    /// A record holding `values`, which must follow the schema's field order.
    pub fn new(values: Vec<Value>) -> Self {
        Self::from_exact(values.into_iter())
    }

    /// A record of the values `values` yields, in one allocation.
    pub fn from_exact(values: impl ExactSizeIterator<Item = Value>) -> Self {
        Self(ThinArc::from_header_and_iter((), values))
    }

    /// The field at `index`; [`Value::Null`] past the end.
    pub fn get(&self, index: usize) -> &Value {
        self.0.slice.get(index).unwrap_or(&Value::Null)
    }

    /// The fields in order.
    pub fn values(&self) -> &[Value] {
        &self.0.slice
    }
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.values() == other.values()
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Record").field(&self.values()).finish()
    }
}

impl FromIterator<Value> for Record {
    fn from_iter<I: IntoIterator<Item = Value>>(values: I) -> Self {
        Self::new(values.into_iter().collect())
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Self::Str(text.into())
    }
}

impl fmt::Display for Value {
    /// The text form used by `concat`, `to_string` and templates. Strings are
    /// written as they are and records as tuples, the way Flink prints them:
    /// `(order-1,app,1000)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write_float(f, *x),
            Self::Str(s) => f.write_str(s),
            Self::Timestamp(t) => write!(f, "{t}"),
            Self::Duration(d) => write!(f, "{d}"),
            Self::Record(record) => {
                f.write_char('(')?;
                for (i, value) in record.values().iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{value}")?;
                }
                f.write_char(')')
            }
        }
    }
}

/// Floats always show they are floats (`3.0`, not `3`); non-finite values
/// print as `NaN`, `inf` and `-inf`.
fn write_float(f: &mut fmt::Formatter<'_>, x: f64) -> fmt::Result {
    if x.is_finite() {
        write!(f, "{x:?}")
    } else {
        write!(f, "{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_print_as_flink_tuples() {
        let inner = Value::Record(Record::new(vec![Value::Int(5), Value::Null]));
        let record = Record::new(vec![
            "order-1".into(),
            Value::Float(3.0),
            inner,
            Value::Bool(true),
        ]);
        assert_eq!(
            Value::Record(record).to_string(),
            "(order-1,3.0,(5,null),true)"
        );
    }
}
