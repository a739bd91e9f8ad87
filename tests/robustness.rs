//! Bad input never crashes: arbitrary bytes, random mutations of the
//! example pipelines, and random expression text go through validation
//! (with every rendering), running and testing, and end in a result or
//! diagnostics, never a panic.
//!
//! `RUNNER_FUZZ_SCALE=N` runs N times as many cases as CI does.

use std::panic::{AssertUnwindSafe, catch_unwind};

use runner::diagnostic::{SourceFile, Style, render, render_github, render_json};
use runner::runtime::{Outputs, SharedBuffer, run_blocking};

/// Deterministic, so a failure can be replayed from its case number.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(self.0 >> 33).unwrap() % n.max(1)
    }
}

/// Fragments that tend to break YAML and expressions in interesting ways.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ": ",
    "'",
    "\"",
    "#",
    "- ",
    "\n",
    "  ",
    "\t",
    "null",
    "~",
    "concat(",
    ")",
    "(",
    ",",
    "\\",
    "é",
    "对账",
    "9223372036854775808",
    "-",
    "*",
    "&a ",
    "*a",
    "|",
    ">-",
    "!!str ",
    "?",
    "1e999",
    "0s",
    "5",
    "if ",
    " then ",
    " else ",
    " and ",
    "not ",
    "==",
    "<",
    ".",
    "`",
    "key",
    "missing",
    "app",
    "ts",
    "records: []",
    "\u{0}",
    "\u{feff}",
    "<<: *a",
];

fn mutate(text: &str, rng: &mut Lcg) -> String {
    let mut text = text.to_string();
    for _ in 0..=rng.below(3) {
        let boundaries: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        let at = boundaries[rng.below(boundaries.len())];
        match rng.below(4) {
            0 => {
                let end = boundaries
                    .iter()
                    .copied()
                    .filter(|&b| b >= at)
                    .nth(1 + rng.below(8))
                    .unwrap_or(text.len());
                text.replace_range(at..end, "");
            }
            1 | 2 => text.insert_str(at, TOKENS[rng.below(TOKENS.len())]),
            _ => {
                let lines: Vec<&str> = text.lines().collect();
                let line = lines[rng.below(lines.len())].to_string();
                text.insert_str(at, &format!("{line}\n"));
            }
        }
    }
    text
}

fn survive(name: &str, text: &str) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| {
        let file = SourceFile::new(name, text);
        match runner::compile(&file) {
            Ok(graph) => {
                let _ = run_blocking(graph, Outputs::stdout_to(SharedBuffer::new()));
            }
            Err(diagnostics) => {
                assert!(!diagnostics.is_empty(), "a failure without diagnostics");
                let _ = render(&diagnostics, &file, Style::Plain);
            }
        }
    }))
    .map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()));
        format!("panicked: {message:?}\n--- input ---\n{text}")
    })
}

/// How many times the CI number of cases to run.
fn scale() -> usize {
    std::env::var("RUNNER_FUZZ_SCALE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Validates `text` as `runner validate` does and renders the findings in
/// every format; runs the test cases of a valid pipeline.
fn validate(name: &str, text: &str) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| {
        let file = SourceFile::new(name, text);
        let (graph, diagnostics) = runner::check(&file);
        assert!(
            graph.is_some()
                || diagnostics
                    .iter()
                    .any(runner::diagnostic::Diagnostic::is_error),
            "no graph and no error"
        );
        let _ = render(&diagnostics, &file, Style::Plain);
        let _ = render(&diagnostics, &file, Style::Colored);
        let _ = render_json(&[(&file, &diagnostics)]);
        let _ = render_github(&file, &diagnostics);
        if graph.is_some() {
            let _ = runner::testing::run(&file);
        }
    }))
    .map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()));
        format!("panicked: {message:?}\n--- input ---\n{text}")
    })
}

#[test]
fn arbitrary_text_never_panics() {
    let mut rng = Lcg(11);
    for case in 0..4_000 * scale() {
        let len = rng.below(160);
        let text: String = (0..len)
            .map(|_| match rng.below(4) {
                // Mostly YAML-ish characters, so parsing gets past the first one.
                0 => TOKENS[rng.below(TOKENS.len())]
                    .chars()
                    .next()
                    .unwrap_or(' '),
                1 => {
                    let punctuation = " :-\n{}[],'\"#|>&*!%@`";
                    punctuation
                        .chars()
                        .nth(rng.below(punctuation.len()))
                        .unwrap_or(' ')
                }
                2 => char::from(b'a' + u8::try_from(rng.below(26)).unwrap()),
                // Any character, multi-byte ones included, so spans must land
                // on character boundaries.
                _ => char::from_u32(u32::try_from(rng.below(0x1_0000)).unwrap())
                    .unwrap_or('\u{fffd}'),
            })
            .collect();
        if let Err(problem) = validate("text.yaml", &text) {
            panic!("case {case}: {problem}");
        }
    }
}

#[test]
fn mutated_example_pipelines_validate_and_test_without_panic() {
    let root = env!("CARGO_MANIFEST_DIR");
    for name in ["bill_check", "three_way"] {
        let original = std::fs::read_to_string(format!("{root}/pipelines/{name}.yaml")).unwrap();
        let mut rng = Lcg(name.len() as u64 * 7);
        for case in 0..1_000 * scale() {
            let text = mutate(&original, &mut rng);
            if let Err(problem) = validate(name, &text) {
                panic!("{name} case {case} {problem}");
            }
        }
    }
}

