//! JSON paths (RFC 9535, via jsonpath-rust), compiled when the pipeline loads.

use std::sync::Arc;

use jsonpath_rust::parser::model::JpQuery;
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;
use serde::{Deserialize, Deserializer};
use serde_json::Value as Json;

use crate::expr::json_object::member;
use crate::syntax::de::capture_node;
use crate::syntax::diag::Diagnostic;
use crate::syntax::node::Node;
use crate::syntax::session;

#[derive(Clone)]
pub struct JsonPath {
    source: Arc<str>,
    query: Arc<JpQuery>,
    /// `$.EMAIL[0].VALUE`: names and indexes only, so at most one match, found by walking the
    /// document instead of running the query engine (which allocates per step).
    simple: Option<Arc<[Step]>>,
}

#[derive(Debug, PartialEq)]
enum Step {
    Name(String),
    Index(i64),
}

impl std::fmt::Debug for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonPath({})", self.source)
    }
}

impl JsonPath {
    /// Compile; the error carries the 0-based column inside the path where parsing failed.
    pub fn compile(source: &str) -> Result<JsonPath, (usize, String)> {
        match parse_json_path(source) {
            Ok(q) => Ok(JsonPath {
                source: source.into(),
                query: Arc::new(q),
                simple: simple_steps(source).map(Into::into),
            }),
            Err(e) => {
                let text = e.to_string();
                Err((
                    error_column(&text),
                    format!("invalid JSON path `{source}`: {}", first_line(&text)),
                ))
            }
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every match, in document order.
    pub fn all<'a>(&self, value: &'a Json) -> Vec<&'a Json> {
        if let Some(steps) = &self.simple {
            return walk(value, steps).into_iter().collect();
        }
        js_path_process(&self.query, value)
            .map(|hits| hits.into_iter().map(|q| q.val()).collect())
            .unwrap_or_default()
    }

    /// The first match, if any.
    pub fn first<'a>(&self, value: &'a Json) -> Option<&'a Json> {
        match &self.simple {
            Some(steps) => walk(value, steps),
            None => self.all(value).into_iter().next(),
        }
    }
}

/// The steps of a path made only of `.name`, `['name']` and `[index]` selectors; `None` for
/// anything else (wildcards, slices, filters, descendants, escapes), which the query engine runs.
fn simple_steps(source: &str) -> Option<Vec<Step>> {
    let mut rest = source.strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            let ident = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ident {
                return None;
            }
            steps.push(Step::Name(name.to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            let quoted = ['\'', '"']
                .iter()
                .find_map(|q| inner.strip_prefix(*q)?.strip_suffix(*q));
            match quoted {
                Some(name) if !name.contains(['\\', '\'', '"']) => {
                    steps.push(Step::Name(name.to_string()))
                }
                Some(_) => return None,
                None => {
                    // RFC 9535 integers: no leading zeros, no `+`, no `-0`.
                    let digits = inner.strip_prefix('-').unwrap_or(inner);
                    let canonical = !digits.is_empty()
                        && digits.chars().all(|c| c.is_ascii_digit())
                        && (digits == "0" || !digits.starts_with('0'))
                        && inner != "-0";
                    if !canonical {
                        return None;
                    }
                    steps.push(Step::Index(inner.parse().ok()?));
                }
            }
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

/// A name selects a member of an object, an index an element of an array (negative from the
/// end); anything else selects nothing (RFC 9535).
fn walk<'a>(value: &'a Json, steps: &[Step]) -> Option<&'a Json> {
    steps.iter().try_fold(value, |at, step| match (at, step) {
        (Json::Object(m), Step::Name(n)) => member(m, n),
        (Json::Array(items), Step::Index(i)) => {
            let i = if *i < 0 { items.len() as i64 + i } else { *i };
            usize::try_from(i).ok().and_then(|i| items.get(i))
        }
        _ => None,
    })
}

/// pest reports ` --> line:col`; take the column (1-based) and make it 0-based.
fn error_column(text: &str) -> usize {
    text.split("-->")
        .nth(1)
        .and_then(|rest| {
            rest.trim()
                .split(|c: char| !c.is_ascii_digit() && c != ':')
                .next()
        })
        .and_then(|lc| lc.split(':').nth(1))
        .and_then(|c| c.parse::<usize>().ok())
        .map(|c| c.saturating_sub(1))
        .unwrap_or(0)
}

fn first_line(text: &str) -> String {
    let expected = text
        .lines()
        .find(|l| l.trim_start().starts_with('='))
        .map(|l| l.trim().trim_start_matches('=').trim());
    match expected {
        Some(e) => e.to_string(),
        None => text.lines().next().unwrap_or("").to_string(),
    }
}

impl<'de> Deserialize<'de> for JsonPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = capture_node(d)?;
        Ok(from_node(&node))
    }
}

