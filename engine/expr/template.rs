//! Templates are minijinja, compiled once when the pipeline loads.
//!
//! A value that is exactly one `{{ expression }}` evaluates to a typed value (a list stays a list,
//! a number a number); anything else renders to a string; text without `{{`/`{%` is a literal.
//! Syntax errors, unknown filters and unknown variables are reported at the YAML position.

use std::sync::{Arc, LazyLock};

use minijinja::value::Value;
use minijinja::{Environment, Expression, UndefinedBehavior};
use serde::{Deserialize, Deserializer};
use serde_json::Value as Json;

use super::check::{syntax_error, unknown_filters, unknown_settings, unknown_variables};
use super::json_object::to_json;
use super::native::{self, Fail, truthy};
use super::{Scope, filter_table};
use crate::syntax::de::capture_node;
use crate::syntax::diag::Diagnostic;
use crate::syntax::node::{Kind, Node};
use crate::syntax::session;

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Bitrix24 leaves fields out freely; a missing field is "nothing", not an error.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    filter_table::register(&mut env);
    env
});

enum Compiled {
    Literal(Json),
    /// `{{ source.PHONE | first | attr('VALUE') | phone }}`: evaluated natively on the record's
    /// JSON (see `native.rs`); the expression is the VM fallback for inputs the chain leaves to it.
    Native(native::Chain, Expression<'static, 'static>),
    Expr(Expression<'static, 'static>),
    /// `{{ source.LAST_NAME }} {{ source.NAME }}`: rendered natively, with the VM as fallback.
    NativeText(native::Text, minijinja::Template<'static, 'static>),
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
            match native::compile_expr(expr) {
                Some(chain) => Compiled::Native(chain, e),
                None => Compiled::Expr(e),
            }
        } else if source.contains("{{") || source.contains("{%") {
            let leaked: &'static str = Box::leak(source.to_string().into_boxed_str());
            let t = ENV
                .template_from_str(leaked)
                .map_err(|e| vec![syntax_error(source, &e, 0)])?;
            match native::compile_text(source) {
                Some(text) => Compiled::NativeText(text, t),
                None => Compiled::Text(t),
            }
        } else {
            return Ok(Template(Arc::new(Inner {
                source: source.into(),
                compiled: Compiled::Literal(Json::String(source.into())),
            })));
        };
        let mut errors = unknown_filters(source);
        let vars = match &compiled {
            Compiled::Expr(e) | Compiled::Native(_, e) => e.undeclared_variables(true),
            Compiled::Text(t) | Compiled::NativeText(_, t) => t.undeclared_variables(true),
            Compiled::Literal(_) => Default::default(),
        };
        errors.extend(unknown_variables(
            source,
            vars.into_iter().collect(),
            roots,
            steps,
        ));
        if roots.contains(&"settings")
            && let Some(declared) = session::declared_settings()
        {
            errors.extend(unknown_settings(source, &declared));
        }
        if errors.is_empty() {
            Ok(Template(Arc::new(Inner {
                source: source.into(),
                compiled,
            })))
        } else {
            Err(errors)
        }
    }

    /// Whether the template uses the variable `root` (`item`, `error`).
    pub fn uses(&self, root: &str) -> bool {
        match &self.0.compiled {
            Compiled::Literal(_) => false,
            Compiled::Expr(e) | Compiled::Native(_, e) => {
                e.undeclared_variables(false).contains(root)
            }
            Compiled::Text(t) | Compiled::NativeText(_, t) => {
                t.undeclared_variables(false).contains(root)
            }
        }
    }

    /// Evaluate to a typed JSON value: natively when the template and the scope allow it,
    /// otherwise (or when the native evaluation leaves this input to it) with the template VM.
    pub fn eval(&self, scope: &Value) -> Result<Json, String> {
        let native = scope.downcast_object_ref::<Scope>();
        let result = match (&self.0.compiled, native) {
            (Compiled::Literal(v), _) => return Ok(v.clone()),
            (Compiled::Native(chain, _), Some(s)) => chain.eval(s),
            (Compiled::NativeText(text, _), Some(s)) => text.render(s).map(Json::String),
            _ => Err(Fail::Vm),
        };
        match result {
            Ok(v) => Ok(v),
            Err(Fail::Error(e)) => Err(e),
            Err(Fail::Vm) => self.eval_vm(scope),
        }
    }

    /// Evaluate natively only (`Err(Fail::Vm)`: this template or input is left to the VM).
    #[cfg(test)]
    fn eval_native(&self, scope: &Scope) -> Result<Json, Fail> {
        match &self.0.compiled {
            Compiled::Native(chain, _) => chain.eval(scope),
            Compiled::NativeText(text, _) => text.render(scope).map(Json::String),
            _ => Err(Fail::Vm),
        }
    }

    /// Evaluate with the template VM only.
    fn eval_vm(&self, scope: &Value) -> Result<Json, String> {
        match &self.0.compiled {
            Compiled::Literal(v) => Ok(v.clone()),
            Compiled::Expr(e) | Compiled::Native(_, e) => e
                .eval(scope.clone())
                .map(|v| to_json(&v))
                .map_err(|e| error_text(&e)),
            Compiled::Text(t) | Compiled::NativeText(_, t) => t
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
            Compiled::Native(..) => self.eval(scope).map(|v| truthy(&v)),
            Compiled::Expr(e) => e
                .eval(scope.clone())
                .map(|v| v.is_true())
                .map_err(|e| error_text(&e)),
            Compiled::Text(_) | Compiled::NativeText(..) => self.eval(scope).map(|s| {
                !matches!(
                    s.as_str().unwrap_or_default().trim(),
                    "" | "false" | "False" | "0"
                )
            }),
        }
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

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = capture_node(d)?;
        Ok(from_node(&node))
    }
}

