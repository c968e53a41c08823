//! b24-etl: a declarative ETL engine for Bitrix24-centred integrations.
//!
//! The engine is built in floors; each imports only the floors below it (`tests/layers.rs`
//! fails otherwise), so that the runtime never knows a protocol and nothing low calls back up:
//!
//! 1. `syntax`: YAML as nodes with positions, serde over those nodes, diagnostics that name
//!    `file:line:column`, and the decode session values consult while they are read.
//! 2. `expr`: minijinja templates and JSON paths, compiled once, with the filter library.
//! 3. `runtime`: the compiled plan (`runtime::Pipeline`) and its executor: source -> steps ->
//!    sinks, per-record outcomes, checkpoints.
//! 4. `config`: the loader (YAML -> plan), the component registry's types, and the JSON Schema;
//!    the registry is passed in (`config::load(path, &registry, opts)`,
//!    `config::schema::pipeline_schema(&registry)`), never looked up.
//! 5. `connectors` (one folder per external system) and `table` (the `table` source, which builds
//!    its inputs, any sources, through the registry in its build context, so it stands with the
//!    connectors rather than below config). `connectors::registry()` is the only place the list of
//!    components is made.
//! 6. `cli`: the commands; it takes the registry from `connectors` and hands it to `config`.
//!
//! Leaves every floor may use: `secrets` (redaction) and `state` (the checkpoint store the runtime
//! commits to; it imports nothing of the engine).

pub mod cli;
pub mod config;
pub mod connectors;
pub mod expr;
pub mod runtime;
pub mod secrets;
pub mod state;
pub mod syntax;
pub mod table;
