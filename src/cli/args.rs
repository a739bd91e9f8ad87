//! Argument parsing.

use std::ffi::OsString;

use lexopt::prelude::*;
use runner::generate::{DataFormat, Spec};
use runner::runtime::Instance;

/// What the user asked for.
#[derive(Debug, PartialEq)]
pub(crate) enum Command {
    /// Run a pipeline file.
    Run(RunArgs),
    /// List what a pipeline's last checkpoint holds.
    Inspect {
        /// The pipeline file.
        path: String,
        /// Where its checkpoints are, if not in the default place.
        state_dir: Option<String>,
        /// Which of the processes sharing its partitions took them.
        instance: Instance,
    },
    /// Print a pipeline file's compiled graph.
    Explain(String),
    /// Check pipeline files without running them.
    Validate {
        /// Files, directories and patterns.
        paths: Vec<String>,
        /// How to report.
        format: Format,
        /// Whether a warning makes the check fail.
        deny_warnings: bool,
    },
    /// Run pipelines' test cases.
    Test(Vec<String>),
    /// Print the JSON Schema of the pipeline format.
    Schema,
    /// Write generated bill-check data.
    Gen {
        /// What to generate.
        spec: Spec,
        /// The directory to write to.
        out: String,
    },
    /// Print help.
    Help,
    /// Print the version.
    Version,
}

/// How to run a pipeline.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RunArgs {
    /// The pipeline file.
    pub(crate) path: String,
    /// Whether to leave out the summary and progress on stderr.
    pub(crate) quiet: bool,
    /// Matching threads.
    pub(crate) workers: usize,
    /// Where checkpoints go, if not in the default place.
    pub(crate) state_dir: Option<String>,
    /// Whether to start over instead of resuming.
    pub(crate) fresh: bool,
    /// Which of the processes sharing the Kafka partitions this is.
    pub(crate) instance: Instance,
    /// Whether the processes sharing the Kafka partitions are those of a
    /// consumer group, which deals the partitions out.
    pub(crate) join: bool,
    /// Where to serve metrics, if anywhere.
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
    /// Whether, and how, to log what the run does on stderr.
    pub(crate) log: Option<LogFormat>,
}

/// How `--log` writes the run's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// A line of text per event.
    Text,
    /// A JSON object per event.
    Json,
}

/// How `validate` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// For people: the source line with the span underlined.
    Human,
    /// One JSON document.
    Json,
    /// GitHub Actions workflow commands.
    Github,
}

pub(crate) const USAGE: &str = "\
Usage: runner [--quiet] [--workers N] [--state-dir DIR] [--fresh]
              [--instance I/N | --join] [--metrics-addr ADDR] [--log text|json] <FILE>
       runner run [OPTIONS] <FILE>
       runner explain <FILE>
       runner validate [--format human|json|github] [--deny-warnings] <PATH>...
       runner test <PATH>...
       runner schema
       runner state inspect [--state-dir DIR] [--instance I/N] <FILE>
       runner gen [--out DIR] [--orders N] [--seed N] [OPTIONS]
Try `runner --help` for more.";

pub(crate) const HELP: &str = "\
runner: reconcile event streams, declared in a YAML pipeline file

Usage:
  runner <FILE>              run a pipeline (same as `runner run <FILE>`)
  runner run <FILE>          run a pipeline until its inputs end (or Ctrl-C)
  runner explain <FILE>      print the compiled operator graph
  runner validate <PATH>...  check pipelines without running them
  runner test <PATH>...      run the test cases in pipelines' `tests` sections
  runner schema              print the JSON Schema of the pipeline format
  runner state inspect <FILE>  list what the pipeline's last checkpoint (and state topic) holds
  runner gen                 write bill-check data: orders.jsonl, payments.jsonl
                             and settlements.csv


A PATH is a file, a directory (every *.yaml and *.yml below it) or a
quoted glob pattern such as 'pipelines/**/*.yaml'.

