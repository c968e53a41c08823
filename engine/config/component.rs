//! The component registry: every connection kind, source, step and sink is a config type that
//! doubles as its JSON Schema and docs, plus a `build` that turns it into a running component.
//! A connector registers its components in one function; nothing else in the engine changes.

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Value as Json, json};

use crate::runtime::{Sink, Source, Step};
use crate::syntax::de::{capture_node, from_node};
use crate::syntax::diag::{Diagnostic, unknown_message};
use crate::syntax::node::{Kind, Node};

/// The connections of a pipeline as the loader built them.
#[derive(Default)]
pub struct Connections {
    /// Connections that built, by name, with their `type:`.
    pub built: BTreeMap<String, (String, Arc<dyn Any + Send + Sync>)>,
    /// Every name under `connections:`, including those that failed to build (already reported).
    pub declared: Vec<String>,
}

/// Everything a config needs to build its component: the pipeline around it, its connections,
/// and the registry, for components that contain other components (a table's inputs).
#[derive(Clone)]
pub struct BuildCtx<'a> {
    pub pipeline: &'a str,
    /// The component's `id:`, if it has one.
    pub id: Option<String>,
    pub settings: &'a Json,
    connections: &'a Connections,
    registry: &'a Registry,
    /// A build error located more precisely than the component (a connection reference); the
    /// component's builder takes it instead of pointing at the whole component.
    blame: Rc<RefCell<Option<Diagnostic>>>,
}

impl<'a> BuildCtx<'a> {
    pub fn new(
        pipeline: &'a str,
        settings: &'a Json,
        connections: &'a Connections,
        registry: &'a Registry,
    ) -> BuildCtx<'a> {
        BuildCtx {
            pipeline,
            id: None,
            settings,
            connections,
            registry,
            blame: Rc::default(),
        }
    }

    /// The connection `name` as type `T`. A name not under `connections:` is reported where the
    /// reference is written.
    pub fn connection<T: Any + Send + Sync>(&self, name: &ConnectionRef) -> Result<Arc<T>, String> {
        let declared = &self.connections.declared;
        if !declared.contains(&name.name) {
            let names: Vec<&str> = declared.iter().map(String::as_str).collect();
            let message = unknown_message("connection", &name.name, &names);
            *self.blame.borrow_mut() = Some(Diagnostic::at(&name.node, message.clone()));
            return Err(message);
        }
        let Some((kind, conn)) = self.connections.built.get(&name.name) else {
            // Declared, but it did not build: that is reported at the connection already.
            let message = format!("connection `{}` could not be set up", name.name);
            *self.blame.borrow_mut() = Some(Diagnostic::at(&name.node, message.clone()).follows());
            return Err(message);
        };
        conn.clone().downcast::<T>().map_err(|_| {
            format!(
                "connection `{}` is a `{kind}` connection, which this component cannot use",
                name.name
            )
        })
    }

    /// Build a source nested in this component (e.g. a table's input), dispatching on its `type:`.
    pub fn build_source(&self, node: &Node) -> Result<Box<dyn Source>, Diagnostic> {
        build(&self.registry.sources, "source", node, self)
    }
}

pub trait ConnectionConfig: DeserializeOwned + JsonSchema {
    fn build(self) -> Result<Arc<dyn Any + Send + Sync>, String>;
}
pub trait SourceConfig: DeserializeOwned + JsonSchema {
    fn build(self, ctx: &BuildCtx) -> Result<Box<dyn Source>, String>;
}
pub trait StepConfig: DeserializeOwned + JsonSchema {
    fn build(self, ctx: &BuildCtx) -> Result<Arc<dyn Step>, String>;
}
pub trait SinkConfig: DeserializeOwned + JsonSchema {
    fn build(self, ctx: &BuildCtx) -> Result<Arc<dyn Sink>, String>;
}

type Builder<T> = Box<dyn Fn(&Node, &BuildCtx) -> Result<T, Diagnostic> + Send + Sync>;
type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

pub struct Entry<T> {
    pub name: &'static str,
    build: Builder<T>,
    schema: SchemaFn,
}

impl<T> Entry<T> {
    /// The JSON Schema of the component's own keys (without `type` and `id`).
    pub fn schema(&self, g: &mut SchemaGenerator) -> Schema {
        (self.schema)(g)
    }
}

#[derive(Default)]
pub struct Registry {
    pub connections: Vec<Entry<Arc<dyn Any + Send + Sync>>>,
    pub sources: Vec<Entry<Box<dyn Source>>>,
    pub steps: Vec<Entry<Arc<dyn Step>>>,
    pub sinks: Vec<Entry<Arc<dyn Sink>>>,
}

fn entry<C: DeserializeOwned + JsonSchema, T: 'static>(
    name: &'static str,
    build: impl Fn(C, &BuildCtx) -> Result<T, String> + Send + Sync + 'static,
) -> Entry<T> {
    Entry {
        name,
        build: Box::new(move |node, ctx| {
            let body = without_type(node);
            let config: C = from_node(&body)?;
            build(config, ctx).map_err(|message| {
                let blamed = ctx.blame.borrow_mut().take();
                let d = blamed
                    .filter(|d| d.message == message)
                    .unwrap_or_else(|| Diagnostic::at(node, message));
                // Built from a stand-in for a value the environment did not fill, the
                // component cannot be judged: the missing value is the error.
                if node.has_unresolved() {
                    d.follows()
                } else {
                    d
                }
            })
        }),
        schema: |g| C::json_schema(g),
    }
}

