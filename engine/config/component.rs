//! The component registry: every connection kind, source, step and sink is a config type that
//! doubles as its JSON Schema and docs, plus a `build` that turns it into a running component.
//! A connector registers its components in one function; nothing else in the engine changes.

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value as Json;

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

/// Starts a connector's emulator for `etl run --sandbox`; returns environment overrides
/// (e.g. `B24_WEBHOOK_URL`) that point the pipeline at it. The guard keeps it running.
pub type SandboxFuture = Pin<
    Box<dyn Future<Output = Result<(Vec<(String, String)>, Box<dyn Any + Send>), String>> + Send>,
>;
pub type SandboxFn = fn() -> SandboxFuture;

#[derive(Default)]
pub struct Registry {
    pub connections: Vec<Entry<Arc<dyn Any + Send + Sync>>>,
    pub sources: Vec<Entry<Box<dyn Source>>>,
    pub steps: Vec<Entry<Arc<dyn Step>>>,
    pub sinks: Vec<Entry<Arc<dyn Sink>>>,
    pub sandboxes: Vec<(&'static str, SandboxFn)>,
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
    pub fn sandbox(&mut self, name: &'static str, start: SandboxFn) {
        self.sandboxes.push((name, start));
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

/// `oneOf` over the entries: each entry's own schema with `type` (its constant) and `id` added,
/// so that editors complete the keys of the chosen type and flag unknown ones.
pub fn one_of<T>(entries: &[Entry<T>], g: &mut SchemaGenerator) -> Schema {
    let variants: Vec<Json> = entries
        .iter()
        .map(|e| {
            let mut body = (e.schema)(g).to_value();
            if let Some(obj) = body.as_object_mut() {
                let props = obj.entry("properties").or_insert_with(|| serde_json::json!({}));
                if let Some(props) = props.as_object_mut() {
                    let mut with_type = serde_json::Map::new();
                    with_type.insert("type".into(), serde_json::json!({"const": e.name}));
                    with_type.insert("id".into(), serde_json::json!({"type": "string", "description": "Names this component; a step's output is then `steps.<id>`."}));
                    with_type.extend(std::mem::take(props));
                    *props = with_type;
                }
                let required = obj.entry("required").or_insert_with(|| serde_json::json!([]));
                if let Some(list) = required.as_array_mut() {
                    list.insert(0, Json::from("type"));
                }
                obj.remove("title");
            }
            body
        })
        .collect();
    let names: Vec<&str> = entries.iter().map(|e| e.name).collect();
    let schema = if entries.is_empty() {
        serde_json::json!({"type": "object"})
    } else {
        serde_json::json!({"type": "object", "required": ["type"], "properties": {"type": {"enum": names}}, "oneOf": variants})
    };
    Schema::try_from(schema).expect("schema object")
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
