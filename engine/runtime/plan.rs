//! The compiled plan the runtime executes. The loader (`config`) produces it from a pipeline
//! file; the runtime owns its shape, so that it depends on nothing above it.

use std::sync::Arc;

use serde_json::Value as Json;

use super::schedule::Schedule;
use super::{Sink, Source, Step};
use crate::expr;

/// A loaded, compiled pipeline, ready to run.
pub struct Pipeline {
    pub name: String,
    pub file: String,
    pub settings: Arc<Json>,
    pub source: Box<dyn Source>,
    pub steps: Vec<Arc<dyn Step>>,
    pub sinks: Vec<Labeled>,
    pub on_success: Vec<Labeled>,
    pub on_error: Vec<Labeled>,
    pub journal: Option<expr::Template>,
    /// When `etl serve` runs it on its own (`schedule:`).
    pub schedule: Option<Schedule>,
    /// Settings a `/run/<pipeline>` request may set from its query string (`serve_settings:`).
    pub serve_settings: Vec<String>,
}

/// A sink with the name it has in journals and dry-run output.
pub struct Labeled {
    pub label: String,
    pub sink: Arc<dyn Sink>,
}
