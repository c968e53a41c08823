//! b24-etl: a declarative ETL engine for Bitrix24-centred integrations.
//!
//! Data flows one way: `config` (YAML -> typed components) -> `runtime` (source -> steps -> sinks,
//! per-record outcomes, checkpoints in `state`). Connectors live in `connectors/<system>/` and
//! register themselves in `connectors::registry()`; the runtime never knows a protocol.

pub mod cli;
pub mod config;
pub mod connectors;
pub mod expr;
pub mod runtime;
pub mod secrets;
pub mod state;
pub mod syntax;
pub mod table;
