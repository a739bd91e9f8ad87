//! The columns of a CSV sink: the default JSON of an outcome, flattened.
//!
//! A CSV sink has one header for every outcome routed to it, so its columns
//! are the union over those outcomes, in a fixed order: `outcome`, `key`,
//! the variables of the kinds routed (`missing`, `expired`, ...), each
//! side's fields as `side.field` (`side.record.field` when nested), and each
//! side's event time as `times.side`. A cell an outcome has no value for is
//! empty.

use crate::config::OutcomeKind;
use crate::expr::{Kind, RecordType};
use crate::plan::{SideNode, Variable};

/// One column of a CSV sink.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Column {
    /// The outcome's kind.
    Outcome,
    /// A template variable's value.
    Variable(Variable),
    /// A field of a side's record: the field indexes from the record down.
    Field { side: usize, path: Vec<usize> },
    /// A side's event time.
    Time(usize),
}

/// The columns for outcomes of `kinds` among `sides`, with their names.
pub(crate) fn columns(kinds: &[OutcomeKind], sides: &[SideNode]) -> Vec<(String, Column)> {
    let mut columns = vec![("outcome".to_string(), Column::Outcome)];
    let every = [
        Variable::Key,
        Variable::Missing,
        Variable::Expired,
        Variable::Failed,
        Variable::Side,
        Variable::Of,
        Variable::Arrived,
        Variable::Deadline,
        Variable::Source,
        Variable::File,
        Variable::Line,
        Variable::Raw,
        Variable::Reason,
    ];
    for variable in every {
        if kinds
            .iter()
            .any(|kind| Variable::of(*kind).contains(&variable))
        {
            columns.push((variable.name().to_string(), Column::Variable(variable)));
        }
    }
    if kinds.iter().any(|kind| *kind != OutcomeKind::Malformed) {
        for (side, node) in sides.iter().enumerate() {
            fields(
                &node.layout,
                &node.name,
                side,
                &mut Vec::new(),
                &mut columns,
            );
        }
        for (side, node) in sides.iter().enumerate() {
            columns.push((format!("times.{}", node.name), Column::Time(side)));
        }
    }
    columns
}

/// Every scalar field of `layout`, nested records flattened.
fn fields(
    layout: &RecordType,
    prefix: &str,
    side: usize,
    path: &mut Vec<usize>,
    columns: &mut Vec<(String, Column)>,
) {
    for (index, field) in layout.fields.iter().enumerate() {
        let name = format!("{prefix}.{}", field.name);
        path.push(index);
        match &field.ty.kind {
            Kind::Record(nested) => fields(nested, &name, side, path, columns),
            _ => columns.push((
                name,
                Column::Field {
                    side,
                    path: path.clone(),
                },
            )),
        }
        path.pop();
    }
}
