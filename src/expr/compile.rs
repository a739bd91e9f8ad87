//! Checked trees to closures, built once per expression and called per
//! event. Field reads are slot and index lookups; nothing here looks a name
//! up or touches the parser.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use super::builtins;
use super::typed::{Arith, Node, Order, Typed, Var};
use super::value::{Record, Value};
use crate::diagnostic::Span;
use crate::time::{Duration, EventTime};

/// What an expression can read while it is evaluated.
#[derive(Clone, Copy, Debug, Default)]
pub struct Env<'a> {
    /// The record in each slot; `None` for an absent side.
    pub records: &'a [Option<Record>],
    /// The values of the scope's variables, in the scope's order.
    pub values: &'a [Value],
}

impl<'a> Env<'a> {
    /// An environment with only `records`, as a source's expressions see it.
    pub fn records(records: &'a [Option<Record>]) -> Self {
        Self {
            records,
            values: &[],
        }
    }

    /// A variable's value; a missing slot or variable reads as null, which
    /// the checker has already ruled out where it matters.
    fn var(&self, var: Var) -> Value {
        match var {
            Var::Record(slot) => self
                .records
                .get(slot)
                .and_then(Option::as_ref)
                .map_or(Value::Null, |r| Value::Record(r.clone())),
            Var::Value(index) => self.values.get(index).cloned().unwrap_or(Value::Null),
        }
    }
}

/// Why evaluating an expression failed for one event, and where in the
/// expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError {
    /// What went wrong: "cannot convert \"x\" to an integer".
    pub message: String,
    /// The failing part, in the expression's text.
    pub span: Span,
}

impl EvalError {
    /// A failure described by `message` at `span`.
    pub fn new(message: impl Into<String>, span: Span) -> Self {
        Self {
            message: message.into(),
            span,
        }
    }

    /// A value of a kind the type checker ruled out. Reported, not panicked
    /// on, so a checker bug cannot take a pipeline down.
    pub(crate) fn unexpected(value: &Value, span: Span) -> Self {
        Self::new(format!("internal error: unexpected value `{value}`"), span)
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

type EvalFn = dyn Fn(&Env<'_>) -> Result<Value, EvalError> + Send + Sync;

/// A compiled expression.
pub struct Compiled {
    eval: Box<EvalFn>,
    /// For a field of a record at hand, its slot and index: read in place
    /// by callers that can, without a call or a copy.
    field: Option<(usize, usize)>,
}

impl Compiled {
    pub(crate) fn new(
        f: impl Fn(&Env<'_>) -> Result<Value, EvalError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            eval: Box::new(f),
            field: None,
        }
    }

    /// Evaluates the expression in `env`, reading a field of a record
    /// there (`app.id`, not `app.payer.id`) in place, without a call or a
    /// copy.
    ///
    /// # Errors
    ///
    /// As [`eval`](Self::eval).
    #[inline]
    pub fn read<'a>(&self, env: &Env<'a>) -> Result<Cow<'a, Value>, EvalError> {
        match self.field {
            Some((slot, index)) => Ok(Cow::Borrowed(field_in(env, slot, index))),
            None => self.eval(env).map(Cow::Owned),
        }
    }

    /// Evaluates the expression in `env`.
    ///
    /// # Errors
    ///
    /// A failure of a fallible operation (a conversion, integer overflow,
    /// division by zero), located in the expression.
    #[inline]
    pub fn eval(&self, env: &Env<'_>) -> Result<Value, EvalError> {
        (self.eval)(env)
    }
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Compiled(..)")
    }
}

