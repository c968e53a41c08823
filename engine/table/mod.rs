//! Steps that need whole data sets: the `table` source reads its inputs (any sources) to the end
//! into polars tables, builds named tables from them with declared operations (joins, group-bys,
//! computed columns...), and streams one of them on as records. Other tables can be published
//! for sinks (the e-mail sink's recipients).

pub mod columns;
pub mod expr;
pub mod ops;
pub mod rows;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use indexmap::IndexMap;
use polars::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::config::schema::AnySource;
use crate::config::{BuildCtx, Registry, component::SourceConfig};
use crate::runtime::{Fatal, Record, RunCtx, Source};
use crate::syntax::de::RawNode;
use crate::syntax::diag::{Diagnostic, unknown_message};
use crate::syntax::node::Node;
use crate::syntax::session;
use columns::{ColumnSpec, FrameBuilder};
use expr::Env;
use ops::OpNode;

pub fn register(r: &mut Registry) {
    r.source::<TableSourceConfig>("table");
}

/// Work on whole data sets: read every input to the end, build tables from them with
/// operations that run on polars (join, group_by, sort, computed columns...), and pass the
/// rows of the `output` table on as records.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableSourceConfig {
    /// Named data sets, each read whole from its own source (`jsonl`, `bitrix24.list`...).
    pub inputs: IndexMap<String, InputConfig>,
    /// Tables built in order, each from an input or an earlier table, by a list of operations.
    #[serde(default)]
    pub tables: IndexMap<String, TableDef>,
    /// The table whose rows become the pipeline's records (default: the last table).
    #[serde(default)]
    pub output: Option<String>,
    /// Column that identifies a record in the journal (default: the row number).
    #[serde(default)]
    pub key: Option<String>,
    /// Tables sinks may use by name, e.g. the e-mail sink's `recipients`.
    #[serde(default)]
    pub publish: Vec<String>,
}

/// One input: a source read to the end, and the columns to keep from its records.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Any source, with its `type:`.
    #[schemars(schema_with = "any_source")]
    pub source: RawNode,
    /// Columns to keep, with their types: `{ID: int, DEADLINE: datetime, COMPANY_IDS: list[int]}`.
    /// Without it every field is kept, typed by its values; declaring columns also lets
    /// `etl validate` check every operation's column names.
    #[serde(default)]
    #[schemars(example = columns_example())]
    pub columns: Option<IndexMap<String, ColumnSpec>>,
}

fn columns_example() -> Json {
    serde_json::json!({"ID": "int", "SUBJECT": "str", "DEADLINE": "datetime", "COMPLETED": "bool", "COMPANY_IDS": {"type": "list[int]", "from": "companyIds"}})
}

/// Any registered source (a `$ref`, so that a table input can itself be any source).
fn any_source(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<AnySource>()
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableDef {
    /// The input or earlier table this one starts from.
    pub from: NameRef,
    /// Operations applied in order.
    #[serde(default)]
    pub ops: Vec<OpNode>,
}

/// A table name, with where it is written.
#[derive(Clone, Debug)]
pub struct NameRef {
    pub name: String,
    pub node: Node,
}

impl<'de> Deserialize<'de> for NameRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = crate::syntax::de::capture_node(d)?;
        Ok(NameRef {
            name: node.key_text(),
            node,
        })
    }
}

impl JsonSchema for NameRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TableName".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "description": "The name of an input or of a table defined before this one."})
    }
}

struct Input {
    name: String,
    source: Box<dyn Source>,
    columns: Option<IndexMap<String, ColumnSpec>>,
}

struct Plan {
    tables: Vec<(String, TableDef)>,
    output: String,
    key: Option<String>,
    publish: Vec<String>,
}

struct TableSource {
    inputs: Vec<Input>,
    plan: Arc<Plan>,
    settings: Json,
    result: Option<DataFrame>,
    offset: usize,
}

const BATCH: usize = 1000;