/// Compile a template from a YAML node; errors become diagnostics of the current load and the
/// template degrades to a literal so that loading goes on and finds the remaining problems.
pub fn from_node(node: &Node) -> Template {
    from_node_with(node, &[])
}

/// [`from_node`] for a place that also sees `extra` variables (`item` in a `for_each` call).
pub fn from_node_with(node: &Node, extra: &[&str]) -> Template {
    let source = match &node.kind {
        Kind::Str(s) => s.clone(),
        _ => return Template::literal(node.to_json()),
    };
    let (roots, steps) = current_scope();
    let mut roots: Vec<&str> = roots.iter().map(String::as_str).collect();
    let more: Vec<&str> = extra
        .iter()
        .copied()
        .filter(|e| !roots.contains(e))
        .collect();
    roots.extend(more);
    match Template::compile(&source, &roots, &steps) {
        Ok(t) => t,
        Err(errors) => {
            for e in errors {
                let pos = node.pos_in_scalar(e.line, e.col);
                session::report(Diagnostic::at_pos(&node.file, pos, e.len, e.message));
            }
            Template::literal(Json::String(source))
        }
    }
}

/// Variables and step ids a template at the current place of the load may use; outside a load,
/// everything a hook may use.
pub fn current_scope() -> (Vec<String>, Vec<String>) {
    match session::scope() {
        Some(scope) => (scope.roots, scope.steps),
        None => (
            super::HOOK_ROOTS.iter().map(|s| s.to_string()).collect(),
            Vec::new(),
        ),
    }
}

/// A template serialises as its source text (a literal as its value), so serde defaults show up
/// in the JSON schema as `default`.
impl serde::Serialize for Template {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0.compiled {
            Compiled::Literal(value) => value.serialize(s),
            _ => s.serialize_str(&self.0.source),
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
            "description": "A value, or a minijinja template: `{{ source.NAME }}`. A value that is exactly one `{{ expression }}` keeps its type (list, number); filters: the minijinja builtins and ours (`phone`, `date`, `money`, `lookup`, ...), all listed in docs/reference.md.",
            "examples": ["{{ source.PHONE | first | attr('VALUE') | phone }}"]
        })
    }
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
