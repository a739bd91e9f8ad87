//! The syntax tree of an expression, with a span on every node.
//!
//! `Display` prints canonical source: the same expression, with single
//! spaces, minimal parentheses, double-quoted strings and canonical
//! durations. Parsing the printed text gives back the same tree.

use std::fmt::{self, Write as _};

use crate::diagnostic::Span;
use crate::time::Duration;

/// An expression node.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where, in the expression's text.
    pub span: Span,
}

/// A name as written, with its span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    /// The name, without backticks.
    pub name: String,
    /// Where, in the expression's text.
    pub span: Span,
}

/// Kinds of expression.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A literal value.
    Literal(Literal),
    /// A name on its own: a field, a source, or `key`.
    Name(Ident),
    /// A field of a record: `app.order_id`.
    Field(Box<Expr>, Ident),
    /// `-x`, `not x`.
    Unary(UnaryOp, Box<Expr>),
    /// `x + y`, `x and y`, ...
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `if condition then value else other`.
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `function(arguments)`.
    Call(Ident, Vec<Expr>),
}

/// Literal values.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// `null`.
    Null,
    /// `true`, `false`.
    Bool(bool),
    /// `42`.
    Int(i64),
    /// `1.5`.
    Float(f64),
    /// `"text"`.
    String(String),
    /// `5s`.
    Duration(Duration),
}

/// Prefix operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    /// `-`
    Neg,
    /// `not`
    Not,
}

/// Infix operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `and`
    And,
    /// `or`
    Or,
}

impl BinaryOp {
    /// The operator as written.
    pub const fn symbol(self) -> &'static str {
        match self {
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "*",
            Self::Div => "/",
            Self::Rem => "%",
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::And => "and",
            Self::Or => "or",
        }
    }

    /// Whether this is one of the six comparisons, which do not chain.
    pub const fn is_comparison(self) -> bool {
        matches!(
            self,
            Self::Eq | Self::Ne | Self::Lt | Self::Le | Self::Gt | Self::Ge
        )
    }

    /// Binding strength; higher binds tighter. Matches the Pratt table in
    /// `parse.rs`.
    const fn precedence(self) -> u8 {
        match self {
            Self::Or => 1,
            Self::And => 2,
            Self::Eq | Self::Ne | Self::Lt | Self::Le | Self::Gt | Self::Ge => 4,
            Self::Add | Self::Sub => 5,
            Self::Mul | Self::Div | Self::Rem => 6,
        }
    }
}

/// Binding strength of `not`: looser than comparisons.
const NOT: u8 = 3;
/// Binding strength of unary minus: tighter than `*`.
const NEG: u8 = 7;
/// Binding strength of field access.
const FIELD: u8 = 8;
/// Atoms never need parentheses.
const ATOM: u8 = 9;

impl Expr {
    fn precedence(&self) -> u8 {
        match &self.kind {
            // `else` extends to the right, so a conditional inside anything
            // else is parenthesised.
            ExprKind::If(..) => 0,
            ExprKind::Binary(op, ..) => op.precedence(),
            ExprKind::Unary(UnaryOp::Not, _) => NOT,
            ExprKind::Unary(UnaryOp::Neg, _) => NEG,
            ExprKind::Field(..) => FIELD,
            ExprKind::Literal(_) | ExprKind::Name(_) | ExprKind::Call(..) => ATOM,
        }
    }

    /// Writes this expression, parenthesised if it binds looser than `min`.
    fn write(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        if self.precedence() < min {
            f.write_char('(')?;
            self.write(f, 0)?;
            return f.write_char(')');
        }
        match &self.kind {
            ExprKind::Literal(literal) => write!(f, "{literal}"),
            ExprKind::Name(ident) => write!(f, "{}", DisplayName(&ident.name)),
            ExprKind::Field(record, field) => {
                record.write(f, FIELD)?;
                write!(f, ".{}", DisplayName(&field.name))
            }
            ExprKind::Unary(UnaryOp::Neg, operand) => {
                f.write_char('-')?;
                operand.write(f, NEG)
            }
            ExprKind::Unary(UnaryOp::Not, operand) => {
                f.write_str("not ")?;
                operand.write(f, NOT)
            }
            ExprKind::Binary(op, lhs, rhs) => {
                let p = op.precedence();
                // Left associative: an equal operator on the right needs
                // parentheses; comparisons do not chain at all.
                lhs.write(f, if op.is_comparison() { p + 1 } else { p })?;
                write!(f, " {} ", op.symbol())?;
                rhs.write(f, p + 1)
            }
            ExprKind::If(condition, then, otherwise) => {
                f.write_str("if ")?;
                condition.write(f, 0)?;
                f.write_str(" then ")?;
                then.write(f, 0)?;
                f.write_str(" else ")?;
                otherwise.write(f, 0)
            }
            ExprKind::Call(function, args) => {
                write!(f, "{}(", DisplayName(&function.name))?;
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    arg.write(f, 0)?;
                }
                f.write_char(')')
            }
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, 0)
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x:?}"),
            Self::String(s) => write_string_literal(f, s),
            Self::Duration(d) => write!(f, "{d}"),
        }
    }
}

/// Writes `s` as a double-quoted string literal that parses back to `s`.
fn write_string_literal(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\0' => f.write_str("\\0")?,
            c if c.is_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// A name as it must be written in an expression: bare if it is an
/// identifier, in backticks otherwise.
pub struct DisplayName<'a>(pub &'a str);

impl fmt::Display for DisplayName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if super::is_identifier(self.0) && !super::is_keyword(self.0) {
            f.write_str(self.0)
        } else {
            write!(f, "`{}`", self.0)
        }
    }
}
