//! An error inside an expression points at its line and column in the
//! pipeline file, whatever YAML style the expression is written in.

use runner::diagnostic::{Code, SourceFile};

/// The bill check with its `matched` template replaced by `template`
/// (already indented for its place after `template:`).
fn pipeline(template: &str) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/bill_check.yaml"
    ))
    .unwrap();
    text.replace(
        r#"template: concat("对账成功:", app, " ", third_party)"#,
        &format!("template: {template}"),
    )
}

/// Line, column and underlined text of the first problem.
fn locate(template: &str) -> (usize, usize, String, Code) {
    let file = SourceFile::new("p.yaml", pipeline(template));
    let diagnostics = runner::compile(&file).expect_err("the template is wrong");
    let first = &diagnostics[0];
    let (line, column) = file.line_col(first.primary.span.start);
    let text = file.text()[first.primary.span.start..first.primary.span.end].to_string();
    (line, column, text, first.code)
}

/// The line the `matched` template starts on in the bill check.
const LINE: usize = 58;

#[test]
fn plain_scalar() {
    assert_eq!(
        locate(r#"concat("对账成功:", app, " ", third_pary)"#),
        (LINE, 41, "third_pary".into(), Code::UnknownName)
    );
}

#[test]
fn single_quoted_scalar() {
    assert_eq!(
        locate(r"'concat(''对账成功:'', app, '' '', third_pary)'"),
        (LINE, 46, "third_pary".into(), Code::UnknownName)
    );
}

#[test]
fn double_quoted_scalar_with_escapes() {
    assert_eq!(
        locate(r#""concat(\"\u5BF9\u8D26:\", app, \" \", third_pary)""#),
        (LINE, 54, "third_pary".into(), Code::UnknownName)
    );
}

#[test]
fn literal_block_scalar() {
    let template = "|\n      concat(\"对账成功:\",\n             app, \" \",\n             lower(third_party) )";
    assert_eq!(
        locate(template),
        (LINE + 3, 20, "third_party".into(), Code::TypeMismatch)
    );
}

#[test]
fn folded_block_scalar() {
    let template = ">-\n      concat(\"对账成功:\", app,\n        \" \", third_party,,)";
    assert_eq!(
        locate(template),
        (LINE + 2, 26, ",".into(), Code::ExprSyntax)
    );
}
