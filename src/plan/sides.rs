//! The sides of the match: `connect` resolved against `sources`, and the
//! wait rule of each side.

use super::build::Builder;
use crate::config::{Connect, ConnectConfig, ExprText, SourceConfig, Spanned, WaitConfig};
use crate::diagnostic::{Code, Diagnostic, Span, did_you_mean};
use crate::expr::SideScope;
use crate::time::Duration;

/// The most sources one match connects: the match operator keeps a
/// member's side in a byte.
pub(crate) const MAX_SIDES: usize = u8::MAX as usize + 1;

/// A connected source before its expressions are compiled.
pub(super) struct Connected<'p> {
    /// The source's config.
    pub(super) config: &'p SourceConfig,
    /// Its entry in `connect`.
    pub(super) entry: &'p ConnectConfig,
    /// Its key expression, if it could be read.
    pub(super) key: Option<&'p ExprText>,
    /// Its wait and where that is written, once the rules are applied.
    pub(super) wait: Option<Spanned<Duration>>,
}

/// The resolved sides. Conditions and templates name the sides and read
/// their fields, so they are checked only when every side `connect` names
/// has a schema (`complete`): with one missing, every mention of it would
/// be one more false error.
pub(super) struct Sides<'p> {
    /// The sides whose source could be read completely.
    pub(super) connected: Vec<Connected<'p>>,
    /// Every side with a readable schema, as expressions see it.
    pub(super) scopes: Vec<SideScope>,
    pub(super) complete: bool,
    /// Declared sources that an unknown name in `connect` is a near miss
    /// of: most likely meant, so not reported as unconnected again.
    pub(super) meant: Vec<String>,
}

