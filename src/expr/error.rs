//! Errors in expressions: syntax, names and types, each located by a span
//! into the expression's own text.

use crate::diagnostic::{Code, Diagnostic, Span};

/// A problem with one expression.
#[derive(Clone, Debug, PartialEq)]
pub struct ExprError {
    /// What is wrong.
    pub kind: ExprErrorKind,
    /// Where, in the expression's text.
    pub span: Span,
}

/// What can be wrong with an expression.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprErrorKind {
    /// The text is not an expression.
    Syntax {
        /// What would have been accepted, in words.
        expected: String,
        /// What was there instead, in words.
        found: String,
        /// A likely fix, for common slips such as `=` for `==`.
        help: Option<String>,
    },
    /// A string literal runs to the end of the expression.
    UnclosedString,
    /// `a < b < c`.
    ChainedComparison {
        /// The second comparison operator.
        op: &'static str,
    },
    /// An expression nested deeper than the parser allows.
    TooDeep {
        /// The deepest nesting allowed.
        limit: usize,
    },
    /// A literal that is out of range or has a bad escape.
    InvalidLiteral {
        /// What is wrong with it.
        problem: String,
    },
    /// A name that is not a field or variable here.
    UnknownName {
        /// The name.
        name: String,
        /// A likely fix.
        help: Option<String>,
    },
    /// A field a record does not have.
    UnknownField {
        /// The record, as messages call it.
        record: String,
        /// The field asked for.
        field: String,
        /// A likely fix.
        help: Option<String>,
    },
    /// A function that does not exist.
    UnknownFunction {
        /// The name called.
        name: String,
        /// A close match, if any.
        suggestion: Option<&'static str>,
    },
    /// A function called with too few or too many arguments.
    WrongArity {
        /// The function.
        function: &'static str,
        /// What it takes, in words: "1 argument", "2 or 3 arguments".
        expected: String,
        /// How many were given.
        found: usize,
    },
    /// A value of the wrong type.
    TypeMismatch {
        /// The whole message.
        message: String,
        /// What the span shows.
        label: String,
        /// A likely fix.
        help: Option<String>,
    },
    /// A value that may be null, where one is required.
    Nullable {
        /// The expression, as written canonically.
        what: String,
        /// Where it is used: "in `+`", "as an argument of `lower`".
        used: String,
    },
    /// A timestamp format the parser rejects.
    InvalidFormat {
        /// Why.
        problem: String,
    },
}

impl ExprError {
    /// An error of `kind` at `span`.
    pub const fn new(kind: ExprErrorKind, span: Span) -> Self {
        Self { kind, span }
    }

    /// The diagnostic code.
    pub const fn code(&self) -> Code {
        match self.kind {
            ExprErrorKind::Syntax { .. }
            | ExprErrorKind::UnclosedString
            | ExprErrorKind::ChainedComparison { .. }
            | ExprErrorKind::TooDeep { .. } => Code::ExprSyntax,
            ExprErrorKind::InvalidLiteral { .. } => Code::InvalidLiteral,
            ExprErrorKind::UnknownName { .. } | ExprErrorKind::UnknownField { .. } => {
                Code::UnknownName
            }
            ExprErrorKind::UnknownFunction { .. } => Code::UnknownFunction,
            ExprErrorKind::WrongArity { .. } => Code::WrongArity,
            ExprErrorKind::TypeMismatch { .. } => Code::TypeMismatch,
            ExprErrorKind::Nullable { .. } => Code::NullableValue,
            ExprErrorKind::InvalidFormat { .. } => Code::InvalidFormat,
        }
    }

    /// The one-line message.
    pub fn message(&self) -> String {
        match &self.kind {
            ExprErrorKind::Syntax {
                expected, found, ..
            } => format!("expected {expected}, found {found}"),
            ExprErrorKind::UnclosedString => "unclosed string literal".to_string(),
            ExprErrorKind::ChainedComparison { .. } => {
                "comparison operators cannot be chained".to_string()
            }
            ExprErrorKind::InvalidLiteral { problem } => format!("invalid literal: {problem}"),
            ExprErrorKind::TooDeep { limit } => {
                format!("expression is nested too deeply: more than {limit} levels")
            }
            ExprErrorKind::UnknownName { name, .. } => format!("unknown name `{name}`"),
            ExprErrorKind::UnknownField { record, field, .. } => {
                format!("{record} has no field `{field}`")
            }
            ExprErrorKind::UnknownFunction { name, .. } => format!("unknown function `{name}`"),
            ExprErrorKind::WrongArity {
                function,
                expected,
                found,
            } => {
                let given = if *found == 1 {
                    "1 was given".to_string()
                } else {
                    format!("{found} were given")
                };
                format!("`{function}` takes {expected} but {given}")
            }
            ExprErrorKind::TypeMismatch { message, .. } => message.clone(),
            ExprErrorKind::Nullable { what, used } => format!("`{what}` may be null {used}"),
            ExprErrorKind::InvalidFormat { problem } => {
                format!("invalid timestamp format: {problem}")
            }
        }
    }

    /// The label under the span and the help line, if any.
    fn label_and_help(&self) -> (String, Option<String>) {
        match &self.kind {
            ExprErrorKind::Syntax { help, .. } => ("unexpected here".to_string(), help.clone()),
            ExprErrorKind::UnclosedString => ("the string needs a closing quote".to_string(), None),
            ExprErrorKind::ChainedComparison { op } => (
                format!("second comparison `{op}`"),
                Some("combine comparisons with `and`: `a < b and b < c`".to_string()),
            ),
            ExprErrorKind::UnknownName { help, .. } => {
                ("not defined here".to_string(), help.clone())
            }
            ExprErrorKind::UnknownField { help, .. } => ("no such field".to_string(), help.clone()),
            ExprErrorKind::UnknownFunction { suggestion, .. } => (
                "not a function".to_string(),
                Some(suggestion.map_or_else(
                    || "the functions are listed in the README".to_string(),
                    |name| format!("did you mean `{name}`?"),
                )),
            ),
            ExprErrorKind::TooDeep { .. } => (
                "too deep from here".to_string(),
                Some(
                    "split it: compute parts in other expressions or with fewer nested calls"
                        .to_string(),
                ),
            ),
            ExprErrorKind::InvalidLiteral { .. } | ExprErrorKind::WrongArity { .. } => {
                (String::new(), None)
            }
            ExprErrorKind::TypeMismatch { label, help, .. } => (label.clone(), help.clone()),
            ExprErrorKind::Nullable { what, .. } => (
                "may be null".to_string(),
                Some(format!(
                    "give a default with `coalesce({what}, ...)`, or test `{what} != null` in an `if` or before `and`"
                )),
            ),
            ExprErrorKind::InvalidFormat { .. } => ("in this format".to_string(), None),
        }
    }

    /// The diagnostic for this error, with the span placed in the file by
    /// `place`.
    pub fn to_diagnostic(&self, place: impl Fn(Span) -> Span) -> Diagnostic {
        let (label, help) = self.label_and_help();
        Diagnostic::error(self.code(), self.message(), place(self.span))
            .label(label)
            .help(help)
    }
}
