//! Loading a pipeline file: YAML -> nodes -> `--set` overrides -> `${env:...}` references ->
//! typed components. Every problem found on the way is collected with its position.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use super::component::{self, BuildCtx, Registry};
use crate::expr;
use crate::runtime::{Sink, Source, Step};
use crate::secrets;
use crate::syntax::de::{RawNode, from_node};
use crate::syntax::diag::Diagnostic;
use crate::syntax::node::{self, Kind, Node, Pos, Span};

/// A pipeline: where records come from, what happens to each, where they go.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "b24-etl pipeline", extend("$id" = "https://b24-etl.dev/schemas/pipeline.schema.json"))]
pub struct PipelineDoc {
    /// Name of the pipeline; its state (cursors, fingerprints) is kept under this name.
    #[schemars(example = &"contacts")]
    pub name: String,
    /// What the pipeline does, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// User constants (field codes, value maps, dates), visible to templates as `settings.<name>`
    /// and overridable with `etl run --set settings.<name>=<yaml>`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>", example = settings_example())]
    pub settings: Option<RawNode>,
    /// Named connections to external systems, each with a `type:`. Endpoints and secrets come
    /// from the environment: `${env:B24_WEBHOOK_URL}`, `${secret:OTMECHALKA_TOKEN}`.
    #[serde(default)]
    #[schemars(schema_with = "connections_schema")]
    pub connections: Option<RawNode>,
    /// Where records come from.
    #[schemars(schema_with = "source_schema")]
    pub source: RawNode,
    /// What happens to each record, in order: mappings, filters, lookups.
    #[serde(default)]
    #[schemars(schema_with = "steps_schema")]
    pub steps: Vec<RawNode>,
    /// Where records go.
    #[serde(default)]
    #[schemars(schema_with = "sinks_schema")]
    pub sinks: Vec<RawNode>,
    /// Run for every record that ended `ok` (e.g. write "Успешно" to a status field).
    /// Templates also see `outcome` and `error`.
    #[serde(default)]
    #[schemars(schema_with = "sinks_schema")]
    pub on_success: Vec<RawNode>,
    /// Run for every record that `failed`, with its reason in `error`.
    #[serde(default)]
    #[schemars(schema_with = "sinks_schema")]
    pub on_error: Vec<RawNode>,
    /// Shape of the journal written by `--journal FILE` (and answered by `etl serve`), as one
    /// template expression over `success`, `status`, `error`, `counts`, `counters`, `log`,
    /// `settings` and `run`. Without it the journal lists every record.
    #[serde(default)]
    #[schemars(example = journal_example())]
    pub journal: Option<RawNode>,
}

fn journal_example() -> &'static str {
    "{{ {'success': true, 'journal': counters} if success else {'success': false, 'message': 'ERROR: ' ~ error} }}"
}

fn settings_example() -> Json {
    serde_json::json!({"sync_start_date": "2020-12-22", "status_field": "UF_CRM_SYNC_STATUS"})
}

fn with_registry<R>(f: impl FnOnce(&Registry) -> R) -> R {
    f(crate::connectors::registry())
}
fn connections_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let one = with_registry(|r| component::one_of(&r.connections, g));
    schemars::json_schema!({"type": "object", "additionalProperties": one})
}
fn source_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    with_registry(|r| component::one_of(&r.sources, g))
}
fn steps_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let one = with_registry(|r| component::one_of(&r.steps, g));
    schemars::json_schema!({"type": "array", "items": one})
}
fn sinks_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let one = with_registry(|r| component::one_of(&r.sinks, g));
    schemars::json_schema!({"type": "array", "items": one})
}

/// A loaded, compiled pipeline, ready to run.
pub struct Pipeline {
    pub name: String,
    pub file: String,
    pub settings: Arc<Json>,
    pub source: Box<dyn Source>,
    pub steps: Vec<Arc<dyn Step>>,
    pub sinks: Vec<Labeled>,
    pub on_success: Vec<Labeled>,
    pub on_error: Vec<Labeled>,
    pub journal: Option<expr::Template>,
}

/// A sink with the name it has in journals and dry-run output.
pub struct Labeled {
    pub label: String,
    pub sink: Arc<dyn Sink>,
}

#[derive(Default, Clone)]
pub struct LoadOptions {
    /// `--set key.path=yaml` overrides, applied before anything else.
    pub sets: Vec<(String, String)>,
    /// Environment values that win over the process environment (sandbox mode).
    pub env: HashMap<String, String>,
}

