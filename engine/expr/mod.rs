//! Expressions: minijinja templates and JSON paths, compiled once per pipeline, plus the filter
//! library and the per-record scope templates see.

mod check;
pub mod filter_table;
pub mod filters;
pub mod json_object;
pub mod native;
mod native_ops;
pub mod path;
pub mod template;
pub mod tree;

use std::sync::Arc;

use minijinja::value::{Object, Value};
use serde_json::Value as Json;

pub use path::JsonPath;
pub use template::Template;

/// The variables a template sees while a record is processed:
/// `source` (the record as read), `record` (after mappings), `steps.<id>` (step outputs),
/// `settings`, `run` (name, started_at), and in hooks `outcome` and `error`.
/// The JSON parts are shared, not copied, and turned into template values only when a template
/// looks at them; most templates (`{{ source.NAME | phone }}`) read the JSON directly (`native.rs`).
#[derive(Debug)]
pub struct Scope {
    pub source: Arc<Json>,
    pub record: Arc<Json>,
    pub steps: Arc<Json>,
    pub settings: Arc<Json>,
    pub run: Value,
    pub outcome: Value,
    pub error: Value,
}

impl Object for Scope {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "source" => json_value(&self.source),
            "record" => json_value(&self.record),
            "steps" => json_value(&self.steps),
            "settings" => json_value(&self.settings),
            "run" => self.run.clone(),
            "outcome" => self.outcome.clone(),
            "error" => self.error.clone(),
            _ => return None,
        })
    }
}

/// Variables available to templates in steps and sinks.
pub const RECORD_ROOTS: &[&str] = &["source", "record", "steps", "settings", "run"];
/// Hooks additionally see the outcome of the record.
pub const HOOK_ROOTS: &[&str] = &[
    "source", "record", "steps", "settings", "run", "outcome", "error",
];
/// The pipeline's `journal:` template sees the run's results.
pub const JOURNAL_ROOTS: &[&str] = &[
    "success", "status", "error", "counts", "counters", "log", "settings", "run",
];
/// Source parameters are rendered once per run, before any record exists.
pub const SOURCE_ROOTS: &[&str] = &["settings", "run", "cursor"];

/// Shared JSON as a template value, without copying it.
pub fn json_value(v: &Arc<Json>) -> Value {
    json_object::to_value(v)
}
