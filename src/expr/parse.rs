//! Expression text to a syntax tree: pest for the tokens and shape
//! (grammar/expr.pest), a Pratt parser for precedence.

use std::sync::LazyLock;

use pest::Parser as _;
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};

use super::ast::{BinaryOp, Expr, ExprKind, Ident, Literal, UnaryOp};
use super::error::{ExprError, ExprErrorKind};
use crate::diagnostic::Span;
use crate::time::Duration;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/expr.pest"]
struct Grammar;

/// Operator precedence, loosest first; see the table at the top of the grammar.
static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::or, Assoc::Left))
        .op(Op::infix(Rule::and, Assoc::Left))
        .op(Op::prefix(Rule::not))
        .op(Op::infix(Rule::eq, Assoc::Left)
            | Op::infix(Rule::ne, Assoc::Left)
            | Op::infix(Rule::lt, Assoc::Left)
            | Op::infix(Rule::le, Assoc::Left)
            | Op::infix(Rule::gt, Assoc::Left)
            | Op::infix(Rule::ge, Assoc::Left))
        .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
        .op(Op::infix(Rule::mul, Assoc::Left)
            | Op::infix(Rule::div, Assoc::Left)
            | Op::infix(Rule::rem, Assoc::Left))
        .op(Op::prefix(Rule::neg))
        .op(Op::postfix(Rule::field))
});

/// Parses the text of one expression.
///
/// # Errors
///
/// The first syntax error, located in `text`.
pub fn parse(text: &str) -> Result<Expr, ExprError> {
    let pairs =
        Grammar::parse(Rule::expression, text).map_err(|error| syntax_error(&error, text))?;
    let expression = presume_first(pairs, "a successful parse yields its rule");
    let expr = presume_first(expression.into_inner(), "`expression` holds one `expr`");
    Ok(build(expr, 0)?.expr)
}

/// Parses a duration written on its own: `250ms`, `5s`, `1h30m`.
///
/// # Errors
///
/// A short description of what is wrong, for a label.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let pairs = Grammar::parse(Rule::duration_text, text.trim()).map_err(|_| {
        "expected a number followed by a unit (`ms`, `s`, `m`, `h` or `d`)".to_string()
    })?;
    let whole = presume_first(pairs, "a successful parse yields its rule");
    let duration = presume_first(whole.into_inner(), "`duration_text` holds one `duration`");
    duration_value(duration.as_str()).map_err(|()| "this duration is too long".to_string())
}

/// The first of `pairs`, which the grammar guarantees is there (`why`).
fn presume_first<'i>(mut pairs: Pairs<'i, Rule>, why: &str) -> Pair<'i, Rule> {
    pairs
        .next()
        .unwrap_or_else(|| unreachable!("grammar guarantee broken: {why}"))
}

/// An expression and whether it was written in parentheses, which is what
/// lets comparisons be combined: `(a < b) == c`.
struct Parsed {
    expr: Expr,
    grouped: bool,
}

impl Parsed {
    fn new(kind: ExprKind, span: Span) -> Self {
        Self {
            expr: Expr { kind, span },
            grouped: false,
        }
    }
}

fn span_of(pair: &Pair<'_, Rule>) -> Span {
    Span::new(pair.as_span().start(), pair.as_span().end())
}

/// How deep an expression tree may be. Checking, compiling and evaluating
/// recurse over the tree, so this bounds their stack use; real expressions
/// stay far below it.
pub(crate) const MAX_DEPTH: usize = 128;