/// Compiles a checked tree.
pub(crate) fn compile(typed: &Typed) -> Compiled {
    let span = typed.span;
    match &typed.node {
        Node::Const(value) => {
            let value = value.clone();
            Compiled::new(move |_| Ok(value.clone()))
        }
        Node::Var(var) => {
            let var = *var;
            Compiled::new(move |env| Ok(env.var(var)))
        }
        Node::Field(..) => field(typed),
        Node::Neg(operand) => {
            let operand = compile(operand);
            Compiled::new(move |env| match operand.eval(env)? {
                Value::Int(i) => i
                    .checked_neg()
                    .map(Value::Int)
                    .ok_or_else(|| overflow("-", span)),
                Value::Float(x) => Ok(Value::Float(-x)),
                Value::Duration(d) => d
                    .millis()
                    .checked_neg()
                    .map(|ms| Value::Duration(Duration::from_millis(ms)))
                    .ok_or_else(|| overflow("-", span)),
                other => Err(EvalError::unexpected(&other, span)),
            })
        }
        Node::Not(operand) => {
            let operand = compile(operand);
            Compiled::new(move |env| Ok(Value::Bool(!truth(operand.eval(env)?, span)?)))
        }
        Node::Arith(arith, lhs, rhs) => arithmetic(*arith, compile(lhs), compile(rhs), span),
        Node::Order(order, lhs, rhs) => {
            let (order, lhs, rhs) = (*order, Operand::of(lhs), Operand::of(rhs));
            Compiled::new(move |env| {
                let ordering = compare(&*lhs.read(env)?, &*rhs.read(env)?);
                Ok(Value::Bool(ordering.is_some_and(|ordering| match order {
                    Order::Lt => ordering == Ordering::Less,
                    Order::Le => ordering != Ordering::Greater,
                    Order::Gt => ordering == Ordering::Greater,
                    Order::Ge => ordering != Ordering::Less,
                })))
            })
        }
        Node::Equal(negated, lhs, rhs) => {
            let (negated, lhs, rhs) = (*negated, Operand::of(lhs), Operand::of(rhs));
            if lhs.in_place() && rhs.in_place() {
                // The usual rule, two fields or a field and a constant:
                // read without a copy or a failure to carry.
                return Compiled::new(move |env| {
                    Ok(Value::Bool((lhs.get(env) == rhs.get(env)) != negated))
                });
            }
            Compiled::new(move |env| {
                Ok(Value::Bool((*lhs.read(env)? == *rhs.read(env)?) != negated))
            })
        }
        Node::And(lhs, rhs) => {
            let (lhs, rhs) = (compile(lhs), compile(rhs));
            Compiled::new(move |env| {
                Ok(Value::Bool(
                    truth(lhs.eval(env)?, span)? && truth(rhs.eval(env)?, span)?,
                ))
            })
        }
        Node::Or(lhs, rhs) => {
            let (lhs, rhs) = (compile(lhs), compile(rhs));
            Compiled::new(move |env| {
                Ok(Value::Bool(
                    truth(lhs.eval(env)?, span)? || truth(rhs.eval(env)?, span)?,
                ))
            })
        }
        Node::If(condition, then, otherwise) => {
            let (condition, then, otherwise) =
                (compile(condition), compile(then), compile(otherwise));
            Compiled::new(move |env| {
                if truth(condition.eval(env)?, span)? {
                    then.eval(env)
                } else {
                    otherwise.eval(env)
                }
            })
        }
        Node::Call(builtin, args) => {
            builtins::compile(builtin, args.iter().map(compile).collect(), span)
        }
    }
}

/// A chain of field reads. When it starts at a record slot, it compiles to
/// a walk of field indexes with no intermediate values.
fn field(typed: &Typed) -> Compiled {
    let mut path = Vec::new();
    let mut base = typed;
    while let Node::Field(record, index) = &base.node {
        path.push(*index);
        base = record;
    }
    path.reverse();
    if let Node::Var(Var::Record(slot)) = base.node {
        if let [index] = path[..] {
            let mut compiled = Compiled::new(move |env| Ok(field_in(env, slot, index).clone()));
            compiled.field = Some((slot, index));
            return compiled;
        }
        return Compiled::new(move |env| {
            let Some(record) = env.records.get(slot).and_then(Option::as_ref) else {
                return Ok(Value::Null);
            };
            Ok(walk(record, &path))
        });
    }
    let base = compile(base);
    Compiled::new(move |env| match base.eval(env)? {
        Value::Record(record) => Ok(walk(&record, &path)),
        _ => Ok(Value::Null),
    })
}

/// An operand of a comparison, read in place where it can be: comparing two
/// fields of the records at hand copies neither.
enum Operand {
    /// The field at `index` of the record in `slot`.
    Field { slot: usize, index: usize },
    /// A constant.
    Const(Value),
    /// Anything else, computed.
    Computed(Compiled),
}

/// What an absent record's field reads as.
static NULL: Value = Value::Null;

/// The field at `index` of the record in `slot` of `env`; null for an
/// absent record.
fn field_in<'a>(env: &Env<'a>, slot: usize, index: usize) -> &'a Value {
    env.records
        .get(slot)
        .and_then(Option::as_ref)
        .map_or(&NULL, |record| record.get(index))
}

