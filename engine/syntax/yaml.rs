//! YAML text to [`Node`]s: saphyr's events built into a tree that keeps every position.
//!
//! A pipeline file is small and written by people, so the builder refuses what only a mistake
//! or an attack produces, each with its position: aliases that expand beyond [`MAX_VALUES`]
//! (the "billion laughs" grew the process to gigabytes), nesting deeper than [`MAX_DEPTH`].
//! Merge keys (`<<: *defaults`) are supported as YAML 1.1 defines them.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan};

use super::node::{Kind, Node, Pos, Span, Style};

/// Values a document may hold once its aliases are expanded. The shipped pipelines hold a few
/// thousand; an alias bomb holds billions.
pub const MAX_VALUES: usize = 100_000;
/// Nesting of mappings and lists.
pub const MAX_DEPTH: usize = 128;

/// A YAML syntax error with its position.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Parse one YAML document. Duplicate keys are errors (YAML says so; serde_yaml silently took the last).
pub fn parse(src: &str, file: &str) -> Result<Node, Vec<SyntaxError>> {
    let file: Arc<str> = Arc::from(file);
    let mut builder = Builder {
        file: file.clone(),
        stack: Vec::new(),
        anchors: Vec::new(),
        root: None,
        errors: Vec::new(),
        values: 0,
        fatal: false,
    };
    for event in Parser::new_from_str(src) {
        match event {
            Ok((ev, span)) => builder.event(ev, span),
            Err(e) => {
                let m = e.marker();
                let at = Pos {
                    line: m.line(),
                    col: m.col() + 1,
                };
                builder.errors.push(syntax_error(src, at, e.info()));
                break;
            }
        }
        if builder.fatal {
            break;
        }
    }
    if !builder.errors.is_empty() {
        return Err(builder.errors);
    }
    Ok(builder.root.unwrap_or_else(|| {
        // An empty file (or one of comments only): nothing, at its first line.
        Node::new(
            Kind::Null,
            Span {
                start: Pos { line: 1, col: 1 },
                len: 1,
            },
            file,
        )
    }))
}

fn syntax_error(src: &str, at: Pos, info: &str) -> SyntaxError {
    if info.contains("tab") {
        // The scanner notices a tab only after the token before it, often at the end of the
        // previous line: point at the tab itself.
        if let Some(pos) = first_tab_from_line(src, at.line) {
            return SyntaxError {
                pos,
                message: format!(
                    "YAML syntax error: a tab character here; YAML indents with spaces ({info})"
                ),
            };
        }
    }
    SyntaxError {
        pos: clamp_to_text(src, at),
        message: format!("YAML syntax error: {info}"),
    }
}

/// The first tab at or after the start of `line` (1-based).
fn first_tab_from_line(src: &str, line: usize) -> Option<Pos> {
    src.lines()
        .enumerate()
        .skip(line.saturating_sub(1))
        .find_map(|(i, text)| {
            let col = text.chars().position(|c| c == '\t')?;
            Some(Pos {
                line: i + 1,
                col: col + 1,
            })
        })
}

/// An error noticed at the end of input points at the end of the last line that has text,
/// so that the snippet shows the line that is actually unfinished.
fn clamp_to_text(src: &str, pos: Pos) -> Pos {
    let lines: Vec<&str> = src.lines().collect();
    if pos.line <= lines.len() && pos.line > 0 {
        return pos;
    }
    match lines.iter().rposition(|l| !l.trim().is_empty()) {
        Some(i) => Pos {
            line: i + 1,
            col: lines[i].chars().count() + 1,
        },
        None => pos,
    }
}

enum Frame {
    Seq(Node, Vec<Node>, usize),
    /// A mapping being built: its node, entries, the key waiting for its value, its anchor,
    /// and the line each key was first written on (duplicates are errors; a map keeps this
    /// linear in big files).
    Map(
        Node,
        Vec<(Node, Node)>,
        Option<Node>,
        usize,
        HashMap<String, usize>,
    ),
}

