//! What a pipeline file gets from outside before it is read: `--set` overrides and
//! `${env:...}` / `${secret:...}` references, each problem located in the file.

use std::collections::HashMap;
use std::sync::Arc;

use crate::secrets;
use crate::syntax::diag::{Diagnostic, unknown_message};
use crate::syntax::node::{self, Filled, Kind, Node, Pos, Span, Style};

/// `settings.department_ids=[2, 3]`: the value is YAML, placed at the dotted path.
pub fn apply_set(root: &mut Node, key: &str, value: &str) -> Result<(), Diagnostic> {
    // What `--set` adds has no place in the file: its problems name the override instead.
    let origin: Arc<str> = Arc::from(format!("--set {key}").as_str());
    let value_node = node::parse(value, &origin).map_err(|e| {
        Diagnostic::at_pos(&origin, Pos { line: 0, col: 0 }, 1, e[0].message.clone())
    })?;
    let mut at = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !matches!(at.kind, Kind::Map(_)) {
            if matches!(at.kind, Kind::Null) {
                at.kind = Kind::Map(Vec::new());
            } else {
                return Err(Diagnostic::at(
                    at,
                    format!("--set {key}: `{}` is not a mapping", parts[..i].join(".")),
                ));
            }
        }
        let Kind::Map(entries) = &mut at.kind else {
            unreachable!()
        };
        let pos = match entries.iter().position(|(k, _)| k.key_text() == *part) {
            Some(p) => p,
            None => {
                let span = Span::default();
                entries.push((
                    Node::new(Kind::Str(part.to_string()), span, origin.clone()),
                    Node::new(Kind::Null, span, origin.clone()),
                ));
                entries.len() - 1
            }
        };
        at = &mut entries[pos].1;
    }
    let mut replacement = Node::from_json(&value_node.to_json(), at.span, at.file.clone());
    replacement.style = at.style;
    *at = replacement;
    Ok(())
}

/// How `${env:...}` references are filled.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum EnvMode {
    /// From the overrides, then the process environment; a missing variable is an error.
    Resolve,
    /// Not at all (`etl validate --no-env`): references are checked for their syntax only, and
    /// the values they stand for are not judged.
    SyntaxOnly,
}

/// Replace `${env:NAME}`, `${secret:NAME}` and `${env:NAME:-default}` in every string value.
/// A value filled from the environment is marked so (it may then be read as a number); one
/// that could not be filled is marked unresolved (under `--no-env` it keeps its text), so that
/// its absence is the one error reported about it.
pub fn resolve_env(
    root: &mut Node,
    overrides: &HashMap<String, String>,
    mode: EnvMode,
    diagnostics: &mut Vec<Diagnostic>,
) {
    root.for_each_str_mut(&mut |text, node| {
        if !text.contains("${") {
            return;
        }
        let mut out = String::new();
        let mut rest = text.as_str();
        let mut consumed = 0usize;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let written = &rest[start..start + end + 1];
            let reference = &rest[start + 2..start + end];
            let outcome = match parse_reference(reference) {
                Ok(None) => Ok(None),
                Ok(Some(_)) if mode == EnvMode::SyntaxOnly => {
                    node.filled = Filled::Unresolved;
                    Ok(None)
                }
                Ok(Some(parsed)) => resolve_reference(reference, parsed, overrides),
                Err(message) => Err(message),
            };
            match outcome {
                Ok(Some(value)) => {
                    out.push_str(&value);
                    if node.filled == Filled::Written {
                        node.filled = Filled::FromEnv;
                    }
                }
                Ok(None) => out.push_str(written),
                Err(message) => {
                    // Nothing stands in: a component may register its text as a secret.
                    node.filled = Filled::Unresolved;
                    let pos = pos_in_text(node, &text[..consumed + start]);
                    diagnostics.push(Diagnostic::at_pos(&node.file, pos, end + 1, message));
                }
            }
            consumed += start + end + 1;
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        if node.filled == Filled::FromEnv && node.style == Style::Plain && is_one_reference(text) {
            node.kind = typed_like_yaml(&out);
        }
        *text = out;
    });
}