/// Builds the tree of one `expr` pair nested `depth` levels down.
fn build(expr: Pair<'_, Rule>, depth: usize) -> Result<Parsed, ExprError> {
    // The operators of one `expr` come flat; the tree they make is as deep
    // as its operators (prefix runs, which the Pratt parser recurses on,
    // count in full). Refuse before building anything that deep.
    let (mut operators, mut prefixes, mut longest_prefix_run) = (0, 0, 0);
    for pair in expr.clone().into_inner() {
        match pair.as_rule() {
            Rule::neg | Rule::not => {
                prefixes += 1;
                longest_prefix_run = longest_prefix_run.max(prefixes);
            }
            Rule::field => operators += 1,
            rule if binary_op(rule).is_some() => {
                operators += 1;
                prefixes = 0;
            }
            _ => {}
        }
    }
    let depth = depth + 1 + operators + longest_prefix_run;
    if depth > MAX_DEPTH {
        return Err(ExprError::new(
            ExprErrorKind::TooDeep { limit: MAX_DEPTH },
            span_of(&expr),
        ));
    }
    PRATT
        .map_primary(|pair| primary(pair, depth))
        .map_prefix(|op, operand| {
            let operand = operand?;
            let op_span = span_of(&op);
            let unary = match op.as_rule() {
                Rule::neg => UnaryOp::Neg,
                Rule::not => UnaryOp::Not,
                rule => unreachable!("the Pratt table has no prefix operator {rule:?}"),
            };
            let span = op_span.to(operand.expr.span);
            Ok(Parsed::new(ExprKind::Unary(unary, Box::new(operand.expr)), span))
        })
        .map_postfix(|record, op| {
            let record = record?;
            let field = ident(&presume_first(op.into_inner(), "`field` holds a `name`"));
            let span = record.expr.span.to(field.span);
            Ok(Parsed::new(ExprKind::Field(Box::new(record.expr), field), span))
        })
        .map_infix(|lhs, op, rhs| {
            let (lhs, rhs) = (lhs?, rhs?);
            let Some(binary) = binary_op(op.as_rule()) else {
                unreachable!("the Pratt table's infix operators are binary operators")
            };
            if binary.is_comparison() {
                let chained = [&lhs, &rhs].into_iter().find(|side| {
                    !side.grouped && matches!(side.expr.kind, ExprKind::Binary(inner, ..) if inner.is_comparison())
                });
                if chained.is_some() {
                    return Err(ExprError::new(
                        ExprErrorKind::ChainedComparison { op: binary.symbol() },
                        span_of(&op),
                    ));
                }
            }
            let span = lhs.expr.span.to(rhs.expr.span);
            Ok(Parsed::new(ExprKind::Binary(binary, Box::new(lhs.expr), Box::new(rhs.expr)), span))
        })
        .parse(expr.into_inner())
}

/// The binary operator a grammar rule stands for, if it is one.
fn binary_op(rule: Rule) -> Option<BinaryOp> {
    Some(match rule {
        Rule::add => BinaryOp::Add,
        Rule::sub => BinaryOp::Sub,
        Rule::mul => BinaryOp::Mul,
        Rule::div => BinaryOp::Div,
        Rule::rem => BinaryOp::Rem,
        Rule::eq => BinaryOp::Eq,
        Rule::ne => BinaryOp::Ne,
        Rule::lt => BinaryOp::Lt,
        Rule::le => BinaryOp::Le,
        Rule::gt => BinaryOp::Gt,
        Rule::ge => BinaryOp::Ge,
        Rule::and => BinaryOp::And,
        Rule::or => BinaryOp::Or,
        _ => return None,
    })
}

fn primary(pair: Pair<'_, Rule>, depth: usize) -> Result<Parsed, ExprError> {
    let span = span_of(&pair);
    let kind = match pair.as_rule() {
        Rule::group => {
            let mut inner = exprs(pair, depth)
                .next()
                .expect("`group` holds one `expr`")?;
            // The parentheses belong to the operand: an error about it
            // underlines them too.
            inner.span = span;
            return Ok(Parsed {
                expr: inner,
                grouped: true,
            });
        }
        Rule::conditional => {
            let mut parts = exprs(pair, depth).map(|expr| expr.map(Box::new));
            let mut next = || parts.next().expect("`conditional` holds three `expr`s");
            ExprKind::If(next()?, next()?, next()?)
        }
        Rule::call => {
            let function = ident(&presume_first(
                pair.clone().into_inner(),
                "`call` starts with a `name`",
            ));
            ExprKind::Call(function, exprs(pair, depth).collect::<Result<_, _>>()?)
        }
        Rule::name => ExprKind::Name(ident(&pair)),
        Rule::null => ExprKind::Literal(Literal::Null),
        Rule::boolean => ExprKind::Literal(Literal::Bool(pair.as_str() == "true")),
        Rule::integer => {
            let value = pair.as_str().parse().map_err(|_| {
                ExprError::new(
                    ExprErrorKind::InvalidLiteral {
                        problem: "integer does not fit in 64 bits".into(),
                    },
                    span,
                )
            })?;
            ExprKind::Literal(Literal::Int(value))
        }
        Rule::float => {
            let value: f64 = pair
                .as_str()
                .parse()
                .expect("the grammar only accepts float syntax Rust parses");
            if !value.is_finite() {
                return Err(ExprError::new(
                    ExprErrorKind::InvalidLiteral {
                        problem: "number is too large for a float".into(),
                    },
                    span,
                ));
            }
            ExprKind::Literal(Literal::Float(value))
        }
        Rule::duration => {
            let value = duration_value(pair.as_str()).map_err(|()| {
                ExprError::new(
                    ExprErrorKind::InvalidLiteral {
                        problem: "duration is too long".into(),
                    },
                    span,
                )
            })?;
            ExprKind::Literal(Literal::Duration(value))
        }
        Rule::string => ExprKind::Literal(Literal::String(string_value(pair)?)),
        rule => unreachable!("`operand` has no alternative {rule:?}"),
    };
    Ok(Parsed::new(kind, span))
}

