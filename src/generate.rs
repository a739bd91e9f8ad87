//! `runner gen`: realistic, seedable bill-check data.
//!
//! Writes three files: `orders.jsonl` (our app's orders), `payments.jsonl`
//! (the payment platform's notifications) and `settlements.csv` (the
//! bank's settlement report), each line in the order it arrives. Event
//! times are out of order by up to the declared disorder. Some orders are
//! given one anomaly each: a missing notification or order, a wrong amount,
//! a failed payment, a notification sent twice, one delivered late (after
//! the wait, within the retention) or very late (after the retention), and
//! some lines are garbled. The same seed writes the same bytes.
//!
//! [`Tally`] counts what was generated, and [`Tally::expected`] says what
//! `pipelines/bill_check_files.yaml` must report for it: anomalies are
//! placed with margins around the pipeline's 30s wait, 10s watermark lag
//! and 10m retention so that each has exactly one right outcome.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::time::{Duration, EventTime};

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// How many orders.
    pub orders: u64,
    /// The seed of the random choices.
    pub seed: u64,
    /// The event time of the first order.
    pub start: EventTime,
    /// The mean time between orders.
    pub every: Duration,
    /// How far, at most, a line may arrive after its event time, beyond
    /// the delays of the anomalies.
    pub disorder: Duration,
    /// The share of orders without a notification, or of notifications
    /// without an order (half each).
    pub missing: f64,
    /// The share of orders paid a wrong amount, or whose payment failed
    /// (half each).
    pub mismatched: f64,
    /// The share of orders whose notification is sent twice.
    pub duplicates: f64,
    /// The share of orders whose notification is delivered 2 to 5 minutes
    /// late.
    pub late: f64,
    /// The share of orders whose notification is delivered 15 to 20
    /// minutes late.
    pub very_late: f64,
    /// The share of lines that are garbled, among the orders and payments.
    pub malformed: f64,
    /// How orders and payments are written.
    pub format: DataFormat,
}

/// How `runner gen` writes orders and payments (settlements are CSV).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataFormat {
    /// `orders.jsonl` and `payments.jsonl`: a JSON object per line.
    #[default]
    Jsonl,
    /// `orders.csv` and `payments.csv`, each with a header.
    Csv,
}

impl DataFormat {
    /// The files written, in the order of [`Tally::lines`].
    pub const fn files(self) -> [&'static str; 3] {
        match self {
            Self::Jsonl => ["orders.jsonl", "payments.jsonl", "settlements.csv"],
            Self::Csv => ["orders.csv", "payments.csv", "settlements.csv"],
        }
    }
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            orders: 3_000,
            seed: 1,
            // 2026-11-01T10:00:00Z
            start: EventTime::from_millis(1_793_527_200_000),
            every: Duration::from_millis(2_000),
            disorder: Duration::from_millis(5_000),
            missing: 0.02,
            mismatched: 0.02,
            duplicates: 0.01,
            late: 0.005,
            very_late: 0.005,
            malformed: 0.002,
            format: DataFormat::Jsonl,
        }
    }
}

/// What was generated, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Orders with nothing wrong.
    pub clean: u64,
    /// Orders whose notification never comes.
    pub missing_payment: u64,
    /// Notifications for an order the app never recorded.
    pub missing_order: u64,
    /// Orders paid a different amount.
    pub wrong_amount: u64,
    /// Orders whose payment failed.
    pub failed: u64,
    /// Orders whose notification is sent twice.
    pub duplicates: u64,
    /// Orders whose notification comes after the wait, within the
    /// retention.
    pub late: u64,
    /// Orders whose notification comes after the retention.
    pub very_late: u64,
    /// Garbled lines, not records.
    pub malformed: u64,
    /// Lines written per file, headers left out: orders, payments,
    /// settlements.
    pub lines: [u64; 3],
}

