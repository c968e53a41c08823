//! `etl schema`: the JSON Schema of pipeline files, generated from the config types and the
//! component lists of the registry it is given.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Value as Json, json};

use super::component::{Registry, by_type};
use super::load::PipelineDoc;

/// The schema as pretty JSON (what `schemas/pipeline.schema.json` holds).
pub fn pipeline_schema(registry: &Registry) -> String {
    let settings = SchemaSettings::draft07();
    let mut transforms = settings.transforms.clone();
    let mut generator = settings.into_generator();
    let connections = by_type(&registry.connections, "connection", &mut generator).to_value();
    let sources = by_type(&registry.sources, "source", &mut generator).to_value();
    let steps = by_type(&registry.steps, "step", &mut generator).to_value();
    let sinks = by_type(&registry.sinks, "sink", &mut generator).to_value();
    let mut schema = generator.into_root_schema_for::<PipelineDoc>().to_value();

    let fill = |schema: &mut Json, key: &str, with: Json| {
        if let Some(Json::Object(place)) = schema.pointer_mut(&format!("/properties/{key}")) {
            place.extend(with.as_object().cloned().unwrap_or_default());
        }
    };
    fill(
        &mut schema,
        "connections",
        json!({"type": "object", "additionalProperties": connections}),
    );
    fill(&mut schema, "source", sources.clone());
    fill(
        &mut schema,
        "steps",
        json!({"type": "array", "items": steps}),
    );
    for key in ["sinks", "on_success", "on_error"] {
        fill(&mut schema, key, json!({"type": "array", "items": sinks}));
    }
    if let Some(place) = schema.pointer_mut(&format!("/definitions/{}", AnySource::schema_name())) {
        *place = sources;
    }
    // The component lists were made outside the root: the draft's transforms (no `$ref` with
    // siblings...) run again over the whole; they change nothing that already conforms.
    fit_properties_for_editors(&mut schema);
    let mut schema = Schema::try_from(schema).expect("schema object");
    for transform in &mut transforms {
        transform.transform(&mut schema);
    }
    // Serialized as a `Schema`, which puts the keywords people read first (`$id`, `title`...) first.
    let mut text = serde_json::to_string_pretty(&schema).expect("schema serializes");
    text.push('\n');
    text
}

/// A mapping property whose example has template keys (`"{{ settings.status_field }}": ...`)
/// gets a snippet with those keys quoted: yaml-language-server inserts an example's keys
/// as they are, and `{{ ... }}:` unquoted is not a plain YAML key.
fn quote_example_keys(prop: &mut Json) {
    let Some(Json::Object(example)) = prop.pointer("/examples/0") else {
        return;
    };
    let quote = |text: &str| serde_json::to_string(text).expect("a string serializes");
    let body: serde_json::Map<String, Json> = example
        .iter()
        .map(|(k, v)| match v {
            Json::String(text) => (quote(k), Json::from(quote(text))),
            other => (quote(k), other.clone()),
        })
        .collect();
    prop["defaultSnippets"] = serde_json::json!([{"body": body}]);
}

/// Fits every property schema for yaml-language-server's completion: one that reaches its
/// type only through a `$ref` (or alternatives) gets that type as well, a redundant constraint
/// (without a `type` the server inserts a completed key without its colon), and template keys
/// in examples get quoted ([`quote_example_keys`]).
fn fit_properties_for_editors(schema: &mut Json) {
    let definitions = schema.get("definitions").cloned().unwrap_or_default();
    visit_objects(schema, &mut |object| {
        let Some(Json::Object(properties)) = object.get_mut("properties") else {
            return;
        };
        for property in properties.values_mut() {
            let types = json_types(property, &definitions, 0);
            if let (Json::Object(property), Some(types)) = (&mut *property, types) {
                property.entry("type").or_insert(match types.as_slice() {
                    [one] => Json::from(one.as_str()),
                    _ => Json::from(types),
                });
            }
            quote_example_keys(property);
        }
    });
}

/// Calls `f` on every object in the tree, parents first.
fn visit_objects(node: &mut Json, f: &mut impl FnMut(&mut serde_json::Map<String, Json>)) {
    match node {
        Json::Object(object) => {
            f(object);
            object.values_mut().for_each(|v| visit_objects(v, f));
        }
        Json::Array(items) => items.iter_mut().for_each(|v| visit_objects(v, f)),
        _ => {}
    }
}

/// The JSON types a schema admits, when they can be told from its `type`, `$ref`s, alternatives
/// or constants (`None`: anything, or not known).
fn json_types(schema: &Json, definitions: &Json, depth: usize) -> Option<Vec<String>> {
    const NAMES: [&str; 7] = [
        "object", "array", "string", "number", "integer", "boolean", "null",
    ];
    let obj = schema.as_object()?;
    if depth > 8 {
        return None;
    }
    let of_value = |v: &Json| -> String {
        match v {
            Json::Object(_) => "object",
            Json::Array(_) => "array",
            Json::String(_) => "string",
            Json::Number(_) => "number",
            Json::Bool(_) => "boolean",
            Json::Null => "null",
        }
        .to_string()
    };
    let mut types: Vec<String> = if let Some(t) = obj.get("type") {
        match t {
            Json::String(s) => vec![s.clone()],
            Json::Array(list) => list
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => return None,
        }
    } else if let Some(Json::String(r)) = obj.get("$ref") {
        let name = r.strip_prefix("#/definitions/")?;
        json_types(definitions.get(name)?, definitions, depth + 1)?
    } else if let Some(c) = obj.get("const") {
        vec![of_value(c)]
    } else if let Some(Json::Array(values)) = obj.get("enum") {
        values.iter().map(of_value).collect()
    } else {
        // Every branch of an `allOf` holds: any one's types include the admitted ones.
        if let Some(Json::Array(all)) = obj.get("allOf") {
            return all
                .iter()
                .find_map(|s| json_types(s, definitions, depth + 1));
        }
        let alternatives = ["oneOf", "anyOf"]
            .iter()
            .find_map(|k| obj.get(*k)?.as_array())?;
        let mut any = Vec::new();
        for alternative in alternatives {
            any.extend(json_types(alternative, definitions, depth + 1)?);
        }
        any
    };
    types.sort_by_key(|t| NAMES.iter().position(|n| n == t));
    types.dedup();
    (!types.is_empty()).then_some(types)
}

/// Any registered source, for components that contain one (a table's inputs). Its definition
/// is the registry's list of sources, filled in by [`pipeline_schema`]; components refer to it
/// with `$ref` so that a source may nest another.
pub struct AnySource;

impl JsonSchema for AnySource {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Source".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        Schema::default()
    }
}
