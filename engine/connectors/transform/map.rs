//! `map`: build the record from templates and JSON paths, one field at a time.

use std::sync::Arc;

use async_trait::async_trait;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value as Json};

use crate::config::{BuildCtx, component::StepConfig};
use crate::expr::{JsonPath, Template};
use crate::runtime::{Fatal, Item, RunCtx, Step, parallel};
use crate::syntax::de::{capture_node, from_node};
use crate::syntax::node::Kind;
use crate::syntax::session;

/// Build the record from templates and JSON paths. The result replaces `record`
/// (and is `steps.<id>` when the step has an `id`).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapConfig {
    /// Output fields in order: a template (`"{{ source.NAME }}"`), a constant, or
    /// `{value | path, required, default}`.
    #[schemars(example = fields_example())]
    pub fields: IndexMap<String, FieldSpec>,
    /// Start from the current record and add/replace fields, instead of starting empty.
    #[serde(default)]
    pub keep: bool,
    /// Leave out fields whose value is null (optional fields such as an e-mail).
    #[serde(default = "yes")]
    pub omit_null: bool,
}

fn yes() -> bool {
    true
}

fn fields_example() -> Json {
    serde_json::json!({
        "last_name": {"value": "{{ source.UF_CRM_57AD7FAF7E6C4 }}", "required": true},
        "phone": {"value": "{{ source.PHONE | first | attr('VALUE') | phone }}", "required": true},
        "email": {"path": "$.EMAIL[0].VALUE"},
        "gender": "M"
    })
}

/// How one output field is computed.
#[derive(JsonSchema)]
#[schemars(untagged)]
pub enum FieldSpec {
    /// A template or constant.
    Short(Template),
    Full(FieldObject),
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldObject {
    /// Template or constant giving the value.
    #[serde(default)]
    pub value: Option<Template>,
    /// JSON path into the current record (the source record until a `map` replaced it).
    #[serde(default)]
    pub path: Option<JsonPath>,
    /// Missing or empty fails the record with "field X is required".
    #[serde(default)]
    pub required: bool,
    /// Used when the value is null or empty.
    #[serde(default)]
    pub default: Option<Json>,
}

impl<'de> Deserialize<'de> for FieldSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = capture_node(d)?;
        match node.kind {
            Kind::Map(_) => {
                let obj: FieldObject = from_node(&node).map_err(|diag| {
                    session::report(diag);
                    serde::de::Error::custom("invalid field")
                })?;
                if obj.value.is_some() == obj.path.is_some() {
                    session::report(crate::syntax::Diagnostic::at(
                        &node,
                        "a field has exactly one of `value` or `path`",
                    ));
                }
                Ok(FieldSpec::Full(obj))
            }
            _ => Ok(FieldSpec::Short(crate::expr::template::from_node(&node))),
        }
    }
}

impl StepConfig for MapConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Arc<dyn Step>, String> {
        Ok(Arc::new(MapStep {
            fields: self.fields.into_iter().collect(),
            keep: self.keep,
            omit_null: self.omit_null,
            id: ctx.id.clone(),
        }))
    }
}

struct MapStep {
    id: Option<String>,
    fields: Vec<(String, FieldSpec)>,
    keep: bool,
    omit_null: bool,
}

fn is_empty(v: &Json) -> bool {
    match v {
        Json::Null => true,
        // `trim().is_empty()`, stopping at the first character that is not white space.
        Json::String(s) => s.chars().all(char::is_whitespace),
        Json::Array(a) => a.is_empty(),
        _ => false,
    }
}

impl MapStep {
    fn map_one(&self, item: &Item, ctx: &RunCtx) -> Result<Json, String> {
        let mut out = match (self.keep, item.record.data.as_ref()) {
            (true, Json::Object(m)) => m.clone(),
            _ => Map::with_capacity(self.fields.len()),
        };
        let scope = ctx.scope(item);
        for (name, spec) in &self.fields {
            let (mut value, required, default) = match spec {
                FieldSpec::Short(t) => (
                    t.eval(&scope).map_err(|e| format!("field {name}: {e}"))?,
                    false,
                    None,
                ),
                FieldSpec::Full(f) => {
                    let v = match (&f.value, &f.path) {
                        (Some(t), _) => t.eval(&scope).map_err(|e| format!("field {name}: {e}"))?,
                        (None, Some(p)) => {
                            p.first(&item.record.data).cloned().unwrap_or(Json::Null)
                        }
                        (None, None) => Json::Null,
                    };
                    (v, f.required, f.default.as_ref())
                }
            };
            if let Some(d) = default
                && is_empty(&value)
            {
                value = d.clone();
            }
            if required && is_empty(&value) {
                return Err(format!("field {name} is required"));
            }
            if value.is_null() && self.omit_null {
                continue;
            }
            out.insert(name.clone(), value);
        }
        Ok(Json::Object(out))
    }
}

#[async_trait]
impl Step for MapStep {
    async fn process(&self, items: &mut [Item], ctx: &RunCtx) -> Result<(), Fatal> {
        parallel::for_each_pending(items, |item| match self.map_one(item, ctx) {
            Ok(data) => {
                if let Some(id) = &self.id {
                    item.record.set_step_output(id, data.clone());
                }
                item.record.data = Arc::new(data);
            }
            Err(reason) => item.fail(reason),
        });
        Ok(())
    }
}