/// `${env:T}` and nothing else around it.
fn is_one_reference(text: &str) -> bool {
    let t = text.trim();
    t.starts_with("${") && t.find('}') == Some(t.len() - 1)
}

/// An unquoted value that is exactly one reference reads as YAML would read the value written
/// in its place (`timeout_secs: ${env:T}` with T=45 is the number 45; quote the reference to
/// keep text). Only values that print back the same become numbers: "007" stays text.
fn typed_like_yaml(value: &str) -> Kind {
    let same = |printed: String| printed == value;
    match value {
        "true" => Kind::Bool(true),
        "false" => Kind::Bool(false),
        _ => match (value.parse::<i64>(), value.parse::<f64>()) {
            (Ok(i), _) if same(i.to_string()) => Kind::Int(i),
            (Err(_), Ok(f)) if f.is_finite() && same(f.to_string()) => Kind::Float(f),
            _ => Kind::Null,
        },
    }
}

/// Where the text `before` ends inside the scalar `node`.
fn pos_in_text(node: &Node, before: &str) -> Pos {
    let line = before.matches('\n').count();
    let col = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count();
    node.pos_in_scalar(line, col)
}

/// A reference taken apart: its kind (`env`, `secret`), the variable, the default.
struct Reference<'a> {
    kind: &'a str,
    name: &'a str,
    default: Option<&'a str>,
}

/// `Ok(None)` leaves the text alone (not one of our references); a reference of ours whose
/// name is not a variable name is an error.
fn parse_reference(reference: &str) -> Result<Option<Reference<'_>>, String> {
    let (kind, rest) = match reference.split_once(':') {
        Some((k @ ("env" | "secret"), rest)) => (k, rest),
        _ => return Ok(None),
    };
    let (name, default) = match rest.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (rest, None),
    };
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`${{{reference}}}` does not name an environment variable; write ${{{kind}:NAME}} or ${{{kind}:NAME:-default}} (letters, digits and _)"
        ));
    }
    Ok(Some(Reference {
        kind,
        name,
        default,
    }))
}

fn resolve_reference(
    written: &str,
    reference: Reference<'_>,
    overrides: &HashMap<String, String>,
) -> Result<Option<String>, String> {
    let Reference {
        kind,
        name,
        default,
    } = reference;
    let value = overrides
        .get(name)
        .cloned()
        .or_else(|| std::env::var(name).ok().filter(|v| !v.is_empty()));
    let value = match (value, default) {
        (Some(v), _) => v,
        (None, Some(d)) => d.to_string(),
        (None, None) => {
            return Err(format!(
                "environment variable {name} is not set (referenced as ${{{written}}})"
            ));
        }
    };
    if kind == "secret" || secrets::is_secret_name(name) {
        secrets::register(&value);
    }
    secrets::register_url(&value);
    Ok(Some(value))
}

/// The names under `settings:` as written in the file (before `--set`).
pub fn declared_settings(root: &Node) -> Vec<String> {
    root.get("settings")
        .and_then(Node::as_map)
        .map(|entries| entries.iter().map(|(k, _)| k.key_text()).collect())
        .unwrap_or_default()
}

/// `--set settings.x=...` must name a setting the file declares or mentions somewhere
/// (`settings.x is defined` in a template, `days_ago(settings.x)` in a table expression): a
/// misspelt override would otherwise be ignored and the run go on with the value it meant to
/// change. Reported at the file's `settings:` (at 1:1 when it has none).
pub fn check_set_settings(
    root: &Node,
    text: &str,
    file: &str,
    sets: &[(String, String)],
    declared: &[String],
    diagnostics: &mut Vec<Diagnostic>,
) {
    for name in set_setting_names(sets) {
        if declared.contains(&name) || mentions_setting(text, &name) {
            continue;
        }
        let known: Vec<&str> = declared.iter().map(String::as_str).collect();
        let problem = if known.is_empty() {
            format!("unknown setting `{name}`: the pipeline declares no `settings:`")
        } else {
            unknown_message("setting", &name, &known)
        };
        let key = sets
            .iter()
            .map(|(k, _)| k.as_str())
            .find(|k| set_setting_name(k) == Some(name.as_str()))
            .unwrap_or_default();
        let message = format!("--set {key}: {problem}");
        diagnostics.push(match root.key("settings") {
            Some(at) if at.span.start.line > 0 => Diagnostic::at(at, message),
            _ => Diagnostic::at_pos(&Arc::from(file), Pos { line: 1, col: 1 }, 1, message),
        });
    }
}

