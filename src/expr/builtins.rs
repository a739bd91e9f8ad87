//! The built-in functions' implementations: a checked [`Builtin`] call to a
//! closure.

use std::fmt::Write as _;

use jiff::fmt::strtime::{self, BrokenDownTime};

use super::compile::{Compiled, Env, EvalError};
use super::functions::Builtin;
use super::value::Value;
use crate::diagnostic::Span;
use crate::time::{Duration, EventTime};

/// Compiles a checked call; `span` is where failures are reported.
pub(crate) fn compile(builtin: &Builtin, mut args: Vec<Compiled>, span: Span) -> Compiled {
    let one = |args: &mut Vec<Compiled>| args.remove(0);
    match builtin.clone() {
        Builtin::Lower => string_map(one(&mut args), str::to_lowercase),
        Builtin::Upper => string_map(one(&mut args), str::to_uppercase),
        Builtin::Trim => string_map(one(&mut args), |s| s.trim().to_string()),
        Builtin::Contains => string_test(args, |a, b| a.contains(b)),
        Builtin::StartsWith => string_test(args, |a, b| a.starts_with(b)),
        Builtin::EndsWith => string_test(args, |a, b| a.ends_with(b)),
        Builtin::Len => {
            let arg = one(&mut args);
            Compiled::new(move |env| {
                let s = arg.eval(env)?;
                let count = as_str(&s, span)?.chars().count();
                Ok(Value::Int(i64::try_from(count).unwrap_or(i64::MAX)))
            })
        }
        Builtin::Substring => substring(args, span),
        Builtin::Concat => Compiled::new(move |env| {
            let mut out = String::new();
            for arg in &args {
                match arg.eval(env)? {
                    Value::Str(s) => out.push_str(&s),
                    other => {
                        let _ = write!(out, "{other}");
                    }
                }
            }
            Ok(Value::Str(out.into()))
        }),
        Builtin::Coalesce => Compiled::new(move |env| {
            for arg in &args {
                let value = arg.eval(env)?;
                if value != Value::Null {
                    return Ok(value);
                }
            }
            Ok(Value::Null)
        }),
        Builtin::ToString => {
            let arg = one(&mut args);
            Compiled::new(move |env| {
                Ok(match arg.eval(env)? {
                    s @ Value::Str(_) => s,
                    other => Value::Str(other.to_string().into()),
                })
            })
        }
        Builtin::ToInt(_) => {
            let arg = one(&mut args);
            Compiled::new(move |env| to_int(arg.eval(env)?, span))
        }
        Builtin::ToFloat(_) => {
            let arg = one(&mut args);
            Compiled::new(move |env| to_float(arg.eval(env)?, span))
        }
        Builtin::Abs(_) => {
            let arg = one(&mut args);
            Compiled::new(move |env| match arg.eval(env)? {
                Value::Int(i) => i
                    .checked_abs()
                    .map(Value::Int)
                    .ok_or_else(|| EvalError::new("integer overflow in `abs`", span)),
                Value::Float(x) => Ok(Value::Float(x.abs())),
                Value::Duration(d) => d
                    .millis()
                    .checked_abs()
                    .map(|ms| Value::Duration(Duration::from_millis(ms)))
                    .ok_or_else(|| EvalError::new("duration overflow in `abs`", span)),
                other => Err(EvalError::unexpected(&other, span)),
            })
        }
        Builtin::Round => round(args, span),
        Builtin::ParseTimestamp(format) => {
            let arg = one(&mut args);
            Compiled::new(move |env| {
                let text = arg.eval(env)?;
                parse_timestamp(as_str(&text, span)?, format.as_deref())
                    .map(Value::Timestamp)
                    .map_err(|problem| EvalError::new(problem, span))
            })
        }
        Builtin::FormatTimestamp(format) => {
            let arg = one(&mut args);
            Compiled::new(move |env| {
                let Value::Timestamp(time) = arg.eval(env)? else {
                    return Err(EvalError::new("expected a timestamp", span));
                };
                format_timestamp(time, format.as_deref())
                    .map(|s| Value::Str(s.into()))
                    .map_err(|p| EvalError::new(p, span))
            })
        }
    }
}

/// The text of a value the checker typed as `string`.
fn as_str(value: &Value, span: Span) -> Result<&str, EvalError> {
    match value {
        Value::Str(s) => Ok(s),
        other => Err(EvalError::unexpected(other, span)),
    }
}

/// A `string -> string` function.
fn string_map(arg: Compiled, f: impl Fn(&str) -> String + Send + Sync + 'static) -> Compiled {
    Compiled::new(move |env| match arg.eval(env)? {
        Value::Str(s) => Ok(Value::Str(f(&s).into())),
        other => Ok(other),
    })
}

/// A `(string, string) -> bool` function.
fn string_test(
    args: Vec<Compiled>,
    f: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
) -> Compiled {
    let [a, b]: [Compiled; 2] = args
        .try_into()
        .unwrap_or_else(|_| unreachable!("checked: two arguments"));
    Compiled::new(move |env| match (a.eval(env)?, b.eval(env)?) {
        (Value::Str(a), Value::Str(b)) => Ok(Value::Bool(f(&a, &b))),
        _ => Ok(Value::Null),
    })
}