/// The `expr`s inside `pair`, built, skipping punctuation and keywords.
fn exprs(pair: Pair<'_, Rule>, depth: usize) -> impl Iterator<Item = Result<Expr, ExprError>> + '_ {
    pair.into_inner()
        .filter(|inner| inner.as_rule() == Rule::expr)
        .map(move |expr| build(expr, depth).map(|parsed| parsed.expr))
}

fn ident(pair: &Pair<'_, Rule>) -> Ident {
    let span = span_of(pair);
    let text = pair.as_str();
    let name = text
        .strip_prefix('`')
        .and_then(|t| t.strip_suffix('`'))
        .unwrap_or(text);
    Ident {
        name: name.to_string(),
        span,
    }
}

/// The milliseconds of a duration the grammar accepted: number-unit pairs.
fn duration_value(text: &str) -> Result<Duration, ()> {
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let number: i64 = number.parse().map_err(|_| ())?;
        let millis = Duration::unit_millis(unit).expect("the grammar only accepts known units");
        total = number
            .checked_mul(millis)
            .and_then(|ms| total.checked_add(ms))
            .ok_or(())?;
        rest = after;
    }
    Ok(Duration::from_millis(total))
}

fn string_value(pair: Pair<'_, Rule>) -> Result<String, ExprError> {
    let mut value = String::new();
    for part in pair.into_inner() {
        match part.as_rule() {
            Rule::dq_text | Rule::sq_text => value.push_str(part.as_str()),
            Rule::escape => value.push(escape_value(&part)?),
            rule => unreachable!("`string` holds no {rule:?}"),
        }
    }
    Ok(value)
}

fn escape_value(pair: &Pair<'_, Rule>) -> Result<char, ExprError> {
    let text = pair.as_str();
    let invalid =
        |problem: String| ExprError::new(ExprErrorKind::InvalidLiteral { problem }, span_of(pair));
    Ok(match &text[1..] {
        "\"" => '"',
        "'" => '\'',
        "\\" => '\\',
        "n" => '\n',
        "r" => '\r',
        "t" => '\t',
        "0" => '\0',
        unicode if unicode.starts_with("u{") => {
            let hex = &unicode[2..unicode.len() - 1];
            u32::from_str_radix(hex, 16)
                .ok()
                .filter(|_| (1..=6).contains(&hex.len()))
                .and_then(char::from_u32)
                .ok_or_else(|| invalid(format!("`{text}` is not a Unicode character")))?
        }
        _ => {
            return Err(invalid(format!(
                "unknown escape `{text}`: use `\\\"`, `\\'`, `\\\\`, `\\n`, `\\r`, `\\t`, `\\0` or `\\u{{...}}`"
            )));
        }
    })
}

/// Turns pest's error into one that names tokens, not grammar rules.
fn syntax_error(error: &pest::error::Error<Rule>, text: &str) -> ExprError {
    let at = match error.location {
        InputLocation::Pos(at) | InputLocation::Span((at, _)) => at,
    };
    let found = found_at(text, at);
    let span = Span::new(at, at + found.len());
    let mut expected: Vec<&str> = match &error.variant {
        ErrorVariant::ParsingError { positives, .. } => positives
            .iter()
            .filter_map(|rule| describe(*rule))
            .collect(),
        ErrorVariant::CustomError { .. } => Vec::new(),
    };
    expected.sort_unstable();
    expected.dedup();
    // pest's own guard against running out of stack.
    if matches!(&error.variant, ErrorVariant::CustomError { message } if message.contains("limit reached"))
    {
        return ExprError::new(ExprErrorKind::TooDeep { limit: MAX_DEPTH }, span);
    }
    if expected.contains(&"the rest of the string") && found.is_empty() {
        return ExprError::new(ExprErrorKind::UnclosedString, Span::new(at, at));
    }
    let help = match found {
        "=" => Some("use `==` to compare".to_string()),
        "&" | "&&" => Some("use `and`".to_string()),
        "|" | "||" => Some("use `or`".to_string()),
        "!" if !text[at..].starts_with("!=") => Some("use `not`".to_string()),
        _ => None,
    };
    ExprError::new(
        ExprErrorKind::Syntax {
            expected: list(&expected),
            found: if found.is_empty() {
                "end of expression".to_string()
            } else {
                format!("`{found}`")
            },
            help,
        },
        span,
    )
}

