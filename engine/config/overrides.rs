//! What a pipeline file gets from outside before it is read: `--set` overrides and
//! `${env:...}` / `${secret:...}` references, each problem located in the file.

use std::collections::HashMap;
use std::sync::Arc;

use crate::secrets;
use crate::syntax::diag::Diagnostic;
use crate::syntax::node::{self, Kind, Node, Pos, Span};

/// `settings.department_ids=[2, 3]`: the value is YAML, placed at the dotted path.
pub fn apply_set(root: &mut Node, key: &str, value: &str) -> Result<(), Diagnostic> {
    let origin: Arc<str> = Arc::from("--set");
    let value_node = node::parse(value, &format!("--set {key}")).map_err(|e| {
        Diagnostic::at_pos(
            &origin,
            Pos { line: 1, col: 1 },
            1,
            format!("--set {key}: {}", e[0].message),
        )
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

/// Replace `${env:NAME}`, `${secret:NAME}` and `${env:NAME:-default}` in every string value.
pub fn resolve_env(
    root: &mut Node,
    overrides: &HashMap<String, String>,
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
            let reference = &rest[start + 2..start + end];
            let at_char = text[..consumed + start].chars().count();
            match resolve_reference(reference, overrides) {
                Ok(Some(value)) => out.push_str(&value),
                Ok(None) => out.push_str(&rest[start..start + end + 1]),
                Err(message) => {
                    let before = &text[..consumed + start];
                    let line = before.matches('\n').count();
                    let col = if line == 0 {
                        at_char
                    } else {
                        before.rsplit('\n').next().unwrap().chars().count()
                    };
                    let pos = node.pos_in_scalar(line, col);
                    diagnostics.push(Diagnostic::at_pos(&node.file, pos, end + 1, message));
                }
            }
            consumed += start + end + 1;
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        *text = out;
    });
}

/// `Ok(None)` leaves the text alone (not one of our references).
fn resolve_reference(
    reference: &str,
    overrides: &HashMap<String, String>,
) -> Result<Option<String>, String> {
    let (kind, rest) = match reference.split_once(':') {
        Some((k @ ("env" | "secret"), rest)) => (k, rest),
        _ => return Ok(None),
    };
    let (name, default) = match rest.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (rest, None),
    };
    let value = overrides
        .get(name)
        .cloned()
        .or_else(|| std::env::var(name).ok().filter(|v| !v.is_empty()));
    let value = match (value, default) {
        (Some(v), _) => v,
        (None, Some(d)) => d.to_string(),
        (None, None) => {
            return Err(format!(
                "environment variable {name} is not set (referenced as ${{{reference}}})"
            ));
        }
    };
    if kind == "secret" || secrets::is_secret_name(name) {
        secrets::register(&value);
    }
    secrets::register_url(&value);
    Ok(Some(value))
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
        resolve_env(&mut root, &HashMap::new(), &mut diags);
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
    fn set_overrides_parse_yaml() {
        let mut root = node::parse("settings:\n  ids: [1]\n", "p.yaml").unwrap();
        apply_set(&mut root, "settings.ids", "[2, 3]").unwrap();
        apply_set(&mut root, "settings.new", "x").unwrap();
        assert_eq!(
            root.get("settings").unwrap().to_json(),
            serde_json::json!({"ids": [2, 3], "new": "x"})
        );
    }
}
