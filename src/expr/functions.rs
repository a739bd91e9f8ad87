//! The built-in functions: their signatures and type rules. The
//! implementations are in [`super::builtins`].

use std::sync::Arc;

use jiff::fmt::strtime::BrokenDownTime;

use super::ast::Ident;
use super::error::{ExprError, ExprErrorKind};
use super::typed::{Node, Typed};
use super::types::{Kind, Type};
use super::value::Value;
use crate::diagnostic::{Span, did_you_mean};

/// A built-in function as documented: name, signature and what it does.
#[derive(Clone, Copy, Debug)]
pub struct Function {
    /// The name called.
    pub name: &'static str,
    /// Parameters and result, as the README shows them.
    pub signature: &'static str,
    /// What it does, including when it fails.
    pub summary: &'static str,
    min_args: usize,
    max_args: Option<usize>,
}

const fn function(
    name: &'static str,
    signature: &'static str,
    summary: &'static str,
    min_args: usize,
    max_args: Option<usize>,
) -> Function {
    Function {
        name,
        signature,
        summary,
        min_args,
        max_args,
    }
}

/// Every built-in function.
pub const FUNCTIONS: &[Function] = &[
    function("lower", "lower(string) -> string", "lowercase", 1, Some(1)),
    function("upper", "upper(string) -> string", "uppercase", 1, Some(1)),
    function(
        "trim",
        "trim(string) -> string",
        "without leading and trailing whitespace",
        1,
        Some(1),
    ),
    function(
        "contains",
        "contains(string, string) -> bool",
        "whether the first contains the second",
        2,
        Some(2),
    ),
    function(
        "starts_with",
        "starts_with(string, string) -> bool",
        "whether the first starts with the second",
        2,
        Some(2),
    ),
    function(
        "ends_with",
        "ends_with(string, string) -> bool",
        "whether the first ends with the second",
        2,
        Some(2),
    ),
    function(
        "substring",
        "substring(string, start: int[, length: int]) -> string",
        "the characters from `start` (0-based), `length` of them or to the end; clamped to the string",
        2,
        Some(3),
    ),
    function(
        "len",
        "len(string) -> int",
        "the number of characters",
        1,
        Some(1),
    ),
    function(
        "concat",
        "concat(any, ...) -> string",
        "the text forms of its arguments, joined; records print as tuples `(a,b,c)`",
        1,
        None,
    ),
    function(
        "coalesce",
        "coalesce(T?, ..., T) -> T",
        "the first argument that is not null",
        2,
        None,
    ),
    function(
        "to_string",
        "to_string(any) -> string",
        "the text form of a value",
        1,
        Some(1),
    ),
    function(
        "to_int",
        "to_int(string | float | int | timestamp | duration) -> int",
        "an integer: parses a string, truncates a float, milliseconds of a timestamp or duration; \
         fails on text that is not an integer and on floats out of range",
        1,
        Some(1),
    ),
    function(
        "to_float",
        "to_float(string | int | float) -> float",
        "a float; fails on text that is not a number",
        1,
        Some(1),
    ),
    function(
        "abs",
        "abs(int | float | duration) -> same",
        "the absolute value; fails on integer overflow",
        1,
        Some(1),
    ),
    function(
        "round",
        "round(float[, digits: int]) -> float",
        "rounded half away from zero, to `digits` decimals (default 0)",
        1,
        Some(2),
    ),
    function(
        "parse_timestamp",
        "parse_timestamp(string[, format]) -> timestamp",
        "parses RFC 3339 (`2024-05-01T12:00:00Z`), or `format` in strftime syntax (UTC unless the format \
         has an offset); fails on text that does not match",
        1,
        Some(2),
    ),
    function(
        "format_timestamp",
        "format_timestamp(timestamp[, format]) -> string",
        "RFC 3339, or `format` in strftime syntax, in UTC",
        1,
        Some(2),
    ),
];

/// A type-checked call, ready to compile.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Builtin {
    Lower,
    Upper,
    Trim,
    Contains,
    StartsWith,
    EndsWith,
    Substring,
    Len,
    Concat,
    Coalesce,
    ToString,
    ToInt(Kind),
    ToFloat(Kind),
    Abs(Kind),
    Round,
    ParseTimestamp(Option<Arc<str>>),
    FormatTimestamp(Option<Arc<str>>),
}