struct Builder {
    file: Arc<str>,
    stack: Vec<Frame>,
    /// Anchored values with the number of values each holds (what an alias to it adds).
    anchors: Vec<(usize, Node, usize)>,
    root: Option<Node>,
    errors: Vec<SyntaxError>,
    /// Values built so far, aliases counted as what they expand to.
    values: usize,
    /// A limit was hit: the rest of the document is not read.
    fatal: bool,
}

impl Builder {
    fn event(&mut self, ev: Event<'_>, span: YSpan) {
        let sp = Span::from_yaml(span);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let mut node = Node::new(
                    scalar_kind(&text, style, tag.is_some()),
                    sp,
                    self.file.clone(),
                );
                node.style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
                    _ => Style::Block,
                };
                if node.style == Style::Block {
                    // Block content starts on the next line, indented.
                    node.span.start = Pos {
                        line: sp.start.line + 1,
                        col: sp.start.col + 2,
                    };
                }
                self.count(1, sp);
                self.push_value(node, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.enter(sp);
                let node = Node::new(Kind::Null, sp, self.file.clone());
                self.stack.push(Frame::Seq(node, Vec::new(), anchor));
            }
            Event::MappingStart(anchor, _) => {
                self.enter(sp);
                let node = Node::new(Kind::Null, sp, self.file.clone());
                self.stack
                    .push(Frame::Map(node, Vec::new(), None, anchor, HashMap::new()));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(mut node, items, anchor)) = self.stack.pop() {
                    node.kind = Kind::Seq(items);
                    self.push_value(node, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(mut node, entries, _, anchor, _)) = self.stack.pop() {
                    node.kind = Kind::Map(self.merge(entries));
                    self.push_value(node, anchor);
                }
            }
            Event::Alias(id) => self.alias(id, sp),
            _ => {}
        }
    }

    fn enter(&mut self, at: Span) {
        self.count(1, at);
        if self.stack.len() >= MAX_DEPTH && !self.fatal {
            self.fail(
                at.start,
                format!(
                    "YAML nesting deeper than {MAX_DEPTH} levels; a pipeline file does not need that many"
                ),
            );
        }
    }

    /// Add `n` values; past [`MAX_VALUES`] the document is refused where it grew too big.
    fn count(&mut self, n: usize, at: Span) {
        self.values = self.values.saturating_add(n);
        if self.values > MAX_VALUES && !self.fatal {
            self.fail(
                at.start,
                format!(
                    "the document holds more than {MAX_VALUES} values once its aliases are expanded \
                     (an alias repeated inside aliases?); a pipeline file needs far fewer"
                ),
            );
        }
    }

    fn fail(&mut self, pos: Pos, message: String) {
        self.errors.push(SyntaxError { pos, message });
        self.fatal = true;
    }

    fn alias(&mut self, id: usize, sp: Span) {
        let found = self.anchors.iter().rev().find(|(a, ..)| *a == id);
        let Some(&(_, _, size)) = found else {
            self.errors.push(SyntaxError {
                pos: sp.start,
                message: "YAML alias refers to an unknown anchor".into(),
            });
            return;
        };
        // Counted before the copy is made: the copy itself is what must not grow unbounded.
        self.count(size, sp);
        if self.fatal {
            return;
        }
        let found = self.anchors.iter().rev().find(|(a, ..)| *a == id);
        let mut n = found
            .map(|(_, node, _)| node.clone())
            .expect("anchor found above");
        n.span = sp;
        self.push_value(n, 0)
    }

    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let size = values_in(&node);
            self.anchors.push((anchor, node.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(_, items, _)) => items.push(node),
            Some(Frame::Map(_, entries, pending, _, seen)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => {
                    let name = key.key_text();
                    if let Some(&line) = seen.get(&name) {
                        self.errors.push(SyntaxError {
                            pos: key.span.start,
                            message: format!(
                                "duplicate key `{name}` (first defined on line {line})"
                            ),
                        });
                    }
                    seen.entry(name).or_insert(key.span.start.line);
                    entries.push((key, node));
                }
            },
        }
    }

    /// Resolve merge keys: `<<: *base` (or `<<: [*a, *b]`) brings in the entries of the
    /// mappings named that the mapping does not set itself, in its place; the first mapping
    /// listed wins over later ones.
    fn merge(&mut self, entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
        if !entries.iter().any(|(k, _)| is_merge_key(k)) {
            return entries;
        }
        let explicit: HashSet<String> = entries
            .iter()
            .filter(|(k, _)| !is_merge_key(k))
            .map(|(k, _)| k.key_text())
            .collect();
        let mut merged: HashSet<String> = HashSet::new();
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            if !is_merge_key(&key) {
                out.push((key, value));
                continue;
            }
            let sources: Vec<Node> = match value.kind {
                Kind::Map(_) => vec![value],
                Kind::Seq(items) if items.iter().all(|i| matches!(i.kind, Kind::Map(_))) => items,
                _ => {
                    self.errors.push(SyntaxError {
                        pos: value.span.start,
                        message: format!(
                            "a merge key `<<` takes a mapping or a list of mappings \
                             (`<<: *defaults`), found {}",
                            value.type_name()
                        ),
                    });
                    continue;
                }
            };
            for source in sources {
                let Kind::Map(inherited) = source.kind else {
                    continue;
                };
                for (k, v) in inherited {
                    let name = k.key_text();
                    if !explicit.contains(&name) && merged.insert(name) {
                        out.push((k, v));
                    }
                }
            }
        }
        out
    }
}

