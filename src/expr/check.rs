//! Type checking: names to slots and indexes, operators to their typed
//! forms, and every type error in the expression reported at once.

use super::ast::{BinaryOp, Expr, ExprKind, Ident, Literal, UnaryOp};
use super::error::{ExprError, ExprErrorKind};
use super::functions;
use super::scope::Scope;
use super::typed::{Arith, Node, Order, Typed, Var};
use super::types::{Kind, Type};
use super::value::Value;
use crate::diagnostic::did_you_mean;

/// Checks `expr` against the names in `scope`.
///
/// # Errors
///
/// Every independent type error in the expression.
pub(crate) fn check(expr: &Expr, scope: &Scope) -> Result<Typed, Vec<ExprError>> {
    let mut checker = Checker {
        scope,
        errors: Vec::new(),
        non_null: Vec::new(),
    };
    let typed = checker.expr(expr);
    if checker.errors.is_empty() {
        Ok(typed)
    } else {
        Err(checker.errors)
    }
}

/// The type both `a` and `b` fit in, if any: equal kinds, with `null` and
/// unknowns fitting everything.
pub(crate) fn unify(a: &Type, b: &Type) -> Option<Type> {
    let nullable = a.nullable || b.nullable;
    let kind = match (&a.kind, &b.kind) {
        (Kind::Unknown, _) | (_, Kind::Unknown) => Kind::Unknown,
        (Kind::Null, other) | (other, Kind::Null) => other.clone(),
        (x, y) if x == y => x.clone(),
        _ => return None,
    };
    Some(Type { kind, nullable })
}

struct Checker<'s> {
    scope: &'s Scope,
    errors: Vec<ExprError>,
    /// Canonical texts of expressions known not to be null here, from
    /// enclosing `x != null` tests.
    non_null: Vec<String>,
}

