//! The checked tree: names resolved to slots and field indexes, operators
//! resolved for their operand types. Compiling it needs no more decisions.

use super::functions::Builtin;
use super::types::Type;
use super::value::Value;
use crate::diagnostic::Span;

/// A checked expression node.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Typed {
    /// Its type.
    pub(crate) ty: Type,
    /// Where it was written, in the expression's text.
    pub(crate) span: Span,
    /// Its canonical source, for messages.
    pub(crate) text: String,
    /// What it computes.
    pub(crate) node: Node,
}

/// What a checked node computes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    /// A constant.
    Const(Value),
    /// A value from the evaluation environment.
    Var(Var),
    /// Field `.1` of the record computed by `.0`.
    Field(Box<Typed>, usize),
    /// Arithmetic negation of an int, float or duration.
    Neg(Box<Typed>),
    /// Boolean negation.
    Not(Box<Typed>),
    /// Arithmetic, resolved for its operand types.
    Arith(Arith, Box<Typed>, Box<Typed>),
    /// `<`, `<=`, `>`, `>=` on operands of one kind.
    Order(Order, Box<Typed>, Box<Typed>),
    /// `==` (or `!=` when the flag is set).
    Equal(bool, Box<Typed>, Box<Typed>),
    /// Short-circuit `and`.
    And(Box<Typed>, Box<Typed>),
    /// Short-circuit `or`.
    Or(Box<Typed>, Box<Typed>),
    /// `if then else`.
    If(Box<Typed>, Box<Typed>, Box<Typed>),
    /// A built-in function.
    Call(Builtin, Vec<Typed>),
}

/// Values an expression can read from its environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    /// The record in a slot: a source's record, or a side of a match.
    Record(usize),
    /// A variable of the scope (`key`, `missing`, ...), by its position in
    /// the scope's list, which is where the environment holds its value.
    Value(usize),
}

/// Arithmetic operators, resolved for their operand types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arith {
    AddInt,
    AddFloat,
    Concat,
    /// timestamp + duration (operands reordered if written the other way).
    ShiftTimestamp,
    AddDuration,
    SubInt,
    SubFloat,
    /// timestamp - duration.
    UnshiftTimestamp,
    /// timestamp - timestamp.
    Elapsed,
    SubDuration,
    MulInt,
    MulFloat,
    /// duration * int (operands reordered if written the other way).
    ScaleDuration,
    DivInt,
    DivFloat,
    /// duration / int.
    DivideDuration,
    RemInt,
    RemFloat,
}

/// Ordering comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    Lt,
    Le,
    Gt,
    Ge,
}
