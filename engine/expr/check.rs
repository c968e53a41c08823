//! The checks a template gets when it is compiled, so that `etl validate` finds mistakes
//! before a run: syntax errors, unknown filters and unknown variables or step references, each
//! with its position inside the template text.

use std::collections::BTreeSet;

use minijinja::machinery::{Token, tokenize};
use minijinja::syntax::SyntaxConfig;

use super::filter_table;
use super::template::{CompileError, error_text};
use crate::syntax::diag::{did_you_mean, unknown_message};

/// minijinja's builtin filters (its `builtins` feature), for the "unknown filter" check.
const BUILTIN_FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "urlencode",
    "zip",
];

/// (line, col) 0-based of a byte offset.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count();
    let col = before.rsplit('\n').next().unwrap_or("").chars().count();
    (line, col)
}

pub(super) fn syntax_error(source: &str, e: &minijinja::Error, offset: usize) -> CompileError {
    let at = e.range().map(|r| r.start + offset).unwrap_or(offset);
    let (line, col) = line_col(source, at);
    CompileError {
        line,
        col,
        len: e.range().map(|r| r.len()).unwrap_or(1),
        message: format!("template syntax error: {}", error_text(e)),
    }
}

pub(super) fn unknown_filters(source: &str) -> Vec<CompileError> {
    let mut errors = Vec::new();
    let mut after_pipe = false;
    for (token, span) in tokenize(source, false, SyntaxConfig::default()).flatten() {
        if after_pipe && let Token::Ident(name) = token {
            let known = BUILTIN_FILTERS.contains(&name) || filter_table::is_ours(name);
            if !known {
                let mut all: Vec<&str> = BUILTIN_FILTERS.to_vec();
                all.extend(filter_table::names());
                let (line, col) = line_col(source, span.start_offset as usize);
                let suggestion = unknown_message("filter", name, &[]);
                let message = match did_you_mean(name, all) {
                    Some(s) => format!("unknown filter `{name}` (did you mean `{s}`?)"),
                    None => suggestion,
                };
                errors.push(CompileError {
                    line,
                    col,
                    len: name.len(),
                    message,
                });
            }
        }
        after_pipe = matches!(token, Token::Pipe);
    }
    errors
}

pub(super) fn unknown_variables(
    source: &str,
    vars: BTreeSet<String>,
    roots: &[&str],
    steps: &[String],
) -> Vec<CompileError> {
    let mut errors = Vec::new();
    let locate = |name: &str| {
        let at = source.find(name).unwrap_or(0);
        line_col(source, at)
    };
    for var in vars {
        let mut parts = var.split('.');
        let root = parts.next().unwrap_or_default();
        if !roots.contains(&root) {
            let (line, col) = locate(root);
            errors.push(CompileError {
                line,
                col,
                len: root.len(),
                message: unknown_message("variable", root, roots),
            });
        } else if root == "steps"
            && let Some(step) = parts.next()
            && !steps.iter().any(|s| s == step)
        {
            let (line, col) = locate(&var);
            let known: Vec<&str> = steps.iter().map(String::as_str).collect();
            let message = match did_you_mean(step, known.iter().copied()) {
                Some(s) => format!("unknown step reference `{step}` (did you mean `{s}`?)"),
                None => format!(
                    "unknown step reference `{step}`: no step with this id comes before this point"
                ),
            };
            errors.push(CompileError {
                line,
                col,
                len: var.len(),
                message,
            });
        }
    }
    errors
}

/// One use of `settings.<name>` (or `settings['<name>']`) in a template.
struct SettingUse {
    name: String,
    offset: usize,
    /// Tested for (`is defined`, `is none`...) or given a fallback (`| default(...)`).
    optional: bool,
}

