//! Stable diagnostic codes. Tests and the README name them; never renumber.

use std::fmt;

macro_rules! codes {
    ($($variant:ident = $code:literal: $summary:literal,)*) => {
        /// A stable identifier for a kind of finding.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $(
                #[doc = $summary]
                $variant,
            )*
        }

        impl Code {
            /// Every code, in order.
            pub const ALL: &[Code] = &[$(Code::$variant),*];

            /// The code as printed: `E204`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            /// One line saying what the code is about.
            pub const fn summary(self) -> &'static str {
                match self {
                    $(Code::$variant => $summary,)*
                }
            }
        }
    };
}

codes! {
    YamlSyntax = "E001": "the file is not valid YAML",
    UnknownKey = "E002": "a key the pipeline format does not have",
    MissingKey = "E003": "a required key is missing",
    WrongShape = "E004": "a value of the wrong kind (a list where a mapping belongs, ...)",
    DuplicateKey = "E005": "a key given twice in one mapping",
    InvalidName = "E006": "a source or sink name that is not an identifier, or a reserved source name",
    InvalidDuration = "E007": "a duration that does not parse",
    InvalidFieldType = "E008": "a schema type that does not exist",
    InvalidChoice = "E009": "a value that is not one of the allowed words",
    InvalidRecord = "E010": "an inline record that does not fit its source's schema",
    InvalidSource = "E011": "a source whose options do not fit its schema (a nested schema read from CSV, columns that miss a field)",
    ExprSyntax = "E101": "an expression that does not parse",
    InvalidLiteral = "E102": "a literal that is out of range or has a bad escape",
    UnknownName = "E201": "an expression names a field or variable that does not exist",
    UnknownFunction = "E202": "an expression calls a function that does not exist",
    WrongArity = "E203": "a function called with the wrong number of arguments",
    TypeMismatch = "E204": "a value of the wrong type for an operator, function or place",
    NullableValue = "E205": "a value that may be null used where a value is required",
    InvalidFormat = "E206": "a timestamp format string that does not parse",
    UnknownSource = "E301": "a reference to a source that is not declared",
    UnknownSink = "E302": "an output routed to a sink that is not declared",
    KeyTypeMismatch = "E303": "connected sources whose keys have different types",
    WaitRule = "E304": "a connected source without a wait rule, or a wait rule for a source that is not connected",
    SideCount = "E305": "`connect` names fewer than two sources, or more than 256",
    InvalidSide = "E306": "an output's `side` that is not a connected source or does not apply to its outcome",
    UnusedSource = "E307": "a source that is declared but not connected",
    InvalidTest = "E308": "a test case that names a side that is not connected, or expects what its outcome cannot carry",
    FileConflict = "E309": "two sinks that write one file, a sink that writes a file a source reads, two sources on standard input, or a template for a CSV sink",
    NotResumable = "E310": "checkpoints turned on for a pipeline that reads standard input, which cannot be read again",
    Transactions = "E311": "checkpoint `transactions` without checkpoints, without Kafka sinks or a state topic, or with Kafka sinks of different clusters or properties; a `state_topic` without transactions or with a source that is not Kafka",
    EvalFailed = "E401": "an expression failed while evaluating a record",
    OpenFailed = "E402": "a file that a source reads or a sink writes cannot be opened",
    NotShareable = "E403": "a pipeline that processes cannot share (`--instance`, `--join`): a source that is not Kafka (or, with `--join`, bounded), or topics not partitioned alike",
    ZeroWait = "W001": "a side that waits 0s: only counterparts at the very same event time match",
    LagOverWait = "W002": "a watermark lag longer than the source's wait: its timeouts come late",
    OutcomeNowhere = "W003": "an outcome that no output writes anywhere",
    OutcomeNever = "W004": "an output for an outcome that cannot happen",
    FollowNotIdle = "W005": "a followed (or unbounded Kafka) source without `idle_timeout`: while it is silent, the other sources wait",
    Unused = "W006": "a setting that has no effect (`event_time` with `clock: processing`, `idle_grace` without `idle_timeout`, a checkpoint `interval` with checkpoints off)",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
