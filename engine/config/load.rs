//! Loading a pipeline file: YAML -> nodes -> `--set` overrides -> `${env:...}` references ->
//! typed components. Every problem found on the way is collected with its position.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use super::component::{self, BuildCtx, Connections, Registry};
use super::overrides::{self, EnvMode, apply_set, resolve_env};
use crate::expr;
use crate::runtime::{Labeled, Pipeline};
use crate::secrets;
use crate::syntax::de::{RawNode, from_node};
use crate::syntax::diag::Diagnostic;
use crate::syntax::node::{self, Filled, Kind, Node, Pos, Span};
use crate::syntax::read::read_source;
use crate::syntax::session::Session;

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
    #[schemars(schema_with = "from_registry")]
    pub connections: Option<RawNode>,
    /// Where records come from.
    #[schemars(schema_with = "from_registry")]
    pub source: RawNode,
    /// What happens to each record, in order: mappings, filters, lookups.
    #[serde(default)]
    #[schemars(schema_with = "from_registry")]
    pub steps: Vec<RawNode>,
    /// Where records go.
    #[serde(default)]
    #[schemars(schema_with = "from_registry")]
    pub sinks: Vec<RawNode>,
    /// Run for every record that ended `ok` (e.g. write "Успешно" to a status field).
    /// Templates also see `outcome` and `error`.
    #[serde(default)]
    #[schemars(schema_with = "from_registry")]
    pub on_success: Vec<RawNode>,
    /// Run for every record that `failed`, with its reason in `error`.
    #[serde(default)]
    #[schemars(schema_with = "from_registry")]
    pub on_error: Vec<RawNode>,
    /// Shape of the journal written by `--journal FILE` (and answered by `etl serve`), as one
    /// template expression over `success`, `status`, `error`, `counts`, `counters`, `log`,
    /// `settings` and `run`. Without it the journal lists every record.
    #[serde(default)]
    #[schemars(example = journal_example())]
    pub journal: Option<RawNode>,
    /// When `etl serve` runs this pipeline on its own: cron (`"*/5 * * * *"`, or six fields with
    /// seconds first), optionally with a time zone: `{cron: "0 3 * * *", tz: Europe/Moscow}`.
    #[serde(default)]
    #[schemars(with = "Option<super::serve::ScheduleDoc>")]
    pub schedule: Option<RawNode>,
    /// Settings a `GET /run/<pipeline>` request may set from its query string (`?update_db`);
    /// any other query parameter is refused with 400.
    #[serde(default)]
    #[schemars(with = "Vec<String>", example = serve_settings_example())]
    pub serve_settings: Option<RawNode>,
}

fn serve_settings_example() -> Json {
    serde_json::json!(["update_db"])
}

fn journal_example() -> &'static str {
    "{{ {'success': true, 'journal': counters} if success else {'success': false, 'message': 'ERROR: ' ~ error} }}"
}

fn settings_example() -> Json {
    serde_json::json!({"sync_start_date": "2020-12-22", "status_field": "UF_CRM_SYNC_STATUS"})
}

/// The component lists of the schema come from the registry, which `schema::pipeline_schema`
/// is given; here they are left open and filled in there.
fn from_registry(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::Schema::default()
}