impl SourceConfig for TableSourceConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Box<dyn Source>, String> {
        let mut inputs = Vec::new();
        let mut problems = Vec::new();
        for (name, input) in self.inputs {
            match ctx.build_source(&input.source.0) {
                Ok(source) => inputs.push(Input {
                    name,
                    source,
                    columns: input.columns,
                }),
                Err(d) => problems.push(d),
            }
        }
        let table_nodes: Vec<(String, TableDef)> = self.tables.into_iter().collect();
        let mut known: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
        known.extend(table_nodes.iter().map(|t| t.0.clone()));
        let output = match self.output {
            Some(o) => o,
            None => table_nodes
                .last()
                .map(|t| t.0.clone())
                .or_else(|| inputs.last().map(|i| i.name.clone()))
                .unwrap_or_default(),
        };
        for name in std::iter::once(&output).chain(&self.publish) {
            if !known.contains(name) {
                let names: Vec<&str> = known.iter().map(String::as_str).collect();
                return Err(unknown_message("table", name, &names));
            }
        }
        let plan = Arc::new(Plan {
            tables: table_nodes,
            output,
            key: self.key,
            publish: self.publish,
        });
        // The plan is checked now, on empty tables, as far as inputs declare their columns.
        if problems.is_empty() {
            let mut tables: ops::Tables = inputs
                .iter()
                .filter_map(|i| {
                    i.columns
                        .as_ref()
                        .map(|c| (i.name.clone(), columns::empty_frame(c)))
                })
                .collect();
            let unknown: Vec<String> = inputs
                .iter()
                .filter(|i| i.columns.is_none())
                .map(|i| i.name.clone())
                .collect();
            let env = Env {
                now_ms: 0,
                settings: ctx.settings,
            };
            if let Err(d) = off_runtime(|| build_tables(&plan, &mut tables, &env, unknown)) {
                problems.push(d);
            }
        }
        // Problems go to the load's diagnostics (with their own positions), which fail the load.
        for d in problems.into_iter().filter(|d| !d.message.is_empty()) {
            session::report(d);
        }
        Ok(Box::new(TableSource {
            inputs,
            plan,
            settings: ctx.settings.clone(),
            result: None,
            offset: 0,
        }))
    }
}

/// Build every table in order; each is materialized once, then used by later tables. Tables
/// that use one of `unknown` (inputs whose columns are not declared, when checking a plan)
/// are skipped.
fn build_tables(
    plan: &Plan,
    tables: &mut ops::Tables,
    env: &Env,
    mut unknown: Vec<String>,
) -> Result<(), Diagnostic> {
    for (name, def) in &plan.tables {
        let uses = std::iter::once(def.from.name.as_str())
            .chain(def.ops.iter().flat_map(|o| o.op.tables()));
        if uses.into_iter().any(|t| unknown.iter().any(|u| u == t)) {
            unknown.push(name.clone());
            continue;
        }
        let start = tables.get(&def.from.name).ok_or_else(|| {
            let mut names: Vec<&str> = tables.keys().map(String::as_str).collect();
            names.sort();
            Diagnostic::at(
                &def.from.node,
                unknown_message("table", &def.from.name, &names),
            )
        })?;
        let mut lf = start.clone().lazy();
        for op in &def.ops {
            lf = ops::apply(lf, op, tables, env)?;
        }
        let df = lf
            .collect()
            .map_err(|e| Diagnostic::at(&def.from.node, format!("table `{name}`: {e}")))?;
        tables.insert(name.clone(), df);
    }
    Ok(())
}

/// Run polars work on a thread of its own: polars blocks in place on its async runtime, which
/// must not happen on the thread of the (single-threaded) runtime the pipeline runs on.
pub fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The run's start as the wall-clock time of the zone the inputs' date-times were written in
/// (the portal's, e.g. +03:00), in the engine's milliseconds: date-times keep the wall-clock
/// time written, so `now()` and the day counts must read the clock in that same zone, not the
/// machine's. Inputs without offsets are taken to be in the machine's zone.
fn now_in_zone_of_data(
    started_at: chrono::DateTime<chrono::FixedOffset>,
    data_offset: Option<chrono::FixedOffset>,
) -> i64 {
    let zone = data_offset.unwrap_or(*started_at.offset());
    let wall_clock = started_at.with_timezone(&zone).naive_local();
    wall_clock.and_utc().timestamp_millis()
}

fn fatal(message: impl Into<String>) -> Fatal {
    Fatal {
        system: "table".into(),
        message: message.into(),
    }
}