/// The token at `at`: a word, a run of operator characters, or one character.
fn found_at(text: &str, at: usize) -> &str {
    let rest = text.get(at..).unwrap_or("");
    let Some(first) = rest.chars().next() else {
        return "";
    };
    let len = if first.is_alphanumeric() || first == '_' {
        rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len())
    } else if "=!<>&|".contains(first) {
        rest.find(|c: char| !"=!<>&|".contains(c))
            .unwrap_or(rest.len())
    } else {
        first.len_utf8()
    };
    &rest[..len]
}

/// What a grammar rule means to a user; `None` for rules they never need to
/// hear about.
fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::expr
        | Rule::conditional
        | Rule::group
        | Rule::call
        | Rule::name
        | Rule::plain_name
        | Rule::quoted_name
        | Rule::if_word
        | Rule::null
        | Rule::boolean
        | Rule::duration
        | Rule::float
        | Rule::integer
        | Rule::string
        | Rule::neg
        | Rule::not => "an expression",
        rule if binary_op(rule).is_some() => "an operator",
        Rule::field => "`.`",
        Rule::comma => "`,`",
        Rule::close => "`)`",
        Rule::then_word => "`then`",
        Rule::else_word => "`else`",
        Rule::EOI => "end of expression",
        Rule::unit => "a unit (`ms`, `s`, `m`, `h`, `d`)",
        Rule::escape | Rule::dq_text | Rule::sq_text => "the rest of the string",
        _ => return None,
    })
}

