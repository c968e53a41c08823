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
