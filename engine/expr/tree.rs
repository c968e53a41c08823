//! Templates for places that see more than the record: the element of a `for_each` (`item`) and
//! the reason a call was refused (`error`); and parameter trees, YAML mappings and lists whose
//! text leaves are templates, evaluated to the JSON a method is called with.

use std::marker::PhantomData;
use std::sync::Arc;

use minijinja::value::{Object, Value};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value as Json};

use super::Template;
use super::template::from_node_with;
use crate::syntax::de::capture_node;
use crate::syntax::node::{Kind, Node};

/// The variables a kind of place adds to the record's.
pub trait Extra: Send + Sync + 'static {
    const ROOTS: &'static [&'static str];
}

/// Only the record's variables.
pub struct Plain;
impl Extra for Plain {
    const ROOTS: &'static [&'static str] = &[];
}

/// Also `item`: the element a `for_each` call is made for.
pub struct WithItem;
impl Extra for WithItem {
    const ROOTS: &'static [&'static str] = &["item"];
}

/// Also `error`: the portal's description of a refusal.
pub struct WithRefusal;
impl Extra for WithRefusal {
    const ROOTS: &'static [&'static str] = &["error"];
}

/// Also `error` (the portal's description of a refusal) and `item`.
pub struct WithError;
impl Extra for WithError {
    const ROOTS: &'static [&'static str] = &["error", "item"];
}

/// A template that may also use the variables of `E`.
pub struct TemplateIn<E: Extra>(pub Template, PhantomData<E>);

impl<'de, E: Extra> Deserialize<'de> for TemplateIn<E> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = capture_node(d)?;
        Ok(TemplateIn(from_node_with(&node, E::ROOTS), PhantomData))
    }
}

impl<E: Extra> schemars::JsonSchema for TemplateIn<E> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        Template::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        Template::schema_id()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        Template::json_schema(g)
    }
}

enum Tree {
    Leaf(Template),
    List(Vec<Tree>),
    Map(Vec<(String, Tree)>),
}

/// A parameter value: a template, or a mapping or list of them, nested as deep as the method
/// needs (`filter: {ENTITY_ID: "{{ record.id }}"}`). Entries that come out null are left out,
/// at every depth, so an input not given is not sent (and clears nothing).
pub struct TemplateTree<E: Extra = Plain>(Tree, PhantomData<E>);

impl<E: Extra> TemplateTree<E> {
    pub fn eval(&self, scope: &Value) -> Result<Json, String> {
        eval_tree(&self.0, scope)
    }

    /// Whether a template anywhere in the tree uses the variable `root` (`item`).
    pub fn uses(&self, root: &str) -> bool {
        fn walk(t: &Tree, root: &str) -> bool {
            match t {
                Tree::Leaf(t) => t.uses(root),
                Tree::List(items) => items.iter().any(|t| walk(t, root)),
                Tree::Map(entries) => entries.iter().any(|(_, t)| walk(t, root)),
            }
        }
        walk(&self.0, root)
    }
}

fn eval_tree(tree: &Tree, scope: &Value) -> Result<Json, String> {
    Ok(match tree {
        Tree::Leaf(t) => without_nulls(t.eval(scope)?),
        Tree::List(items) => Json::Array(
            items
                .iter()
                .map(|t| eval_tree(t, scope))
                .collect::<Result<_, _>>()?,
        ),
        Tree::Map(entries) => {
            let mut out = Map::new();
            for (k, t) in entries {
                let v = eval_tree(t, scope).map_err(|e| format!("{k}: {e}"))?;
                if !v.is_null() {
                    out.insert(k.clone(), v);
                }
            }
            Json::Object(out)
        }
    })
}

