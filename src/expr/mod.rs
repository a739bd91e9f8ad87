//! The expression language: text to typed, compiled closures.
//!
//! Takes the text of one expression and the [`Scope`] it is written in;
//! produces a [`Compiled`] closure whose field reads are slot and index
//! lookups. Three steps, each with its own output:
//!
//! 1. [`parse`]: pest (grammar/expr.pest) and a Pratt parser give an [`Expr`]
//!    with a span on every node; `Display` prints it back as canonical source.
//! 2. [`check`]: names become slots and field indexes, operators are resolved
//!    for their operand types, and every type error is reported ([`Typed`]).
//! 3. [`compile`]: the checked tree becomes nested closures ([`Compiled`]).
//!
//! Spans here are byte ranges of the expression's own text; placing them in
//! the pipeline file is the caller's business. Nothing here knows YAML.

mod ast;
mod builtins;
mod check;
mod compile;
mod error;
mod functions;
mod json;
mod parse;
mod scope;
mod text;
mod typed;
mod types;
mod value;

pub use ast::{BinaryOp, DisplayName, Expr, ExprKind, Ident, Literal, UnaryOp};
pub use compile::{Compiled, Env, EvalError};
pub use error::{ExprError, ExprErrorKind};
pub use functions::{FUNCTIONS, Function};
pub use json::{JsonLayout, JsonWriter, Piece, write_json_string};
pub use parse::{parse, parse_duration};
pub use scope::{Scope, SideScope};
pub use text::Text;
pub use typed::Var;
pub use types::{Field, Kind, RecordType, SCALAR_TYPES, Type};
pub use value::{Record, Value};

pub(crate) use builtins::parse_timestamp;

/// An expression after [`check`]: its type, ready to [`compile`].
#[derive(Clone, Debug, PartialEq)]
pub struct Typed(typed::Typed);

impl Typed {
    /// The expression's type.
    pub fn ty(&self) -> &Type {
        &self.0.ty
    }
}

/// Checks `expr` against the names in `scope`.
///
/// # Errors
///
/// Every independent type error in the expression.
pub fn check(expr: &Expr, scope: &Scope) -> Result<Typed, Vec<ExprError>> {
    check::check(expr, scope).map(Typed)
}

/// Compiles a checked expression into a closure.
pub fn compile(typed: &Typed) -> Compiled {
    compile::compile(&typed.0)
}

/// Words with a meaning of their own in expressions.
const KEYWORDS: [&str; 9] = [
    "and", "or", "not", "if", "then", "else", "true", "false", "null",
];

/// Variables that rules and templates define, and where: for the help on a
/// name used where it is not defined.
pub const VARIABLES: &[(&str, &str)] = &[
    (
        "key",
        "match rules and the templates of every outcome but `malformed`",
    ),
    ("missing", "`timed_out` templates"),
    ("expired", "`timed_out` and `resolved` templates"),
    ("failed", "`mismatched` templates"),
    ("side", "`duplicate` and `late` templates"),
    ("of", "`duplicate` templates"),
    ("arrived", "`resolved` templates"),
    ("deadline", "`resolved` templates"),
    ("source", "`malformed` templates"),
    ("file", "`malformed` templates"),
    ("line", "`malformed` templates"),
    ("raw", "`malformed` templates"),
    ("reason", "`malformed` templates"),
];

/// Variables defined beside the sides' records, which a source may
/// therefore not be named.
const SIDE_VARIABLES: [&str; 8] = [
    "key", "missing", "expired", "failed", "side", "of", "arrived", "deadline",
];

/// Whether `name` can be written bare in an expression, keywords aside.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || pest::unicode::XID_START(c))
        && chars.all(pest::unicode::XID_CONTINUE)
}

/// Whether `name` is a keyword.
pub fn is_keyword(name: &str) -> bool {
    KEYWORDS.contains(&name)
}

/// Whether `name` cannot be a source or sink name: a keyword or a variable
/// of match expressions.
pub fn is_reserved(name: &str) -> bool {
    is_keyword(name) || SIDE_VARIABLES.contains(&name)
}
