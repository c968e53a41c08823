//! `bitrix24.list`: read any list method.
//!
//! - Full export (crm.*.list, crm.activity.list, crm.item.list): keyset rounds on the ID (see
//!   `scan`): a probe request finds where each block of 2,500 rows ends, then the blocks are
//!   read as 50 chained pages each (`filter[>ID]=$result[p{k-1}][49][ID]`, `start=-1`,
//!   `halt=1`), concurrently as far as the rate limit allows. At least 2,450 rows per request,
//!   no COUNT on pages; 100,000 rows in 41 requests.
//! - Incremental (`incremental:`): ascending (DATE_MODIFY, ID) from the cursor. DATE_MODIFY
//!   windows read by the same ID keyset rounds, sorted and delivered once fully read, each
//!   record with its exact cursor (see `incremental` for why nothing is skipped or repeated).
//!   Ties of any size cost nothing extra.
//! - user.get, department.get and other small lists: offset pages, batched.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json, json};

use super::client::{B24Error, BatchResult, Client, Kind, SYSTEM, is_refusal};
use crate::config::{BuildCtx, ConnectionRef, component::SourceConfig};
use crate::expr::Template;
use crate::runtime::{Fatal, Record, RunCtx, Source};
use raw::RawRow;

mod incremental;
mod raw;
mod scan;

const PAGE: usize = 50;
/// Records handed to the run at a time once read: the steps work on a batch's records on
/// every core, and lookups pack a batch's calls 50 to a request.
const DELIVERY: usize = 500;
const COMMANDS: usize = 50;

/// Read records from a Bitrix24 list method.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    /// Name of a `bitrix24` connection.
    pub connection: ConnectionRef,
    /// The list method.
    #[schemars(example = &"crm.contact.list")]
    pub method: String,
    /// Fields to read (templates allowed). Multi-fields such as PHONE and EMAIL must be named.
    #[serde(default)]
    pub select: Vec<Template>,
    /// Filter with Bitrix24's operator prefixes; values are templates over `settings` and `run`.
    #[serde(default)]
    #[schemars(example = filter_example())]
    pub filter: IndexMap<String, Template>,
    /// Sort for offset paging (full keyset exports always go by ID ascending).
    #[serde(default)]
    pub order: IndexMap<String, String>,
    /// Other top-level parameters (`entityTypeId`, user.get's `sort`, department.get filters).
    #[serde(default)]
    pub params: IndexMap<String, Template>,
    /// Identity field of a row (`ID`; `id` for crm.item.list).
    #[serde(default = "default_id")]
    pub id_field: String,
    /// Key under `result` that holds the rows (`items` for crm.item.list).
    #[serde(default)]
    pub items: Option<String>,
    /// Paging strategy; `auto` picks offset pages for user.get and department.get.
    #[serde(default)]
    pub paging: Paging,
    /// Deliver only records changed since the last run, in ascending (field, ID) order.
    #[serde(default)]
    pub incremental: Option<Incremental>,
}

fn default_id() -> String {
    "ID".into()
}

fn filter_example() -> Json {
    json!({">=DATE_CREATE": "{{ settings.sync_start_date }}", "STAGE_ID": "WON"})
}

#[derive(Deserialize, JsonSchema, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Paging {
    #[default]
    Auto,
    /// `>ID` keyset with chained batches (crm.* lists).
    Keyset,
    /// `start` offsets (user.get, department.get).
    Offset,
}

/// Incremental reading on a modification field.
#[derive(Deserialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct Incremental {
    /// The modification field.
    #[serde(default = "default_modify")]
    pub field: String,
    /// Where to start when the state has no cursor yet: records changed after this
    /// (a template, e.g. `{{ settings.contacts_last_modify }}`).
    #[serde(default)]
    pub start: Option<Template>,
    /// Only records last changed at least this many seconds before the run started are read:
    /// DATE_MODIFY has one-second precision, so a second that is still going on could gain
    /// records behind the cursor. The rest (and our own status write-backs) come next run.
    #[serde(default = "default_settle")]
    pub settle_secs: u64,
    /// Rows a DATE_MODIFY window may hold before it is cut (tests set it low to exercise the
    /// cut; not part of the documented schema).
    #[serde(default)]
    #[schemars(skip)]
    pub window_rows: Option<usize>,
}

fn default_modify() -> String {
    "DATE_MODIFY".into()
}

fn default_settle() -> u64 {
    5
}

impl SourceConfig for ListConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Box<dyn Source>, String> {
        let client = ctx.connection::<Client>(&self.connection)?;
        let paging = match self.paging {
            Paging::Auto
                if matches!(
                    self.method.as_str(),
                    "user.get" | "department.get" | "user.search"
                ) =>
            {
                Paging::Offset
            }
            Paging::Auto => Paging::Keyset,
            p => p,
        };
        if self.incremental.is_some() && paging == Paging::Offset {
            return Err("incremental reading needs keyset paging (crm.* list methods)".into());
        }
        Ok(Box::new(ListSource {
            cfg: self,
            client,
            paging,
            base: Json::Null,
            buffer: VecDeque::new(),
            state: Position::Start,
            done: false,
            sorted: VecDeque::new(),
            settle: None,
        }))
    }
}