impl Checker<'_> {
    /// Checks one node. An error is recorded and the node gets the unknown
    /// type, which every rule accepts, so checking goes on and reports the
    /// independent mistakes without repeating this one in its parents.
    fn expr(&mut self, expr: &Expr) -> Typed {
        let text = expr.to_string();
        let result = match &expr.kind {
            ExprKind::Literal(literal) => Ok(literal_node(literal)),
            ExprKind::Name(ident) => self.name(ident),
            ExprKind::Field(record, field) => self.field(record, field),
            ExprKind::Unary(op, operand) => self.unary(*op, operand),
            ExprKind::Binary(op, lhs, rhs) => self.binary(*op, lhs, rhs),
            ExprKind::If(condition, then, otherwise) => {
                self.conditional(condition, then, otherwise)
            }
            ExprKind::Call(function, args) => {
                let args: Vec<Typed> = args.iter().map(|arg| self.expr(arg)).collect();
                functions::check(function, &args, expr.span)
                    .map(|(builtin, ty)| (ty, Node::Call(builtin, args)))
            }
        };
        let (mut ty, node) = result.unwrap_or_else(|error| {
            self.errors.push(error);
            (Type::UNKNOWN, Node::Const(Value::Null))
        });
        if self.non_null.contains(&text) {
            ty.nullable = false;
        }
        Typed {
            ty,
            span: expr.span,
            text,
            node,
        }
    }

    /// A bare name. In a source's scope its own fields come first, then
    /// record names, then the match variables; the help on an unknown name
    /// says where it would be defined, or which record has such a field.
    fn name(&mut self, ident: &Ident) -> Result<(Type, Node), ExprError> {
        let name = ident.name.as_str();
        if let Some(slot) = self.scope.unqualified {
            let layout = &self.scope.records[slot].layout;
            if let Some(index) = layout.field(name) {
                let record = Typed {
                    ty: Type::record(layout.clone()),
                    span: ident.span,
                    text: self.scope.records[slot].name.clone(),
                    node: Node::Var(Var::Record(slot)),
                };
                return Ok((
                    layout.fields[index].ty.clone(),
                    Node::Field(Box::new(record), index),
                ));
            }
        }
        if let Some(slot) = self
            .scope
            .records
            .iter()
            .position(|record| record.name == name)
        {
            let record = &self.scope.records[slot];
            let ty = Type {
                nullable: record.nullable,
                ..Type::record(record.layout.clone())
            };
            return Ok((ty, Node::Var(Var::Record(slot))));
        }
        if let Some((_, var, ty)) = self
            .scope
            .vars
            .iter()
            .find(|(var_name, ..)| *var_name == name)
        {
            return Ok((ty.clone(), Node::Var(*var)));
        }
        let owners: Vec<&str> = self
            .scope
            .records
            .iter()
            .filter(|record| record.layout.field(name).is_some())
            .map(|record| record.name.as_str())
            .collect();
        let help = if let Some((_, place)) = super::VARIABLES
            .iter()
            .find(|(variable, _)| *variable == name)
        {
            Some(format!("`{name}` is defined in {place}"))
        } else if owners.is_empty() {
            did_you_mean(name, self.scope.names())
                .map(|suggestion| format!("did you mean `{suggestion}`?"))
        } else {
            let qualified: Vec<String> = owners
                .iter()
                .map(|owner| format!("`{owner}.{name}`"))
                .collect();
            Some(format!(
                "fields are qualified by their source here: {}",
                qualified.join(" or ")
            ))
        };
        Err(ExprError::new(
            ExprErrorKind::UnknownName {
                name: name.to_string(),
                help,
            },
            ident.span,
        ))
    }

    /// `record.field`: the record must be present (not nullable here) and
    /// have the field, whose index the compiled read uses.
    fn field(&mut self, record: &Expr, field: &Ident) -> Result<(Type, Node), ExprError> {
        let record = self.expr(record);
        let layout = match &record.ty.kind {
            Kind::Unknown => return Ok((Type::UNKNOWN, Node::Const(Value::Null))),
            Kind::Record(layout) => layout.clone(),
            _ => {
                return Err(ExprError::new(
                    ExprErrorKind::TypeMismatch {
                        message: format!("`.{}` needs a record, found `{}`", field.name, record.ty),
                        label: format!("this is `{}`", record.ty),
                        help: None,
                    },
                    field.span,
                ));
            }
        };
        if record.ty.nullable {
            return Err(ExprError::new(
                ExprErrorKind::Nullable {
                    what: record.text.clone(),
                    used: "here: its fields cannot be read".into(),
                },
                record.span,
            ));
        }
        let Some(index) = layout.field(&field.name) else {
            let help = did_you_mean(&field.name, layout.field_names())
                .map(|s| format!("did you mean `{s}`?"));
            return Err(ExprError::new(
                ExprErrorKind::UnknownField {
                    record: format!("`{}`", layout.name),
                    field: field.name.clone(),
                    help,
                },
                field.span,
            ));
        };
        Ok((
            layout.fields[index].ty.clone(),
            Node::Field(Box::new(record), index),
        ))
    }

    /// `-x` on numbers and durations, `not x` on booleans.
    fn unary(&mut self, op: UnaryOp, operand: &Expr) -> Result<(Type, Node), ExprError> {
        let operand = self.expr(operand);
        if operand.ty.is_unknown() {
            return Ok((Type::UNKNOWN, Node::Const(Value::Null)));
        }
        let (symbol, allowed): (&str, &[Kind]) = match op {
            UnaryOp::Neg => ("-", &[Kind::Int, Kind::Float, Kind::Duration]),
            UnaryOp::Not => ("not", &[Kind::Bool]),
        };
        require_non_null(&operand, &format!("in `{symbol}`"))?;
        if !allowed.contains(&operand.ty.kind) {
            return Err(mismatch(
                format!("`{symbol}` cannot be applied to `{}`", operand.ty),
                &operand,
                (op == UnaryOp::Not)
                    .then(|| "`not` takes a `bool`; there is no truthiness".to_string()),
            ));
        }
        let ty = operand.ty.clone();
        let node = match op {
            UnaryOp::Neg => Node::Neg(Box::new(operand)),
            UnaryOp::Not => Node::Not(Box::new(operand)),
        };
        Ok((ty, node))
    }

    /// Binary operators. Operands must have the same kind (no implicit
    /// conversions); only `==` and `!=` accept values that may be null.
    fn binary(&mut self, op: BinaryOp, lhs: &Expr, rhs: &Expr) -> Result<(Type, Node), ExprError> {
        let lhs = self.expr(lhs);
        // `x != null and x.y` and `x == null or x.y`: the right side runs
        // only when the left side has shown `x` is there.
        let facts = match op {
            BinaryOp::And => non_null_facts(&lhs, true),
            BinaryOp::Or => non_null_facts(&lhs, false),
            _ => Vec::new(),
        };
        let known = self.non_null.len();
        self.non_null.extend(facts);
        let rhs = self.expr(rhs);
        self.non_null.truncate(known);
        if lhs.ty.is_unknown() || rhs.ty.is_unknown() {
            return Ok((Type::UNKNOWN, Node::Const(Value::Null)));
        }
        let symbol = op.symbol();
        match op {
            BinaryOp::And | BinaryOp::Or => {
                for side in [&lhs, &rhs] {
                    require_non_null(side, &format!("in `{symbol}`"))?;
                    if side.ty.kind != Kind::Bool {
                        return Err(mismatch(
                            format!("`{symbol}` needs `bool` operands, found `{}`", side.ty),
                            side,
                            Some(
                                "there is no truthiness: compare explicitly, e.g. `x != 0`"
                                    .to_string(),
                            ),
                        ));
                    }
                }
                let node = if op == BinaryOp::And {
                    Node::And(Box::new(lhs), Box::new(rhs))
                } else {
                    Node::Or(Box::new(lhs), Box::new(rhs))
                };
                Ok((Type::BOOL, node))
            }
            BinaryOp::Eq | BinaryOp::Ne => {
                let comparable = match (&lhs.ty.kind, &rhs.ty.kind) {
                    // Any value may be tested for null, a record too.
                    (Kind::Null, _) | (_, Kind::Null) => true,
                    (Kind::Record(_), _) | (_, Kind::Record(_)) => false,
                    (a, b) => a == b,
                };
                if !comparable {
                    return Err(compare_mismatch(symbol, &lhs, &rhs));
                }
                Ok((
                    Type::BOOL,
                    Node::Equal(op == BinaryOp::Ne, Box::new(lhs), Box::new(rhs)),
                ))
            }
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                require_non_null(&lhs, &format!("in `{symbol}`"))?;
                require_non_null(&rhs, &format!("in `{symbol}`"))?;
                let orderable = matches!(
                    lhs.ty.kind,
                    Kind::Int | Kind::Float | Kind::String | Kind::Timestamp | Kind::Duration
                );
                if !orderable || lhs.ty.kind != rhs.ty.kind {
                    return Err(compare_mismatch(symbol, &lhs, &rhs));
                }
                let order = match op {
                    BinaryOp::Lt => Order::Lt,
                    BinaryOp::Le => Order::Le,
                    BinaryOp::Gt => Order::Gt,
                    _ => Order::Ge,
                };
                Ok((Type::BOOL, Node::Order(order, Box::new(lhs), Box::new(rhs))))
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
                require_non_null(&lhs, &format!("in `{symbol}`"))?;
                require_non_null(&rhs, &format!("in `{symbol}`"))?;
                arithmetic(op, lhs, rhs)
            }
        }
    }

    /// `if c then a else b`: `c` is a present `bool`, and what `c` proves
    /// about nulls holds in the branch it selects.
    fn conditional(
        &mut self,
        condition: &Expr,
        then: &Expr,
        otherwise: &Expr,
    ) -> Result<(Type, Node), ExprError> {
        let condition = self.expr(condition);
        let known = self.non_null.len();
        self.non_null.extend(non_null_facts(&condition, true));
        let then = self.expr(then);
        self.non_null.truncate(known);
        self.non_null.extend(non_null_facts(&condition, false));
        let otherwise = self.expr(otherwise);
        self.non_null.truncate(known);
        if !condition.ty.is_unknown() {
            require_non_null(&condition, "as the condition of `if`")?;
            if condition.ty.kind != Kind::Bool {
                return Err(mismatch(
                    format!(
                        "the condition of `if` must be `bool`, found `{}`",
                        condition.ty
                    ),
                    &condition,
                    None,
                ));
            }
        }
        let ty = unify(&then.ty, &otherwise.ty).ok_or_else(|| {
            mismatch(
                format!(
                    "`if` branches have different types: `{}` and `{}`",
                    then.ty, otherwise.ty
                ),
                &otherwise,
                None,
            )
        })?;
        Ok((
            ty,
            Node::If(Box::new(condition), Box::new(then), Box::new(otherwise)),
        ))
    }
}

