//! JSON paths (RFC 9535, via jsonpath-rust), compiled when the pipeline loads.

use std::sync::Arc;

use jsonpath_rust::parser::model::JpQuery;
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;
use serde::{Deserialize, Deserializer};
use serde_json::Value as Json;

use crate::config::de::capture_node;
use crate::config::diag::Diagnostic;
use crate::config::load;
use crate::config::node::Node;

#[derive(Clone)]
pub struct JsonPath {
    source: Arc<str>,
    query: Arc<JpQuery>,
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
        js_path_process(&self.query, value)
            .map(|hits| hits.into_iter().map(|q| q.val()).collect())
            .unwrap_or_default()
    }

    /// The first match, if any.
    pub fn first<'a>(&self, value: &'a Json) -> Option<&'a Json> {
        self.all(value).into_iter().next()
    }
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
            load::report(Diagnostic::at_pos(&node.file, pos, 1, message));
            JsonPath::compile("$").expect("root path")
        }
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

    #[test]
    fn syntax_errors_have_a_column() {
        let (col, msg) = JsonPath::compile("$.orders[").unwrap_err();
        assert!(msg.starts_with("invalid JSON path"), "{msg}");
        assert!(col >= 8, "{col}");
    }
}
