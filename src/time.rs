//! Event time, watermarks and durations.
//!
//! Every time in a pipeline is event time: milliseconds since the Unix epoch,
//! read from the events themselves. These newtypes keep event times,
//! watermarks and durations from being mixed up as bare integers.

use std::fmt;

/// A point in event time, in milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventTime(i64);

impl EventTime {
    /// The event time `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// This time moved by `by`, clamped to the representable range.
    #[must_use]
    pub const fn saturating_add(self, by: Duration) -> Self {
        Self(self.0.saturating_add(by.0))
    }
}

impl fmt::Display for EventTime {
    /// RFC 3339 in UTC with millisecond precision where needed, or the raw
    /// milliseconds if the time is outside the calendar's range.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(text) = self.rfc3339() {
            // The common case, written without a calendar library: outcomes
            // print several times each.
            return f.write_str(text.as_str());
        }
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(ts) => write!(f, "{ts}"),
            Err(_) => write!(f, "{}ms", self.0),
        }
    }
}

impl EventTime {
    /// The time's RFC 3339 text in quotes, for JSON; `None` outside the
    /// years 1970 to 9999. The last two are kept: an outcome writes each of
    /// its times at least twice (in its record and among its times).
    pub(crate) fn rfc3339_kept(self) -> Option<Rfc3339> {
        /// The last two, and which is the newer.
        type Kept = ([(i64, Rfc3339); 2], usize);
        thread_local! {
            static LAST: std::cell::RefCell<Kept> =
                const { std::cell::RefCell::new(([(i64::MIN, Rfc3339::EMPTY); 2], 0)) };
        }
        LAST.with_borrow_mut(|(last, newer)| {
            if last[*newer].0 != self.0 {
                *newer = 1 - *newer;
                if last[*newer].0 != self.0 {
                    last[*newer] = (self.0, self.rfc3339()?);
                }
            }
            Some(last[*newer].1)
        })
    }
}

/// The decimal digits of 0 to 99, two each.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes the last two decimal digits of `value` at `at`.
fn two(bytes: &mut [u8; 32], at: usize, value: i64) {
    // 0 to 99 once reduced, so the cast is exact.
    let pair = (value.unsigned_abs() % 100) as usize * 2;
    bytes[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
}

/// An RFC 3339 time as text in quotes (for JSON), without allocating:
/// padded to a fixed size, to be copied in one move.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rfc3339 {
    bytes: [u8; 32],
    /// How many of the bytes are the text, quotes included.
    len: u8,
}

impl Rfc3339 {
    const EMPTY: Self = Self {
        bytes: [0; 32],
        len: 0,
    };

    /// The text, without its quotes.
    fn as_str(&self) -> &str {
        // Only ASCII digits and punctuation are written.
        std::str::from_utf8(&self.bytes[1..usize::from(self.len) - 1]).unwrap_or_default()
    }

    /// The padded bytes and how many of them are the text in its quotes.
    pub(crate) fn quoted(&self) -> (&[u8; 32], usize) {
        (&self.bytes, usize::from(self.len))
    }
}

impl EventTime {
    /// `2026-11-01T10:00:02.68Z` for times in the years 1970 to 9999: the
    /// fraction as long as it needs, none for whole seconds (as jiff writes
    /// it). `None` for other years.
    pub(crate) fn rfc3339(self) -> Option<Rfc3339> {
        // 10000-01-01T00:00:00Z.
        const END: i64 = 253_402_300_800_000;
        if !(0..END).contains(&self.0) {
            return None;
        }
        let (days, ms) = (self.0 / 86_400_000, self.0 % 86_400_000);
        let mut out = Rfc3339 {
            bytes: *b"\"0000-00-00T00:00:00Z\"          ",
            len: 22,
        };
        // Times come in runs of the same day: its date is kept.
        thread_local! {
            static DAY: std::cell::Cell<(i64, [u8; 10])> = const { std::cell::Cell::new((-1, [0; 10])) };
        }
        let (cached, date) = DAY.get();
        if cached == days {
            out.bytes[1..11].copy_from_slice(&date);
        } else {
            Self::date(days, &mut out.bytes);
            let mut date = [0; 10];
            date.copy_from_slice(&out.bytes[1..11]);
            DAY.set((days, date));
        }
        two(&mut out.bytes, 12, ms / 3_600_000);
        two(&mut out.bytes, 15, ms / 60_000 % 60);
        two(&mut out.bytes, 18, ms / 1_000 % 60);
        let fraction = ms % 1_000;
        if fraction != 0 {
            // `.d`, `.dd` or `.ddd`: the fraction without trailing zeros,
            // its three digits written and the zeros written over.
            out.bytes[20] = b'.';
            two(&mut out.bytes, 21, fraction / 10);
            two(&mut out.bytes, 22, fraction);
            let shown = if fraction % 10 != 0 {
                3
            } else if fraction % 100 != 0 {
                2
            } else {
                1
            };
            out.bytes[21 + shown] = b'Z';
            out.bytes[22 + shown] = b'"';
            // At most 26 bytes.
            out.len = 23 + shown as u8;
        }
        Some(out)
    }