/// Where the reading stands.
#[derive(Clone, Debug)]
enum Position {
    Start,
    /// Full export: after this ID.
    AfterId(String),
    /// Incremental: the window being read.
    Window(incremental::Window),
    /// Offset paging: next `start`, and the total.
    Offset {
        next: usize,
        total: usize,
    },
}

struct ListSource {
    cfg: ListConfig,
    client: Arc<Client>,
    paging: Paging,
    /// Rendered filter/select/params, fixed for the run.
    base: Json,
    buffer: VecDeque<Record>,
    state: Position,
    done: bool,
    /// Incremental: the rows of the window read last, sorted, not yet delivered.
    sorted: VecDeque<incremental::Held>,
    /// Incremental: where records are recent enough to be left for the next run.
    settle: Option<incremental::SettleLimit>,
}

fn unavailable(e: B24Error) -> Fatal {
    e.fatal(SYSTEM)
}

fn as_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

impl ListSource {
    fn rows<'a>(&self, result: &'a Json) -> Vec<&'a Json> {
        let list = match &self.cfg.items {
            Some(key) => &result[key.as_str()],
            None => result,
        };
        list.as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    }

    fn id_of(&self, row: &Json) -> String {
        as_text(&row[self.cfg.id_field.as_str()])
    }

    fn raw_id(&self, row: &RawValue) -> String {
        let [id] = raw::pick(row, [self.cfg.id_field.as_str()]);
        as_text(&id)
    }

    /// Parameters of one command: the user's filter plus `extra` conditions.
    fn params(&self, extra_filter: &[(String, Json)], order: Option<Json>, start: i64) -> Json {
        let mut params = self.base.clone();
        let filter = params["filter"].as_object_mut().expect("filter object");
        for (k, v) in extra_filter {
            filter.insert(k.clone(), v.clone());
        }
        if let Some(o) = order {
            params["order"] = o;
        }
        params["start"] = Json::from(start);
        params
    }

    fn reference(&self, key: &str, field: &str) -> Json {
        match &self.cfg.items {
            Some(items) => Json::from(format!("$result[{key}][{items}][{}][{field}]", PAGE - 1)),
            None => Json::from(format!("$result[{key}][{}][{field}]", PAGE - 1)),
        }
    }

    fn push(&mut self, row: Json, cursor: Option<Json>) {
        let mut record = Record::new(self.id_of(&row), row);
        record.cursor = cursor;
        self.buffer.push_back(record);
    }

    /// Full export: one keyset round, delivered in ID order.
    async fn fetch_keyset(&mut self) -> Result<(), Fatal> {
        let after = match &self.state {
            Position::AfterId(last) => last.clone(),
            _ => "0".to_string(),
        };
        let round = self.read_round(&[], &after, None).await?;
        for row in raw::parse_all(&round.rows) {
            self.push(row, None);
        }
        self.done = round.complete;
        self.state = Position::AfterId(round.last_id);
        Ok(())
    }

    /// The result of one command of a chained batch; `None` when the portal did not run it
    /// (refused before running, e.g. over its operating time): continue from there later.
    fn page<'r, R>(&self, result: &'r BatchResult<R>, key: &str) -> Result<Option<&'r R>, Fatal> {
        match result.errors.get(key) {
            Some((code, _)) if is_refusal(code) => Ok(None),
            Some((code, desc)) => Err(Fatal::unavailable(
                "Bitrix24",
                format!("{} refused the query: {desc} ({code})", self.cfg.method),
            )),
            None => Ok(result.results.get(key)),
        }
    }

    /// The rows of one command of a chained batch, as they came; `None` as for `page`.
    fn take_page(
        &self,
        result: &mut BatchResult<RawRow>,
        key: &str,
    ) -> Result<Option<Vec<RawRow>>, Fatal> {
        if self.page(result, key)?.is_none() {
            return Ok(None);
        }
        Ok(Some(match result.results.remove(key) {
            Some(page) => raw::rows_in(&page, self.cfg.items.as_deref()),
            None => Vec::new(),
        }))
    }

    async fn fetch_offset(&mut self) -> Result<(), Fatal> {
        let mut order_params = Map::new();
        for (k, v) in &self.cfg.order {
            order_params.insert(k.clone(), Json::from(v.clone()));
        }
        let order = if order_params.is_empty() {
            None
        } else {
            Some(Json::Object(order_params))
        };
        let (next, total) = match self.state {
            Position::Offset { next, total } => (next, total),
            _ => {
                let params = self.offset_params(order.clone(), 0);
                let body = self
                    .client
                    .call(&self.cfg.method, &params, Kind::Read)
                    .await
                    .map_err(unavailable)?;
                let rows: Vec<Json> = self.rows(&body["result"]).into_iter().cloned().collect();
                let n = rows.len();
                for row in rows {
                    self.push(row, None);
                }
                let total = body["total"].as_u64().map(|t| t as usize).unwrap_or(n);
                self.state = Position::Offset { next: PAGE, total };
                self.done = body.get("next").is_none() || n == 0;
                return Ok(());
            }
        };
        let starts: Vec<usize> = (next..total).step_by(PAGE).take(COMMANDS).collect();
        if starts.is_empty() {
            self.done = true;
            return Ok(());
        }
        let commands: Vec<(String, String, Json)> = starts
            .iter()
            .map(|s| {
                (
                    format!("o{s}"),
                    self.cfg.method.clone(),
                    self.offset_params(order.clone(), *s as i64),
                )
            })
            .collect();
        let result = self
            .client
            .batch(&commands, false, Kind::Read)
            .await
            .map_err(unavailable)?;
        for (key, _, _) in &commands {
            if let Some((code, desc)) = result.errors.get(key) {
                return Err(Fatal::unavailable(
                    "Bitrix24",
                    format!("{} refused the query: {desc} ({code})", self.cfg.method),
                ));
            }
            let rows: Vec<Json> = result
                .results
                .get(key)
                .map(|p| self.rows(p).into_iter().cloned().collect())
                .unwrap_or_default();
            for row in rows {
                self.push(row, None);
            }
        }
        let next = starts.last().unwrap() + PAGE;
        self.state = Position::Offset { next, total };
        self.done = next >= total;
        Ok(())
    }

    /// Offset methods (user.get, department.get) take the filter at the top level or in `filter`.
    fn offset_params(&self, order: Option<Json>, start: i64) -> Json {
        let mut params = self.base.clone();
        if params["filter"].as_object().is_some_and(Map::is_empty) {
            params.as_object_mut().unwrap().remove("filter");
        }
        if params["select"].as_array().is_some_and(Vec::is_empty) {
            params.as_object_mut().unwrap().remove("select");
        }
        if let Some(o) = order {
            params["order"] = o;
        }
        params["start"] = Json::from(start);
        params
    }
}