impl Operand {
    fn of(typed: &Typed) -> Self {
        if let Node::Const(value) = &typed.node {
            return Self::Const(value.clone());
        }
        let compiled = compile(typed);
        match compiled.field {
            Some((slot, index)) => Self::Field { slot, index },
            None => Self::Computed(compiled),
        }
    }

    /// Whether it is read in place, which cannot fail.
    fn in_place(&self) -> bool {
        !matches!(self, Self::Computed(_))
    }

    /// The value of an operand read in place (null for one computed,
    /// which [`read`](Self::read) computes).
    fn get<'a>(&'a self, env: &Env<'a>) -> &'a Value {
        match self {
            Self::Field { slot, index } => field_in(env, *slot, *index),
            Self::Const(value) => value,
            Self::Computed(_) => &NULL,
        }
    }

    fn read<'a>(&'a self, env: &Env<'a>) -> Result<Cow<'a, Value>, EvalError> {
        Ok(match self {
            Self::Computed(compiled) => Cow::Owned(compiled.eval(env)?),
            _ => Cow::Borrowed(self.get(env)),
        })
    }
}

/// Follows `path` through nested records; null if a level is absent.
fn walk(record: &Record, path: &[usize]) -> Value {
    let mut record = record;
    for (depth, &index) in path.iter().enumerate() {
        match record.get(index) {
            Value::Record(inner) if depth + 1 < path.len() => record = inner,
            value if depth + 1 == path.len() => return value.clone(),
            _ => return Value::Null,
        }
    }
    Value::Record(record.clone())
}

/// The boolean of a value the checker typed as `bool`.
fn truth(value: Value, span: Span) -> Result<bool, EvalError> {
    match value {
        Value::Bool(b) => Ok(b),
        other => Err(EvalError::unexpected(&other, span)),
    }
}

