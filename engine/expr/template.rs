//! Templates are minijinja, compiled once when the pipeline loads.
//!
//! A value that is exactly one `{{ expression }}` evaluates to a typed value (a list stays a list,
//! a number a number); anything else renders to a string; text without `{{`/`{%` is a literal.
//! Syntax errors, unknown filters and unknown variables are reported at the YAML position.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use minijinja::machinery::{Token, tokenize};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{Environment, Expression, UndefinedBehavior};
use serde::{Deserialize, Deserializer};
use serde_json::Value as Json;

use super::json_object::to_json;
use super::{Scope, filters};
use crate::config::de::capture_node;
use crate::config::diag::{Diagnostic, unknown_message};
use crate::config::load;
use crate::config::node::{Kind, Node};

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

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Bitrix24 leaves fields out freely; a missing field is "nothing", not an error.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    filters::register(&mut env);
    env
});

enum Compiled {
    Literal(Json),
    /// `{{ source.A.B[0] }}`: read straight from the record's JSON, no template machinery.
    Lookup(String, Vec<Segment>, Expression<'static, 'static>),
    Expr(Expression<'static, 'static>),
    Text(minijinja::Template<'static, 'static>),
}

struct Inner {
    source: String,
    compiled: Compiled,
}

/// A compiled template or expression from the pipeline file.
#[derive(Clone)]
pub struct Template(Arc<Inner>);

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Template({:?})", self.0.source)
    }
}

/// What went wrong while compiling, with the position inside the template text.
pub struct CompileError {
    pub line: usize,
    pub col: usize,
    pub len: usize,
    pub message: String,
}

impl Template {
    pub fn literal(value: Json) -> Template {
        Template(Arc::new(Inner {
            source: value.to_string(),
            compiled: Compiled::Literal(value),
        }))
    }

    pub fn source(&self) -> &str {
        &self.0.source
    }

    pub fn is_literal(&self) -> bool {
        matches!(self.0.compiled, Compiled::Literal(_))
    }

    /// Compile `source`; `roots` are the variables this place may use and `steps` the step ids
    /// defined before it (for `steps.<id>` references).
    pub fn compile(
        source: &str,
        roots: &[&str],
        steps: &[String],
    ) -> Result<Template, Vec<CompileError>> {
        let compiled = if let Some(expr) = single_expression(source) {
            let offset = source.find("{{").unwrap() + 2;
            let e = ENV
                .compile_expression_owned(expr.to_string())
                .map_err(|e| vec![syntax_error(source, &e, offset)])?;
            match plain_lookup(expr) {
                Some((root, path)) => Compiled::Lookup(root, path, e),
                None => Compiled::Expr(e),
            }
        } else if source.contains("{{") || source.contains("{%") {
            let leaked: &'static str = Box::leak(source.to_string().into_boxed_str());
            Compiled::Text(
                ENV.template_from_str(leaked)
                    .map_err(|e| vec![syntax_error(source, &e, 0)])?,
            )
        } else {
            return Ok(Template(Arc::new(Inner {
                source: source.into(),
                compiled: Compiled::Literal(Json::String(source.into())),
            })));
        };
        let mut errors = unknown_filters(source);
        let vars = match &compiled {
            Compiled::Expr(e) | Compiled::Lookup(_, _, e) => e.undeclared_variables(true),
            Compiled::Text(t) => t.undeclared_variables(true),
            Compiled::Literal(_) => Default::default(),
        };
        errors.extend(unknown_variables(
            source,
            vars.into_iter().collect(),
            roots,
            steps,
        ));
        if errors.is_empty() {
            Ok(Template(Arc::new(Inner {
                source: source.into(),
                compiled,
            })))
        } else {
            Err(errors)
        }
    }

    /// Evaluate to a typed JSON value.
    pub fn eval(&self, scope: &Value) -> Result<Json, String> {
        match &self.0.compiled {
            Compiled::Literal(v) => Ok(v.clone()),
            Compiled::Lookup(root, path, e) => match scope
                .downcast_object_ref::<Scope>()
                .and_then(|s| s.json(root))
            {
                Some(doc) => Ok(walk(doc, path).cloned().unwrap_or(Json::Null)),
                None => e
                    .eval(scope.clone())
                    .map(|v| to_json(&v))
                    .map_err(|e| error_text(&e)),
            },
            Compiled::Expr(e) => e
                .eval(scope.clone())
                .map(|v| to_json(&v))
                .map_err(|e| error_text(&e)),
            Compiled::Text(t) => t
                .render(scope.clone())
                .map(Json::String)
                .map_err(|e| error_text(&e)),
        }
    }

