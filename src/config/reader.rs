//! Typed reading of the node tree, collecting every problem.
//!
//! [`Reader`] turns nodes into config values and records a diagnostic for
//! each thing that is wrong, then carries on with the rest of the file, so
//! one run reports every unknown key, missing key and malformed value.

use super::expr_text::ExprText;
use super::node::{Node, Value};
use super::{Name, Spanned};
use crate::diagnostic::{Code, Diagnostic, Span, did_you_mean};
use crate::time::Duration;

/// Reads config values out of nodes, remembering what was wrong.
pub(super) struct Reader<'a> {
    /// The whole pipeline file, for expression offsets.
    file: &'a str,
    /// Everything found wrong so far.
    pub(super) diagnostics: Vec<Diagnostic>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(file: &'a str) -> Self {
        Self {
            file,
            diagnostics: Vec::new(),
        }
    }

    pub(super) fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// The entries of a mapping described as `what` ("source `app`"); `at` is
    /// where a missing key is reported: the key that owns the mapping.
    pub(super) fn map<'n>(&mut self, node: &'n Node, at: Span, what: &str) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.report(
                Diagnostic::error(
                    Code::WrongShape,
                    format!("{what} must be a mapping, found {}", node.value.describe()),
                    node.span,
                )
                .label("expected `key: value` lines here"),
            );
            return None;
        };
        let mut fields = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let Value::Str(name) = &key.value else {
                self.report(Diagnostic::error(
                    Code::WrongShape,
                    format!(
                        "keys of {what} must be names, found {}",
                        key.value.describe()
                    ),
                    key.span,
                ));
                continue;
            };
            if let Some((first, _, _)) = fields
                .iter()
                .find(|(_, n, _): &&(&Node, &str, &Node)| *n == name)
            {
                self.report(
                    Diagnostic::error(
                        Code::DuplicateKey,
                        format!("`{name}` is given twice in {what}"),
                        key.span,
                    )
                    .label("given again here")
                    .secondary(first.span, "first given here"),
                );
                continue;
            }
            fields.push((key, name.as_str(), value));
        }
        Some(Fields {
            what: what.to_string(),
            at,
            used: vec![false; fields.len()],
            known: Vec::new(),
            entries: fields,
        })
    }

    /// The items of a list described as `what`.
    pub(super) fn list<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        if let Value::List(items) = &node.value {
            return Some(items);
        }
        self.report(Diagnostic::error(
            Code::WrongShape,
            format!("{what} must be a list, found {}", node.value.describe()),
            node.span,
        ));
        None
    }

    /// A string value.
    pub(super) fn string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        if let Value::Str(text) = &node.value {
            return Some(Spanned {
                value: text.clone(),
                span: node.span,
            });
        }
        self.report(Diagnostic::error(
            Code::WrongShape,
            format!("{what} must be a string, found {}", node.value.describe()),
            node.span,
        ));
        None
    }

    /// The text of a scalar: a string as it is, a number or boolean as
    /// written; `expected` says what else was wanted ("an expression").
    pub(super) fn scalar_text(
        &mut self,
        node: &Node,
        what: &str,
        expected: &str,
    ) -> Option<Spanned<String>> {
        let text = match &node.value {
            Value::Str(text) => text.clone(),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                self.file[node.span.start..node.span.end].to_string()
            }
            other => {
                self.report(Diagnostic::error(
                    Code::WrongShape,
                    format!("{what} must be {expected}, found {}", other.describe()),
                    node.span,
                ));
                return None;
            }
        };
        Some(Spanned {
            value: text,
            span: node.span,
        })
    }

    /// A name chosen by the user: an identifier. A source's name is also how
    /// expressions refer to its records, so it may not be reserved
    /// (`in_expressions`).
    pub(super) fn name(
        &mut self,
        key: &Node,
        name: &str,
        what: &str,
        in_expressions: bool,
    ) -> Option<Name> {
        let (problem, help) = if !crate::expr::is_identifier(name) {
            (
                "is not an identifier",
                "names are made of letters, digits and `_`, and do not start with a digit"
                    .to_string(),
            )
        } else if in_expressions && crate::expr::is_reserved(name) {
            (
                "is reserved in expressions",
                format!(
                    "expressions refer to a {what} by its name, so it cannot be a keyword (`and`, `if`, `null`, \
                     ...) or a variable of templates (`key`, `missing`, `expired`, `failed`, `side`, `of`, \
                     `arrived`, `deadline`)"
                ),
            )
        } else {
            return Some(Spanned {
                value: name.to_string(),
                span: key.span,
            });
        };
        self.report(
            Diagnostic::error(
                Code::InvalidName,
                format!("{what} name `{name}` {problem}"),
                key.span,
            )
            .label("rename it")
            .help(help),
        );
        None
    }

    /// One of `choices`, returned as its index.
    pub(super) fn choice(
        &mut self,
        node: &Node,
        what: &str,
        choices: &[&str],
    ) -> Option<Spanned<usize>> {
        let text = self.string(node, what)?;
        if let Some(index) = choices.iter().position(|c| *c == text.value) {
            return Some(Spanned {
                value: index,
                span: text.span,
            });
        }
        let expected = match choices {
            [only] => format!("`{only}`"),
            _ => format!(
                "one of {}",
                choices
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let help = did_you_mean(&text.value, choices.iter().copied())
            .map(|s| format!("did you mean `{s}`?"));
        self.report(
            Diagnostic::error(
                Code::InvalidChoice,
                format!("unknown {what} `{}`", text.value),
                text.span,
            )
            .label(format!("expected {expected}"))
            .help(help),
        );
        None
    }

    /// `true` or `false`.
    pub(super) fn boolean(&mut self, node: &Node, what: &str) -> Option<Spanned<bool>> {
        if let Value::Bool(value) = node.value {
            return Some(Spanned {
                value,
                span: node.span,
            });
        }
        self.report(Diagnostic::error(
            Code::WrongShape,
            format!(
                "{what} must be `true` or `false`, found {}",
                node.value.describe()
            ),
            node.span,
        ));
        None
    }

    /// A duration such as `5s`.
    pub(super) fn duration(&mut self, node: &Node, what: &str) -> Option<Spanned<Duration>> {
        let text = match &node.value {
            Value::Str(text) => text.clone(),
            Value::Int(n) => n.to_string(),
            other => {
                self.report(Diagnostic::error(
                    Code::InvalidDuration,
                    format!(
                        "{what} must be a duration such as `5s`, found {}",
                        other.describe()
                    ),
                    node.span,
                ));
                return None;
            }
        };
        match crate::expr::parse_duration(&text) {
            Ok(duration) => Some(Spanned {
                value: duration,
                span: node.span,
            }),
            Err(problem) => {
                let help = text
                    .chars()
                    .all(|c| c.is_ascii_digit())
                    .then(|| format!("durations need a unit: `{text}ms`, `{text}s`, `{text}m`, `{text}h` or `{text}d`"))
                    .or_else(|| Some("write a number and a unit: `250ms`, `5s`, `2m`, `1h30m`, `1d`".to_string()));
                self.report(
                    Diagnostic::error(
                        Code::InvalidDuration,
                        format!("invalid duration `{text}` for {what}"),
                        node.span,
                    )
                    .label(problem)
                    .help(help),
                );
                None
            }
        }
    }

    /// Expression text. Plain numbers and booleans are expressions too; their
    /// text is taken as written.
    pub(super) fn expr(&mut self, node: &Node, what: &str) -> Option<ExprText> {
        let text = self.scalar_text(node, what, "an expression")?;
        Some(ExprText::new(text.value, text.span, self.file))
    }
}

/// The entries of one mapping, taken by name; what is not taken is unknown.
pub(super) struct Fields<'n> {
    /// The mapping, for messages: "source `app`".
    what: String,
    /// Where to report a missing key.
    at: Span,
    /// Key node, key text and value node, in the order written.
    entries: Vec<(&'n Node, &'n str, &'n Node)>,
    /// Which entries were taken.
    used: Vec<bool>,
    /// Every key asked for, for "did you mean".
    known: Vec<&'static str>,
}

impl<'n> Fields<'n> {
    /// The key node and value of `key`, if present.
    pub(super) fn optional(&mut self, key: &'static str) -> Option<(&'n Node, &'n Node)> {
        self.known.push(key);
        let index = self.entries.iter().position(|(_, name, _)| *name == key)?;
        self.used[index] = true;
        Some((self.entries[index].0, self.entries[index].2))
    }

    /// The key node and value of `key`, reported if missing.
    pub(super) fn required(
        &mut self,
        reader: &mut Reader<'_>,
        key: &'static str,
    ) -> Option<(&'n Node, &'n Node)> {
        let value = self.optional(key);
        if value.is_none() {
            reader.report(
                Diagnostic::error(
                    Code::MissingKey,
                    format!("{} is missing `{key}`", self.what),
                    self.at,
                )
                .label(format!("`{key}` is required here")),
            );
        }
        value
    }

    /// Every entry, in the order written: for mappings whose keys are names
    /// chosen by the user.
    pub(super) fn all(&mut self) -> impl Iterator<Item = (&'n Node, &'n str, &'n Node)> + '_ {
        self.used.iter_mut().for_each(|used| *used = true);
        self.entries.iter().copied()
    }

    /// Reports every key that was not taken.
    pub(super) fn finish(self, reader: &mut Reader<'_>) {
        for (index, (key, name, _)) in self.entries.iter().enumerate() {
            if self.used[index] {
                continue;
            }
            let help = match did_you_mean(name, self.known.iter().copied()) {
                Some(suggestion) => format!("did you mean `{suggestion}`?"),
                None => format!(
                    "{} takes {}",
                    self.what,
                    self.known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            reader.report(
                Diagnostic::error(
                    Code::UnknownKey,
                    format!("unknown key `{name}` in {}", self.what),
                    key.span,
                )
                .label("not part of the pipeline format")
                .help(help),
            );
        }
    }
}
