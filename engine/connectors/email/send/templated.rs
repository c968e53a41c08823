//! A value whose every text is a template: `to: ["{{ source.EMAIL }}", "boss@x.ru:Шеф"]`, or an
//! attachment list of `{url, name}` objects, or a single template giving the whole list.

use indexmap::IndexMap;
use minijinja::value::Value;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value as Json};

use crate::expr::Template;
use crate::expr::template::from_node;
use crate::syntax::de::capture_node;
use crate::syntax::node::Kind;

#[derive(Clone, Debug)]
pub enum Templated {
    One(Template),
    List(Vec<Templated>),
    Object(IndexMap<String, Templated>),
}

impl Templated {
    pub fn eval(&self, scope: &Value) -> Result<Json, String> {
        Ok(match self {
            Templated::One(t) => t.eval(scope)?,
            Templated::List(items) => Json::Array(
                items
                    .iter()
                    .map(|i| i.eval(scope))
                    .collect::<Result<_, _>>()?,
            ),
            Templated::Object(fields) => {
                let mut out = Map::new();
                for (k, v) in fields {
                    out.insert(k.clone(), v.eval(scope)?);
                }
                Json::Object(out)
            }
        })
    }
}

fn build(node: &crate::syntax::node::Node) -> Templated {
    match &node.kind {
        Kind::Seq(items) => Templated::List(items.iter().map(build).collect()),
        Kind::Map(pairs) => Templated::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.key_text(), build(v)))
                .collect(),
        ),
        _ => Templated::One(from_node(node)),
    }
}

impl<'de> Deserialize<'de> for Templated {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = capture_node(d)?;
        Ok(build(&node))
    }
}

impl JsonSchema for Templated {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TemplatedValue".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A template giving the whole value (`{{ source.EMAILS }}`), or a list or object whose texts are templates.",
            "type": ["string", "array", "object", "null"]
        })
    }
}
