//! The binary encoding of checkpoints: little-endian integers, variable
//! length counts, and values tagged by kind. Decoding checks every length
//! against what is left, so a truncated or damaged file is an error, never
//! a panic or a huge allocation.

use crate::expr::{Record, Value};
use crate::time::{Duration, EventTime};

/// Appends encoded data to a byte vector.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    /// An empty encoder.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// An empty encoder writing into `buffer`, emptied: its memory, from
    /// an earlier encoding, is used again.
    pub(crate) fn reusing(mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        Self { bytes: buffer }
    }

    /// What was encoded.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub(crate) fn bool(&mut self, value: bool) {
        self.u8(u8::from(value));
    }

    /// An unsigned integer in 7-bit groups, low first.
    pub(crate) fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.bytes.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.bytes.push(value as u8);
    }

    /// A signed integer, zigzag-encoded so that small magnitudes are short.
    pub(crate) fn int(&mut self, value: i64) {
        self.varint(((value << 1) ^ (value >> 63)).cast_unsigned());
    }

    pub(crate) fn usize(&mut self, value: usize) {
        self.varint(value as u64);
    }

    /// Appends `bytes` as they are, without their length: what another
    /// encoder wrote, copied.
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.usize(bytes.len());
        self.bytes.extend_from_slice(bytes);
    }

    pub(crate) fn str(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }

    pub(crate) fn time(&mut self, time: EventTime) {
        self.int(time.millis());
    }

    /// A value, tagged by its kind.
    pub(crate) fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.u8(0),
            Value::Bool(b) => {
                self.u8(1);
                self.bool(*b);
            }
            Value::Int(i) => {
                self.u8(2);
                self.int(*i);
            }
            Value::Float(x) => {
                self.u8(3);
                self.bytes.extend_from_slice(&x.to_bits().to_le_bytes());
            }
            Value::Str(text) => {
                self.u8(4);
                self.str(text);
            }
            Value::Timestamp(time) => {
                self.u8(5);
                self.time(*time);
            }
            Value::Duration(duration) => {
                self.u8(6);
                self.int(duration.millis());
            }
            Value::Record(record) => {
                self.u8(7);
                self.record(record);
            }
        }
    }

    pub(crate) fn record(&mut self, record: &Record) {
        self.usize(record.values().len());
        for value in record.values() {
            self.value(value);
        }
    }
}

/// Why encoded data could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub(crate) String);

/// Reads encoded data, checking as it goes.
#[derive(Debug)]
pub(crate) struct Decoder<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Values of the records being read, innermost last.
    values: Vec<Value>,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            at: 0,
            values: Vec::new(),
        }
    }

    /// How many bytes were read.
    pub(crate) fn position(&self) -> usize {
        self.at
    }

    /// Whether everything was read.
    pub(crate) fn done(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(count)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| DecodeError(format!("it ends early, at byte {}", self.at)))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError(format!("{other} is not a boolean"))),
        }
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(DecodeError("an integer runs on too long".to_string()))
    }

    pub(crate) fn int(&mut self) -> Result<i64, DecodeError> {
        let zigzag = self.varint()?;
        Ok((zigzag >> 1).cast_signed() ^ -((zigzag & 1).cast_signed()))
    }

    /// A count of things still to read, each at least `each` bytes: a
    /// damaged count cannot ask for more than the data holds.
    pub(crate) fn count(&mut self, each: usize) -> Result<usize, DecodeError> {
        let count = usize::try_from(self.varint()?).unwrap_or(usize::MAX);
        let left = self.bytes.len() - self.at;
        if count.saturating_mul(each.max(1)) > left {
            return Err(DecodeError(format!(
                "a count of {count} at byte {} is more than the data holds",
                self.at
            )));
        }
        Ok(count)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.count(1)?;
        self.take(len)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, DecodeError> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError("text is not UTF-8".to_string()))
    }

    pub(crate) fn time(&mut self) -> Result<EventTime, DecodeError> {
        Ok(EventTime::from_millis(self.int()?))
    }

    pub(crate) fn value(&mut self) -> Result<Value, DecodeError> {
        Ok(match self.u8()? {
            0 => Value::Null,
            1 => Value::Bool(self.bool()?),
            2 => Value::Int(self.int()?),
            3 => {
                let mut bits = [0; 8];
                bits.copy_from_slice(self.take(8)?);
                Value::Float(f64::from_bits(u64::from_le_bytes(bits)))
            }
            4 => Value::Str(self.str()?.into()),
            5 => Value::Timestamp(self.time()?),
            6 => Value::Duration(Duration::from_millis(self.int()?)),
            7 => Value::Record(self.record()?),
            other => return Err(DecodeError(format!("{other} is not a kind of value"))),
        })
    }

    pub(crate) fn record(&mut self) -> Result<Record, DecodeError> {
        let len = self.count(1)?;
        let start = self.values.len();
        for _ in 0..len {
            let value = self.value();
            match value {
                Ok(value) => self.values.push(value),
                Err(error) => {
                    self.values.truncate(start);
                    return Err(error);
                }
            }
        }
        // Drained, the values go straight into the record's one allocation.
        Ok(Record::from_exact(self.values.drain(start..)))
    }
}

/// The CRC-32 (IEEE) of `parts` one after the other: what tells a damaged
/// checkpoint.
pub(crate) fn crc32(parts: &[&[u8]]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_back_as_they_went() {
        let record = Record::new(vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(-12_345_678_901),
            Value::Float(1.5),
            Value::from("a longer text than twenty-two bytes, shared"),
            Value::Timestamp(EventTime::from_millis(1_700_000_000_123)),
            Value::Duration(Duration::from_millis(-5)),
            Value::Record(Record::new(vec![Value::from("nested")])),
        ]);
        let mut encoder = Encoder::new();
        encoder.record(&record);
        encoder.int(i64::MIN);
        encoder.varint(u64::MAX);
        let bytes = encoder.into_bytes();
        let mut decoder = Decoder::new(&bytes);
        assert_eq!(decoder.record(), Ok(record));
        assert_eq!(decoder.int(), Ok(i64::MIN));
        assert_eq!(decoder.varint(), Ok(u64::MAX));
        assert!(decoder.done());
    }

    #[test]
    fn damaged_data_is_an_error() {
        let mut encoder = Encoder::new();
        encoder.str("hello");
        let bytes = encoder.into_bytes();
        for cut in 0..bytes.len() {
            assert!(Decoder::new(&bytes[..cut]).str().is_err(), "cut at {cut}");
        }
        // A count far larger than the data.
        let mut huge = Decoder::new(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(huge.count(1).is_err());
    }

    #[test]
    fn crc32_is_the_standard_one() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"1234", b"", b"56789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[]), 0);
    }
}