impl Registry {
    pub fn connection<C: ConnectionConfig + 'static>(&mut self, name: &'static str) {
        self.connections.push(entry(name, |c: C, _| c.build()));
    }
    pub fn source<C: SourceConfig + 'static>(&mut self, name: &'static str) {
        self.sources.push(entry(name, |c: C, ctx| c.build(ctx)));
    }
    pub fn step<C: StepConfig + 'static>(&mut self, name: &'static str) {
        self.steps.push(entry(name, |c: C, ctx| c.build(ctx)));
    }
    pub fn sink<C: SinkConfig + 'static>(&mut self, name: &'static str) {
        self.sinks.push(entry(name, |c: C, ctx| c.build(ctx)));
    }
}

/// Build a component from its node, dispatching on `type:`.
pub fn build<T>(
    entries: &[Entry<T>],
    what: &str,
    node: &Node,
    ctx: &BuildCtx,
) -> Result<T, Diagnostic> {
    let Some(type_node) = node.get("type") else {
        return Err(match node.kind {
            Kind::Map(_) => Diagnostic::at(
                node,
                format!("missing required key `type` (the kind of {what})"),
            ),
            _ => Diagnostic::at(
                node,
                format!(
                    "expected a mapping with a `type:` key, found {}",
                    node.type_name()
                ),
            ),
        });
    };
    let name = type_node.as_str().unwrap_or_default();
    let names: Vec<&str> = entries.iter().map(|e| e.name).collect();
    let Some(entry) = entries.iter().find(|e| e.name == name) else {
        return Err(Diagnostic::at(
            type_node,
            unknown_message(&format!("{what} type"), name, &names),
        ));
    };
    let ctx = BuildCtx {
        id: node.get("id").map(Node::key_text),
        blame: Rc::default(),
        ..ctx.clone()
    };
    (entry.build)(node, &ctx)
}

/// The mapping without the keys every component has (`type`, and `id` that names it):
/// component configs reject unknown keys.
fn without_type(node: &Node) -> Node {
    let mut body = node.clone();
    if let Kind::Map(entries) = &mut body.kind {
        entries.retain(|(k, _)| !matches!(k.as_str(), Some("type" | "id")));
    }
    body
}

/// The schema of a component chosen by its `type:` (`what` names the kind: "source", "sink"...).
/// Each entry's own schema, with `type` (its constant) and `id` added and a title, applies
/// `if` the `type` is its name: editors then complete the keys of the chosen type only, and a
/// misspelt type is one error (not in the `enum`, whose descriptions the editor shows) instead
/// of one per entry, as a bare `oneOf` gave.
pub fn by_type<T>(entries: &[Entry<T>], what: &str, g: &mut SchemaGenerator) -> Schema {
    if entries.is_empty() {
        return schemars::json_schema!({"type": "object"});
    }
    let mut names = Vec::new();
    let mut descriptions = Vec::new();
    let mut branches = Vec::new();
    for e in entries {
        let body = entry_schema(e, what, g);
        names.push(e.name);
        descriptions.push(body.get("description").cloned().unwrap_or_default());
        branches.push(json!({
            "if": {"properties": {"type": {"const": e.name}}, "required": ["type"]},
            "then": body,
        }));
    }
    let schema = json!({
        "title": what,
        "type": "object",
        "required": ["type"],
        "properties": {"type": {
            "description": format!("The kind of {what}."),
            "enum": names,
            "enumDescriptions": descriptions,
        }},
        "allOf": branches,
    });
    Schema::try_from(schema).expect("schema object")
}

/// One entry's config schema as a component: titled, with `type` and `id` first and `type` required.
fn entry_schema<T>(e: &Entry<T>, what: &str, g: &mut SchemaGenerator) -> Json {
    let mut body = (e.schema)(g).to_value();
    if let Some(obj) = body.as_object_mut() {
        let props = obj.entry("properties").or_insert_with(|| json!({}));
        if let Some(props) = props.as_object_mut() {
            let mut with_type = serde_json::Map::new();
            with_type.insert("type".into(), json!({"const": e.name}));
            with_type.insert(
                "id".into(),
                json!({"type": "string", "description": "Names this component; a step's output is then `steps.<id>`."}),
            );
            with_type.extend(std::mem::take(props));
            *props = with_type;
        }
        let required = obj.entry("required").or_insert_with(|| json!([]));
        if let Some(list) = required.as_array_mut() {
            list.insert(0, Json::from("type"));
        }
        obj.insert("title".into(), Json::from(format!("{} {what}", e.name)));
    }
    body
}

/// A reference to a named connection, with where it is written; checked against
/// `connections:` when the component is built ([`BuildCtx::connection`]).
#[derive(Clone, Debug)]
pub struct ConnectionRef {
    pub name: String,
    node: Node,
}

impl<'de> Deserialize<'de> for ConnectionRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = capture_node(d)?;
        let name = node
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| node.key_text());
        Ok(ConnectionRef { name, node })
    }
}

impl JsonSchema for ConnectionRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ConnectionRef".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({"type": "string", "description": "Name of an entry under `connections:`."})
    }
}