impl<'p> Builder<'p> {
    /// Resolves `connect`: reports sources that are not declared, too few
    /// sides, and declared sources that are never connected.
    pub(super) fn sides(&mut self) -> Sides<'p> {
        let pipeline = self.pipeline;
        let Some(connect) = &pipeline.connect else {
            return Sides {
                connected: Vec::new(),
                scopes: Vec::new(),
                complete: false,
                meant: Vec::new(),
            };
        };
        let mut connected = Vec::new();
        let mut scopes = Vec::new();
        let mut complete = true;
        let mut meant = Vec::new();
        for entry in &connect.sides {
            let name = &entry.source;
            match pipeline.sources.schema(&name.value) {
                Some(layout) => {
                    scopes.push(SideScope {
                        name: name.value.clone(),
                        layout: layout.clone(),
                        nullable: false,
                    });
                }
                None => complete = false,
            }
            if let Some(config) = pipeline
                .sources
                .items
                .iter()
                .find(|s| s.name.value == name.value)
            {
                connected.push(Connected {
                    config,
                    entry,
                    key: entry.key.as_ref(),
                    wait: None,
                });
                continue;
            }
            // A declared source that could not be read was reported already.
            if !pipeline.sources.declares(&name.value) {
                let declared = pipeline
                    .sources
                    .names
                    .iter()
                    .flatten()
                    .map(|n| n.value.as_str());
                if let Some(near) = did_you_mean(&name.value, declared) {
                    meant.push(near.to_string());
                }
                let diagnostic = self.unknown_source(&name.value, name.span);
                self.report(diagnostic);
            }
        }
        self.side_count(connect);
        for name in pipeline.sources.names.iter().flatten() {
            let connected = connect
                .sides
                .iter()
                .any(|entry| entry.source.value == name.value);
            if !connected && !meant.contains(&name.value) {
                self.report(
                    Diagnostic::error(
                        Code::UnusedSource,
                        format!("source `{}` is declared but never connected", name.value),
                        name.span,
                    )
                    .label("not listed in `connect`")
                    .secondary(connect.span, "the connected sources are listed here")
                    .help(format!(
                        "connect it with its key (`{}: <key>`), or remove it",
                        name.value
                    )),
                );
            }
        }
        Sides {
            connected,
            scopes,
            complete,
            meant,
        }
    }

    /// Applies the wait rules to the sides; reports a side without a rule
    /// and a rule for a source that is not connected.
    pub(super) fn waits(&mut self, sides: &mut Sides<'p>) {
        let pipeline = self.pipeline;
        let Some(matching) = &pipeline.matching else {
            return;
        };
        let rules = match &matching.wait {
            WaitConfig::Missing => return,
            WaitConfig::All(wait) => {
                sides
                    .connected
                    .iter_mut()
                    .for_each(|side| side.wait = Some(*wait));
                return;
            }
            WaitConfig::PerSide(rules) => rules,
        };
        let connect = pipeline.connect.as_ref();
        for (name, wait) in rules {
            if let Some(side) = sides
                .connected
                .iter_mut()
                .find(|side| side.config.name.value == name.value)
            {
                side.wait = *wait;
                continue;
            }
            let Some(connect) = connect else { continue };
            if connect
                .sides
                .iter()
                .any(|entry| entry.source.value == name.value)
            {
                // Connected, but the source could not be read: reported.
                continue;
            }
            if sides.meant.contains(&name.value) {
                // `connect` misspells it: reported there.
            } else if pipeline.sources.declares(&name.value) {
                self.report(
                    Diagnostic::error(
                        Code::WaitRule,
                        format!("wait rule for `{}`, which is not connected", name.value),
                        name.span,
                    )
                    .label("not listed in `connect`")
                    .secondary(connect.span, "the connected sources are listed here"),
                );
            } else {
                let diagnostic = self.unknown_source(&name.value, name.span);
                self.report(diagnostic);
            }
        }
        for side in &sides.connected {
            let has_rule = rules
                .iter()
                .any(|(name, _)| name.value == side.config.name.value);
            if !has_rule {
                let name = &side.config.name.value;
                self.report(
                    Diagnostic::error(
                        Code::WaitRule,
                        format!("`{name}` has no wait rule"),
                        side.entry.source.span,
                    )
                    .label("connected here")
                    .secondary(matching.span, "wait rules are listed under `match.wait`")
                    .help(format!(
                        "add `{name}: 5s` (or the right wait) under `match.wait`"
                    )),
                );
            }
        }
    }

    /// Reports a `connect` with fewer sides than a match needs or more
    /// than it takes.
    fn side_count(&mut self, connect: &Connect) {
        if let Some(beyond) = connect.sides.get(MAX_SIDES) {
            self.report(Diagnostic::error(
                Code::SideCount,
                format!(
                    "`connect` names {} sources; a match takes at most {MAX_SIDES}",
                    connect.sides.len()
                ),
                beyond.source.span,
            ));
        }
        if connect.sides.len() < 2 {
            self.report(
                Diagnostic::error(
                    Code::SideCount,
                    if connect.sides.is_empty() {
                        "`connect` names no sources; matching needs at least two".to_string()
                    } else {
                        "`connect` names only one source; matching needs at least two".to_string()
                    },
                    connect.span,
                )
                .help(
                    "list each source to match with its key expression, e.g. `app: order_id`"
                        .to_string(),
                ),
            );
        }
    }

    /// An unknown source name, with the closest declared one or the list.
    fn unknown_source(&self, name: &str, span: Span) -> Diagnostic {
        let declared: Vec<&str> = self
            .pipeline
            .sources
            .names
            .iter()
            .flatten()
            .map(|name| name.value.as_str())
            .collect();
        let help = did_you_mean(name, declared.iter().copied()).map_or_else(
            || {
                format!(
                    "the declared sources are {}",
                    declared
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            |s| format!("did you mean `{s}`?"),
        );
        Diagnostic::error(
            Code::UnknownSource,
            format!("unknown source `{name}`"),
            span,
        )
        .label("not declared under `sources`")
        .help(help)
    }
}