/// Checks a call of `function` with checked `args`; `span` covers the call.
pub(crate) fn check(
    function: &Ident,
    args: &[Typed],
    span: Span,
) -> Result<(Builtin, Type), ExprError> {
    let Some(spec) = FUNCTIONS.iter().find(|f| f.name == function.name) else {
        return Err(ExprError::new(
            ExprErrorKind::UnknownFunction {
                name: function.name.clone(),
                suggestion: suggest_function(&function.name),
            },
            function.span,
        ));
    };
    check_arity(spec, args.len(), span)?;
    let name = spec.name;
    if name != "coalesce" {
        for arg in args {
            non_null(arg, name)?;
        }
    }
    signature(name, args)
}

/// Reports a call with too few or too many arguments, saying how many the
/// function takes.
/// A function the user may have meant: a near miss, or one whose name
/// starts or is started by theirs (`uppercase` for `upper`, `len` for
/// `length`).
fn suggest_function(name: &str) -> Option<&'static str> {
    did_you_mean(name, FUNCTIONS.iter().map(|f| f.name)).or_else(|| {
        let lower = name.to_lowercase();
        FUNCTIONS
            .iter()
            .map(|f| f.name)
            .filter(|f| f.len() >= 3 && lower.len() >= 3)
            .find(|f| lower.starts_with(f) || f.starts_with(lower.as_str()))
    })
}

fn check_arity(spec: &Function, given: usize, span: Span) -> Result<(), ExprError> {
    if given < spec.min_args || spec.max_args.is_some_and(|max| given > max) {
        let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
        let expected = match spec.max_args {
            Some(max) if max == spec.min_args => format!("{max} {}", plural(max)),
            Some(max) if max == spec.min_args + 1 => {
                format!("{} or {max} {}", spec.min_args, plural(max))
            }
            Some(max) => format!("{} to {max} {}", spec.min_args, plural(max)),
            None => format!("at least {} {}", spec.min_args, plural(spec.min_args)),
        };
        return Err(ExprError::new(
            ExprErrorKind::WrongArity {
                function: spec.name,
                expected,
                found: given,
            },
            span,
        ));
    }
    Ok(())
}

/// The implementation and result type of `name` for `args`, whose number
/// is already checked.
fn signature(name: &str, args: &[Typed]) -> Result<(Builtin, Type), ExprError> {
    let string = |i: usize| expect(&args[i], name, &[Kind::String]);
    let checked = match name {
        "lower" | "upper" | "trim" => {
            string(0)?;
            let builtin = match name {
                "lower" => Builtin::Lower,
                "upper" => Builtin::Upper,
                _ => Builtin::Trim,
            };
            (builtin, Type::STRING)
        }
        "contains" | "starts_with" | "ends_with" => {
            string(0)?;
            string(1)?;
            let builtin = match name {
                "contains" => Builtin::Contains,
                "starts_with" => Builtin::StartsWith,
                _ => Builtin::EndsWith,
            };
            (builtin, Type::BOOL)
        }
        "substring" => {
            string(0)?;
            for arg in &args[1..] {
                expect(arg, name, &[Kind::Int])?;
            }
            (Builtin::Substring, Type::STRING)
        }
        "len" => {
            string(0)?;
            (Builtin::Len, Type::INT)
        }
        "concat" => (Builtin::Concat, Type::STRING),
        "to_string" => (Builtin::ToString, Type::STRING),
        "coalesce" => (Builtin::Coalesce, coalesce_type(args)?),
        "to_int" => {
            let kind = expect(
                &args[0],
                name,
                &[
                    Kind::String,
                    Kind::Float,
                    Kind::Int,
                    Kind::Timestamp,
                    Kind::Duration,
                ],
            )?;
            (Builtin::ToInt(kind), Type::INT)
        }
        "to_float" => {
            let kind = expect(&args[0], name, &[Kind::String, Kind::Int, Kind::Float])?;
            (Builtin::ToFloat(kind), Type::FLOAT)
        }
        "abs" => {
            let kind = expect(&args[0], name, &[Kind::Int, Kind::Float, Kind::Duration])?;
            (Builtin::Abs(kind.clone()), Type::of(kind))
        }
        "round" => {
            expect(&args[0], name, &[Kind::Float])?;
            if let Some(digits) = args.get(1) {
                expect(digits, name, &[Kind::Int])?;
            }
            (Builtin::Round, Type::FLOAT)
        }
        "parse_timestamp" => {
            string(0)?;
            (
                Builtin::ParseTimestamp(format_literal(args.get(1), name)?),
                Type::TIMESTAMP,
            )
        }
        "format_timestamp" => {
            expect(&args[0], name, &[Kind::Timestamp])?;
            (
                Builtin::FormatTimestamp(format_literal(args.get(1), name)?),
                Type::STRING,
            )
        }
        other => unreachable!("FUNCTIONS lists `{other}` but `check` has no rule for it"),
    };
    Ok(checked)
}

