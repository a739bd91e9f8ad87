//! The README stays true to the code: every diagnostic code, every function
//! and the reference output it shows.

use runner::diagnostic::Code;
use runner::expr::FUNCTIONS;

fn readme() -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    // Markdown tables escape `|` inside cells.
    text.replace("\\|", "|")
}

#[test]
fn every_diagnostic_code_is_listed_with_its_meaning() {
    let readme = readme();
    let missing: Vec<String> = Code::ALL
        .iter()
        .map(|code| format!("| {} | {} |", code.as_str(), code.summary()))
        .filter(|row| !readme.contains(row))
        .collect();
    assert!(
        missing.is_empty(),
        "README lacks these rows:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_function_is_listed_with_its_signature() {
    let readme = readme();
    let missing: Vec<&str> = FUNCTIONS
        .iter()
        .map(|function| function.signature)
        .filter(|signature| !readme.contains(&format!("| `{signature}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "README lacks these functions: {missing:?}"
    );
}

#[test]
fn the_reference_output_shown_is_what_the_example_prints() {
    let readme = readme();
    let run = crate::harness::runner(&["pipelines/bill_check.yaml"]);
    assert!(
        readme.contains(&format!("```text\n{}```", run.stdout)),
        "README shows a different output"
    );
}
