//! Diagnostics: `file:line:column: message` plus a caret snippet, collected rather than thrown so
//! that `etl validate` reports every problem at once.

use std::fmt::Write as _;
use std::sync::Arc;

use super::node::{Node, Pos, Span};

#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub file: Arc<str>,
    pub span: Span,
    pub message: String,
    /// A problem that follows from one reported already (a component that cannot be checked
    /// because a value the environment did not fill, a reference to a connection that failed):
    /// the loader leaves it out, so that one mistake is one error.
    pub secondary: bool,
}

impl Diagnostic {
    pub fn at(node: &Node, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: node.file.clone(),
            span: node.span,
            message: message.into(),
            secondary: false,
        }
    }

    /// This problem, marked as a consequence of another (see [`Diagnostic::secondary`]).
    pub fn follows(mut self) -> Diagnostic {
        self.secondary = true;
        self
    }

    pub fn at_pos(file: &Arc<str>, pos: Pos, len: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.clone(),
            span: Span {
                start: pos,
                len: len.max(1),
            },
            message: message.into(),
            secondary: false,
        }
    }

    /// The one-line form: `file:line:column: message`.
    pub fn headline(&self) -> String {
        let Pos { line, col } = self.span.start;
        if line == 0 {
            // Not from a file's text (a `--set` value): the origin alone.
            return format!("{}: {}", self.file, self.message);
        }
        format!("{}:{}:{}: {}", self.file, line, col, self.message)
    }

    /// The headline followed by the offending source line and a caret underline.
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = self.headline();
        let Pos { line, col } = self.span.start;
        // An empty file still shows its (empty) first line, so every problem has a caret.
        let line_text = |s: &'_ str| -> Option<String> {
            match s.lines().nth(line.wrapping_sub(1)) {
                Some(text) => Some(text.to_string()),
                None if line == 1 && s.trim().is_empty() => Some(String::new()),
                None => None,
            }
        };
        if let Some(text) = source.and_then(line_text) {
            let gutter = line.to_string().len();
            let pad = " ".repeat(gutter);
            let caret_pad: String = text
                .chars()
                .take(col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let _ = write!(
                out,
                "\n{pad} |\n{line} | {text}\n{pad} | {caret_pad}{}",
                "^".repeat(self.span.len.clamp(1, 80))
            );
        }
        out
    }
}

/// The closest candidate to `word`, when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "unknown key `x`" with a suggestion when one is close.
pub fn unknown_message(what: &str, word: &str, candidates: &[&str]) -> String {
    match did_you_mean(word, candidates.iter().copied()) {
        Some(s) => format!("unknown {what} `{word}` (did you mean `{s}`?)"),
        None if candidates.is_empty() => format!("unknown {what} `{word}`"),
        None => format!(
            "unknown {what} `{word}`; expected one of: {}",
            candidates.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("fiels", ["fields", "path", "type"]),
            Some("fields")
        );
        assert_eq!(did_you_mean("zzz", ["fields", "path"]), None);
    }

    #[test]
    fn renders_caret_under_the_column() {
        let d = Diagnostic::at_pos(
            &Arc::from("p.yaml"),
            Pos { line: 2, col: 3 },
            5,
            "unknown key `fiels`",
        );
        let text = d.render(Some("a:\n  fiels: 1\n"));
        assert!(text.starts_with("p.yaml:2:3: unknown key `fiels`"));
        assert!(
            text.ends_with("  | ^^^^^".trim_start()) || text.contains("|   ^^^^^"),
            "{text}"
        );
    }
}