/// All problems of one load, renderable with snippets.
#[derive(Debug)]
pub struct LoadErrors {
    pub diagnostics: Vec<Diagnostic>,
    pub sources: HashMap<String, String>,
}

impl LoadErrors {
    pub fn render(&self) -> String {
        self.diagnostics
            .iter()
            .map(|d| secrets::redact(&d.render(self.sources.get(&*d.file).map(String::as_str))))
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

// ---- the per-load context templates and references consult while they are deserialized ----

#[derive(Default)]
struct LoadState {
    diagnostics: Vec<Diagnostic>,
    roots: Vec<String>,
    steps: Vec<String>,
    connections: Vec<String>,
}

thread_local! {
    static LOAD: RefCell<Option<LoadState>> = const { RefCell::new(None) };
}

/// Record a problem found while deserializing (outside a load it is dropped).
pub fn report(d: Diagnostic) {
    LOAD.with(|l| {
        if let Some(state) = l.borrow_mut().as_mut() {
            state.diagnostics.push(d);
        }
    });
}

/// Variables and step ids a template at the current place may use.
pub fn template_scope() -> (Vec<String>, Vec<String>) {
    LOAD.with(|l| match l.borrow().as_ref() {
        Some(s) => (s.roots.clone(), s.steps.clone()),
        None => (
            expr::HOOK_ROOTS.iter().map(|s| s.to_string()).collect(),
            Vec::new(),
        ),
    })
}

pub fn connection_names() -> Vec<String> {
    LOAD.with(|l| {
        l.borrow()
            .as_ref()
            .map(|s| s.connections.clone())
            .unwrap_or_default()
    })
}

fn set_scope(roots: &[&str], steps: &[String]) {
    LOAD.with(|l| {
        if let Some(s) = l.borrow_mut().as_mut() {
            s.roots = roots.iter().map(|r| r.to_string()).collect();
            s.steps = steps.to_vec();
        }
    });
}

/// Load and compile a pipeline file.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Pipeline, LoadErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| LoadErrors {
        diagnostics: vec![Diagnostic::at_pos(
            &Arc::from(file.as_str()),
            Pos { line: 1, col: 1 },
            1,
            format!("cannot read file: {e}"),
        )],
        sources: HashMap::new(),
    })?;
    load_str(&text, &file, opts)
}

pub fn load_str(text: &str, file: &str, opts: &LoadOptions) -> Result<Pipeline, LoadErrors> {
    let sources = HashMap::from([(file.to_string(), text.to_string())]);
    let fail = |diagnostics: Vec<Diagnostic>| LoadErrors {
        diagnostics,
        sources: sources.clone(),
    };
    let mut root = node::parse(text, file).map_err(|errs| {
        let f: Arc<str> = Arc::from(file);
        fail(
            errs.into_iter()
                .map(|e| Diagnostic::at_pos(&f, e.pos, 1, e.message))
                .collect(),
        )
    })?;
    let mut diagnostics = Vec::new();
    for (key, value) in &opts.sets {
        if let Err(d) = apply_set(&mut root, key, value) {
            diagnostics.push(d);
        }
    }
    resolve_env(&mut root, &opts.env, &mut diagnostics);
    if !matches!(root.kind, Kind::Map(_)) {
        diagnostics.push(Diagnostic::at(
            &root,
            format!(
                "a pipeline is a mapping with `name`, `source`, `steps`, `sinks`; found {}",
                root.type_name()
            ),
        ));
        return Err(fail(diagnostics));
    }

    LOAD.with(|l| *l.borrow_mut() = Some(LoadState::default()));
    let result = build_pipeline(&root, file, &mut diagnostics);
    let reported = LOAD
        .with(|l| l.borrow_mut().take())
        .map(|s| s.diagnostics)
        .unwrap_or_default();
    diagnostics.extend(reported);
    diagnostics.sort_by_key(|d| (d.span.start.line, d.span.start.col));
    diagnostics.dedup_by(|a, b| a.span == b.span && a.message == b.message);
    match result {
        Some(p) if diagnostics.is_empty() => Ok(p),
        _ => Err(fail(diagnostics)),
    }
}

