//! A YAML document as a tree of nodes that remember where they came from.
//!
//! Every config error must name `file:line:column`, so we parse with saphyr's event parser and keep
//! the position of every scalar, sequence and mapping (and of every mapping key).

use std::sync::Arc;

use saphyr_parser::Span as YSpan;

pub use super::yaml::{SyntaxError, parse};

/// Position of a node in its source file (line and column are 1-based).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Where a node is, plus how long its first line is (for the caret underline).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: Pos,
    pub len: usize,
}

impl Span {
    pub(super) fn from_yaml(s: YSpan) -> Span {
        let len = if s.end.line() == s.start.line() {
            s.end.col().saturating_sub(s.start.col()).max(1)
        } else {
            1
        };
        Span {
            start: Pos {
                line: s.start.line(),
                col: s.start.col() + 1,
            },
            len,
        }
    }
}

/// How a scalar was written; needed to map an offset inside a string back to a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Quoted,
    Block,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// Where a scalar's text came from: written in the file, or filled in from the environment
/// by `${env:NAME}`. A filled value is read as a number or a boolean where one is expected
/// (`timeout_secs: ${env:T}`); an unresolved one (the variable is missing, or `--no-env`) reads
/// as a stand-in of the expected type, so that its absence is reported once, where it is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Filled {
    #[default]
    Written,
    FromEnv,
    Unresolved,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: Kind,
    pub span: Span,
    pub style: Style,
    pub filled: Filled,
    /// Source file, shared by all nodes of one document.
    pub file: Arc<str>,
}

impl Node {
    pub fn new(kind: Kind, span: Span, file: Arc<str>) -> Node {
        Node {
            kind,
            span,
            style: Style::Plain,
            filled: Filled::Written,
            file,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Value of `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The key node of `key` in a mapping node (errors about a key point at the key).
    pub fn key(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k)
    }

    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// Position of the character at `offset` (in chars) inside this scalar's text, so a template
    /// error can point into the middle of a YAML value. Exact for plain and single-line quoted
    /// scalars without escapes; block scalars map lines, assuming the usual indentation.
    pub fn pos_in_scalar(&self, line_in_value: usize, col_in_line: usize) -> Pos {
        let start = self.span.start;
        match self.style {
            Style::Block => Pos {
                line: start.line + line_in_value,
                col: start.col + col_in_line,
            },
            Style::Quoted if line_in_value == 0 => Pos {
                line: start.line,
                col: start.col + 1 + col_in_line,
            },
            _ if line_in_value == 0 => Pos {
                line: start.line,
                col: start.col + col_in_line,
            },
            _ => Pos {
                line: start.line + line_in_value,
                col: col_in_line + 1,
            },
        }
    }

    /// Plain JSON view of the node (settings, free-form parameters).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.key_text(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// A node built from JSON (used for `--set` overrides), placed at `span`.
    pub fn from_json(value: &serde_json::Value, span: Span, file: Arc<str>) -> Node {
        use serde_json::Value;
        let kind = match value {
            Value::Null => Kind::Null,
            Value::Bool(b) => Kind::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Kind::Int(i),
                None => Kind::Float(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => Kind::Str(s.clone()),
            Value::Array(items) => Kind::Seq(
                items
                    .iter()
                    .map(|v| Node::from_json(v, span, file.clone()))
                    .collect(),
            ),
            Value::Object(map) => Kind::Map(
                map.iter()
                    .map(|(k, v)| {
                        (
                            Node::new(Kind::Str(k.clone()), span, file.clone()),
                            Node::from_json(v, span, file.clone()),
                        )
                    })
                    .collect(),
            ),
        };
        Node::new(kind, span, file)
    }

    /// Text of a mapping key, whatever scalar type YAML gave it.
    pub fn key_text(&self) -> String {
        match &self.kind {
            Kind::Str(s) => s.clone(),
            Kind::Int(i) => i.to_string(),
            Kind::Float(f) => f.to_string(),
            Kind::Bool(b) => b.to_string(),
            Kind::Null => "null".into(),
            _ => String::new(),
        }
    }

    /// Whether this node or one inside it holds a value the environment did not fill.
    pub fn has_unresolved(&self) -> bool {
        match &self.kind {
            Kind::Seq(items) => items.iter().any(Node::has_unresolved),
            Kind::Map(entries) => entries.iter().any(|(_, v)| v.has_unresolved()),
            _ => self.filled == Filled::Unresolved,
        }
    }

    /// Visit every string scalar (not keys) mutably. The callback gets the text and a copy of
    /// the node without its value: what it sets there (`filled`, a `kind` other than null)
    /// is taken over.
    pub fn for_each_str_mut(&mut self, f: &mut dyn FnMut(&mut String, &mut Node)) {
        match &mut self.kind {
            Kind::Str(_) => {
                let mut snapshot = self.clone_shallow();
                if let Kind::Str(s) = &mut self.kind {
                    f(s, &mut snapshot);
                }
                // The callback may mark where the text came from, and say that it is no
                // longer text (a number the environment filled in).
                self.filled = snapshot.filled;
                if !matches!(snapshot.kind, Kind::Null) {
                    self.kind = snapshot.kind;
                }
            }
            Kind::Seq(items) => items.iter_mut().for_each(|n| n.for_each_str_mut(f)),
            Kind::Map(entries) => entries.iter_mut().for_each(|(_, v)| v.for_each_str_mut(f)),
            _ => {}
        }
    }

    fn clone_shallow(&self) -> Node {
        Node {
            kind: Kind::Null,
            span: self.span,
            style: self.style,
            filled: self.filled,
            file: self.file.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let doc = parse(
            "name: x\nsource:\n  type: files\n  path: a.jsonl\n",
            "p.yaml",
        )
        .unwrap();
        let source = doc.get("source").unwrap();
        assert_eq!(
            source.key("path").unwrap().span.start,
            Pos { line: 4, col: 3 }
        );
        assert_eq!(
            source.get("path").unwrap().span.start,
            Pos { line: 4, col: 9 }
        );
    }

    #[test]
    fn resolves_scalars_like_yaml_1_2() {
        let doc = parse(
            "a: 1\nb: '1'\nc: true\nd: 2.5\ne: ~\nf: 2020-12-22\n",
            "p.yaml",
        )
        .unwrap();
        assert!(matches!(doc.get("a").unwrap().kind, Kind::Int(1)));
        assert!(matches!(doc.get("b").unwrap().kind, Kind::Str(_)));
        assert!(matches!(doc.get("c").unwrap().kind, Kind::Bool(true)));
        assert!(matches!(doc.get("d").unwrap().kind, Kind::Float(_)));
        assert!(matches!(doc.get("e").unwrap().kind, Kind::Null));
        assert_eq!(doc.get("f").unwrap().as_str(), Some("2020-12-22"));
    }

    #[test]
    fn reports_syntax_errors_and_duplicate_keys() {
        let err = parse("a: [1, 2\n", "p.yaml").unwrap_err();
        assert!(err[0].message.contains("YAML syntax error"));
        let err = parse("a: 1\nb: 2\na: 3\n", "p.yaml").unwrap_err();
        assert_eq!(err[0].pos, Pos { line: 3, col: 1 });
    }
}
