//! Argument parsing.

use std::ffi::OsString;

use lexopt::prelude::*;

/// What the user asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Run a pipeline file.
    Run(String),
    /// Print a pipeline file's compiled graph.
    Explain(String),
    /// Print help.
    Help,
    /// Print the version.
    Version,
}

pub(crate) const USAGE: &str = "\
Usage: runner <FILE>
       runner run <FILE>
       runner explain <FILE>
Try `runner --help` for more.";

pub(crate) const HELP: &str = "\
runner: reconcile event streams, declared in a YAML pipeline file

Usage:
  runner <FILE>            run a pipeline (same as `runner run <FILE>`)
  runner run <FILE>        run a pipeline until its inputs end
  runner explain <FILE>    print the compiled operator graph

Options:
  -h, --help               print this help
  -V, --version            print the version

Exit status: 0 success, 1 invalid pipeline or failed expression, 2 usage or I/O error.
";

/// Parses the arguments after the program name.
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, lexopt::Error> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut words = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Value(word) => words.push(word.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    let mut words = words.into_iter();
    let first = words.next().ok_or("missing the pipeline file")?;
    let command = match first.as_str() {
        "help" => return Ok(Command::Help),
        "run" => Command::Run(words.next().ok_or("`run` needs a pipeline file")?),
        "explain" => Command::Explain(words.next().ok_or("`explain` needs a pipeline file")?),
        _ => Command::Run(first),
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
        assert_eq!(parse_words(&["p.yaml"]), Ok(Command::Run("p.yaml".into())));
        assert_eq!(
            parse_words(&["run", "p.yaml"]),
            Ok(Command::Run("p.yaml".into()))
        );
        assert_eq!(
            parse_words(&["explain", "p.yaml"]),
            Ok(Command::Explain("p.yaml".into()))
        );
        assert_eq!(parse_words(&["--help"]), Ok(Command::Help));
        assert_eq!(parse_words(&["-V"]), Ok(Command::Version));
    }

    #[test]
    fn mistakes_are_usage_errors() {
        assert_eq!(parse_words(&[]), Err("missing the pipeline file".into()));
        assert_eq!(
            parse_words(&["run"]),
            Err("`run` needs a pipeline file".into())
        );
        assert_eq!(
            parse_words(&["a.yaml", "b.yaml"]),
            Err("unexpected argument `b.yaml`".into())
        );
        assert!(
            parse_words(&["--fast", "a.yaml"])
                .unwrap_err()
                .contains("--fast")
        );
    }
}