/// Orders two values of one kind; `None` for NaN and for kinds without an
/// order.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
        (Value::Float(a), Value::Float(b)) => a.partial_cmp(b),
        (Value::Str(a), Value::Str(b)) => Some(a.cmp(b)),
        (Value::Timestamp(a), Value::Timestamp(b)) => Some(a.cmp(b)),
        (Value::Duration(a), Value::Duration(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// Integer overflow in `op`, which fails the event rather than wrapping.
fn overflow(op: &str, span: Span) -> EvalError {
    EvalError::new(format!("integer overflow in `{op}`"), span)
}

/// An arithmetic node: both operands, then the operator.
fn arithmetic(arith: Arith, lhs: Compiled, rhs: Compiled, span: Span) -> Compiled {
    Compiled::new(move |env| {
        let (a, b) = (lhs.eval(env)?, rhs.eval(env)?);
        apply(arith, a, b, span)
    })
}

/// One arithmetic operation. Integer and duration arithmetic is checked;
/// float arithmetic follows IEEE 754.
fn apply(arith: Arith, a: Value, b: Value, span: Span) -> Result<Value, EvalError> {
    let checked = |result: Option<i64>, op: &str| result.ok_or_else(|| overflow(op, span));
    let ms = |result: Option<i64>, op: &str| checked(result, op).map(Duration::from_millis);
    Ok(match (arith, a, b) {
        (Arith::AddInt, Value::Int(a), Value::Int(b)) => {
            Value::Int(checked(a.checked_add(b), "+")?)
        }
        (Arith::SubInt, Value::Int(a), Value::Int(b)) => {
            Value::Int(checked(a.checked_sub(b), "-")?)
        }
        (Arith::MulInt, Value::Int(a), Value::Int(b)) => {
            Value::Int(checked(a.checked_mul(b), "*")?)
        }
        (Arith::DivInt | Arith::RemInt | Arith::DivideDuration, _, Value::Int(0)) => {
            return Err(EvalError::new("division by zero", span));
        }
        (Arith::DivInt, Value::Int(a), Value::Int(b)) => {
            Value::Int(checked(a.checked_div(b), "/")?)
        }
        (Arith::RemInt, Value::Int(a), Value::Int(b)) => {
            Value::Int(checked(a.checked_rem(b), "%")?)
        }
        (Arith::AddFloat, Value::Float(a), Value::Float(b)) => Value::Float(a + b),
        (Arith::SubFloat, Value::Float(a), Value::Float(b)) => Value::Float(a - b),
        (Arith::MulFloat, Value::Float(a), Value::Float(b)) => Value::Float(a * b),
        (Arith::DivFloat, Value::Float(a), Value::Float(b)) => Value::Float(a / b),
        (Arith::RemFloat, Value::Float(a), Value::Float(b)) => Value::Float(a % b),
        (Arith::Concat, Value::Str(a), Value::Str(b)) => {
            let mut joined = String::with_capacity(a.len() + b.len());
            joined.push_str(&a);
            joined.push_str(&b);
            Value::Str(joined.into())
        }
        (Arith::ShiftTimestamp, Value::Timestamp(t), Value::Duration(d)) => Value::Timestamp(
            EventTime::from_millis(checked(t.millis().checked_add(d.millis()), "+")?),
        ),
        (Arith::UnshiftTimestamp, Value::Timestamp(t), Value::Duration(d)) => Value::Timestamp(
            EventTime::from_millis(checked(t.millis().checked_sub(d.millis()), "-")?),
        ),
        (Arith::Elapsed, Value::Timestamp(a), Value::Timestamp(b)) => {
            Value::Duration(ms(a.millis().checked_sub(b.millis()), "-")?)
        }
        (Arith::AddDuration, Value::Duration(a), Value::Duration(b)) => {
            Value::Duration(ms(a.millis().checked_add(b.millis()), "+")?)
        }
        (Arith::SubDuration, Value::Duration(a), Value::Duration(b)) => {
            Value::Duration(ms(a.millis().checked_sub(b.millis()), "-")?)
        }
        (Arith::ScaleDuration, Value::Duration(d), Value::Int(n)) => {
            Value::Duration(ms(d.millis().checked_mul(n), "*")?)
        }
        (Arith::DivideDuration, Value::Duration(d), Value::Int(n)) => {
            Value::Duration(ms(d.millis().checked_div(n), "/")?)
        }
        (_, a, _) => return Err(EvalError::unexpected(&a, span)),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{Field, RecordType, Scope, Type, check, parse};
    use super::*;

    fn layout() -> Arc<RecordType> {
        let field = |name: &str, ty: Type| Field {
            name: name.into(),
            ty,
        };
        Arc::new(RecordType {
            name: "app".into(),
            fields: vec![
                field("id", Type::STRING),
                field("amount", Type::INT),
                field("price", Type::FLOAT),
                field("note", Type::STRING.or_null()),
                field("at", Type::TIMESTAMP),
            ],
        })
    }

    fn record() -> Record {
        Record::new(vec![
            Value::from(" Ürün-7 "),
            Value::Int(250),
            Value::Float(2.5),
            Value::Null,
            Value::Timestamp(EventTime::from_millis(1_714_557_600_123)),
        ])
    }

    fn eval(text: &str) -> Result<Value, EvalError> {
        let expr = parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        let typed = check(&expr, &Scope::source("app", layout()))
            .unwrap_or_else(|e| panic!("{text}: {e:?}"));
        let slots = [Some(record())];
        compile(&typed.0).eval(&Env::records(&slots))
    }

    macro_rules! evaluates {
        ($($text:expr => $value:expr,)*) => {
            $(assert_eq!(eval($text), Ok(Value::from($value)), "value of {:?}", $text);)*
        };
    }

    macro_rules! fails {
        ($($text:expr => ($message:expr, $start:expr, $end:expr),)*) => {
            $(assert_eq!(
                eval($text),
                Err(EvalError::new($message, Span::new($start, $end))),
                "failure of {:?}", $text
            );)*
        };
    }

    impl From<i64> for Value {
        fn from(i: i64) -> Self {
            Value::Int(i)
        }
    }

    impl From<bool> for Value {
        fn from(b: bool) -> Self {
            Value::Bool(b)
        }
    }

    impl From<f64> for Value {
        fn from(x: f64) -> Self {
            Value::Float(x)
        }
    }

    #[test]
    fn arithmetic_and_comparison() {
        evaluates! {
            "amount + 1 * 2" => 252,
            "-amount % 7" => -5,
            "7 / 2" => 3,
            "-7 / 2" => -3,
            "price * 2.0" => 5.0,
            "amount >= 250 and price < 3.0" => true,
            "\"a\" < \"b\"" => true,
            "id + \"!\"" => " Ürün-7 !",
            "to_int(at + 1s - at)" => 1000,
            "at - 1d < at" => true,
            "1h30m == 90m" => true,
        }
    }

    #[test]
    fn equality_of_fields_and_constants_and_of_what_is_computed() {
        evaluates! {
            "amount == 250" => true,
            "250 != amount" => false,
            "id == id" => true,
            "id != \"x\"" => true,
            "note != null" => false,
            "amount + 0 == amount" => true,
        }
        fails! {
            "amount == amount / 0" => ("division by zero", 10, 20),
        }
    }

    #[test]
    fn arithmetic_failures_are_located() {
        fails! {
            "amount / (amount - 250)" => ("division by zero", 0, 23),
            "amount % 0" => ("division by zero", 0, 10),
            "9223372036854775807 + amount" => ("integer overflow in `+`", 0, 28),
            "-(-9223372036854775807 - 1)" => ("integer overflow in `-`", 0, 27),
        }
    }

    #[test]
    fn expressions_at_the_depth_limit_run_on_a_small_stack() {
        // Test threads have 2 MiB of stack; the CLI's main thread has more.
        let sum = format!("amount{}", " + 1".repeat(120));
        assert_eq!(eval(&sum), Ok(Value::Int(370)));
        let calls = format!("{}id{}", "trim(".repeat(60), ")".repeat(60));
        assert_eq!(eval(&calls), Ok(Value::from("Ürün-7")));
        let negations = format!("{}amount", "-".repeat(120));
        assert_eq!(eval(&negations), Ok(Value::Int(250)));
    }

    #[test]
    fn logic_short_circuits() {
        evaluates! {
            "false and amount / 0 == 1" => false,
            "true or amount / 0 == 1" => true,
            "if amount > 0 then \"pos\" else to_string(amount / 0)" => "pos",
        }
    }

    #[test]
    fn nulls() {
        evaluates! {
            "note == null" => true,
            "note != \"x\"" => true,
            "coalesce(note, id)" => " Ürün-7 ",
            "if note == null then 0 else len(note)" => 0,
        }
    }

    #[test]
    fn string_functions_count_characters() {
        evaluates! {
            "trim(id)" => "Ürün-7",
            "lower(trim(id))" => "ürün-7",
            "upper(id)" => " ÜRÜN-7 ",
            "len(id)" => 8,
            "substring(trim(id), 1, 3)" => "rün",
            "substring(id, 5)" => "-7 ",
            "substring(id, 50)" => "",
            "substring(id, -3, 2)" => " Ü",
            "contains(id, \"rü\")" => true,
            "starts_with(trim(id), \"Ü\")" => true,
            "ends_with(id, \"7\")" => false,
            "concat(\"[\", app, \"]\")" => "[( Ürün-7 ,250,2.5,null,2024-05-01T10:00:00.123Z)]",
        }
    }

    #[test]
    fn conversions() {
        evaluates! {
            "to_int(\" 42 \")" => 42,
            "to_int(-2.9)" => -2,
            "to_int(at)" => 1_714_557_600_123,
            "to_float(\"2.5\") + price" => 5.0,
            "to_float(amount)" => 250.0,
            "to_string(price)" => "2.5",
            "to_string(2.0)" => "2.0",
            "to_string(90s)" => "1m30s",
            "abs(-amount)" => 250,
            "round(2.345, 2)" => 2.35,
            "round(-2.5)" => -3.0,
        }
        fails! {
            "to_int(id)" => ("cannot convert \" Ürün-7 \" to an integer", 0, 10),
            "to_float(\"x\")" => ("cannot convert \"x\" to a float", 0, 13),
            "to_int(1e300)" => ("cannot convert 1e300 to an integer", 0, 13),
        }
    }

    #[test]
    fn timestamps() {
        evaluates! {
            "format_timestamp(at)" => "2024-05-01T10:00:00.123Z",
            "format_timestamp(at, \"%Y/%m/%d %H:%M\")" => "2024/05/01 10:00",
            "parse_timestamp(\"2024-05-01T12:00:00.123+02:00\") == at" => true,
            "parse_timestamp(\"2024-05-01 10:00:00.123\", \"%Y-%m-%d %H:%M:%S%.f\") == at" => true,
            "to_int(parse_timestamp(\"1970-01-02\", \"%Y-%m-%d\"))" => 86_400_000,
        }
        let failure = eval("parse_timestamp(\"2024-13-01\", \"%Y-%m-%d\")").unwrap_err();
        assert!(
            failure
                .message
                .starts_with("cannot parse \"2024-13-01\" with format \"%Y-%m-%d\""),
            "{failure}"
        );
        assert_eq!(failure.span, Span::new(0, 41));
    }
}
