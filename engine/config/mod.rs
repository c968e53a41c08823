//! The pipeline model: YAML with positions, config types that double as the JSON Schema, loading
//! with `${env:...}` references, and diagnostics that name `file:line:column`.

pub mod component;
pub mod de;
pub mod diag;
pub mod load;
pub mod node;
pub mod schema;

pub use component::{BuildCtx, ConnectionRef, Registry};
pub use diag::Diagnostic;
pub use load::{LoadErrors, LoadOptions, Pipeline, load};