impl Tally {
    /// The outcomes `pipelines/bill_check_files.yaml` reports for this
    /// data, in the order of [`OutcomeKind::ALL`](crate::config::OutcomeKind::ALL).
    pub fn expected(&self) -> [(&'static str, u64); 7] {
        [
            ("matched", self.clean + self.duplicates),
            ("mismatched", self.wrong_amount + self.failed),
            (
                "timed_out",
                self.missing_payment + self.missing_order + self.late + self.very_late,
            ),
            ("duplicate", self.duplicates),
            ("late", self.very_late),
            ("resolved", self.late),
            ("malformed", self.malformed),
        ]
    }
}

/// A line and when it arrives.
struct Arrival {
    at: i64,
    line: String,
}

/// Generates the data and writes it under `dir`, which is created.
///
/// # Errors
///
/// A file that cannot be written.
pub fn write(spec: &Spec, dir: &Path) -> io::Result<Tally> {
    let (files, tally) = generate(spec);
    std::fs::create_dir_all(dir)?;
    for (name, text) in spec.format.files().iter().zip(files) {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(tally)
}

/// The three files' text, and what is in them.
pub fn generate(spec: &Spec) -> ([String; 3], Tally) {
    let mut rng = Rng(spec.seed);
    let mut tally = Tally::default();
    let (mut orders, mut payments, mut settlements) = (Vec::new(), Vec::new(), Vec::new());
    let every = spec.every.millis().max(1);
    let disorder = spec.disorder.millis().max(0);
    let last = spec.start.millis() + every * i64::try_from(spec.orders).unwrap_or(i64::MAX);
    let mut created = spec.start.millis();
    let currencies = ["EUR", "EUR", "EUR", "USD", "GBP"];
    for n in 0..spec.orders {
        created += rng.between(every / 2, every * 3 / 2);
        let id = format!("A-{:06}", n + 1);
        let amount = rng.between(100, 50_000);
        let currency = currencies[rng.below(currencies.len() as u64) as usize];
        let user = rng.between(1, 5_000);
        let notified = created + rng.between(500, 8_000);
        // A late delivery must come while later orders still move the
        // watermark on: near the end of the data, nothing would.
        let left = last - created;
        let mut anomaly = Anomaly::pick(&mut rng, spec);
        if (anomaly == Anomaly::Late && left < 6 * 60_000)
            || (anomaly == Anomaly::VeryLate && left < 21 * 60_000)
        {
            anomaly = Anomaly::None;
        }
        let created_at = EventTime::from_millis(created);
        let order = match spec.format {
            DataFormat::Jsonl => format!(
                r#"{{"order_id":"{id}","user":"u-{user:04}","amount":{amount},"currency":"{currency}","created_at":"{created_at}"}}"#
            ),
            DataFormat::Csv => format!("{id},u-{user:04},{amount},{currency},{created_at}"),
        };
        if anomaly != Anomaly::MissingOrder {
            orders.push(Arrival {
                at: created + rng.between(0, disorder),
                line: order,
            });
        }
        let (paid, status) = match anomaly {
            Anomaly::WrongAmount => (amount + rng.between(1, 500) * 10, "success"),
            Anomaly::Failed => (amount, "failed"),
            _ => (amount, "success"),
        };
        let notified_at = EventTime::from_millis(notified);
        let payment = match spec.format {
            DataFormat::Jsonl => format!(
                r#"{{"order_ref":"{id}","paid":{paid},"currency":"{currency}","status":"{status}","notified_at":"{notified_at}"}}"#
            ),
            DataFormat::Csv => format!("{id},{paid},{currency},{status},{notified_at}"),
        };
        let delivered = notified
            + match anomaly {
                Anomaly::Late => rng.between(120_000, 300_000),
                Anomaly::VeryLate => rng.between(900_000, 1_200_000),
                _ => rng.between(0, disorder),
            };
        if anomaly != Anomaly::MissingPayment {
            if anomaly == Anomaly::Duplicate {
                payments.push(Arrival {
                    at: delivered + rng.between(5_000, 60_000),
                    line: payment.clone(),
                });
            }
            payments.push(Arrival {
                at: delivered,
                line: payment,
            });
        }
        if status == "success"
            && !matches!(anomaly, Anomaly::MissingPayment | Anomaly::MissingOrder)
        {
            let settled = created + rng.between(60_000, 300_000);
            // Banks type references as they like.
            let reference = match rng.below(4) {
                0 => format!(" {}", id.to_lowercase()),
                1 => format!("{id} "),
                _ => id.clone(),
            };
            settlements.push(Arrival {
                at: settled,
                line: format!(
                    "{reference},{paid},{currency},{}",
                    bank_time(EventTime::from_millis(settled))
                ),
            });
        }
        anomaly.count(&mut tally);
    }
    for lines in [&mut orders, &mut payments] {
        tally.malformed += garble_some(&mut rng, lines, spec, last);
    }
    let texts = texts([orders, payments, settlements], spec.format, &mut tally);
    (texts, tally)
}

/// Each file's text: its lines in arrival order, after its header.
fn texts(files: [Vec<Arrival>; 3], format: DataFormat, tally: &mut Tally) -> [String; 3] {
    let headers = match format {
        DataFormat::Jsonl => ["", ""],
        DataFormat::Csv => [
            "order_id,user,amount,currency,created_at\n",
            "order_ref,paid,currency,status,notified_at\n",
        ],
    };
    let headers = [
        headers[0],
        headers[1],
        "reference,value,currency,settled_on\n",
    ];
    let mut index = 0;
    files.map(|mut arrivals| {
        // Stable: equal arrival times keep their order.
        arrivals.sort_by_key(|arrival| arrival.at);
        let mut text = String::from(headers[index]);
        for arrival in &arrivals {
            text.push_str(&arrival.line);
            text.push('\n');
        }
        tally.lines[index] = arrivals.len() as u64;
        index += 1;
        text
    })
}

/// Adds garbled lines, `spec.malformed` of `lines` many, each arriving
/// with the line it garbles; returns how many.
fn garble_some(rng: &mut Rng, lines: &mut Vec<Arrival>, spec: &Spec, last: i64) -> u64 {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )] // A share of a line count: small, and not negative.
    let garbled = (lines.len() as f64 * spec.malformed.clamp(0.0, 1.0)).round() as u64;
    for _ in 0..garbled {
        let index = usize::try_from(rng.below(lines.len() as u64 + 1)).unwrap_or(0);
        let at = lines.get(index).map_or(last, |arrival| arrival.at);
        let near = lines.get(index).map(|a| a.line.as_str());
        let line = match spec.format {
            DataFormat::Jsonl => garble(rng, near),
            DataFormat::Csv => garble_csv(rng, near),
        };
        lines.push(Arrival { at, line });
    }
    garbled
}