/// `<<` written plainly (a quoted `"<<"` is an ordinary key).
fn is_merge_key(key: &Node) -> bool {
    key.style == Style::Plain && key.as_str() == Some("<<")
}

/// How many values a node holds, itself included.
fn values_in(node: &Node) -> usize {
    1 + match &node.kind {
        Kind::Seq(items) => items.iter().map(values_in).sum(),
        Kind::Map(entries) => entries
            .iter()
            .map(|(k, v)| values_in(k) + values_in(v))
            .sum(),
        _ => 0,
    }
}

/// YAML 1.2 core schema resolution for plain scalars; quoted scalars are always strings.
pub(super) fn scalar_kind(text: &str, style: ScalarStyle, tagged: bool) -> Kind {
    if style != ScalarStyle::Plain || tagged {
        return Kind::Str(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Kind::Int(i);
    }
    let numeric = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '-' || c == '+' || c == '.');
    if numeric && let Ok(f) = text.parse::<f64>() {
        return Kind::Float(f);
    }
    Kind::Str(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_bombs_are_refused_where_they_grow() {
        let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            yaml.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&yaml, "p.yaml").unwrap_err();
        assert!(err[0].message.contains("aliases are expanded"), "{err:?}");
        assert!(err[0].pos.line > 1 && err[0].pos.line <= 9, "{err:?}");
    }

    #[test]
    fn merge_keys_bring_in_what_is_not_set() {
        let doc = parse(
            "base: &b {type: jsonl, path: a}\nsource:\n  <<: *b\n  path: x\n",
            "p.yaml",
        )
        .unwrap();
        let source = doc.get("source").unwrap();
        assert_eq!(source.get("type").unwrap().as_str(), Some("jsonl"));
        assert_eq!(source.get("path").unwrap().as_str(), Some("x"));
        assert_eq!(source.as_map().unwrap().len(), 2);
        let err = parse("a:\n  <<: 5\n", "p.yaml").unwrap_err();
        assert_eq!(err[0].pos, Pos { line: 2, col: 7 });
    }

    #[test]
    fn tabs_are_reported_where_they_are() {
        let err = parse("name: t\nsource:\n  type: jsonl\n\tpath: x\n", "p.yaml").unwrap_err();
        assert_eq!(err[0].pos, Pos { line: 4, col: 1 }, "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        // Block nesting reaches our limit; flow nesting (`[[[...`) meets the scanner's own.
        let yaml: String = (0..200).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        let err = parse(&yaml, "p.yaml").unwrap_err();
        assert!(err[0].message.contains("nesting"), "{err:?}");
        assert_eq!(err[0].pos.line, MAX_DEPTH + 1, "{err:?}");
        let err = parse(&"[".repeat(1000), "p.yaml").unwrap_err();
        assert!(err[0].message.contains("recursion limit"), "{err:?}");
    }
}