    /// Evaluate to text (null and undefined become the empty string).
    pub fn render(&self, scope: &Value) -> Result<String, String> {
        Ok(match self.eval(scope)? {
            Json::Null => String::new(),
            Json::String(s) => s,
            other => other.to_string(),
        })
    }

    /// Evaluate as a condition (Jinja truthiness).
    pub fn test(&self, scope: &Value) -> Result<bool, String> {
        match &self.0.compiled {
            Compiled::Literal(v) => Ok(truthy(v)),
            Compiled::Lookup(..) => self.eval(scope).map(|v| truthy(&v)),
            Compiled::Expr(e) => e
                .eval(scope.clone())
                .map(|v| v.is_true())
                .map_err(|e| error_text(&e)),
            Compiled::Text(t) => t
                .render(scope.clone())
                .map(|s| !matches!(s.trim(), "" | "false" | "False" | "0"))
                .map_err(|e| error_text(&e)),
        }
    }
}

#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

/// `source.PHONE[0].VALUE` -> ("source", [PHONE, 0, VALUE]); anything fancier is not a plain lookup.
fn plain_lookup(expr: &str) -> Option<(String, Vec<Segment>)> {
    let expr = expr.trim();
    let is_ident = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !s.starts_with(|c: char| c.is_ascii_digit())
    };
    let mut rest = expr;
    let root_end = rest.find(['.', '[']).unwrap_or(rest.len());
    let root = &rest[..root_end];
    if !matches!(root, "source" | "record" | "steps" | "settings") {
        return None;
    }
    rest = &rest[root_end..];
    let mut path = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if !is_ident(&r[..end]) {
                return None;
            }
            path.push(Segment::Key(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            path.push(Segment::Index(r[..end].trim().parse().ok()?));
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some((root.to_string(), path))
}

fn walk<'a>(doc: &'a Json, path: &[Segment]) -> Option<&'a Json> {
    path.iter().try_fold(doc, |at, seg| match seg {
        Segment::Key(k) => at.get(k.as_str()),
        Segment::Index(i) => at.get(*i),
    })
}

fn truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64() != Some(0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    }
}

/// The message of a render error without minijinja's decorations.
pub fn error_text(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => d.to_string(),
        None => e.kind().to_string(),
    }
}

/// `{{ expr }}` alone (whitespace around allowed) -> `expr`.
fn single_expression(source: &str) -> Option<&str> {
    let t = source.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim_start_matches('-').trim_end_matches('-'))
}

/// (line, col) 0-based of a byte offset.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count();
    let col = before.rsplit('\n').next().unwrap_or("").chars().count();
    (line, col)
}

fn syntax_error(source: &str, e: &minijinja::Error, offset: usize) -> CompileError {
    let at = e.range().map(|r| r.start + offset).unwrap_or(offset);
    let (line, col) = line_col(source, at);
    CompileError {
        line,
        col,
        len: e.range().map(|r| r.len()).unwrap_or(1),
        message: format!("template syntax error: {}", error_text(e)),
    }
}

