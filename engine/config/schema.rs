//! `etl schema`: the JSON Schema of pipeline files, generated from the config types.

use schemars::generate::SchemaSettings;

/// The schema as pretty JSON (what `schemas/pipeline.schema.json` holds).
pub fn pipeline_schema() -> String {
    let generator = SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<super::load::PipelineDoc>();
    let mut text = serde_json::to_string_pretty(&schema).expect("schema serializes");
    text.push('\n');
    text
}