/// Rejects a value that may be null where one is required; `used` says
/// where, for the message.
fn require_non_null(typed: &Typed, used: &str) -> Result<(), ExprError> {
    if typed.ty.nullable && !typed.ty.is_unknown() {
        return Err(ExprError::new(
            ExprErrorKind::Nullable {
                what: typed.text.clone(),
                used: used.to_string(),
            },
            typed.span,
        ));
    }
    Ok(())
}

/// What `condition` evaluating to `outcome` proves is not null: the
/// canonical texts of the tested expressions.
fn non_null_facts(condition: &Typed, outcome: bool) -> Vec<String> {
    match &condition.node {
        Node::Equal(negated, lhs, rhs) if *negated == outcome => {
            let tested = match (&lhs.node, &rhs.node) {
                (_, Node::Const(Value::Null)) => lhs,
                (Node::Const(Value::Null), _) => rhs,
                _ => return Vec::new(),
            };
            vec![tested.text.clone()]
        }
        Node::And(lhs, rhs) if outcome => {
            let mut facts = non_null_facts(lhs, true);
            facts.extend(non_null_facts(rhs, true));
            facts
        }
        Node::Or(lhs, rhs) if !outcome => {
            let mut facts = non_null_facts(lhs, false);
            facts.extend(non_null_facts(rhs, false));
            facts
        }
        Node::Not(operand) => non_null_facts(operand, !outcome),
        _ => Vec::new(),
    }
}