/// A CSV line that is not a record, in the same ways as [`garble`].
fn garble_csv(rng: &mut Rng, near: Option<&str>) -> String {
    let line = near.unwrap_or("A-000000,1,EUR,success,2026-11-01T10:00:00Z");
    let mut fields: Vec<&str> = line.split(',').collect();
    match rng.below(5) {
        0 => line[..line.len() / 2].to_string(),
        1 => {
            // An amount with a decimal point: the third column of an order,
            // the second of a payment.
            let at = if fields.len() == 5 && fields[1].starts_with("u-") {
                2
            } else {
                1
            };
            if let Some(field) = fields.get_mut(at) {
                *field = "12.50";
            }
            fields.join(",")
        }
        2 => "2026-11-01 10:00:00 WARN upstream retry".to_string(),
        3 => {
            if let Some(last) = fields.last_mut() {
                *last = "yesterday";
            }
            fields.join(",")
        }
        _ => {
            fields.pop();
            fields.join(",")
        }
    }
}

/// A bank's local time format: `2026-11-01 10:05:00`.
fn bank_time(time: EventTime) -> String {
    let text = time.to_string();
    let seconds = text.get(..19).unwrap_or(&text);
    seconds.replace('T', " ")
}

/// A line that is not a record: one of the ways real feeds go wrong.
fn garble(rng: &mut Rng, near: Option<&str>) -> String {
    let line = near.unwrap_or(r#"{"order_id":"A-000000","amount":1}"#);
    match rng.below(5) {
        // Cut off mid-write.
        0 => line[..line.len() / 2].to_string(),
        // An amount as text with a decimal point.
        1 => line
            .replacen("\"amount\":", "\"amount\":\"12.50\",\"was\":", 1)
            .replacen("\"paid\":", "\"paid\":\"12.50\",\"was\":", 1),
        // A log line in the feed.
        2 => "2026-11-01 10:00:00 WARN upstream retry".to_string(),
        // A timestamp that is not one.
        3 => line
            .replacen("\"created_at\":\"", "\"created_at\":\"yesterday ", 1)
            .replacen("\"notified_at\":\"", "\"notified_at\":\"yesterday ", 1),
        // A field missing.
        _ => line.replacen("\"currency\":", "\"currenc\":", 1),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Anomaly {
    None,
    MissingPayment,
    MissingOrder,
    WrongAmount,
    Failed,
    Duplicate,
    Late,
    VeryLate,
}

impl Anomaly {
    fn pick(rng: &mut Rng, spec: &Spec) -> Self {
        let mut u = rng.unit();
        for (share, anomaly) in [
            (spec.missing / 2.0, Self::MissingPayment),
            (spec.missing / 2.0, Self::MissingOrder),
            (spec.mismatched / 2.0, Self::WrongAmount),
            (spec.mismatched / 2.0, Self::Failed),
            (spec.duplicates, Self::Duplicate),
            (spec.late, Self::Late),
            (spec.very_late, Self::VeryLate),
        ] {
            if u < share {
                return anomaly;
            }
            u -= share;
        }
        Self::None
    }

    fn count(self, tally: &mut Tally) {
        let counter = match self {
            Self::None => &mut tally.clean,
            Self::MissingPayment => &mut tally.missing_payment,
            Self::MissingOrder => &mut tally.missing_order,
            Self::WrongAmount => &mut tally.wrong_amount,
            Self::Failed => &mut tally.failed,
            Self::Duplicate => &mut tally.duplicates,
            Self::Late => &mut tally.late,
            Self::VeryLate => &mut tally.very_late,
        };
        *counter += 1;
    }
}

/// `SplitMix64`: small, fast, and the same everywhere for a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; 0 when `n` is 0.
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: i64, high: i64) -> i64 {
        let span = high.saturating_sub(low).max(0).unsigned_abs() + 1;
        low + i64::try_from(self.below(span)).unwrap_or(0)
    }

    /// Uniform in `[0, 1)`.
    #[allow(clippy::cast_precision_loss)] // 53 bits: exact in an f64.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Tally {
    /// What was written, for people.
    pub fn describe(&self, dir: &Path) -> String {
        let orders = self.clean
            + self.missing_payment
            + self.missing_order
            + self.wrong_amount
            + self.failed
            + self.duplicates
            + self.late
            + self.very_late;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "wrote {orders} orders to {}: {} lines of orders, {} of payments, {} of settlements",
            dir.display(),
            self.lines[0],
            self.lines[1],
            self.lines[2]
        );
        let _ = writeln!(
            out,
            "  {} clean, {} without a payment, {} without an order, {} paid a wrong amount, {} failed,",
            self.clean, self.missing_payment, self.missing_order, self.wrong_amount, self.failed
        );
        let _ = writeln!(
            out,
            "  {} notified twice, {} notified late, {} notified very late; {} malformed lines",
            self.duplicates, self.late, self.very_late, self.malformed
        );
        let expected: Vec<String> = self
            .expected()
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        let _ = writeln!(
            out,
            "  bill_check_files.yaml reports: {}",
            expected.join(", ")
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_writes_the_same_data() {
        let spec = Spec {
            orders: 300,
            ..Spec::default()
        };
        assert_eq!(generate(&spec), generate(&spec));
        let other = Spec {
            seed: 2,
            ..spec.clone()
        };
        assert_ne!(generate(&spec).0, generate(&other).0);
    }

    #[test]
    fn every_order_gets_one_fate() {
        let spec = Spec {
            orders: 5_000,
            missing: 0.1,
            mismatched: 0.1,
            duplicates: 0.1,
            late: 0.1,
            very_late: 0.1,
            malformed: 0.01,
            ..Spec::default()
        };
        let (files, tally) = generate(&spec);
        let fates = tally.clean
            + tally.missing_payment
            + tally.missing_order
            + tally.wrong_amount
            + tally.failed
            + tally.duplicates
            + tally.late
            + tally.very_late;
        assert_eq!(fates, 5_000);
        for count in [
            tally.missing_payment,
            tally.missing_order,
            tally.wrong_amount,
            tally.failed,
            tally.duplicates,
            tally.late,
            tally.very_late,
        ] {
            assert!(count > 100, "{tally:?}");
        }
        let orders = files[0].lines().count() as u64;
        assert_eq!(orders, tally.lines[0]);
        assert_eq!(
            files[2].lines().count() as u64,
            tally.lines[2] + 1,
            "and a header"
        );
        assert_eq!(
            orders + tally.lines[1],
            5_000 - tally.missing_order + 5_000 - tally.missing_payment
                + tally.duplicates
                + tally.malformed,
            "every order and notification is a line, and so is every garbled line"
        );
        assert!(files[2].starts_with("reference,value,currency,settled_on\n"));
    }
}
