//! The loader and the registry: config types that double as the JSON Schema, loading with
//! `${env:...}` references and `--set` overrides into a runtime plan.

pub mod component;
pub mod load;
pub mod overrides;
pub mod schema;
pub mod serve;

pub use component::{BuildCtx, ConnectionRef, Registry};
pub use load::{LoadErrors, LoadOptions, load};