fn build_pipeline(root: &Node, file: &str, diagnostics: &mut Vec<Diagnostic>) -> Option<Pipeline> {
    let doc: PipelineDoc = match from_node(root) {
        Ok(d) => d,
        Err(d) => {
            diagnostics.push(d);
            return None;
        }
    };
    let registry = crate::connectors::registry();
    let settings = doc
        .settings
        .as_ref()
        .map(|s| s.0.to_json())
        .unwrap_or(Json::Object(Default::default()));
    if !settings.is_object() {
        diagnostics.push(Diagnostic::at(
            &doc.settings.as_ref().unwrap().0,
            "`settings` must be a mapping",
        ));
    }

    let mut connections = BTreeMap::new();
    if let Some(RawNode(conns)) = &doc.connections {
        match conns.as_map() {
            Some(entries) => {
                for (k, v) in entries {
                    let name = k.key_text();
                    let empty = BTreeMap::new();
                    let ctx = BuildCtx {
                        pipeline: &doc.name,
                        id: None,
                        settings: &settings,
                        connections: &empty,
                    };
                    match component::build(&registry.connections, "connection", v, &ctx) {
                        Ok(c) => {
                            let kind = v
                                .get("type")
                                .and_then(Node::as_str)
                                .unwrap_or_default()
                                .to_string();
                            connections.insert(name, (kind, c));
                        }
                        Err(d) => diagnostics.push(d),
                    }
                }
            }
            None => diagnostics.push(Diagnostic::at(
                conns,
                "`connections` must be a mapping of names to connections",
            )),
        }
    }
    // References to connections that failed to build still count as known: one error is enough.
    let mut names: Vec<String> = connections.keys().cloned().collect();
    if let Some(entries) = doc.connections.as_ref().and_then(|c| c.0.as_map()) {
        names = entries.iter().map(|(k, _)| k.key_text()).collect();
    }
    LOAD.with(|l| {
        if let Some(s) = l.borrow_mut().as_mut() {
            s.connections = names;
        }
    });
    let ctx = BuildCtx {
        pipeline: &doc.name,
        id: None,
        settings: &settings,
        connections: &connections,
    };

    set_scope(expr::SOURCE_ROOTS, &[]);
    let source = component::build(&registry.sources, "source", &doc.source.0, &ctx)
        .map_err(|d| diagnostics.push(d))
        .ok();

    let mut step_ids: Vec<String> = Vec::new();
    let mut steps = Vec::new();
    for RawNode(node) in &doc.steps {
        set_scope(expr::RECORD_ROOTS, &step_ids);
        match component::build(&registry.steps, "step", node, &ctx) {
            Ok(s) => steps.push(s),
            Err(d) => diagnostics.push(d),
        }
        if let Some(id_node) = node.get("id") {
            let id = id_node.key_text();
            if step_ids.contains(&id) {
                diagnostics.push(Diagnostic::at(id_node, format!("duplicate step id `{id}`")));
            }
            step_ids.push(id);
        }
    }
    let mut build_sinks = |nodes: &[RawNode], roots: &[&str], what: &str| -> Vec<Labeled> {
        set_scope(roots, &step_ids);
        let mut out = Vec::new();
        for (i, RawNode(node)) in nodes.iter().enumerate() {
            match component::build(&registry.sinks, "sink", node, &ctx) {
                Ok(sink) => out.push(Labeled {
                    label: label_of(node, what, i),
                    sink,
                }),
                Err(d) => diagnostics.push(d),
            }
        }
        out
    };
    let sinks = build_sinks(&doc.sinks, expr::RECORD_ROOTS, "sink");
    let on_success = build_sinks(&doc.on_success, expr::HOOK_ROOTS, "on_success");
    let on_error = build_sinks(&doc.on_error, expr::HOOK_ROOTS, "on_error");
    set_scope(expr::JOURNAL_ROOTS, &[]);
    let journal = doc
        .journal
        .as_ref()
        .map(|RawNode(n)| expr::template::from_node(n));

    Some(Pipeline {
        name: doc.name,
        file: file.to_string(),
        settings: Arc::new(settings),
        source: source?,
        steps,
        sinks,
        on_success,
        on_error,
        journal,
    })
}

fn label_of(node: &Node, what: &str, index: usize) -> String {
    let id = node.get("id").map(Node::key_text);
    let kind = node.get("type").map(Node::key_text).unwrap_or_default();
    match id {
        Some(id) => format!("{what} {id} ({kind})"),
        None => format!("{what}[{index}] ({kind})"),
    }
}

/// `settings.department_ids=[2, 3]`: the value is YAML, placed at the dotted path.
fn apply_set(root: &mut Node, key: &str, value: &str) -> Result<(), Diagnostic> {
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
fn resolve_env(
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
