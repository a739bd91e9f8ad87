//! What names mean where an expression is written.

use std::sync::Arc;

use super::typed::Var;
use super::types::{RecordType, Type};

/// The names visible to an expression and the environment slots behind them.
///
/// A source's expressions see the source's fields by name (`order_id`) and
/// its record by the source's name (`app.order_id`). Match rules and output
/// templates see each side's record by its source's name, and variables
/// such as `key` and `missing`.
#[derive(Clone, Debug)]
pub struct Scope {
    /// Records by slot.
    pub(crate) records: Vec<ScopeRecord>,
    /// The slot whose fields are visible without qualification.
    pub(crate) unqualified: Option<usize>,
    /// Other names, in the order an environment gives their values.
    pub(crate) vars: Vec<(&'static str, Var, Type)>,
}

/// A record in scope.
#[derive(Clone, Debug)]
pub(crate) struct ScopeRecord {
    pub(crate) name: String,
    pub(crate) layout: Arc<RecordType>,
    pub(crate) nullable: bool,
}

/// A side of a match as templates see it.
#[derive(Clone, Debug)]
pub struct SideScope {
    /// The source's name.
    pub name: String,
    /// Its record layout.
    pub layout: Arc<RecordType>,
    /// Whether the side may be absent: the other sides of a timeout.
    pub nullable: bool,
}

impl Scope {
    /// The scope of a source's own expressions (event time, key): one record
    /// in slot 0, its fields visible by name.
    pub fn source(name: &str, layout: Arc<RecordType>) -> Self {
        Self {
            records: vec![ScopeRecord {
                name: name.to_string(),
                layout,
                nullable: false,
            }],
            unqualified: Some(0),
            vars: Vec::new(),
        }
    }

    /// The scope of a match rule or output template: a slot per side, and
    /// `variables`, whose values an environment gives in this order.
    pub fn outcome(sides: &[SideScope], variables: &[(&'static str, Type)]) -> Self {
        Self {
            records: sides
                .iter()
                .map(|side| ScopeRecord {
                    name: side.name.clone(),
                    layout: side.layout.clone(),
                    nullable: side.nullable,
                })
                .collect(),
            unqualified: None,
            vars: variables
                .iter()
                .enumerate()
                .map(|(index, (name, ty))| (*name, Var::Value(index), ty.clone()))
                .collect(),
        }
    }

    /// Every name visible here, for suggestions.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        let fields = self
            .unqualified
            .into_iter()
            .flat_map(|slot| self.records[slot].layout.field_names());
        fields
            .chain(self.records.iter().map(|record| record.name.as_str()))
            .chain(self.vars.iter().map(|(name, ..)| *name))
    }
}