    /// Reads `YYYY-MM-DDTHH:MM:SS[.fraction]Z` for the years 1970 to 9998,
    /// the shape events nearly always carry, without a calendar library:
    /// digits past the millisecond are dropped, as jiff's reading does.
    /// `None` for any other text, which the caller reads with jiff (and
    /// which jiff explains if it is no time at all).
    pub(crate) fn parse_rfc3339(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        let head = bytes.first_chunk::<19>()?;
        // The shape checked eight bytes at a time (the last word overlaps
        // the second), then the digits read knowing they are digits.
        if bytes.len() < 20
            || bytes.len() > 30
            || bytes[bytes.len() - 1] != b'Z'
            || !fits(head, 0, *b"0000-00-")
            || !fits(head, 8, *b"00T00:00")
            || !fits(head, 11, *b"00:00:00")
        {
            return None;
        }
        let two = |at: usize| i64::from(head[at] - b'0') * 10 + i64::from(head[at + 1] - b'0');
        let (hour, minute, second) = (two(11), two(14), two(17));
        // Up to nine digits of fraction (nanoseconds); the first three count.
        let millis = match &bytes[19..bytes.len() - 1] {
            [] => 0,
            [b'.', digits @ ..] if !digits.is_empty() => {
                if !digits.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                let mut millis = 0;
                for at in 0..3 {
                    millis = millis * 10 + digits.get(at).map_or(0, |d| i64::from(d - b'0'));
                }
                millis
            }
            _ => return None,
        };
        if hour >= 24 || minute >= 60 || second >= 60 {
            return None;
        }
        // Times come in runs of the same day: the last date read is kept
        // with its days since the epoch.
        thread_local! {
            static DAY: std::cell::Cell<([u8; 10], i64)> = const { std::cell::Cell::new(([0; 10], 0)) };
        }
        let date = head.first_chunk::<10>()?;
        let (cached, days) = DAY.get();
        let days = if cached == *date {
            days
        } else {
            let days = Self::days(two(0) * 100 + two(2), two(5), two(8))?;
            DAY.set((*date, days));
            days
        };
        Some(Self(
            ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1_000 + millis,
        ))
    }

    /// The days from the epoch to a date of the years 1970 to 9998; `None`
    /// for no such date.
    fn days(year: i64, month: i64, day: i64) -> Option<i64> {
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let month_days = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        // jiff's range ends within 9999-12-31.
        let valid = (1970..9999).contains(&year)
            && (1..=12).contains(&month)
            && (1..=month_days).contains(&day);
        if !valid {
            return None;
        }
        // A civil date to days (Howard Hinnant's algorithm), the inverse
        // of `date`.
        let y = if month <= 2 { year - 1 } else { year };
        let era = y / 400;
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Some(era * 146_097 + doe - 719_468)
    }

    /// Writes `YYYY-MM-DD` of the day `days` after the epoch (0 to 9999
    /// years) at the start of `bytes`.
    fn date(days: i64, bytes: &mut [u8; 32]) {
        // Days to a civil date (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        two(bytes, 1, year / 100);
        two(bytes, 3, year % 100);
        two(bytes, 6, month);
        two(bytes, 9, day);
    }
}

/// Whether the eight bytes of `head` at `at` have the shape of `pattern`:
/// a digit where it has `0`, its byte elsewhere.
fn fits(head: &[u8; 19], at: usize, pattern: [u8; 8]) -> bool {
    const HIGH: u64 = u64::from_le_bytes([0xf0; 8]);
    const LOW: u64 = u64::from_le_bytes([0x0f; 8]);
    let mut word = [0; 8];
    word.copy_from_slice(&head[at..at + 8]);
    let word = u64::from_le_bytes(word);
    let digits = u64::from_le_bytes(pattern.map(|byte| if byte == b'0' { 0xff } else { 0 }));
    let pattern = u64::from_le_bytes(pattern);
    // The separators equal; every digit 0x30 to 0x39: high nibble 3, and
    // the low nibble plus 6 no carry into the high one (a byte holds at
    // most 0x0f + 6, so nothing carries into the next byte).
    (word ^ pattern) & !digits == 0
        && word & digits & HIGH == pattern & digits & HIGH
        && ((word & digits & LOW) + (0x0606_0606_0606_0606 & digits)) & HIGH == 0
}