#[derive(Default, Clone)]
pub struct LoadOptions {
    /// `--set key.path=yaml` overrides, applied before anything else.
    pub sets: Vec<(String, String)>,
    /// Environment values that win over the process environment (sandbox mode).
    pub env: HashMap<String, String>,
    /// `etl validate --no-env`: `${env:...}` references are checked for their syntax, and what
    /// depends on their values is not judged (validation in CI without the secrets).
    pub no_env: bool,
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

/// Load and compile a pipeline file with the components of `registry`.
pub fn load(path: &Path, registry: &Registry, opts: &LoadOptions) -> Result<Pipeline, LoadErrors> {
    let (text, file) = read(path)?;
    load_str(&text, &file, registry, opts)
}

/// Check a pipeline file without running it (`etl validate`). With [`LoadOptions::no_env`] a
/// file can be valid although it cannot be built: what its references stand for is unknown.
pub fn check(path: &Path, registry: &Registry, opts: &LoadOptions) -> Result<(), LoadErrors> {
    let (text, file) = read(path)?;
    let (_, diagnostics) = compile(&text, &file, registry, opts);
    if diagnostics.is_empty() {
        Ok(())
    } else {
        Err(errors_of(&text, &file, diagnostics))
    }
}

fn read(path: &Path) -> Result<(String, String), LoadErrors> {
    let file = path.display().to_string();
    match read_source(path, &Arc::from(file.as_str())) {
        Ok(text) => Ok((text, file)),
        Err(d) => Err(LoadErrors {
            diagnostics: vec![d],
            sources: HashMap::new(),
        }),
    }
}

fn errors_of(text: &str, file: &str, diagnostics: Vec<Diagnostic>) -> LoadErrors {
    LoadErrors {
        diagnostics,
        sources: HashMap::from([(file.to_string(), text.to_string())]),
    }
}

pub fn load_str(
    text: &str,
    file: &str,
    registry: &Registry,
    opts: &LoadOptions,
) -> Result<Pipeline, LoadErrors> {
    match compile(text, file, registry, opts) {
        (Some(p), diagnostics) if diagnostics.is_empty() => Ok(p),
        (_, mut diagnostics) => {
            if diagnostics.is_empty() {
                // Only `no_env` leaves a pipeline unbuilt without a reason to show.
                diagnostics.push(Diagnostic::at_pos(
                    &Arc::from(file),
                    Pos { line: 1, col: 1 },
                    1,
                    "the pipeline cannot be built without its environment values",
                ));
            }
            Err(errors_of(text, file, diagnostics))
        }
    }
}

/// Every step of a load; the pipeline when it built, and every problem found on the way.
fn compile(
    text: &str,
    file: &str,
    registry: &Registry,
    opts: &LoadOptions,
) -> (Option<Pipeline>, Vec<Diagnostic>) {
    let mut root = match node::parse(text, file) {
        Ok(root) => root,
        Err(errs) => {
            let f: Arc<str> = Arc::from(file);
            let diagnostics = errs
                .into_iter()
                .map(|e| Diagnostic::at_pos(&f, e.pos, 1, e.message))
                .collect();
            return (None, diagnostics);
        }
    };
    let declared = overrides::declared_settings(&root);
    let mut diagnostics = Vec::new();
    for (key, value) in &opts.sets {
        if let Err(d) = apply_set(&mut root, key, value) {
            diagnostics.push(d);
        }
    }
    let mode = if opts.no_env {
        EnvMode::SyntaxOnly
    } else {
        EnvMode::Resolve
    };
    let mut env_problems = Vec::new();
    resolve_env(&mut root, &opts.env, mode, &mut env_problems);
    if !matches!(root.kind, Kind::Map(_)) {
        let found = match root.kind {
            Kind::Null => "an empty document".to_string(),
            _ => root.type_name().to_string(),
        };
        diagnostics.push(Diagnostic::at(
            &root,
            format!(
                "a pipeline is a mapping with `name`, `source`, `steps`, `sinks`; found {found}"
            ),
        ));
        return (None, diagnostics);
    }

    let session = Session::open();
    // Templates may use what the file declares and what `--set` gives a value.
    let mut usable = declared.clone();
    usable.extend(overrides::set_setting_names(&opts.sets));
    session.declare_settings(usable);
    let result = build_pipeline(&root, file, registry, &session, &mut diagnostics);
    overrides::check_set_settings(&root, text, file, &opts.sets, &declared, &mut diagnostics);
    diagnostics.extend(session.close());
    // One mistake, one error: what only follows from a value the environment did not fill (or
    // from a connection that failed) is left out, and the missing value is reported instead.
    let unresolved = unresolved_spans(&root);
    diagnostics.retain(|d| !d.secondary && !unresolved.contains(&d.span));
    diagnostics.extend(env_problems);
    diagnostics.sort_by_key(|d| (d.span.start.line, d.span.start.col));
    diagnostics.dedup_by(|a, b| a.span == b.span && a.message == b.message);
    (result, diagnostics)
}

/// Where the scalars are whose value the environment did not fill.
fn unresolved_spans(node: &Node) -> Vec<Span> {
    match &node.kind {
        Kind::Seq(items) => items.iter().flat_map(unresolved_spans).collect(),
        Kind::Map(entries) => entries
            .iter()
            .flat_map(|(_, v)| unresolved_spans(v))
            .collect(),
        _ if node.filled == Filled::Unresolved => vec![node.span],
        _ => Vec::new(),
    }
}

fn build_pipeline(
    root: &Node,
    file: &str,
    registry: &Registry,
    session: &Session,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Pipeline> {
    let doc: PipelineDoc = match from_node(root) {
        Ok(d) => d,
        Err(d) => {
            diagnostics.push(d);
            return None;
        }
    };
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
    let connections = build_connections(&doc, &settings, registry, diagnostics);
    let ctx = BuildCtx::new(&doc.name, &settings, &connections, registry);

    // A source that answers its caller once the record is done (a business-process action's
    // reply) may name every step; others cannot reach `steps` at all (not a root of theirs).
    let all_step_ids: Vec<String> = doc
        .steps
        .iter()
        .filter_map(|RawNode(n)| n.get("id").and_then(|i| i.as_str()).map(String::from))
        .collect();
    session.set_scope(expr::SOURCE_ROOTS, &all_step_ids);
    let source = component::build(&registry.sources, "source", &doc.source.0, &ctx)
        .map_err(|d| diagnostics.push(d))
        .ok();

    let mut step_ids: Vec<String> = Vec::new();
    let mut steps = Vec::new();
    for RawNode(node) in &doc.steps {
        session.set_scope(expr::RECORD_ROOTS, &step_ids);
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
        session.set_scope(roots, &step_ids);
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
    session.set_scope(expr::JOURNAL_ROOTS, &[]);
    let journal = doc
        .journal
        .as_ref()
        .map(|RawNode(n)| expr::template::from_node(n));

    let schedule = doc.schedule.as_ref().and_then(|RawNode(n)| {
        super::serve::schedule(n)
            .map_err(|d| diagnostics.push(d))
            .ok()
    });
    let serve_settings = doc
        .serve_settings
        .as_ref()
        .map(|RawNode(n)| super::serve::serve_settings(n, &settings, diagnostics))
        .unwrap_or_default();

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
        schedule,
        serve_settings,
    })
}

/// Build every entry under `connections:`; one that fails is reported and stays declared, so
/// that references to it are not reported again as unknown.
fn build_connections(
    doc: &PipelineDoc,
    settings: &Json,
    registry: &Registry,
    diagnostics: &mut Vec<Diagnostic>,
) -> Connections {
    let mut connections = Connections::default();
    let Some(RawNode(conns)) = &doc.connections else {
        return connections;
    };
    let Some(entries) = conns.as_map() else {
        diagnostics.push(Diagnostic::at(
            conns,
            "`connections` must be a mapping of names to connections",
        ));
        return connections;
    };
    let none = Connections::default();
    let ctx = BuildCtx::new(&doc.name, settings, &none, registry);
    for (k, v) in entries {
        let name = k.key_text();
        connections.declared.push(name.clone());
        match component::build(&registry.connections, "connection", v, &ctx) {
            Ok(c) => {
                let kind = v
                    .get("type")
                    .and_then(Node::as_str)
                    .unwrap_or_default()
                    .to_string();
                connections.built.insert(name, (kind, c));
            }
            Err(d) => diagnostics.push(d),
        }
    }
    connections
}

fn label_of(node: &Node, what: &str, index: usize) -> String {
    let id = node.get("id").map(Node::key_text);
    let kind = node.get("type").map(Node::key_text).unwrap_or_default();
    match id {
        Some(id) => format!("{what} {id} ({kind})"),
        None => format!("{what}[{index}] ({kind})"),
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;

    use async_trait::async_trait;

    use super::*;
    use crate::config::ConnectionRef;
    use crate::config::component::{ConnectionConfig, SourceConfig};
    use crate::runtime::{Fatal, Record, RunCtx, Source};

    /// A registry of its own: loading needs no global list of components.
    #[derive(Deserialize, JsonSchema)]
    struct Conn {}
    impl ConnectionConfig for Conn {
        fn build(self) -> Result<Arc<dyn Any + Send + Sync>, String> {
            Ok(Arc::new(()))
        }
    }

    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Reader {
        connection: ConnectionRef,
        #[serde(default)]
        inner: Option<RawNode>,
    }
    impl SourceConfig for Reader {
        fn build(self, ctx: &BuildCtx) -> Result<Box<dyn Source>, String> {
            ctx.connection::<()>(&self.connection)?;
            if let Some(RawNode(node)) = &self.inner
                && let Err(d) = ctx.build_source(node)
            {
                // Reported where it is, like a table's inputs; the load fails with it.
                crate::syntax::session::report(d);
            }
            Ok(Box::new(Empty))
        }
    }

    struct Empty;
    #[async_trait]
    impl Source for Empty {
        async fn open(&mut self, _: &RunCtx, _: Option<Json>) -> Result<(), Fatal> {
            Ok(())
        }
        async fn next_batch(&mut self, _: &RunCtx) -> Result<Option<Vec<Record>>, Fatal> {
            Ok(None)
        }
    }

    fn registry() -> Registry {
        let mut r = Registry::default();
        r.connection::<Conn>("conn");
        r.source::<Reader>("reader");
        r
    }

    fn load_yaml(yaml: &str) -> Result<Pipeline, LoadErrors> {
        load_str(yaml, "p.yaml", &registry(), &LoadOptions::default())
    }

    #[test]
    fn connection_references_are_checked_where_they_are_written() {
        let head = "name: t\nconnections:\n  main: {type: conn}\n";
        assert!(
            load_yaml(&format!(
                "{head}source: {{type: reader, connection: main}}\n"
            ))
            .is_ok()
        );

        let errors = load_yaml(&format!(
            "{head}source:\n  type: reader\n  connection: mian\n"
        ))
        .err()
        .unwrap();
        let headlines: Vec<String> = errors.diagnostics.iter().map(|d| d.headline()).collect();
        assert_eq!(
            headlines,
            ["p.yaml:6:15: unknown connection `mian` (did you mean `main`?)"]
        );
    }

    #[test]
    fn nested_sources_are_built_from_the_registry_given() {
        let yaml = "name: t\nconnections:\n  main: {type: conn}\nsource:\n  type: reader\n  connection: main\n  inner: {type: reader, connection: nope}\n";
        let errors = load_yaml(yaml).err().unwrap();
        assert_eq!(
            errors.diagnostics[0].headline(),
            "p.yaml:7:37: unknown connection `nope`; expected one of: main"
        );
    }

    #[test]
    fn set_overrides_must_name_a_setting_the_file_declares_or_uses() {
        let yaml = "name: t\nsettings:\n  window: 3\nconnections:\n  main: {type: conn}\nsource: {type: reader, connection: main}\n";
        let opts = LoadOptions {
            sets: vec![("settings.widow".into(), "4".into())],
            ..Default::default()
        };
        let errors = load_str(yaml, "p.yaml", &registry(), &opts).err().unwrap();
        assert_eq!(
            errors.diagnostics[0].headline(),
            "p.yaml:2:1: --set settings.widow: unknown setting `widow` (did you mean `window`?)"
        );
    }
}