#[test]
fn mutated_example_pipelines_never_panic() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut cases = 0;
    for name in ["bill_check", "three_way"] {
        let original = std::fs::read_to_string(format!("{root}/pipelines/{name}.yaml")).unwrap();
        let mut rng = Lcg(name.len() as u64);
        for case in 0..1_500 * scale() {
            let text = mutate(&original, &mut rng);
            if let Err(problem) = survive(name, &text) {
                panic!("{name} case {case} {problem}");
            }
            cases += 1;
        }
    }
    assert_eq!(cases, 3_000 * scale());
}

#[test]
fn random_expressions_never_panic() {
    let mut rng = Lcg(7);
    for case in 0..5_000 * scale() {
        let text: String = (0..rng.below(12))
            .map(|_| TOKENS[rng.below(TOKENS.len())])
            .collect();
        let result = catch_unwind(|| {
            if let Ok(expr) = runner::expr::parse(&text) {
                // What parses must print back to something that parses the same.
                let printed = expr.to_string();
                let reparsed = runner::expr::parse(&printed).map(|e| e.to_string());
                assert_eq!(
                    reparsed.as_deref(),
                    Ok(printed.as_str()),
                    "canonical form of {text:?}"
                );
            }
        });
        assert!(result.is_ok(), "case {case}: {text:?}");
    }
}

#[test]
fn arbitrary_bytes_through_the_binary_never_panic() {
    let dir = crate::harness::scratch("fuzz_bytes");
    let mut rng = Lcg(5);
    for case in 0..100 * scale() {
        let bytes: Vec<u8> = (0..rng.below(300))
            .map(|_| u8::try_from(rng.below(256)).unwrap())
            .collect();
        let path = dir.join(format!("case{case}.yaml"));
        std::fs::write(&path, &bytes).unwrap();
        let run = crate::harness::runner(&["validate", path.to_str().unwrap()]);
        // Not UTF-8 is an I/O error (2); text that is no pipeline is invalid (1).
        assert!(
            matches!(run.status, 1 | 2),
            "case {case}: status {}\n{}",
            run.status,
            run.stderr
        );
        assert!(
            !run.stderr.contains("panicked"),
            "case {case}: {}",
            run.stderr
        );
    }
}

/// Fragments that tend to break JSON and CSV lines.
const LINE_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"",
    "\"\"",
    "\\",
    "\\u",
    "\\ud800",
    "null",
    "true",
    "-",
    "1e999",
    "9223372036854775808",
    "0.5",
    " ",
    "\t",
    "\r",
    "é",
    "对账",
    "\u{feff}",
    ";",
];

/// A line of `text` with random damage.
fn damage(line: &str, rng: &mut Lcg) -> String {
    let mut chars: Vec<char> = line.chars().collect();
    for _ in 0..=rng.below(3) {
        let at = rng.below(chars.len() + 1);
        match rng.below(3) {
            0 if at < chars.len() => {
                chars.remove(at);
            }
            1 => {
                let token = LINE_TOKENS[rng.below(LINE_TOKENS.len())];
                for (i, c) in token.chars().enumerate() {
                    chars.insert(at + i, c);
                }
            }
            _ => chars.truncate(at),
        }
    }
    chars.into_iter().collect()
}

/// Lines of the sample data, damaged at random and mixed with raw bytes,
/// through the binary: it never panics, and every line that is not blank
/// is an event or a malformed line, each in exactly one outcome.
#[test]
fn damaged_data_lines_are_each_accounted_for() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = crate::harness::scratch("fuzz_lines");
    let mut rng = Lcg(11);
    crate::accounting::pipeline(&dir, false);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for round in 0..3 * scale() {
        let mut lines = 0;
        for name in ["orders.jsonl", "payments.jsonl"] {
            let sample = std::fs::read_to_string(format!("{root}/pipelines/data/{name}")).unwrap();
            let sample: Vec<&str> = sample.lines().collect();
            let mut bytes = Vec::new();
            for _ in 0..400 {
                let line = sample[rng.below(sample.len())];
                match rng.below(4) {
                    0 => bytes.extend(damage(line, &mut rng).as_bytes()),
                    1 => bytes
                        .extend((0..rng.below(40)).map(|_| u8::try_from(rng.below(256)).unwrap())),
                    _ => bytes.extend(line.as_bytes()),
                }
                bytes.push(if rng.below(20) == 0 { b'\r' } else { b'\n' });
                if bytes.ends_with(b"\r") {
                    bytes.push(b'\n');
                }
            }
            lines += bytes
                .split(|b| *b == b'\n')
                .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
                .count() as u64;
            std::fs::write(dir.join("data").join(name), &bytes).unwrap();
        }
        let run = crate::harness::runner(&["--quiet", dir.join("pipeline.yaml").to_str().unwrap()]);
        assert_eq!(run.status, 0, "round {round}: {}", run.stderr);
        let accounted: u64 = crate::accounting::outcomes(&dir)
            .iter()
            .map(crate::accounting::inputs)
            .sum();
        assert_eq!(accounted, lines, "round {round}");
    }
}
