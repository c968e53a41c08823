//! `etl schema`: the JSON Schema of pipeline files, generated from the config types and the
//! component lists of the registry it is given.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Value as Json, json};

use super::component::{Registry, one_of};
use super::load::PipelineDoc;

/// The schema as pretty JSON (what `schemas/pipeline.schema.json` holds).
pub fn pipeline_schema(registry: &Registry) -> String {
    let settings = SchemaSettings::draft07();
    let mut transforms = settings.transforms.clone();
    let mut generator = settings.into_generator();
    let connections = one_of(&registry.connections, &mut generator).to_value();
    let sources = one_of(&registry.sources, &mut generator).to_value();
    let steps = one_of(&registry.steps, &mut generator).to_value();
    let sinks = one_of(&registry.sinks, &mut generator).to_value();
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
    let mut schema = Schema::try_from(schema).expect("schema object");
    for transform in &mut transforms {
        transform.transform(&mut schema);
    }
    // Serialized as a `Schema`, which puts the keywords people read first (`$id`, `title`...) first.
    let mut text = serde_json::to_string_pretty(&schema).expect("schema serializes");
    text.push('\n');
    text
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