#[async_trait]
impl Source for TableSource {
    async fn open(&mut self, ctx: &RunCtx, _cursor: Option<Json>) -> Result<(), Fatal> {
        let clock = Instant::now();
        let mut tables: ops::Tables = HashMap::new();
        let mut total = 0usize;
        let mut data_offset = None;
        for input in &mut self.inputs {
            input.source.open(ctx, None).await?;
            let mut builder = input
                .columns
                .as_ref()
                .map(|c| FrameBuilder::new(&input.name, c));
            let mut pending: Vec<Json> = Vec::new();
            while let Some(batch) = input.source.next_batch(ctx).await? {
                match builder.as_mut() {
                    Some(b) => batch.iter().for_each(|r| b.push(&r.data)),
                    None => pending.extend(batch.into_iter().map(|r| Arc::unwrap_or_clone(r.data))),
                }
            }
            let builder = match builder {
                Some(b) => b,
                None => {
                    let mut b = FrameBuilder::inferred(&input.name, &pending);
                    pending.iter().for_each(|r| b.push(r));
                    b
                }
            };
            for line in builder.problems() {
                ctx.log(line);
            }
            data_offset = data_offset.or(builder.offset());
            let rows = builder.rows();
            total += rows;
            ctx.count(&format!("table.{}.rows", input.name), rows as i64);
            let df = builder
                .finish()
                .map_err(|e| fatal(format!("input {}: {e}", input.name)))?;
            tables.insert(input.name.clone(), df);
        }
        let read = clock.elapsed();
        let clock = Instant::now();
        let now_ms = now_in_zone_of_data(ctx.started_at, data_offset);
        let env = Env {
            now_ms,
            settings: &self.settings,
        };
        off_runtime(|| build_tables(&self.plan, &mut tables, &env, Vec::new()))
            .map_err(|d| fatal(d.headline()))?;
        for name in &self.plan.publish {
            let df = &tables[name];
            let rows = off_runtime(|| rows::rows(df, 0, df.height()))
                .map_err(|e| fatal(format!("table {name}: {e}")))?;
            ctx.shared.publish(name, rows);
        }
        let out = tables
            .remove(&self.plan.output)
            .ok_or_else(|| fatal(format!("no table `{}`", self.plan.output)))?;
        ctx.log(format!(
            "table: read {total} rows from {} input(s) in {:.1}s; built {} table(s) in {:.2}s; output `{}` has {} rows",
            self.inputs.len(),
            read.as_secs_f64(),
            self.plan.tables.len(),
            clock.elapsed().as_secs_f64(),
            self.plan.output,
            out.height()
        ));
        ctx.count("table.output.rows", out.height() as i64);
        self.result = Some(out);
        self.offset = 0;
        Ok(())
    }

    async fn next_batch(&mut self, _ctx: &RunCtx) -> Result<Option<Vec<Record>>, Fatal> {
        let Some(df) = &self.result else {
            return Ok(None);
        };
        if self.offset >= df.height() {
            self.result = None;
            return Ok(None);
        }
        let rows =
            off_runtime(|| rows::rows(df, self.offset, BATCH)).map_err(|e| fatal(e.to_string()))?;
        let mut batch = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            let key = match self.plan.key.as_ref().and_then(|k| row.get(k)) {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Null) | None => (self.offset + i + 1).to_string(),
                Some(other) => other.to_string(),
            };
            batch.push(Record::new(key, row));
        }
        self.offset += batch.len();
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, FixedOffset};

    use super::now_in_zone_of_data;

    /// The engine's milliseconds of a wall-clock time.
    fn wall_clock_ms(text: &str) -> i64 {
        let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap();
        naive.and_utc().timestamp_millis()
    }

    #[test]
    fn now_is_read_on_the_clock_of_the_datas_zone() {
        // 22:30 on a UTC server is 01:30 the next day in Moscow.
        let started = DateTime::parse_from_rfc3339("2024-03-09T22:30:00+00:00").unwrap();
        let moscow = FixedOffset::east_opt(3 * 3600);
        assert_eq!(
            now_in_zone_of_data(started, moscow),
            wall_clock_ms("2024-03-10 01:30")
        );
        // Without an offset in the data: the machine's clock.
        assert_eq!(
            now_in_zone_of_data(started, None),
            wall_clock_ms("2024-03-09 22:30")
        );
    }
}