Options:
  -q, --quiet                run without the summary (and progress) on stderr
  --workers <N>              match on N threads, keys spread over them [1];
                             outcomes of different keys may then come out
                             in a different order from run to run
  --state-dir <DIR>          where checkpoints go [.runner/<name> beside
                             the pipeline file]
  --fresh                    start over instead of resuming from the last
                             checkpoint (every output is written anew)
  --instance <I/N>           be process I of N sharing the Kafka topics'
                             partitions: read the Ith of N ranges of them
                             (topics co-partitioned); own checkpoints, and
                             file sinks written as NAME.I-of-N.EXT; takes
                             its keys over from the checkpoints of another
                             number of processes, stopped [1/1]
  --join                     share the Kafka topics' partitions with the
                             processes in the consumer group <group>.members
                             (the first Kafka source's group), as it deals
                             them out: processes that join or leave (or
                             die) move partitions, state and all; own
                             checkpoints, and file sinks written as
                             NAME.partitions-F-L-of-P.EXT, per range dealt
  --metrics-addr <ADDR>      serve Prometheus metrics at http://ADDR/metrics
                             and a health check at /health while running;
                             a bare port is on the loopback interface
  --log <FORMAT>             log what the run does (starts, checkpoints,
                             Kafka partitions and offsets) on stderr, as
                             text or json lines
  --format <FORMAT>          validate's report: human (default), json or github
  --deny-warnings            validate fails on warnings too
  -h, --help                 print this help
  -V, --version              print the version

Options of gen (defaults in brackets):
  --out <DIR>                where to write [data]
  --format <FORMAT>          orders and payments as jsonl or csv [jsonl]
  --orders <N>               how many orders [3000]
  --seed <N>                 the same seed writes the same data [1]
  --start <TIME>             the first order's time [2026-11-01T10:00:00Z]
  --every <DURATION>         mean time between orders [2s]
  --disorder <DURATION>      how late a line may arrive [5s]
  --missing <SHARE>          orders without a payment, or payments without
                             an order [0.02]
  --mismatched <SHARE>       payments of a wrong amount, or failed [0.02]
  --duplicates <SHARE>       payments notified twice [0.01]
  --late <SHARE>             payments notified 2 to 5 minutes late [0.005]
  --very-late <SHARE>        payments notified 15 to 20 minutes late [0.005]
  --malformed <SHARE>        garbled lines [0.002]

Exit status: 0 success; 1 an invalid pipeline, a failed expression or a failed
test; 2 usage or I/O error.
";

/// How `gen`'s option `name` sets its value in a spec, if it is one.
#[allow(clippy::type_complexity)] // A table of setters.
fn gen_option(name: &str) -> Option<fn(&mut Spec, &str) -> Result<(), String>> {
    fn share(text: &str) -> Result<f64, String> {
        match text.parse::<f64>() {
            Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
            _ => Err("a share is a number from 0 to 1".to_string()),
        }
    }
    fn count(text: &str) -> Result<u64, String> {
        text.parse()
            .map_err(|_| "expected a whole number".to_string())
    }
    fn duration(text: &str) -> Result<runner::time::Duration, String> {
        runner::expr::parse_duration(text)
    }
    Some(match name {
        "orders" => |spec, text| {
            spec.orders = count(text)?;
            Ok(())
        },
        "seed" => |spec, text| {
            spec.seed = count(text)?;
            Ok(())
        },
        "start" => |spec, text| {
            let time = text
                .parse::<jiff::Timestamp>()
                .map_err(|error| format!("not an RFC 3339 time: {error}"))?;
            spec.start = runner::time::EventTime::from_millis(time.as_millisecond());
            Ok(())
        },
        "every" => |spec, text| {
            spec.every = duration(text)?;
            Ok(())
        },
        "disorder" => |spec, text| {
            spec.disorder = duration(text)?;
            Ok(())
        },
        "missing" => |spec, text| {
            spec.missing = share(text)?;
            Ok(())
        },
        "mismatched" => |spec, text| {
            spec.mismatched = share(text)?;
            Ok(())
        },
        "duplicates" => |spec, text| {
            spec.duplicates = share(text)?;
            Ok(())
        },
        "late" => |spec, text| {
            spec.late = share(text)?;
            Ok(())
        },
        "very-late" => |spec, text| {
            spec.very_late = share(text)?;
            Ok(())
        },
        "malformed" => |spec, text| {
            spec.malformed = share(text)?;
            Ok(())
        },
        _ => return None,
    })
}

/// What `--format name` means to `command`: `validate`'s report, or the
/// data `gen` writes (set in `spec`).
fn formats(command: &str, name: &str, spec: &mut Spec) -> Result<Option<Format>, String> {
    match command {
        "validate" => match name {
            "human" => Ok(Some(Format::Human)),
            "json" => Ok(Some(Format::Json)),
            "github" => Ok(Some(Format::Github)),
            other => Err(format!(
                "unknown format `{other}`: use human, json or github"
            )),
        },
        "gen" => {
            spec.format = match name {
                "jsonl" => DataFormat::Jsonl,
                "csv" => DataFormat::Csv,
                other => return Err(format!("unknown format `{other}`: use jsonl or csv")),
            };
            Ok(None)
        }
        _ => Err("`--format` belongs to `validate` and `gen`".to_string()),
    }
}

/// The options and bare words of a command line, before they are checked
/// against the command they belong to.
#[derive(Default)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is a flag of the command line"
)]
struct Options {
    words: Vec<String>,
    format: Option<String>,
    deny_warnings: bool,
    quiet: bool,
    workers: Option<usize>,
    state_dir: Option<String>,
    fresh: bool,
    instance: Option<Instance>,
    join: bool,
    metrics_addr: Option<std::net::SocketAddr>,
    log: Option<LogFormat>,
    spec: Spec,
    out: Option<String>,
    generating: bool,
}

