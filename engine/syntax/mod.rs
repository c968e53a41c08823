//! The bottom floor: YAML as nodes that remember where they were written, a serde
//! `Deserializer` over those nodes whose errors keep the position, and diagnostics that name
//! `file:line:column`. It knows nothing of pipelines, expressions or components; every floor
//! above reads its configuration through it.

pub mod de;
pub mod diag;
pub mod node;
pub mod read;
pub mod session;
pub mod yaml;

pub use diag::Diagnostic;