/// The type and constant of a literal.
fn literal_node(literal: &Literal) -> (Type, Node) {
    let (ty, value) = match literal {
        Literal::Null => (Type::NULL, Value::Null),
        Literal::Bool(b) => (Type::BOOL, Value::Bool(*b)),
        Literal::Int(i) => (Type::INT, Value::Int(*i)),
        Literal::Float(x) => (Type::FLOAT, Value::Float(*x)),
        Literal::String(s) => (Type::STRING, Value::Str(s.as_str().into())),
        Literal::Duration(d) => (Type::DURATION, Value::Duration(*d)),
    };
    (ty, Node::Const(value))
}

/// The typed form of an arithmetic operator for its operand kinds. The
/// table is the whole of arithmetic: any pair not listed is an error, with
/// the conversion to use where there is an obvious one.
fn arithmetic(op: BinaryOp, lhs: Typed, rhs: Typed) -> Result<(Type, Node), ExprError> {
    use Kind::{Duration, Float, Int, String, Timestamp};
    let (arith, ty, swap) = match (op, &lhs.ty.kind, &rhs.ty.kind) {
        (BinaryOp::Add, Int, Int) => (Arith::AddInt, Type::INT, false),
        (BinaryOp::Add, Float, Float) => (Arith::AddFloat, Type::FLOAT, false),
        (BinaryOp::Add, String, String) => (Arith::Concat, Type::STRING, false),
        (BinaryOp::Add, Timestamp, Duration) => (Arith::ShiftTimestamp, Type::TIMESTAMP, false),
        (BinaryOp::Add, Duration, Timestamp) => (Arith::ShiftTimestamp, Type::TIMESTAMP, true),
        (BinaryOp::Add, Duration, Duration) => (Arith::AddDuration, Type::DURATION, false),
        (BinaryOp::Sub, Int, Int) => (Arith::SubInt, Type::INT, false),
        (BinaryOp::Sub, Float, Float) => (Arith::SubFloat, Type::FLOAT, false),
        (BinaryOp::Sub, Timestamp, Duration) => (Arith::UnshiftTimestamp, Type::TIMESTAMP, false),
        (BinaryOp::Sub, Timestamp, Timestamp) => (Arith::Elapsed, Type::DURATION, false),
        (BinaryOp::Sub, Duration, Duration) => (Arith::SubDuration, Type::DURATION, false),
        (BinaryOp::Mul, Int, Int) => (Arith::MulInt, Type::INT, false),
        (BinaryOp::Mul, Float, Float) => (Arith::MulFloat, Type::FLOAT, false),
        (BinaryOp::Mul, Duration, Int) => (Arith::ScaleDuration, Type::DURATION, false),
        (BinaryOp::Mul, Int, Duration) => (Arith::ScaleDuration, Type::DURATION, true),
        (BinaryOp::Div, Int, Int) => (Arith::DivInt, Type::INT, false),
        (BinaryOp::Div, Float, Float) => (Arith::DivFloat, Type::FLOAT, false),
        (BinaryOp::Div, Duration, Int) => (Arith::DivideDuration, Type::DURATION, false),
        (BinaryOp::Rem, Int, Int) => (Arith::RemInt, Type::INT, false),
        (BinaryOp::Rem, Float, Float) => (Arith::RemFloat, Type::FLOAT, false),
        _ => {
            let help = match (&lhs.ty.kind, &rhs.ty.kind) {
                (Int, Float) | (Float, Int) => {
                    Some("convert one side with `to_float(...)` or `to_int(...)`".to_string())
                }
                (String, _) | (_, String) if op == BinaryOp::Add => Some(
                    "`+` joins two strings; use `concat(...)` to join other values as text"
                        .to_string(),
                ),
                _ => None,
            };
            return Err(ExprError::new(
                ExprErrorKind::TypeMismatch {
                    message: format!(
                        "`{}` cannot be applied to `{}` and `{}`",
                        op.symbol(),
                        lhs.ty,
                        rhs.ty
                    ),
                    label: format!("`{}` {} `{}`", lhs.ty, op.symbol(), rhs.ty),
                    help,
                },
                lhs.span.to(rhs.span),
            ));
        }
    };
    let (lhs, rhs) = if swap { (rhs, lhs) } else { (lhs, rhs) };
    Ok((ty, Node::Arith(arith, Box::new(lhs), Box::new(rhs))))
}