/// Mapping entries that are null dropped, at every depth (a `fields` mapping built elsewhere).
pub fn without_nulls(v: Json) -> Json {
    match v {
        Json::Object(m) => Json::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// Evaluate a mapping of parameter trees to the parameters of a call (null ones left out).
pub fn eval_params<E: Extra>(
    params: &indexmap::IndexMap<String, TemplateTree<E>>,
    scope: &Value,
) -> Result<Json, String> {
    let mut out = Map::new();
    for (k, t) in params {
        let v = t.eval(scope).map_err(|e| format!("parameter {k}: {e}"))?;
        if !v.is_null() {
            out.insert(k.clone(), v);
        }
    }
    Ok(Json::Object(out))
}

fn tree_of(node: &Node, extra: &[&str]) -> Tree {
    match &node.kind {
        Kind::Seq(items) => Tree::List(items.iter().map(|n| tree_of(n, extra)).collect()),
        Kind::Map(entries) => Tree::Map(
            entries
                .iter()
                .map(|(k, v)| (k.key_text(), tree_of(v, extra)))
                .collect(),
        ),
        _ => Tree::Leaf(from_node_with(node, extra)),
    }
}

impl<'de, E: Extra> Deserialize<'de> for TemplateTree<E> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = capture_node(d)?;
        Ok(TemplateTree(tree_of(&node, E::ROOTS), PhantomData))
    }
}

impl<E: Extra> schemars::JsonSchema for TemplateTree<E> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TemplateTree".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A value, a template (`{{ record.id }}`), or a mapping or list of them nested as deep as needed; text anywhere in it is a template. Mapping entries that come out null are not sent.",
            "examples": [{"filter": {"ORIGIN_ID": "b24etl:{{ source.event_key }}"}}]
        })
    }
}

/// The record's scope with more variables (`item`, `error`); templates evaluated in it take the
/// template engine's way, not the native one, which only knows the record's scope.
pub fn scope_with(base: &Value, vars: Vec<(&'static str, Value)>) -> Value {
    Value::from_object(Extended {
        base: base.clone(),
        vars,
    })
}

#[derive(Debug)]
struct Extended {
    base: Value,
    vars: Vec<(&'static str, Value)>,
}

impl Object for Extended {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        if let Some((_, v)) = self.vars.iter().find(|(n, _)| *n == name) {
            return Some(v.clone());
        }
        self.base.get_attr(name).ok().filter(|v| !v.is_undefined())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tree(v: Json) -> TemplateTree<WithItem> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn nested_templates_are_evaluated_and_nulls_left_out() {
        let t = tree(json!({
            "id": "{{ record.id }}",
            "fields": {"TITLE": "{{ record.title }}", "STAGE_ID": "{{ record.stage | default(none) }}", "N": 5},
            "list": ["{{ item }}", "x"],
            "whole": "{{ record.fields }}"
        }));
        let scope = scope_with(
            &minijinja::context! { record => minijinja::context! { id => 7, title => "T", fields => minijinja::context! { A => 1, B => () } } },
            vec![("item", Value::from("it"))],
        );
        assert_eq!(
            t.eval(&scope).unwrap(),
            json!({"id": 7, "fields": {"TITLE": "T", "N": 5}, "list": ["it", "x"], "whole": {"A": 1}})
        );
        assert!(t.uses("item"));
        assert!(!tree(json!({"items": "{{ record.items }}"})).uses("item"));
    }

    #[test]
    fn params_that_come_out_null_are_not_sent() {
        let params: indexmap::IndexMap<String, TemplateTree> =
            serde_json::from_value(json!({"id": "{{ record.id }}", "gone": "{{ none }}"})).unwrap();
        let scope = minijinja::context! { record => minijinja::context! { id => "5" } };
        assert_eq!(eval_params(&params, &scope).unwrap(), json!({"id": "5"}));
    }

    #[test]
    fn extra_variables_come_first_and_the_rest_is_the_record_scope() {
        let base = minijinja::context! { error => (), record => minijinja::context! { a => 1 } };
        let scope = scope_with(&base, vec![("error", Value::from("Deal is not found"))]);
        let t: TemplateIn<WithError> =
            serde_json::from_value(json!("{{ record.a }}: {{ error }}")).unwrap();
        assert_eq!(t.0.render(&scope).unwrap(), "1: Deal is not found");
    }
}