fn unknown_filters(source: &str) -> Vec<CompileError> {
    let mut errors = Vec::new();
    let mut after_pipe = false;
    for (token, span) in tokenize(source, false, SyntaxConfig::default()).flatten() {
        if after_pipe && let Token::Ident(name) = token {
            let known = BUILTIN_FILTERS.contains(&name) || filters::CUSTOM.contains(&name);
            if !known {
                let mut all: Vec<&str> = BUILTIN_FILTERS.to_vec();
                all.extend_from_slice(filters::CUSTOM);
                let (line, col) = line_col(source, span.start_offset as usize);
                let suggestion = unknown_message("filter", name, &[]);
                let message = match crate::config::diag::did_you_mean(name, all) {
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

fn unknown_variables(
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
            let message = match crate::config::diag::did_you_mean(step, known.iter().copied()) {
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

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = capture_node(d)?;
        Ok(from_node(&node))
    }
}

/// Compile a template from a YAML node; errors become diagnostics of the current load and the
/// template degrades to a literal so that loading goes on and finds the remaining problems.
pub fn from_node(node: &Node) -> Template {
    let source = match &node.kind {
        Kind::Str(s) => s.clone(),
        _ => return Template::literal(node.to_json()),
    };
    let (roots, steps) = load::template_scope();
    let roots: Vec<&str> = roots.iter().map(String::as_str).collect();
    match Template::compile(&source, &roots, &steps) {
        Ok(t) => t,
        Err(errors) => {
            for e in errors {
                let pos = node.pos_in_scalar(e.line, e.col);
                load::report(Diagnostic::at_pos(&node.file, pos, e.len, e.message));
            }
            Template::literal(Json::String(source))
        }
    }
}

impl schemars::JsonSchema for Template {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Template".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "number", "integer", "boolean", "null", "array"],
            "description": "A value, or a minijinja template: `{{ source.NAME }}`. A value that is exactly one `{{ expression }}` keeps its type (list, number); filters: phone, date, money, lookup, map_values, flatten, unique_list, compact, to_number, datetime, add_days and the minijinja builtins.",
            "examples": ["{{ source.PHONE | first | attr('VALUE') | phone }}"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> Vec<&'static str> {
        vec!["source", "record", "settings", "steps"]
    }

    #[test]
    fn single_expression_keeps_its_type() {
        let t = Template::compile("{{ [1, 2] | map('string') | list }}", &roots(), &[])
            .ok()
            .unwrap();
        assert_eq!(
            t.eval(&Value::from(())).unwrap(),
            serde_json::json!(["1", "2"])
        );
        let t = Template::compile("Hello {{ 1 + 1 }}", &roots(), &[])
            .ok()
            .unwrap();
        assert_eq!(
            t.eval(&Value::from(())).unwrap(),
            serde_json::json!("Hello 2")
        );
        assert!(
            Template::compile("plain", &roots(), &[])
                .ok()
                .unwrap()
                .is_literal()
        );
    }

    #[test]
    fn plain_lookups_read_json_directly() {
        use std::sync::Arc;
        let scope = Value::from_object(Scope {
            source: Arc::new(serde_json::json!({"PHONE": [{"VALUE": "8 926"}], "ID": "7"})),
            record: Arc::new(Json::Null),
            steps: Arc::new(serde_json::json!({})),
            settings: Arc::new(serde_json::json!({})),
            run: Value::from(()),
            outcome: Value::from(()),
            error: Value::from(()),
        });
        let t = Template::compile("{{ source.PHONE[0].VALUE }}", &roots(), &[])
            .ok()
            .unwrap();
        assert!(matches!(t.0.compiled, Compiled::Lookup(..)));
        assert_eq!(t.eval(&scope).unwrap(), serde_json::json!("8 926"));
        let t = Template::compile("{{ source.MISSING.X }}", &roots(), &[])
            .ok()
            .unwrap();
        assert_eq!(t.eval(&scope).unwrap(), Json::Null);
        assert!(plain_lookup("source.X | phone").is_none());
        assert!(plain_lookup("source[settings.x]").is_none());
    }

    #[test]
    fn reports_unknown_filters_variables_and_steps_with_positions() {
        let errs = Template::compile("{{ source.PHONE | phnoe }}", &roots(), &[])
            .err()
            .unwrap();
        assert_eq!((errs[0].line, errs[0].col), (0, 18));
        assert!(
            errs[0].message.contains("did you mean `phone`"),
            "{}",
            errs[0].message
        );

        let errs = Template::compile("{{ sorce.NAME }}", &roots(), &[])
            .err()
            .unwrap();
        assert!(
            errs[0].message.contains("did you mean `source`"),
            "{}",
            errs[0].message
        );

        let errs = Template::compile("{{ steps.usr.NAME }}", &roots(), &["user".into()])
            .err()
            .unwrap();
        assert!(
            errs[0].message.contains("unknown step reference `usr`"),
            "{}",
            errs[0].message
        );

        let errs = Template::compile("{{ source.NAME ", &roots(), &[])
            .err()
            .unwrap();
        assert!(
            errs[0].message.starts_with("template syntax error"),
            "{}",
            errs[0].message
        );
    }
}