/// A span of event time in milliseconds; negative only as the result of
/// arithmetic in expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(i64);

impl Duration {
    /// No time at all.
    pub const ZERO: Self = Self(0);

    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Length in milliseconds.
    pub const fn millis(self) -> i64 {
        self.0
    }
}

/// Units in the canonical rendering, largest first.
const UNITS: [(&str, i64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl fmt::Display for Duration {
    /// The canonical form: `0s`, `250ms`, `1m30s`, `-5s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        if self.0 < 0 {
            f.write_str("-")?;
        }
        let mut rest = self.0.unsigned_abs();
        for (unit, ms) in UNITS {
            let ms = ms.unsigned_abs();
            if rest >= ms {
                write!(f, "{}{unit}", rest / ms)?;
                rest %= ms;
            }
        }
        Ok(())
    }
}

impl Duration {
    /// The number of milliseconds in one `unit` (`ms`, `s`, `m`, `h`, `d`).
    pub fn unit_millis(unit: &str) -> Option<i64> {
        UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|&(_, ms)| ms)
    }
}

/// How far event time has progressed on an input or at an operator: no event
/// at or before the watermark is expected any more.
///
/// Ordered so that [`Watermark::MIN`] (nothing seen yet) precedes every event
/// time and [`Watermark::MAX`] (the input has ended) reaches every one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Watermark(i64);

impl Watermark {
    /// Before any event: holds back everything downstream.
    pub const MIN: Self = Self(i64::MIN);
    /// After the end of bounded input: fires every pending timer.
    pub const MAX: Self = Self(i64::MAX);

    /// The bounded out-of-orderness watermark after seeing `max_seen`:
    /// `max_seen - lag - 1ms`, so events up to `lag` behind the newest one
    /// are still on time.
    pub const fn bounded(max_seen: EventTime, lag: Duration) -> Self {
        Self(max_seen.0.saturating_sub(lag.0).saturating_sub(1))
    }

    /// The watermark as a number, for checkpoints: `i64::MIN` before any
    /// event, `i64::MAX` after the end of input.
    pub const fn to_raw(self) -> i64 {
        self.0
    }

    /// The watermark [`to_raw`](Self::to_raw) gave.
    pub const fn from_raw(raw: i64) -> Self {
        Self(raw)
    }

    /// The event time it stands at; `None` before any event and after the
    /// end of input.
    pub const fn time(self) -> Option<EventTime> {
        match self {
            Self::MIN | Self::MAX => None,
            Self(ms) => Some(EventTime(ms)),
        }
    }

    /// Whether a timer for `deadline` fires at this watermark.
    pub const fn reached(self, deadline: EventTime) -> bool {
        self.0 >= deadline.0
    }

    /// Whether `time` is at or behind this watermark: an event that late
    /// arrived after the operator promised not to expect it.
    pub const fn is_late(self, time: EventTime) -> bool {
        time.0 <= self.0
    }
}