/// The top-level settings a template uses, in order, and whether each use allows the setting
/// to be absent. `settings` after a `.` is someone's attribute, not the root.
fn setting_uses(source: &str) -> Vec<SettingUse> {
    let tokens: Vec<(Token, usize)> = tokenize(source, false, SyntaxConfig::default())
        .flatten()
        .map(|(t, span)| (t, span.start_offset as usize))
        .collect();
    let mut uses = Vec::new();
    for i in 0..tokens.len() {
        let is_root = matches!(tokens[i].0, Token::Ident("settings"))
            && !(i > 0 && matches!(tokens[i - 1].0, Token::Dot));
        if !is_root {
            continue;
        }
        let (name, offset, mut end) =
            match (tokens.get(i + 1), tokens.get(i + 2), tokens.get(i + 3)) {
                (Some((Token::Dot, _)), Some((Token::Ident(n), at)), _) => {
                    (n.to_string(), *at, i + 3)
                }
                (
                    Some((Token::BracketOpen, _)),
                    Some((Token::Str(n), at)),
                    Some((Token::BracketClose, _)),
                ) => (n.to_string(), *at + 1, i + 4),
                _ => continue,
            };
        // Past the rest of the chain (`.a`, `[x]`, `(...)`) to what the value meets next.
        let mut depth = 0usize;
        while let Some((token, _)) = tokens.get(end) {
            match token {
                Token::BracketOpen | Token::ParenOpen => depth += 1,
                Token::BracketClose | Token::ParenClose if depth > 0 => depth -= 1,
                Token::Dot if depth == 0 => end += 1, // and the attribute after it
                _ if depth > 0 => {}
                _ => break,
            }
            end += 1;
        }
        let next: Vec<&Token> = tokens[end.min(tokens.len())..]
            .iter()
            .take(3)
            .map(|(t, _)| t)
            .collect();
        let optional = match next.as_slice() {
            [
                Token::Ident("is"),
                Token::Ident("not"),
                Token::Ident(test),
                ..,
            ]
            | [Token::Ident("is"), Token::Ident(test), ..] => {
                matches!(*test, "defined" | "undefined" | "none")
            }
            [Token::Pipe, Token::Ident("default" | "d"), ..] => true,
            _ => false,
        };
        uses.push(SettingUse {
            name,
            offset,
            optional,
        });
    }
    uses
}

/// Settings a template uses that the pipeline does not declare. A setting the template tests
/// for or gives a default anywhere (`settings.x is defined`, `settings.x | default(...)`) may
/// be absent.
pub(super) fn unknown_settings(source: &str, declared: &[String]) -> Vec<CompileError> {
    let uses = setting_uses(source);
    let optional: Vec<String> = uses
        .iter()
        .filter(|u| u.optional)
        .map(|u| u.name.clone())
        .collect();
    let known: Vec<&str> = declared.iter().map(String::as_str).collect();
    let mut errors: Vec<CompileError> = Vec::new();
    for u in &uses {
        if known.contains(&u.name.as_str()) || optional.contains(&u.name) {
            continue;
        }
        let (line, col) = line_col(source, u.offset);
        let message = if known.is_empty() {
            format!(
                "unknown setting `{}`: the pipeline declares no `settings:`",
                u.name
            )
        } else {
            unknown_message("setting", &u.name, &known)
        };
        errors.push(CompileError {
            line,
            col,
            len: u.name.len(),
            message,
        });
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(source: &str) -> Vec<String> {
        let declared = vec!["status_field".to_string(), "fields".to_string()];
        let errors = unknown_settings(source, &declared);
        errors.into_iter().map(|e| e.message).collect()
    }

    #[test]
    fn undeclared_settings_are_errors_unless_tested_for() {
        assert_eq!(
            check("{{ settings.status_feild }}"),
            ["unknown setting `status_feild` (did you mean `status_field`?)"]
        );
        assert!(
            check("{{ source[settings.fields.products] }} {{ settings['status_field'] }}")
                .is_empty()
        );
        let errors = check(
            "{% if settings.flag is defined %}{{ settings.flag }}{% endif %}{{ settings.label | default('x') }}{{ settings.x.y is not none }}",
        );
        assert!(errors.is_empty(), "{errors:?}");
        // `settings` as someone's attribute is not the root.
        assert!(check("{{ record.settings.anything }}").is_empty());
        assert_eq!(check("{{ settings['nope'] }}").len(), 1);
    }
}