/// `settings.a.b` -> `a`.
fn set_setting_name(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("settings.")?;
    rest.split('.').next()
}

/// The top-level settings `--set` gives values to.
pub fn set_setting_names(sets: &[(String, String)]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (key, _) in sets {
        if let Some(name) = set_setting_name(key)
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_string());
        }
    }
    names
}

/// Whether the file's text uses `settings.<name>` (or `settings['<name>']`) anywhere.
fn mentions_setting(text: &str, name: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let dotted = format!("settings.{name}");
    let dotted_use = text.match_indices(&dotted).any(|(at, _)| {
        let before_ok = !text[..at].chars().next_back().is_some_and(ident);
        let after_ok = !text[at + dotted.len()..].chars().next().is_some_and(ident);
        before_ok && after_ok
    });
    dotted_use
        || text.contains(&format!("settings['{name}']"))
        || text.contains(&format!("settings[\"{name}\"]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_references_resolve_and_missing_ones_are_located() {
        let mut root = node::parse(
            "a: x-${env:ETL_TEST_SURELY_UNSET}\nb: ${env:ETL_TEST_X:-dflt}\n",
            "p.yaml",
        )
        .unwrap();
        let mut diags = Vec::new();
        resolve_env(&mut root, &HashMap::new(), EnvMode::Resolve, &mut diags);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].span.start, Pos { line: 1, col: 6 });
        assert!(
            diags[0]
                .message
                .contains("ETL_TEST_SURELY_UNSET is not set")
        );
        assert_eq!(root.get("b").unwrap().as_str(), Some("dflt"));
    }

    #[test]
    fn a_whole_unquoted_reference_reads_as_yaml_would() {
        // SAFETY: a variable of this test's own; no other test reads it.
        unsafe { std::env::set_var("ETL_TEST_OVERRIDES_N", "45") };
        let mut root = node::parse(
            "a: ${env:ETL_TEST_OVERRIDES_N}\nb: \"${env:ETL_TEST_OVERRIDES_N}\"\nc: x${env:ETL_TEST_OVERRIDES_N}\nd: ${env:ETL_TEST_OVERRIDES_Z:-007}\n",
            "p.yaml",
        )
        .unwrap();
        resolve_env(
            &mut root,
            &HashMap::new(),
            EnvMode::Resolve,
            &mut Vec::new(),
        );
        assert!(matches!(root.get("a").unwrap().kind, Kind::Int(45)));
        assert_eq!(root.get("b").unwrap().as_str(), Some("45"));
        assert_eq!(root.get("c").unwrap().as_str(), Some("x45"));
        assert_eq!(root.get("d").unwrap().as_str(), Some("007"));
    }

    #[test]
    fn set_overrides_parse_yaml() {
        let mut root = node::parse("settings:\n  ids: [1]\n", "p.yaml").unwrap();
        apply_set(&mut root, "settings.ids", "[2, 3]").unwrap();
        apply_set(&mut root, "settings.new", "x").unwrap();
        assert_eq!(
            root.get("settings").unwrap().to_json(),
            serde_json::json!({"ids": [2, 3], "new": "x"})
        );
    }

    #[test]
    fn a_setting_is_mentioned_by_its_dotted_or_indexed_name() {
        let text = "settings: {a: 1}\n# --set settings.c=1\nx: \"{{ settings.b is defined }}\"\n";
        assert!(mentions_setting(text, "b"));
        assert!(mentions_setting(text, "c"));
        assert!(!mentions_setting(text, "d"));
        assert!(!mentions_setting("{{ settings.bb }}", "b"));
    }
}