impl fmt::Display for Watermark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::MIN => f.write_str("-inf"),
            Self::MAX => f.write_str("+inf"),
            Self(ms) => write!(f, "{ms}ms"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_render_canonically() {
        for (ms, text) in [
            (0, "0s"),
            (250, "250ms"),
            (5_000, "5s"),
            (90_000, "1m30s"),
            (86_400_000 + 1, "1d1ms"),
            (-5_000, "-5s"),
            (i64::MIN, "-106751991167d7h12m55s808ms"),
        ] {
            assert_eq!(Duration::from_millis(ms).to_string(), text);
        }
    }

    #[test]
    fn bounded_watermark_trails_by_lag_and_one_millisecond() {
        let wm = Watermark::bounded(EventTime::from_millis(5_000), Duration::from_millis(2_000));
        assert_eq!(wm, Watermark(2_999));
        assert!(wm.reached(EventTime::from_millis(2_999)));
        assert!(!wm.reached(EventTime::from_millis(3_000)));
        assert!(Watermark::MAX.reached(EventTime::from_millis(i64::MAX)));
        assert!(!Watermark::MIN.reached(EventTime::from_millis(i64::MIN + 1)));
    }

    #[test]
    fn bounded_watermark_saturates() {
        let wm = Watermark::bounded(EventTime::from_millis(i64::MIN), Duration::from_millis(5));
        assert_eq!(wm, Watermark::MIN);
    }

    #[test]
    fn the_fast_rendering_is_jiffs() {
        let mut time: i64 = 0;
        // Steps that reach every field: milliseconds to centuries.
        for step in [1, 7, 999, 86_399_999, 2_629_746_123, 31_556_952_001] {
            for _ in 0..5_000 {
                let fast = EventTime(time).to_string();
                let jiff = jiff::Timestamp::from_millisecond(time)
                    .map(|ts| ts.to_string())
                    .unwrap_or_default();
                assert_eq!(fast, jiff, "{time}");
                time = (time + step) % 253_402_300_800_000;
            }
        }
        assert_eq!(
            EventTime(253_402_300_799_999).to_string(),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(EventTime(-1).to_string(), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn the_fast_reading_is_jiffs() {
        let jiff = |text: &str| {
            text.parse::<jiff::Timestamp>()
                .ok()
                .map(|ts| EventTime(ts.as_millisecond()))
        };
        let mut time: i64 = 0;
        for step in [1, 7, 999, 86_399_999, 2_629_746_123, 31_556_952_001] {
            for _ in 0..5_000 {
                let text = EventTime(time).to_string();
                assert_eq!(
                    EventTime::parse_rfc3339(&text),
                    Some(EventTime(time)),
                    "{text}"
                );
                // Up to 9999-01-01.
                time = (time + step) % 253_370_764_800_000;
            }
        }
        for text in [
            "2026-11-01T10:00:02.5Z",
            "2026-11-01T10:00:02.50Z",
            "2026-11-01T10:00:02.123456789Z",
            "2024-02-29T23:59:59.999999Z",
            "2000-02-29T00:00:00Z",
            "9998-12-31T23:59:59.999Z",
        ] {
            assert_eq!(EventTime::parse_rfc3339(text), jiff(text), "{text}");
            assert!(EventTime::parse_rfc3339(text).is_some(), "{text}");
        }
        // The day's date is kept from one reading to the next: a bad time
        // of that day is still no time, and the next day is read anew.
        assert!(EventTime::parse_rfc3339("2026-11-01T10:00:00Z").is_some());
        assert_eq!(EventTime::parse_rfc3339("2026-11-01T24:00:00Z"), None);
        assert_eq!(EventTime::parse_rfc3339("2026-11-01T10:60:00Z"), None);
        assert_eq!(
            EventTime::parse_rfc3339("2026-11-02T00:00:00.001Z"),
            jiff("2026-11-02T00:00:00.001Z")
        );
        // Not the usual shape, or not a time: left to jiff, to read or to
        // explain.
        for text in [
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-01T24:00:00Z",
            "2026-11-01T10:60:00Z",
            "2026-11-01T10:00:60Z",
            "2026-11-01T10:00:00.Z",
            "2026-11-01T10:00:00.1234567890Z",
            "2026-11-01T10:00:0xZ",
            "2026-11-01t10:00:00Z",
            "2026-11-01T10:00:00z",
            "2026-11-01T10:00:00+00:00",
            "1969-12-31T23:59:59.999Z",
            "9999-12-31T23:59:59.999Z",
            " 2026-11-01T10:00:00Z",
            "2026-11-01T10:00:00,5Z",
            "+2026-11-01T10:00:00Z",
        ] {
            assert_eq!(EventTime::parse_rfc3339(text), None, "{text}");
        }
        // A byte just outside the digits, or any other, in place of each digit.
        let good = "2026-11-01T10:00:00.123Z";
        for (at, _) in good.match_indices(|c: char| c.is_ascii_digit()) {
            for wrong in ["/", ":", "a", " ", "\u{e9}"] {
                let text = format!("{}{wrong}{}", &good[..at], &good[at + 1..]);
                assert_eq!(EventTime::parse_rfc3339(&text), None, "{text}");
            }
        }
    }

    #[test]
    fn written_times_are_their_text_however_they_repeat() {
        let times = [
            0,
            1_500,
            0,
            1_500,
            1_500,
            86_400_000,
            0,
            i64::MAX,
            0,
            i64::MAX,
        ];
        for ms in times {
            let quoted = EventTime(ms).rfc3339_kept().map(|text| {
                let (bytes, len) = text.quoted();
                String::from_utf8(bytes[..len].to_vec()).unwrap()
            });
            if (0..253_402_300_800_000).contains(&ms) {
                assert_eq!(quoted, Some(format!("\"{}\"", EventTime(ms))));
            } else {
                assert_eq!(quoted, None);
            }
        }
    }

    #[test]
    fn event_times_render_as_rfc3339() {
        assert_eq!(
            EventTime::from_millis(1_500).to_string(),
            "1970-01-01T00:00:01.5Z"
        );
        assert_eq!(
            EventTime::from_millis(i64::MAX).to_string(),
            "9223372036854775807ms"
        );
    }
}