/// A metrics address: `9464` (the loopback interface), `0.0.0.0:9464`,
/// `[::1]:9464`.
fn metrics_addr(text: &str) -> Option<std::net::SocketAddr> {
    match text.parse::<u16>() {
        Ok(port) => Some((std::net::Ipv4Addr::LOCALHOST, port).into()),
        Err(_) => text.parse().ok(),
    }
}

/// Reads every option and word of `args`.
fn options(args: impl IntoIterator<Item = OsString>) -> Result<Options, lexopt::Error> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut options = Options::default();
    while let Some(arg) = parser.next()? {
        if let Long(name) = arg
            && let Some(set) = gen_option(name)
        {
            let name = name.to_string();
            let value = parser.value()?.string()?;
            set(&mut options.spec, &value)
                .map_err(|problem| format!("`--{name} {value}`: {problem}"))?;
            options.generating = true;
            continue;
        }
        match arg {
            Short('q') | Long("quiet") => options.quiet = true,
            Long("workers") => {
                let value = parser.value()?.string()?;
                options.workers = Some(match value.parse::<usize>() {
                    Ok(n) if (1..=256).contains(&n) => n,
                    _ => return Err(format!("`--workers {value}`: expected 1 to 256").into()),
                });
            }
            Long("state-dir") => options.state_dir = Some(parser.value()?.string()?),
            Long("fresh") => options.fresh = true,
            Long("instance") => {
                let value = parser.value()?.string()?;
                options.instance = Some(Instance::parse(&value).ok_or_else(|| {
                    format!(
                        "`--instance {value}`: expected this process's number and how many \
                         share the partitions, such as 2/3"
                    )
                })?);
            }
            Long("join") => options.join = true,
            Long("metrics-addr") => {
                let value = parser.value()?.string()?;
                options.metrics_addr = Some(metrics_addr(&value).ok_or_else(|| {
                    format!(
                        "`--metrics-addr {value}`: expected a port (on the loopback interface) \
                         or an address and port, such as 127.0.0.1:9464"
                    )
                })?);
            }
            Long("log") => {
                let value = parser.value()?.string()?;
                options.log = Some(match value.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return Err(format!("`--log {value}`: expected text or json").into()),
                });
            }
            Long("out") => {
                options.out = Some(parser.value()?.string()?);
                options.generating = true;
            }
            Short('h') | Long("help") => return Ok(Options::only("help")),
            Short('V') | Long("version") => return Ok(Options::only("--version")),
            Long("format") => options.format = Some(parser.value()?.string()?),
            Long("deny-warnings") => options.deny_warnings = true,
            Value(word) => options.words.push(word.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(options)
}

impl Options {
    /// Options that name only `command`.
    fn only(command: &str) -> Self {
        Self {
            words: vec![command.to_string()],
            ..Self::default()
        }
    }
}

/// Parses the arguments after the program name.
/// `options`, unless they are given to a command they do not belong to,
/// or clash.
fn placed(options: Options) -> Result<Options, lexopt::Error> {
    let first = options.words.first().map_or("", String::as_str);
    if first != "validate" && options.deny_warnings {
        return Err("`--deny-warnings` belongs to `validate`".into());
    }
    let running = !matches!(
        first,
        "help" | "schema" | "explain" | "validate" | "test" | "gen" | "state"
    );
    let inspecting = first == "state";
    let run_only = options.quiet
        || options.workers.is_some()
        || options.fresh
        || options.join
        || options.metrics_addr.is_some()
        || options.log.is_some();
    if run_only && !running {
        return Err(
            "`--quiet`, `--workers`, `--fresh`, `--join`, `--metrics-addr` and `--log` belong \
             to `run`"
                .into(),
        );
    }
    if (options.state_dir.is_some() || options.instance.is_some()) && !running && !inspecting {
        return Err("`--state-dir` and `--instance` belong to `run` and `state inspect`".into());
    }
    if options.join && (options.instance.is_some() || options.fresh) {
        return Err(
            "`--join` takes no `--instance` (the group deals the partitions) and no `--fresh` \
             (other processes' checkpoints would stay): to start over, stop every process and \
             remove the state directory"
                .into(),
        );
    }
    Ok(options)
}

pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, lexopt::Error> {
    let Options {
        words,
        format,
        deny_warnings,
        quiet,
        workers,
        state_dir,
        fresh,
        instance,
        join,
        metrics_addr,
        log,
        mut spec,
        out,
        generating,
    } = placed(options(args)?)?;
    let mut words = words.into_iter();
    let first = words.next().ok_or("missing the pipeline file")?;
    let validating = first == "validate";
    let format = match format {
        Some(name) => formats(&first, &name, &mut spec)?,
        None => None,
    };
    let instance = instance.unwrap_or_default();
    let workers = workers.unwrap_or(1);
    let run = |path: String| {
        Command::Run(RunArgs {
            path,
            quiet,
            workers,
            state_dir: state_dir.clone(),
            fresh,
            instance,
            join,
            metrics_addr,
            log,
        })
    };
    if generating && first != "gen" {
        return Err("`--out`, `--orders`, `--seed` and the shares belong to `gen`".into());
    }
    let command = match first.as_str() {
        "help" => Command::Help,
        "--version" => Command::Version,
        "schema" => Command::Schema,
        "gen" => Command::Gen {
            spec,
            out: out.unwrap_or_else(|| "data".to_string()),
        },
        "run" => run(words.next().ok_or("`run` needs a pipeline file")?),
        "state" => match words.next().as_deref() {
            Some("inspect") => Command::Inspect {
                path: words
                    .next()
                    .ok_or("`state inspect` needs a pipeline file")?,
                state_dir: state_dir.clone(),
                instance,
            },
            _ => return Err("`state` takes `inspect` and a pipeline file".into()),
        },
        "explain" => Command::Explain(words.next().ok_or("`explain` needs a pipeline file")?),
        "validate" | "test" => {
            let paths: Vec<String> = words.by_ref().collect();
            if paths.is_empty() {
                return Err(format!("`{first}` needs at least one file or directory").into());
            }
            if validating {
                Command::Validate {
                    paths,
                    format: format.unwrap_or(Format::Human),
                    deny_warnings,
                }
            } else {
                Command::Test(paths)
            }
        }
        _ => run(first),
    };
    match words.next() {
        Some(extra) => Err(format!("unexpected argument `{extra}`").into()),
        None => Ok(command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &[&str]) -> Result<Command, String> {
        parse(words.iter().map(OsString::from)).map_err(|e| e.to_string())
    }

    #[test]
    fn short_and_long_forms() {
        let run = |path: &str, quiet| {
            Command::Run(RunArgs {
                path: path.into(),
                quiet,
                workers: 1,
                ..RunArgs::default()
            })
        };
        assert_eq!(parse_words(&["p.yaml"]), Ok(run("p.yaml", false)));
        assert_eq!(parse_words(&["run", "p.yaml"]), Ok(run("p.yaml", false)));
        assert_eq!(parse_words(&["-q", "p.yaml"]), Ok(run("p.yaml", true)));
        assert_eq!(
            parse_words(&["run", "p.yaml", "--quiet"]),
            Ok(run("p.yaml", true))
        );
        assert_eq!(
            parse_words(&["explain", "p.yaml"]),
            Ok(Command::Explain("p.yaml".into()))
        );
        assert_eq!(parse_words(&["--help"]), Ok(Command::Help));
        assert_eq!(parse_words(&["-V"]), Ok(Command::Version));
        assert_eq!(parse_words(&["schema"]), Ok(Command::Schema));
        assert_eq!(
            parse_words(&["gen", "--out", "d", "--format", "csv", "--late", "0.5"]),
            Ok(Command::Gen {
                spec: Spec {
                    format: DataFormat::Csv,
                    late: 0.5,
                    ..Spec::default()
                },
                out: "d".into()
            })
        );
    }

    #[test]
    fn validate_and_test_take_many_paths_and_options_anywhere() {
        assert_eq!(
            parse_words(&[
                "validate",
                "a.yaml",
                "--format",
                "json",
                "dir/",
                "--deny-warnings"
            ]),
            Ok(Command::Validate {
                paths: vec!["a.yaml".into(), "dir/".into()],
                format: Format::Json,
                deny_warnings: true
            })
        );
        assert_eq!(
            parse_words(&["validate", "--format=github", "a.yaml"]),
            Ok(Command::Validate {
                paths: vec!["a.yaml".into()],
                format: Format::Github,
                deny_warnings: false
            })
        );
        assert_eq!(
            parse_words(&["test", "a.yaml", "b.yaml"]),
            Ok(Command::Test(vec!["a.yaml".into(), "b.yaml".into()]))
        );
    }

    #[test]
    fn metrics_addresses_are_ports_or_socket_addresses() {
        assert_eq!(
            parse_words(&["--metrics-addr", "localhost", "a"]),
            Err(
                "`--metrics-addr localhost`: expected a port (on the loopback interface) \
                 or an address and port, such as 127.0.0.1:9464"
                    .into()
            )
        );
        for (given, addr) in [
            ("9464", "127.0.0.1:9464"),
            ("0.0.0.0:80", "0.0.0.0:80"),
            ("[::1]:9464", "[::1]:9464"),
        ] {
            assert_eq!(
                parse_words(&["--metrics-addr", given, "p.yaml"]),
                Ok(Command::Run(RunArgs {
                    path: "p.yaml".into(),
                    workers: 1,
                    metrics_addr: addr.parse().ok(),
                    ..RunArgs::default()
                }))
            );
        }
    }

    #[test]
    fn mistakes_are_usage_errors() {
        assert_eq!(parse_words(&[]), Err("missing the pipeline file".into()));
        assert_eq!(
            parse_words(&["--log", "xml", "a"]),
            Err("`--log xml`: expected text or json".into())
        );
        assert_eq!(
            parse_words(&["validate", "--log", "json", "a"]),
            Err(
                "`--quiet`, `--workers`, `--fresh`, `--join`, `--metrics-addr` and `--log` belong to `run`"
                    .into()
            )
        );
        assert_eq!(
            parse_words(&["run"]),
            Err("`run` needs a pipeline file".into())
        );
        assert_eq!(
            parse_words(&["a.yaml", "b.yaml"]),
            Err("unexpected argument `b.yaml`".into())
        );
        assert_eq!(
            parse_words(&["validate"]),
            Err("`validate` needs at least one file or directory".into())
        );
        assert_eq!(
            parse_words(&["validate", "--format", "xml", "a"]),
            Err("unknown format `xml`: use human, json or github".into())
        );
        assert_eq!(
            parse_words(&["run", "--deny-warnings", "a"]),
            Err("`--deny-warnings` belongs to `validate`".into())
        );
        assert_eq!(
            parse_words(&["run", "--format", "json", "a"]),
            Err("`--format` belongs to `validate` and `gen`".into())
        );
        assert_eq!(
            parse_words(&["gen", "--format", "xml"]),
            Err("unknown format `xml`: use jsonl or csv".into())
        );
        assert_eq!(
            parse_words(&["run", "--seed", "3", "a"]),
            Err("`--out`, `--orders`, `--seed` and the shares belong to `gen`".into())
        );
        assert_eq!(
            parse_words(&["gen", "--orders", "many"]),
            Err("`--orders many`: expected a whole number".into())
        );
        assert_eq!(
            parse_words(&["validate", "-q", "a"]),
            Err(
                "`--quiet`, `--workers`, `--fresh`, `--join`, `--metrics-addr` and `--log` belong to `run`"
                    .into()
            )
        );
        assert_eq!(
            parse_words(&["test", "--state-dir", "s", "a"]),
            Err("`--state-dir` and `--instance` belong to `run` and `state inspect`".into())
        );
        assert_eq!(
            parse_words(&["state", "inspect", "--state-dir", "s", "p.yaml"]),
            Ok(Command::Inspect {
                path: "p.yaml".into(),
                state_dir: Some("s".into()),
                instance: Instance::ALONE,
            })
        );
        assert_eq!(
            parse_words(&["--fresh", "--state-dir", "s", "p.yaml"]),
            Ok(Command::Run(RunArgs {
                path: "p.yaml".into(),
                workers: 1,
                state_dir: Some("s".into()),
                fresh: true,
                ..RunArgs::default()
            }))
        );
        assert_eq!(
            parse_words(&["--workers", "0", "a"]),
            Err("`--workers 0`: expected 1 to 256".into())
        );
        assert_eq!(
            parse_words(&["--workers", "4", "a"]),
            Ok(Command::Run(RunArgs {
                path: "a".into(),
                workers: 4,
                ..RunArgs::default()
            }))
        );
        assert!(
            parse_words(&["--fast", "a.yaml"])
                .unwrap_err()
                .contains("--fast")
        );
    }

    #[test]
    fn an_instance_is_a_number_of_a_count() {
        assert_eq!(
            parse_words(&["--instance", "2/3", "a"]),
            Ok(Command::Run(RunArgs {
                path: "a".into(),
                workers: 1,
                instance: Instance::new(2, 3).expect("an instance"),
                ..RunArgs::default()
            }))
        );
        assert_eq!(
            parse_words(&["--instance", "4/3", "a"]),
            Err(
                "`--instance 4/3`: expected this process's number and how many share the \
                 partitions, such as 2/3"
                    .into()
            )
        );
        assert_eq!(
            parse_words(&["explain", "--instance", "1/2", "a"]),
            Err("`--state-dir` and `--instance` belong to `run` and `state inspect`".into())
        );
    }

    #[test]
    fn joining_a_group_is_a_run_that_takes_no_instance_and_does_not_start_over() {
        assert_eq!(
            parse_words(&["--join", "a"]),
            Ok(Command::Run(RunArgs {
                path: "a".into(),
                workers: 1,
                join: true,
                ..RunArgs::default()
            }))
        );
        for clash in [
            &["--join", "--instance", "1/2", "a"][..],
            &["--join", "--fresh", "a"],
        ] {
            let error = parse_words(clash).expect_err("refused");
            assert!(
                error.starts_with("`--join` takes no `--instance`"),
                "{error}"
            );
        }
        let error = parse_words(&["state", "inspect", "--join", "a"]).expect_err("refused");
        assert!(
            error.contains("`--join`") && error.contains("belong"),
            "{error}"
        );
    }
}