/// A type error about one operand, labelled with its type.
fn mismatch(message: String, at: &Typed, help: Option<String>) -> ExprError {
    ExprError::new(
        ExprErrorKind::TypeMismatch {
            message,
            label: format!("this is `{}`", at.ty),
            help,
        },
        at.span,
    )
}

/// A comparison of two kinds that cannot be compared, spanning both.
fn compare_mismatch(symbol: &str, lhs: &Typed, rhs: &Typed) -> ExprError {
    let help = match (&lhs.ty.kind, &rhs.ty.kind) {
        (Kind::Int, Kind::Float) | (Kind::Float, Kind::Int) => {
            Some("convert one side with `to_float(...)` or `to_int(...)`".to_string())
        }
        (Kind::String, _) | (_, Kind::String) => Some(
            "convert one side with `to_string(...)`, `to_int(...)` or `to_float(...)`".to_string(),
        ),
        _ => None,
    };
    ExprError::new(
        ExprErrorKind::TypeMismatch {
            message: format!("cannot compare `{}` with `{}`", lhs.ty, rhs.ty),
            label: format!("`{}` {symbol} `{}`", lhs.ty, rhs.ty),
            help,
        },
        lhs.span.to(rhs.span),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{Field, RecordType, Scope, SideScope, parse};
    use super::*;
    use crate::diagnostic::{Code, Span};

    fn layout(name: &str) -> Arc<RecordType> {
        let field = |name: &str, ty: Type| Field {
            name: name.into(),
            ty,
        };
        let amount = Arc::new(RecordType {
            name: format!("{name}.money"),
            fields: vec![field("value", Type::INT), field("currency", Type::STRING)],
        });
        Arc::new(RecordType {
            name: name.into(),
            fields: vec![
                field("order_id", Type::STRING),
                field("amount", Type::INT),
                field("price", Type::FLOAT),
                field("note", Type::STRING.or_null()),
                field("paid_at", Type::TIMESTAMP),
                field("money", Type::record(amount)),
            ],
        })
    }

    /// A source's scope: `app`'s fields by name.
    fn source() -> Scope {
        Scope::source("app", layout("app"))
    }

    /// A timeout's scope: `app` present, `bank` possibly absent.
    fn timeout() -> Scope {
        let sides = [
            SideScope {
                name: "app".into(),
                layout: layout("app"),
                nullable: false,
            },
            SideScope {
                name: "bank".into(),
                layout: layout("bank"),
                nullable: true,
            },
        ];
        Scope::outcome(
            &sides,
            &[
                ("key", Type::STRING),
                ("missing", Type::STRING),
                ("expired", Type::STRING),
            ],
        )
    }

    fn type_of(text: &str, scope: &Scope) -> Result<String, Vec<(Code, Span)>> {
        let expr = parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        check(&expr, scope)
            .map(|typed| typed.ty.to_string())
            .map_err(|errors| {
                errors
                    .iter()
                    .map(|error| (error.code(), error.span))
                    .collect()
            })
    }

    macro_rules! types {
        ($scope:expr; $($text:expr => $ty:expr,)*) => {
            $(assert_eq!(type_of($text, &$scope), Ok($ty.to_string()), "type of {:?}", $text);)*
        };
    }

    macro_rules! errors {
        ($scope:expr; $($text:expr => [$(($code:ident, $start:expr, $end:expr)),*],)*) => {
            $(assert_eq!(
                type_of($text, &$scope),
                Err(vec![$((Code::$code, Span::new($start, $end))),*]),
                "errors of {:?}", $text
            );)*
        };
    }

    #[test]
    fn names_resolve_to_fields_records_and_variables() {
        types! { source();
            "order_id" => "string",
            "app.order_id" => "string",
            "money.value" => "int",
            "app.money.currency" => "string",
            "note" => "string?",
            "app" => "record(app)",
        }
        types! { timeout();
            "key" => "string",
            "missing" => "string",
            "expired" => "string",
            "app.amount" => "int",
            "bank" => "record(bank)?",
        }
    }

    #[test]
    fn operators_and_functions_have_their_types() {
        types! { source();
            "amount + 1" => "int",
            "price * 2.5" => "float",
            "order_id + \"-x\"" => "string",
            "paid_at + 5m" => "timestamp",
            "5m + paid_at" => "timestamp",
            "paid_at - paid_at" => "duration",
            "2 * 1s" => "duration",
            "amount > 1 and not (price < 2.0)" => "bool",
            "if amount > 0 then \"pos\" else null" => "string?",
            "coalesce(note, \"none\")" => "string",
            "coalesce(note, note)" => "string?",
            "concat(app, amount, price, paid_at, 5s)" => "string",
            "to_int(order_id) + to_int(price) + to_int(paid_at)" => "int",
            "parse_timestamp(order_id, \"%Y-%m-%d\")" => "timestamp",
            "format_timestamp(paid_at)" => "string",
            "substring(order_id, 1, 2)" => "string",
            "round(price, 2)" => "float",
            "abs(-1s)" => "duration",
        }
    }

    #[test]
    fn unknown_fields_and_functions() {
        errors! { source();
            "odrer_id" => [(UnknownName, 0, 8)],
            "app.odrer_id" => [(UnknownName, 4, 12)],
            "money.val" => [(UnknownName, 6, 9)],
            "lowr(order_id)" => [(UnknownFunction, 0, 4)],
            "lower(nope) + upper(nada)" => [(UnknownName, 6, 10), (UnknownName, 20, 24)],
        }
        errors! { timeout();
            "order_id" => [(UnknownName, 0, 8)],
        }
    }

    #[test]
    fn wrong_arity() {
        errors! { source();
            "lower()" => [(WrongArity, 0, 7)],
            "lower(order_id, order_id)" => [(WrongArity, 0, 25)],
            "coalesce(note)" => [(WrongArity, 0, 14)],
            "substring(order_id)" => [(WrongArity, 0, 19)],
        }
    }

    #[test]
    fn mismatched_types() {
        errors! { source();
            "order_id == 1" => [(TypeMismatch, 0, 13)],
            "amount < price" => [(TypeMismatch, 0, 14)],
            "amount + 1.5" => [(TypeMismatch, 0, 12)],
            "order_id + 1" => [(TypeMismatch, 0, 12)],
            "not amount" => [(TypeMismatch, 4, 10)],
            "amount and true" => [(TypeMismatch, 0, 6)],
            "if amount then 1 else 2" => [(TypeMismatch, 3, 9)],
            "if true then 1 else \"x\"" => [(TypeMismatch, 20, 23)],
            "lower(amount)" => [(TypeMismatch, 6, 12)],
            "app == app" => [(TypeMismatch, 0, 10)],
            "amount.value" => [(TypeMismatch, 7, 12)],
            "parse_timestamp(order_id, order_id)" => [(TypeMismatch, 26, 34)],
            "format_timestamp(paid_at, \"%Q%\")" => [(InvalidFormat, 26, 31)],
        }
    }

    #[test]
    fn nulls_must_be_handled() {
        errors! { source();
            "len(note)" => [(NullableValue, 4, 8)],
            "note + \"x\"" => [(NullableValue, 0, 4)],
            "note < \"x\"" => [(NullableValue, 0, 4)],
            "if null then 1 else 2" => [(NullableValue, 3, 7)],
        }
        errors! { timeout();
            "bank.amount" => [(NullableValue, 0, 4)],
            "concat(bank)" => [(NullableValue, 7, 11)],
        }
        types! { source();
            "note == null" => "bool",
            "note != \"x\"" => "bool",
            "null == null" => "bool",
            "if note != null then len(note) else 0" => "int",
            "if note == null then 0 else len(note)" => "int",
            "note != null and len(note) > 2" => "bool",
            "note == null or len(note) > 2" => "bool",
            "if not (note == null) then len(note) else 0" => "int",
        }
        types! { timeout();
            "if bank != null then bank.amount else 0" => "int",
            "bank != null and bank.money.value == app.money.value" => "bool",
        }
        // Narrowing holds only where the test has run.
        errors! { source();
            "note != null or len(note) > 2" => [(NullableValue, 20, 24)],
            "if note != null then 0 else len(note)" => [(NullableValue, 32, 36)],
        }
    }

    #[test]
    fn one_mistake_is_reported_once() {
        // `nope` is unknown; the `+` and the comparison built on it are not
        // reported again.
        errors! { source();
            "nope + 1 > amount" => [(UnknownName, 0, 4)],
        }
    }
}
