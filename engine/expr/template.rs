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
use super::native::{self, Fail, truthy};
use super::{Scope, filter_table};
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
        if errors.is_empty() {
            Ok(Template(Arc::new(Inner {
                source: source.into(),
                compiled,
            })))
        } else {
            Err(errors)
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
            let known = BUILTIN_FILTERS.contains(&name) || filter_table::is_ours(name);
            if !known {
                let mut all: Vec<&str> = BUILTIN_FILTERS.to_vec();
                all.extend(filter_table::names());
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
            "description": "A value, or a minijinja template: `{{ source.NAME }}`. A value that is exactly one `{{ expression }}` keeps its type (list, number); filters: the minijinja builtins and ours (`phone`, `date`, `money`, `lookup`, ...), all listed in docs/reference.md.",
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
        assert!(matches!(t.0.compiled, Compiled::Native(..)));
        assert_eq!(t.eval(&scope).unwrap(), serde_json::json!("8 926"));
        let t = Template::compile("{{ source.MISSING.X }}", &roots(), &[])
            .ok()
            .unwrap();
        assert_eq!(t.eval(&scope).unwrap(), Json::Null);
        let t = Template::compile("{{ source.X ~ 'a' }}", &roots(), &[])
            .ok()
            .unwrap();
        assert!(matches!(t.0.compiled, Compiled::Expr(..)));
    }

    fn scope_of(source: Json) -> Value {
        let settings = serde_json::json!({
            "products": {"404": "chess", "410": "online", "7": null, "true": "yes", "none": "NONE", "": "EMPTY"},
            "field": "NAME", "index": 1, "flag": true,
        });
        Value::from_object(Scope {
            source: Arc::new(source),
            record: Arc::new(serde_json::json!({"x": 1})),
            steps: Arc::new(serde_json::json!({"s": {"ID": "5"}})),
            settings: Arc::new(settings),
            run: Value::from(()),
            outcome: Value::from(()),
            error: Value::from(()),
        })
    }

    /// The native evaluator gives what the template VM gives: values, none/undefined, errors.
    #[test]
    fn native_evaluation_equals_the_vm() {
        let templates = [
            // lookups
            "{{ source.NAME }}",
            "{{ source.PHONE[0].VALUE }}",
            "{{ source.PHONE[-1].VALUE }}",
            "{{ source.PHONE[5] }}",
            "{{ source['NAME'] }}",
            "{{ source[settings.field] }}",
            "{{ source.PHONE[settings.index] }}",
            "{{ source.MISSING }}",
            "{{ source.MISSING.X }}",
            "{{ source.NULLV.X }}",
            "{{ source.NAME.X }}",
            "{{ source.NAME[0] }}",
            "{{ source.PHONE.VALUE }}",
            "{{ source.NUM }}",
            "{{ source.BIG }}",
            "{{ source.FLOAT }}",
            "{{ source.OBJ[0] }}",
            "{{ source }}",
            "{{ steps.s.ID }}",
            "{{ record.x }}",
            "{{ source[settings.MISSING] }}",
            "{{ source[source.NUM] }}",
            // our filters
            "{{ source.PHONE | first | attr('VALUE') | phone }}",
            "{{ source.NAME | phone }}",
            "{{ source.NUM | phone }}",
            "{{ source.V | phone }}",
            "{{ source.V | date }}",
            "{{ source.V | money }}",
            "{{ source.V | to_number }}",
            "{{ source.BIRTHDATE | date }}",
            "{{ source.OPPORTUNITY | money }}",
            "{{ source.V | map_values(settings.products) }}",
            "{{ source.V | map_values(settings.MISSING) }}",
            "{{ source.V | map_values({'404': 'x', '410': none}) }}",
            "{{ source.V | map_values(source.NAME) }}",
            "{{ source.V | lookup(settings.products) }}",
            "{{ source.V | lookup(settings.products, 'other') }}",
            "{{ source.V | lookup(settings.products, source.MISSING) }}",
            "{{ source.V | lookup(settings.products, source.NULLV) }}",
            "{{ source.V | lookup(source.V) }}",
            "{{ source.V | lookup(settings.products, source.MISSING) | default('d') }}",
            "{{ source.V | flatten }}",
            "{{ source.V | unique_list }}",
            "{{ source.V | compact }}",
            "{{ source.V | flatten | unique_list | join(',') }}",
            // builtins
            "{{ source.V | first }}",
            "{{ source.V | last }}",
            "{{ source.V | attr('VALUE') }}",
            "{{ source.V | trim }}",
            "{{ source.V | lower }}",
            "{{ source.V | upper }}",
            "{{ source.V | string }}",
            "{{ source.V | length }}",
            "{{ source.V | default('x') }}",
            "{{ source.V | default('x', true) }}",
            "{{ source.V | default(settings.products) }}",
            "{{ source.V | default }}",
            "{{ source.V | default(source.MISSING) | default('y') }}",
            "{{ source.V | join(', ') }}",
            "{{ source.V | join }}",
            "{{ source.V | first | first }}",
            "{{ source.V | last | upper }}",
            // text
            "{{ source.LAST_NAME }} {{ source.NAME }}",
            "Hi {{ source.MISSING }}!",
            "{{ source.V }}",
            "{{ source.V }}-{{ source.NUM }}-{{ source.FLOAT }}",
            "{{- source.NAME }} x {{ source.NAME -}}  \n",
            "a\n{{ source.NAME }}\n",
            "[{{ source.V | map_values(settings.products) }}]",
            "{{ source.PHONE | first | attr('VALUE') | phone }} ok",
            "{{ source.V | phone }}/{{ source.V | first }}",
            "{{ source.V | length }} items",
        ];
        let values = [
            serde_json::json!(null),
            serde_json::json!(""),
            serde_json::json!("  "),
            serde_json::json!("Иван Петров "),
            serde_json::json!("8 (926) 123-45-67"),
            serde_json::json!("12345"),
            serde_json::json!(9261234567i64),
            serde_json::json!(0),
            serde_json::json!(404),
            serde_json::json!(7.5),
            serde_json::json!(-3),
            serde_json::json!(true),
            serde_json::json!(false),
            serde_json::json!([]),
            serde_json::json!([404, 410, 999]),
            serde_json::json!(["404", 7, null]),
            serde_json::json!([[1, 2], [2, 3], 4]),
            serde_json::json!([1, 1.0, "1", true, null, "", " ", "x", "x"]),
            serde_json::json!({"VALUE": "8 926 123 45 67", "TYPE": "WORK"}),
            serde_json::json!({}),
            serde_json::json!([{"VALUE": 1}]),
            serde_json::json!("2014-11-26T03:00:00+03:00"),
            serde_json::json!("26.11.2014"),
            serde_json::json!("8700,5"),
            serde_json::json!("1,5"),
            serde_json::json!("nan"),
            serde_json::json!(18446744073709551615u64),
            serde_json::json!(1e100),
            serde_json::json!("abc"),
            serde_json::json!(["a", "b", "c"]),
            serde_json::json!({"404": 1, "b": [1]}),
        ];
        let mut records = vec![
            serde_json::json!({}),
            serde_json::json!(null),
            serde_json::json!("text"),
        ];
        for v in &values {
            records.push(serde_json::json!({
                "NAME": "Иван", "LAST_NAME": "Петров", "PHONE": [{"VALUE": "8 (926) 123-45-67"}, {"VALUE": "+7 926 1234567"}],
                "NUM": 1, "BIG": 18446744073709551615u64, "FLOAT": 2.5, "NULLV": null, "OBJ": {"a": 1},
                "BIRTHDATE": "2009-11-29T03:00:00+03:00", "OPPORTUNITY": "1001", "V": v,
            }));
        }
        records.push(serde_json::json!({"PHONE": [], "OPPORTUNITY": "n/a", "BIRTHDATE": "yesterday", "NAME": 5}));
        records.push(
            serde_json::json!({"PHONE": [{"VALUE": "12345"}], "OPPORTUNITY": null, "NAME": ["a"]}),
        );
        records.push(
            serde_json::json!({"PHONE": "8 926 123 45 67", "OPPORTUNITY": 9000, "NAME": {"a": 1}}),
        );
        records.push(serde_json::json!({"PHONE": [{"NO": 1}], "OPPORTUNITY": 9000.5}));
        let (mut native, mut total) = (0, 0);
        for source in templates {
            let t = Template::compile(source, &roots(), &["s".into()])
                .ok()
                .unwrap();
            assert!(
                matches!(
                    t.0.compiled,
                    Compiled::Native(..) | Compiled::NativeText(..)
                ),
                "{source} is not native"
            );
            for record in &records {
                let scope = scope_of(record.clone());
                let vm = t.eval_vm(&scope);
                let fast = t.eval_native(scope.downcast_object_ref::<Scope>().unwrap());
                total += 1;
                match fast {
                    Err(Fail::Vm) => {}
                    Ok(v) => {
                        native += 1;
                        assert_eq!(Ok(v), vm, "{source} on {record}");
                    }
                    Err(Fail::Error(e)) => {
                        native += 1;
                        assert_eq!(Err(e), vm, "{source} on {record}");
                    }
                }
                assert_eq!(t.eval(&scope), vm, "{source} on {record}");
                let vm_test = match &t.0.compiled {
                    Compiled::Native(_, e) => e
                        .eval(scope.clone())
                        .map(|v| v.is_true())
                        .map_err(|e| error_text(&e)),
                    _ => vm.clone().map(|s| {
                        !matches!(
                            s.as_str().unwrap_or_default().trim(),
                            "" | "false" | "False" | "0"
                        )
                    }),
                };
                assert_eq!(t.test(&scope), vm_test, "test of {source} on {record}");
            }
        }
        // Most cases are answered natively; the rest are left to the VM on purpose.
        assert!(
            native * 4 > total * 3,
            "only {native} of {total} evaluated natively"
        );
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
