//! `comagic.report`: the rows of a Data API report over a period of any length.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::data_api::{DataApi, SYSTEM};
use super::report_reader::{ReportReader, parse_time};
use crate::config::component::SourceConfig;
use crate::config::{BuildCtx, ConnectionRef};
use crate::expr::{JsonPath, Template};
use crate::runtime::{Fatal, Record, RunCtx, Source};

/// Rows of a CoMagic Data API report (`get.calls_report`, `get.communications_report`) for a
/// period of any length: read in windows of at most 3 months, page by page up to `total_items`,
/// within the account's point budget.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportSourceConfig {
    /// A `comagic.data_api` connection.
    #[schemars(example = &"comagic")]
    pub connection: ConnectionRef,
    /// The report.
    pub method: ReportMethod,
    /// Start of the period: `YYYY-MM-DD hh:mm:ss`, a date (its first second) or ISO 8601 (its
    /// local time); a template over `settings` and `run`.
    #[schemars(example = &"{{ run.today | add_days(-30) }}")]
    pub date_from: Template,
    /// End of the period, inclusive (a date means its last second).
    #[schemars(example = &"{{ run.today }}")]
    pub date_till: Template,
    /// Fields to return (the report's default fields when empty).
    #[serde(default)]
    #[schemars(example = fields_example())]
    pub fields: Vec<String>,
    /// A filter as the API takes it: `{field, operator, value}` or `{filters: [...], condition: and|or}`.
    #[serde(default)]
    #[schemars(example = filter_example())]
    pub filter: Option<Json>,
    /// Sorting as the API takes it: `[{field, order}]`.
    #[serde(default)]
    pub sort: Option<Json>,
    /// Rows per request (at most 10000).
    #[serde(default = "default_page_size")]
    #[schemars(range(min = 1, max = 10000))]
    pub page_size: u64,
    /// `get.calls_report` only: include calls still in progress.
    #[serde(default)]
    pub include_ongoing_calls: Option<bool>,
    /// JSON path of a row's identity (default `$.id`).
    #[serde(default)]
    pub key: Option<JsonPath>,
}

fn fields_example() -> Vec<&'static str> {
    vec![
        "id",
        "start_time",
        "contact_phone_number",
        "is_lost",
        "tags",
        "sale_cost",
    ]
}

fn filter_example() -> Json {
    json!({"field": "is_lost", "operator": "=", "value": false})
}

fn default_page_size() -> u64 {
    10_000
}

/// The report methods this source reads.
#[derive(Deserialize, JsonSchema, Clone, Copy)]
pub enum ReportMethod {
    /// One row per call session.
    #[serde(rename = "get.calls_report")]
    Calls,
    /// One row per communication (call, chat, goal, offline message).
    #[serde(rename = "get.communications_report")]
    Communications,
}

impl ReportMethod {
    fn name(self) -> &'static str {
        match self {
            ReportMethod::Calls => "get.calls_report",
            ReportMethod::Communications => "get.communications_report",
        }
    }
}

impl SourceConfig for ReportSourceConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Box<dyn Source>, String> {
        if !(1..=10_000).contains(&self.page_size) {
            return Err(format!(
                "page_size must be from 1 to 10000, got {}",
                self.page_size
            ));
        }
        if self.include_ongoing_calls.is_some()
            && matches!(self.method, ReportMethod::Communications)
        {
            return Err("include_ongoing_calls applies to get.calls_report only".into());
        }
        let api = ctx.connection::<DataApi>(&self.connection)?;
        Ok(Box::new(ReportSource {
            cfg: self,
            api,
            reader: None,
            position: 0,
        }))
    }
}

struct ReportSource {
    cfg: ReportSourceConfig,
    api: Arc<DataApi>,
    reader: Option<ReportReader>,
    position: u64,
}

#[async_trait]
impl Source for ReportSource {
    async fn open(&mut self, ctx: &RunCtx, _cursor: Option<Json>) -> Result<(), Fatal> {
        let scope = ctx.run_scope(None);
        let bad = |m: String| Fatal::other(format!("comagic.report: {m}"));
        let from = self
            .cfg
            .date_from
            .render(&scope)
            .map_err(|e| bad(format!("date_from: {e}")))?;
        let till = self
            .cfg
            .date_till
            .render(&scope)
            .map_err(|e| bad(format!("date_till: {e}")))?;
        let from = parse_time(&from, false).map_err(|e| bad(format!("date_from: {e}")))?;
        let till = parse_time(&till, true).map_err(|e| bad(format!("date_till: {e}")))?;
        if till < from {
            return Err(bad(format!(
                "date_till ({till}) is before date_from ({from})"
            )));
        }
        let mut params = Map::new();
        if !self.cfg.fields.is_empty() {
            params.insert("fields".into(), json!(self.cfg.fields));
        }
        if let Some(f) = &self.cfg.filter {
            params.insert("filter".into(), f.clone());
        }
        if let Some(s) = &self.cfg.sort {
            params.insert("sort".into(), s.clone());
        }
        if let Some(o) = self.cfg.include_ongoing_calls {
            params.insert("include_ongoing_calls".into(), json!(o));
        }
        self.reader = Some(ReportReader::new(
            self.api.clone(),
            self.cfg.method.name(),
            from,
            till,
            params,
            self.cfg.page_size,
        ));
        Ok(())
    }

    async fn next_batch(&mut self, _: &RunCtx) -> Result<Option<Vec<Record>>, Fatal> {
        let reader = self.reader.as_mut().expect("opened");
        let method = self.cfg.method.name();
        let Some(rows) = reader
            .next_page()
            .await
            .map_err(|e| e.fatal_in(SYSTEM, method))?
        else {
            return Ok(None);
        };
        let batch = rows
            .into_iter()
            .map(|row| {
                self.position += 1;
                let key = match &self.cfg.key {
                    Some(path) => path.first(&row).cloned(),
                    None => row.get("id").cloned(),
                };
                let key = match key {
                    Some(Json::String(s)) => s,
                    Some(Json::Null) | None => self.position.to_string(),
                    Some(v) => v.to_string(),
                };
                Record::new(key, row)
            })
            .collect();
        Ok(Some(batch))
    }
}