/// `substring(s, start[, length])` by characters, not bytes, so it never
/// splits one. Positions are clamped rather than failing: a negative start
/// counts from 0, and a range past the end is cut short, as in SQL.
fn substring(args: Vec<Compiled>, span: Span) -> Compiled {
    let mut args = args.into_iter();
    let (text, start) = (args.next().expect("checked"), args.next().expect("checked"));
    let length = args.next();
    Compiled::new(move |env: &Env<'_>| {
        let text = text.eval(env)?;
        let text = as_str(&text, span)?;
        let Value::Int(start) = start.eval(env)? else {
            return Err(EvalError::new("expected an integer start", span));
        };
        let start = usize::try_from(start.max(0)).unwrap_or(usize::MAX);
        let length = match &length {
            Some(length) => match length.eval(env)? {
                Value::Int(n) => usize::try_from(n.max(0)).unwrap_or(usize::MAX),
                other => return Err(EvalError::unexpected(&other, span)),
            },
            None => usize::MAX,
        };
        Ok(Value::Str(
            text.chars()
                .skip(start)
                .take(length)
                .collect::<String>()
                .into(),
        ))
    })
}

/// `round(x[, digits])`, half away from zero. Digits are clamped to what an
/// `f64` can hold; a result that would overflow keeps `x` unchanged.
fn round(args: Vec<Compiled>, span: Span) -> Compiled {
    let mut args = args.into_iter();
    let value = args.next().expect("checked: one or two arguments");
    let digits = args.next();
    Compiled::new(move |env| {
        let Value::Float(x) = value.eval(env)? else {
            return Err(EvalError::new("expected a float", span));
        };
        let digits = match &digits {
            Some(digits) => match digits.eval(env)? {
                Value::Int(d) => i32::try_from(d.clamp(-308, 308)).unwrap_or(0),
                other => return Err(EvalError::unexpected(&other, span)),
            },
            None => 0,
        };
        let scale = 10f64.powi(digits);
        let rounded = (x * scale).round() / scale;
        Ok(Value::Float(if rounded.is_finite() { rounded } else { x }))
    })
}

/// `to_int`: parses text (surrounding blanks allowed), truncates floats
/// toward zero, and takes the milliseconds of times and durations.
fn to_int(value: Value, span: Span) -> Result<Value, EvalError> {
    match value {
        Value::Int(i) => Ok(Value::Int(i)),
        Value::Str(s) => {
            s.trim().parse().map(Value::Int).map_err(|_| {
                EvalError::new(format!("cannot convert {:?} to an integer", &*s), span)
            })
        }
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        // Range-checked before the cast.
        Value::Float(x) if x.is_finite() && x >= i64::MIN as f64 && x < i64::MAX as f64 => {
            Ok(Value::Int(x.trunc() as i64))
        }
        Value::Float(x) => Err(EvalError::new(
            format!("cannot convert {} to an integer", Value::Float(x)),
            span,
        )),
        Value::Timestamp(t) => Ok(Value::Int(t.millis())),
        Value::Duration(d) => Ok(Value::Int(d.millis())),
        other => Err(EvalError::unexpected(&other, span)),
    }
}

/// `to_float`: parses text; an integer becomes the nearest float.
fn to_float(value: Value, span: Span) -> Result<Value, EvalError> {
    match value {
        Value::Float(x) => Ok(Value::Float(x)),
        #[allow(clippy::cast_precision_loss)] // Nearest float, as documented.
        Value::Int(i) => Ok(Value::Float(i as f64)),
        Value::Str(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(Value::Float)
            .ok_or_else(|| EvalError::new(format!("cannot convert {:?} to a float", &*s), span)),
        other => Err(EvalError::unexpected(&other, span)),
    }
}

/// Parses `text` as RFC 3339, or with a strftime `format` (UTC unless the
/// text carries an offset).
pub(crate) fn parse_timestamp(text: &str, format: Option<&str>) -> Result<EventTime, String> {
    if format.is_none()
        && let Some(time) = EventTime::parse_rfc3339(text)
    {
        return Ok(time);
    }
    let timestamp = match format {
        None => text
            .trim()
            .parse::<jiff::Timestamp>()
            .map_err(|error| format!("cannot parse {text:?} as an RFC 3339 timestamp: {error}"))?,
        Some(format) => {
            let fail = |error: jiff::Error| {
                format!("cannot parse {text:?} with format {format:?}: {error}")
            };
            let parsed = strtime::parse(format, text).map_err(fail)?;
            if let Some(timestamp) = parsed.timestamp() {
                timestamp
            } else if parsed.offset().is_some() {
                parsed.to_timestamp().map_err(fail)?
            } else {
                let civil = parsed.to_datetime().map_err(fail)?;
                jiff::tz::Offset::UTC.to_timestamp(civil).map_err(fail)?
            }
        }
    };
    Ok(EventTime::from_millis(timestamp.as_millisecond()))
}

/// Formats `time` in UTC: RFC 3339 by default (fractions of a second only
/// when there are any), or with a strftime `format`.
fn format_timestamp(time: EventTime, format: Option<&str>) -> Result<String, String> {
    let timestamp = jiff::Timestamp::from_millisecond(time.millis()).map_err(|_| {
        format!(
            "{} ms is outside the range of calendar dates",
            time.millis()
        )
    })?;
    match format {
        None => Ok(timestamp.to_string()),
        Some(format) => BrokenDownTime::from(timestamp)
            .to_string(format)
            .map_err(|error| error.to_string()),
    }
}
