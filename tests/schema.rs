//! `runner schema` prints a JSON Schema that every example pipeline
//! satisfies and that rejects what the pipeline format rejects.

use boon::{Compiler, Draft, SchemaIndex, Schemas};
use runner::config::node::{self, Node, Value};
use serde_json::{Map, Value as Json};

use crate::harness::{root, runner};

fn compile() -> (Schemas, SchemaIndex) {
    let run = runner(&["schema"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let schema: Json = serde_json::from_str(&run.stdout).expect("`runner schema` prints JSON");
    let mut schemas = Schemas::new();
    let mut compiler = Compiler::new();
    compiler.set_default_draft(Draft::V7);
    compiler
        .add_resource("urn:runner:pipeline", schema)
        .unwrap();
    let index = compiler
        .compile("urn:runner:pipeline", &mut schemas)
        .expect("the schema is a valid JSON Schema");
    (schemas, index)
}

/// The YAML document as JSON, the way the YAML language server sees it.
fn json(node: &Node) -> Json {
    match &node.value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
        Value::Str(s) => Json::String(s.clone()),
        Value::List(items) => Json::Array(items.iter().map(json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(key, value)| match &key.value {
                    Value::Str(key) => (key.clone(), json(value)),
                    other => panic!("non-string key {other:?}"),
                })
                .collect::<Map<_, _>>(),
        ),
    }
}

fn errors(schemas: &Schemas, index: SchemaIndex, yaml: &str) -> Option<String> {
    let document = json(&node::parse(yaml).expect("test input is YAML"));
    schemas
        .validate(&document, index)
        .err()
        .map(|error| format!("{error:#}"))
}

fn example(name: &str) -> String {
    std::fs::read_to_string(root().join("pipelines").join(name)).unwrap()
}

#[test]
fn every_example_pipeline_satisfies_the_schema() {
    let (schemas, index) = compile();
    let mut checked = 0;
    for dir in ["pipelines", "pipelines/kafka"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|ext| ext != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(errors(&schemas, index, &text), None, "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked} example pipelines");
}

#[test]
fn the_schema_rejects_what_the_format_rejects() {
    let (schemas, index) = compile();
    let bill_check = example("bill_check.yaml");
    for (broken, what) in [
        (
            bill_check.replacen("event_time:", "evnt_time:", 1),
            "a misspelled source key",
        ),
        (
            bill_check.replacen("name: bill_check", "nmae: bill_check", 1),
            "a misspelled top-level key",
        ),
        (
            bill_check.replacen("    sink: console", "    sinc: console", 1),
            "a misspelled output key",
        ),
        (
            bill_check.replacen("type: stdout", "type: stdot", 1),
            "an unknown sink type",
        ),
        (
            bill_check.replacen("watermark_lag: 0s ", "watermark_lag: 5 seconds ", 1),
            "a duration without a unit",
        ),
        (
            bill_check.replacen("outcome: matched", "outcome: matchd", 1),
            "an unknown outcome",
        ),
        (
            bill_check.replacen("      ts: int\n", "      ts: integer\n", 1),
            "an unknown field type",
        ),
        (
            bill_check.replacen("    records:\n", "    recs:\n", 1),
            "an inline source without records",
        ),
        (
            bill_check.replacen("    expect:\n", "    expct:\n", 1),
            "a misspelled test key",
        ),
    ] {
        assert_ne!(broken, bill_check, "{what}: the replacement did not apply");
        assert!(
            errors(&schemas, index, &broken).is_some(),
            "the schema accepts {what}"
        );
    }
}

#[test]
fn the_schema_is_printed_verbatim() {
    assert_eq!(runner(&["schema"]).stdout, runner::config::SCHEMA);
}