fn non_null(arg: &Typed, function: &str) -> Result<(), ExprError> {
    if arg.ty.nullable && !arg.ty.is_unknown() {
        return Err(ExprError::new(
            ExprErrorKind::Nullable {
                what: arg.text.clone(),
                used: format!("as an argument of `{function}`"),
            },
            arg.span,
        ));
    }
    Ok(())
}

/// The kind of `arg` if it is one of `allowed`.
fn expect(arg: &Typed, function: &str, allowed: &[Kind]) -> Result<Kind, ExprError> {
    if arg.ty.is_unknown() || allowed.contains(&arg.ty.kind) {
        return Ok(arg.ty.kind.clone());
    }
    let names: Vec<String> = allowed
        .iter()
        .map(|kind| format!("`{}`", Type::of(kind.clone())))
        .collect();
    let expected = match names.as_slice() {
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
        [] => unreachable!("every function allows some kind"),
    };
    Err(ExprError::new(
        ExprErrorKind::TypeMismatch {
            message: format!("`{function}` expects {expected}, found `{}`", arg.ty),
            label: format!("this is `{}`", arg.ty),
            help: None,
        },
        arg.span,
    ))
}

fn coalesce_type(args: &[Typed]) -> Result<Type, ExprError> {
    let mut result: Option<Type> = None;
    for arg in args {
        if arg.ty.is_unknown() {
            return Ok(Type::UNKNOWN);
        }
        result = Some(match result {
            None => arg.ty.clone(),
            Some(so_far) => super::check::unify(&so_far, &arg.ty).ok_or_else(|| {
                ExprError::new(
                    ExprErrorKind::TypeMismatch {
                        message: format!(
                            "`coalesce` arguments have different types: `{so_far}` and `{}`",
                            arg.ty
                        ),
                        label: format!("this is `{}`", arg.ty),
                        help: None,
                    },
                    arg.span,
                )
            })?,
        });
    }
    let mut ty = result.expect("coalesce takes at least two arguments");
    // Null only if every argument may be null.
    ty.nullable = args.iter().all(|arg| arg.ty.nullable);
    Ok(ty)
}

/// The format argument: a string literal strftime accepts.
fn format_literal(arg: Option<&Typed>, function: &str) -> Result<Option<Arc<str>>, ExprError> {
    let Some(arg) = arg else { return Ok(None) };
    let Node::Const(Value::Str(format)) = &arg.node else {
        expect(arg, function, &[Kind::String])?;
        return Err(ExprError::new(
            ExprErrorKind::TypeMismatch {
                message: format!("the format of `{function}` must be a string literal"),
                label: "not a literal".to_string(),
                help: Some("formats are checked before the pipeline runs, so write them out: \"%Y-%m-%d %H:%M:%S\"".into()),
            },
            arg.span,
        ));
    };
    let sample = BrokenDownTime::from(jiff::Timestamp::UNIX_EPOCH);
    if let Err(error) = sample.to_string(format.as_ref()) {
        return Err(ExprError::new(
            ExprErrorKind::InvalidFormat {
                problem: error.to_string(),
            },
            arg.span,
        ));
    }
    Ok(Some(Arc::from(format.as_str())))
}