#[async_trait]
impl Source for ListSource {
    async fn open(&mut self, ctx: &RunCtx, cursor: Option<Json>) -> Result<(), Fatal> {
        let scope = ctx.run_scope(cursor.as_ref());
        let render = |t: &Template| {
            t.eval(&scope)
                .map_err(|e| Fatal::unavailable("Bitrix24", format!("template: {e}")))
        };
        let mut base = Map::new();
        for (k, t) in &self.cfg.params {
            base.insert(k.clone(), render(t)?);
        }
        let mut filter = Map::new();
        for (k, t) in &self.cfg.filter {
            filter.insert(k.clone(), render(t)?);
        }
        let select: Vec<Json> = self
            .cfg
            .select
            .iter()
            .map(render)
            .collect::<Result<_, _>>()?;
        base.insert("filter".into(), Json::Object(filter));
        base.insert("select".into(), Json::Array(select));
        if let Some(inc) = &self.cfg.incremental {
            // Records changed while we run (our own status write-backs among them) are left
            // for the next run; see `settle_secs`. The portal's clock stamps DATE_MODIFY, so the
            // limit is finally measured on it (`incremental::SettleLimit`); the filter sent
            // before any answer told that clock uses the host's, and rows past the portal's
            // limit are dropped when a window is delivered. No extra request for the time.
            let limit = incremental::SettleLimit::start(inc.settle_secs, self.client.portal_now());
            base["filter"][format!("<={}", inc.field)] = Json::from(
                limit
                    .server_bound()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            );
            self.settle = Some(limit);
            self.state = match cursor {
                Some(c) if c["date"].is_string() => Position::Window(incremental::Window::resume(
                    as_text(&c["date"]),
                    as_text(&c["id"]),
                )),
                _ => {
                    let start = inc
                        .start
                        .as_ref()
                        .map(|t| t.render(&scope))
                        .transpose()
                        .map_err(|e| Fatal::unavailable("Bitrix24", e))?;
                    Position::Window(incremental::Window::after(
                        start.unwrap_or_else(|| "2000-01-01T00:00:00+00:00".into()),
                    ))
                }
            };
        }
        self.base = Json::Object(base);
        Ok(())
    }

    async fn next_batch(&mut self, _: &RunCtx) -> Result<Option<Vec<Record>>, Fatal> {
        // A loop: a window may hold nothing new (only rows at the cursor already delivered).
        while self.buffer.is_empty() && self.sorted.is_empty() && !self.done {
            match (self.paging, &self.cfg.incremental) {
                (_, Some(_)) => self.fetch_incremental().await?,
                (Paging::Offset, None) => self.fetch_offset().await?,
                _ => self.fetch_keyset().await?,
            }
        }
        if self.buffer.is_empty() {
            self.deliver_sorted();
        }
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let n = self.buffer.len().min(DELIVERY);
        Ok(Some(self.buffer.drain(..n).collect()))
    }
}