/// `a`, `a or b`, `a, b or c`.
fn list(items: &[&str]) -> String {
    match items {
        [] => "something else".to_string(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses and prints as an S-expression, to show the tree's shape.
    fn sexp(text: &str) -> String {
        fn go(expr: &Expr) -> String {
            match &expr.kind {
                ExprKind::Literal(literal) => literal.to_string(),
                ExprKind::Name(ident) => ident.name.clone(),
                ExprKind::Field(record, field) => format!("(. {} {})", go(record), field.name),
                ExprKind::Unary(UnaryOp::Neg, e) => format!("(neg {})", go(e)),
                ExprKind::Unary(UnaryOp::Not, e) => format!("(not {})", go(e)),
                ExprKind::Binary(op, l, r) => format!("({} {} {})", op.symbol(), go(l), go(r)),
                ExprKind::If(c, t, e) => format!("(if {} {} {})", go(c), go(t), go(e)),
                ExprKind::Call(f, args) => {
                    let args: Vec<_> = args.iter().map(go).collect();
                    format!("({} {})", f.name, args.join(" "))
                }
            }
        }
        go(&parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}")))
    }

    macro_rules! parses {
        ($($text:expr => $tree:expr,)*) => {
            $(assert_eq!(sexp($text), $tree, "parsing {:?}", $text);)*
        };
    }

    #[test]
    fn precedence() {
        parses! {
            "1 + 2 * 3" => "(+ 1 (* 2 3))",
            "(1 + 2) * 3" => "(* (+ 1 2) 3)",
            "a or b and c" => "(or a (and b c))",
            "not a == b" => "(not (== a b))",
            "not a and b" => "(and (not a) b)",
            "a + 1 < b * 2" => "(< (+ a 1) (* b 2))",
            "a == b and c != d or e" => "(or (and (== a b) (!= c d)) e)",
            "-a.b * c" => "(* (neg (. a b)) c)",
            "a.b.c" => "(. (. a b) c)",
            "lower(x).y" => "(. (lower x) y)",
        }
    }

    #[test]
    fn associativity() {
        parses! {
            "a - b - c" => "(- (- a b) c)",
            "a / b / c" => "(/ (/ a b) c)",
            "a or b or c" => "(or (or a b) c)",
            "a and b and c" => "(and (and a b) c)",
        }
    }

    #[test]
    fn unary_minus() {
        parses! {
            "-1" => "(neg 1)",
            "--x" => "(neg (neg x))",
            "a - -b" => "(- a (neg b))",
            "-a * b" => "(* (neg a) b)",
            "-(a + b)" => "(neg (+ a b))",
            "2 * -3s" => "(* 2 (neg 3s))",
        }
    }

    #[test]
    fn literals() {
        parses! {
            "null" => "null",
            "true" => "true",
            "42" => "42",
            "1.5" => "1.5",
            "2e3" => "2000.0",
            "250ms" => "250ms",
            "90s" => "1m30s",
            "1h30m" => "1h30m",
            r#""a\"b\\c\n\t\u{e9}""# => r#""a\"b\\c\n\té""#,
            "'it\\'s'" => r#""it's""#,
            r#""对账成功:""# => r#""对账成功:""#,
            "`order-id`" => "order-id",
            "订单号" => "订单号",
        }
    }

    #[test]
    fn conditionals_calls_and_comments() {
        parses! {
            "if a then b else c + 1" => "(if a b (+ c 1))",
            "if a then if b then 1 else 2 else 3" => "(if a (if b 1 2) 3)",
            "concat(a, \" \", b,)" => "(concat a \" \" b)",
            "coalesce()" => "(coalesce )",
            "a # the first\n + b # the second" => "(+ a b)",
            "order_id or orx" => "(or order_id orx)",
            "notify and android" => "(and notify android)",
        }
    }

    #[test]
    fn canonical_form_round_trips() {
        for text in [
            "a - (b - c)",
            "(a + b) * c",
            "-(a + b)",
            "not (a or b)",
            "a == (not b)",
            "(a < b) == c",
            "(if a then 1 else 2) + 3",
            "concat(\"对\\n\", app, if x then y else z)",
            "`order-id`.`the value` >= 1.5",
            "-5s + 1d",
            "a and not b",
        ] {
            let expr = parse(text).unwrap();
            assert_eq!(expr.to_string(), text, "canonical form of {text:?}");
            let reparsed = parse(&expr.to_string()).unwrap();
            assert_eq!(sexp(&reparsed.to_string()), sexp(text));
        }
    }

    fn error(text: &str) -> (String, Span) {
        let error = parse(text).unwrap_err();
        (error.message(), error.span)
    }

    #[test]
    fn syntax_errors_name_tokens_and_positions() {
        assert_eq!(
            error("a +"),
            (
                "expected an expression, found end of expression".into(),
                Span::new(3, 3)
            )
        );
        assert_eq!(
            error("a b"),
            (
                "expected `.`, an operator or end of expression, found `b`".into(),
                Span::new(2, 3)
            )
        );
        assert_eq!(error("lower(x").1, Span::new(7, 7));
        assert_eq!(error("a = b").1, Span::new(2, 3));
        assert_eq!(error("\"abc").1, Span::new(4, 4));
    }

    #[test]
    fn deep_expressions_are_refused_not_overflowed() {
        let cases = [
            format!("1{}", " + 1".repeat(20_000)),
            format!("{}1", "-".repeat(20_000)),
            format!("{}true", "not ".repeat(20_000)),
            format!("{}1{}", "lower(".repeat(3_000), ")".repeat(3_000)),
            format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000)),
            format!("a{}", ".b".repeat(3_000)),
        ];
        for text in cases {
            let error = parse(&text).unwrap_err();
            assert_eq!(
                error.message(),
                "expression is nested too deeply: more than 128 levels"
            );
        }
        assert!(parse(&format!("1{}", " + 1".repeat(100))).is_ok());
    }

    #[test]
    fn comparisons_do_not_chain() {
        let (message, span) = error("a < b < c");
        assert_eq!(message, "comparison operators cannot be chained");
        assert_eq!(span, Span::new(6, 7));
    }

    #[test]
    fn bad_literals_are_located() {
        assert_eq!(error("1 + 99999999999999999999").1, Span::new(4, 24));
        let (message, span) = error(r#"concat("a\qb")"#);
        assert!(message.contains("unknown escape `\\q`"), "{message}");
        assert_eq!(span, Span::new(9, 11));
        assert_eq!(error(r#""\u{110000}""#).1, Span::new(1, 11));
    }

    #[test]
    fn durations_alone() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_millis(120_000)));
        assert_eq!(
            parse_duration("1h30m250ms"),
            Ok(Duration::from_millis(5_400_250))
        );
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 s").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
    }
}
