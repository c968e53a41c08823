//! Loading a pipeline file: YAML -> nodes -> `--set` overrides -> `${env:...}` references ->
//! typed components. Every problem found on the way is collected with its position.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use super::component::{self, BuildCtx, Connections, Registry};
use super::overrides::{apply_set, resolve_env};
use crate::expr;
use crate::runtime::{Labeled, Pipeline};
use crate::secrets;
use crate::syntax::de::{RawNode, from_node};
use crate::syntax::diag::Diagnostic;
use crate::syntax::node::{self, Kind, Node, Pos};
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
    load_str(&text, &file, registry, opts)
}

pub fn load_str(
    text: &str,
    file: &str,
    registry: &Registry,
    opts: &LoadOptions,
) -> Result<Pipeline, LoadErrors> {
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

    let session = Session::open();
    let result = build_pipeline(&root, file, registry, &session, &mut diagnostics);
    diagnostics.extend(session.close());
    diagnostics.sort_by_key(|d| (d.span.start.line, d.span.start.col));
    diagnostics.dedup_by(|a, b| a.span == b.span && a.message == b.message);
    match result {
        Some(p) if diagnostics.is_empty() => Ok(p),
        _ => Err(fail(diagnostics)),
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

    session.set_scope(expr::SOURCE_ROOTS, &[]);
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
}