/// Compile a path from a YAML node; an error is reported to the current load and the path
/// degrades to `$` so that loading continues.
pub fn from_node(node: &Node) -> JsonPath {
    let source = node
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| node.key_text());
    match JsonPath::compile(&source) {
        Ok(p) => p,
        Err((col, message)) => {
            let pos = node.pos_in_scalar(0, col);
            session::report(Diagnostic::at_pos(&node.file, pos, 1, message));
            JsonPath::compile("$").expect("root path")
        }
    }
}

/// A path serialises as its source text, so serde defaults show up in the JSON schema.
impl serde::Serialize for JsonPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl schemars::JsonSchema for JsonPath {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "JsonPath".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A JSON path (RFC 9535), e.g. `$.orders[*]` or `$.PHONE[0].VALUE`.",
            "examples": ["$.result[*]"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_values() {
        let p = JsonPath::compile("$.PHONE[0].VALUE").unwrap();
        let doc = json!({"PHONE": [{"VALUE": "8 926"}, {"VALUE": "x"}]});
        assert_eq!(p.first(&doc), Some(&json!("8 926")));
        assert_eq!(
            JsonPath::compile("$.orders[*].id")
                .unwrap()
                .all(&json!({"orders": [{"id": 1}, {"id": 2}]}))
                .len(),
            2
        );
    }

    /// Simple paths are walked directly; the answers are the query engine's.
    #[test]
    fn simple_paths_match_the_query_engine() {
        let doc = json!({"ID": "7", "a": {"b": [10, {"c": null}, [1, 2]]}, "x y": 1, "EMAIL": [{"VALUE": "e@x"}], "n": 5});
        let docs = [
            doc.clone(),
            json!([1, 2, 3]),
            json!(null),
            json!({"a": "text"}),
        ];
        for source in [
            "$",
            "$.ID",
            "$.a.b[0]",
            "$.a.b[1].c",
            "$.a.b[-1][1]",
            "$.a.b[-4]",
            "$.a.b[7]",
            "$['x y']",
            "$[\"ID\"]",
            "$.EMAIL[0].VALUE",
            "$.missing.deeper",
            "$.ID[0]",
            "$.n.x",
            "$[0]",
            "$[-1]",
            "$.a['b'][2][0]",
            "$.a.b[*]",
            "$..c",
            "$.a.b[0:2]",
            "$[?@.ID]",
            "$['a\\'b']",
            "$['a]b']",
        ] {
            let p = JsonPath::compile(source).unwrap();
            let mut q = p.clone();
            q.simple = None;
            for d in &docs {
                assert_eq!(p.all(d), q.all(d), "{source} on {d}");
                assert_eq!(p.first(d), q.first(d), "{source} on {d}");
            }
        }
        assert!(
            JsonPath::compile("$.EMAIL[0].VALUE")
                .unwrap()
                .simple
                .is_some()
        );
        assert!(JsonPath::compile("$.a.b[*]").unwrap().simple.is_none());
    }

    #[test]
    fn syntax_errors_have_a_column() {
        let (col, msg) = JsonPath::compile("$.orders[").unwrap_err();
        assert!(msg.starts_with("invalid JSON path"), "{msg}");
        assert!(col >= 8, "{col}");
    }
}
