//! `bitrix24.list`: read any list method.
//!
//! - Full export (crm.*.list, crm.activity.list, crm.item.list): keyset paging on the ID, 50
//!   chained pages per `batch` (`filter[>ID]=$result[p{k-1}][49][ID]`, `start=-1`, `halt=1`), so
//!   2,500 rows per HTTP request and no COUNT on the portal.
//! - Incremental (`incremental:`): ascending (DATE_MODIFY, ID) from the cursor. A request is a
//!   chain of steps; each step reads the rest of the records that share its anchor's DATE_MODIFY
//!   (`=DATE_MODIFY`, `>ID`, a few chained pages), then the page after that date
//!   (`>DATE_MODIFY`), whose last row anchors the next step. So ties of any size across page
//!   boundaries are delivered exactly once, the cursor (DATE_MODIFY, ID) of each record says
//!   exactly where to continue, and ties of ~100 records a second (our own status write-backs)
//!   still cost only a few thousand records per request.
//! - user.get, department.get and other small lists: offset pages, batched.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::client::{B24Error, BatchResult, Client, Kind, SYSTEM, is_refusal};
use crate::config::{BuildCtx, ConnectionRef, component::SourceConfig};
use crate::expr::Template;
use crate::runtime::{Fatal, Record, RunCtx, Source};

const PAGE: usize = 50;
const COMMANDS: usize = 50;
/// Tie pages per chain step of an incremental request, at first: room for the rest of a second
/// that ~100 records share (status write-backs at the portal's pace). Afterwards it follows the
/// deepest tie of the last request (one page for sparse seconds), doubling when a tie overflows,
/// up to `MAX_TIE_PAGES`.
const TIE_PAGES: usize = 2;
const MAX_TIE_PAGES: usize = 8;
/// Tie pages of the first step once a tie outgrew its step; doubled while it goes on.
const LARGE_TIE_PAGES: usize = 16;

type Command = (String, String, Json);

/// One chain step of an incremental request: the keys of its tie pages and of its page after.
struct Step {
    ties: Vec<String>,
    later: String,
}

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
            large_tie_pages: 0,
            tie_pages: TIE_PAGES,
        }))
    }
}

/// Where the reading stands.
#[derive(Clone, Debug)]
enum Position {
    Start,
    /// Full export: after this ID.
    AfterId(String),
    /// Incremental: after (date, id); `ties` says whether records with exactly `date` and a
    /// larger ID may still come.
    After {
        date: String,
        id: String,
        ties: bool,
    },
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
    /// Tie pages for the first step of the next request when the last one ended inside a tie
    /// larger than the pages it asked for; 0 otherwise.
    large_tie_pages: usize,
    /// Tie pages per chain step, following how many records share a second.
    tie_pages: usize,
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

    fn push(&mut self, row: &Json, cursor: Option<Json>) {
        let mut record = Record::new(self.id_of(row), row.clone());
        record.cursor = cursor;
        self.buffer.push_back(record);
    }

    async fn fetch_keyset(&mut self) -> Result<(), Fatal> {
        let id = self.cfg.id_field.clone();
        let order = json!({ id.clone(): "ASC" });
        let first = match &self.state {
            Position::AfterId(last) => Json::from(last.clone()),
            _ => Json::from(0),
        };
        let commands: Vec<(String, String, Json)> = (0..COMMANDS)
            .map(|k| {
                let after = if k == 0 {
                    first.clone()
                } else {
                    self.reference(&format!("p{}", k - 1), &id)
                };
                (
                    format!("p{k}"),
                    self.cfg.method.clone(),
                    self.params(&[(format!(">{id}"), after)], Some(order.clone()), -1),
                )
            })
            .collect();
        let result = self
            .client
            .batch(&commands, true, Kind::Read)
            .await
            .map_err(unavailable)?;
        for (k, _) in commands.iter().enumerate() {
            let Some(page) = self.page(&result, &format!("p{k}"))? else {
                break; // continue from here once the method may run
            };
            let rows: Vec<Json> = self.rows(page).into_iter().cloned().collect();
            for row in &rows {
                self.push(row, None);
            }
            match rows.last() {
                Some(last) if rows.len() == PAGE => {
                    self.state = Position::AfterId(self.id_of(last))
                }
                _ => {
                    self.done = true;
                    break;
                }
            }
        }
        Ok(())
    }

    /// The commands of one incremental request: chain steps, each anchored on the last row of
    /// the previous step's `later` page (the first on the cursor). `first_ties` tie pages in
    /// the first step (none at the very start, many inside a large tie), `tie_pages` after.
    fn incremental_plan(&self, first_ties: usize) -> (Vec<Command>, Vec<Step>) {
        let inc = self.cfg.incremental.as_ref().expect("incremental");
        let (field, id) = (inc.field.as_str(), self.cfg.id_field.as_str());
        let Position::After {
            date, id: after, ..
        } = &self.state
        else {
            unreachable!("opened")
        };
        let (mut date, mut after) = (Json::from(date.clone()), Json::from(after.clone()));
        let (by_id, by_date) = (json!({ id: "ASC" }), json!({ field: "ASC", id: "ASC" }));
        let (mut commands, mut steps) = (Vec::new(), Vec::<Step>::new());
        let mut tie_pages = first_ties;
        while commands.len() + tie_pages < COMMANDS {
            let k = steps.len();
            let mut ties: Vec<String> = Vec::new();
            for j in 0..tie_pages {
                let from = match ties.last() {
                    Some(previous) => self.reference(previous, id),
                    None => after.clone(),
                };
                let filter = [
                    (format!("={field}"), date.clone()),
                    (format!(">{id}"), from),
                ];
                let key = format!("t{k}_{j}");
                let params = self.params(&filter, Some(by_id.clone()), -1);
                commands.push((key.clone(), self.cfg.method.clone(), params));
                ties.push(key);
            }
            let later = format!("l{k}");
            let filter = [(format!(">{field}"), date.clone())];
            let params = self.params(&filter, Some(by_date.clone()), -1);
            commands.push((later.clone(), self.cfg.method.clone(), params));
            date = self.reference(&later, field);
            after = self.reference(&later, id);
            steps.push(Step { ties, later });
            tie_pages = self.tie_pages;
        }
        (commands, steps)
    }

    /// One request of incremental reading. Each chain step delivers the rest of the tie at its
    /// anchor, then the page after that date. When every tie page of a step is full the tie
    /// goes on beyond what was asked: stop there and let the next request read mostly tie pages.
    async fn fetch_incremental(&mut self) -> Result<(), Fatal> {
        let first_ties = match self.state {
            Position::After { ties: false, .. } => 0,
            _ if self.large_tie_pages > 0 => self.large_tie_pages,
            _ => self.tie_pages,
        };
        let (commands, steps) = self.incremental_plan(first_ties);
        // halt=0: a tie page after a short one carries an unresolved `$result` reference,
        // which a portal may answer with an error; such pages are never looked at.
        let result = self
            .client
            .batch(&commands, false, Kind::Read)
            .await
            .map_err(unavailable)?;
        let large_tie_before = std::mem::take(&mut self.large_tie_pages);
        let mut deepest_tie = 0;
        for (k, step) in steps.iter().enumerate() {
            let (mut pages_read, mut tie_goes_on) = (0, !step.ties.is_empty());
            for key in &step.ties {
                let Some(n) = self.take_page(&result, key)? else {
                    return Ok(());
                };
                pages_read += 1;
                if n < PAGE {
                    tie_goes_on = false;
                    break;
                }
            }
            if tie_goes_on {
                // The tie goes on beyond the pages asked for: the next request reads more of
                // it first, and later steps plan deeper ties unless this is a tie of thousands.
                self.large_tie_pages = if k == 0 && large_tie_before > 0 {
                    large_tie_before * 2
                } else {
                    self.tie_pages = (self.tie_pages * 2).min(MAX_TIE_PAGES);
                    LARGE_TIE_PAGES
                }
                .min(COMMANDS - 2 - self.tie_pages);
                return Ok(());
            }
            if k > 0 {
                deepest_tie = deepest_tie.max(pages_read);
            }
            match self.take_page(&result, &step.later)? {
                None => return Ok(()),
                Some(n) if n < PAGE => {
                    self.done = true;
                    return Ok(());
                }
                Some(_) => {}
            }
        }
        self.tie_pages = deepest_tie.clamp(1, MAX_TIE_PAGES);
        Ok(())
    }

    /// The result of one command of a chained batch; `None` when the portal did not run it
    /// (refused before running, e.g. over its operating time): continue from there later.
    fn page<'r>(&self, result: &'r BatchResult, key: &str) -> Result<Option<&'r Json>, Fatal> {
        match result.errors.get(key) {
            Some((code, _)) if is_refusal(code) => Ok(None),
            Some((code, desc)) => Err(Fatal::unavailable(
                "Bitrix24",
                format!("{} refused the query: {desc} ({code})", self.cfg.method),
            )),
            None => Ok(result.results.get(key)),
        }
    }

    /// Deliver the rows of one incremental page and move the position past them. `None` when
    /// the portal did not run the command (refused for now): continue from here next request.
    fn take_page(&mut self, result: &BatchResult, key: &str) -> Result<Option<usize>, Fatal> {
        let Some(page) = self.page(result, key)? else {
            return Ok(None);
        };
        let field = self
            .cfg
            .incremental
            .as_ref()
            .expect("incremental")
            .field
            .clone();
        let rows: Vec<Json> = self.rows(page).into_iter().cloned().collect();
        for row in &rows {
            let (date, id) = (as_text(&row[field.as_str()]), self.id_of(row));
            self.push(row, Some(json!({ "date": date, "id": id })));
        }
        if let Some(last) = rows.last() {
            self.state = Position::After {
                date: as_text(&last[field.as_str()]),
                id: self.id_of(last),
                ties: true,
            };
        }
        Ok(Some(rows.len()))
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
                for row in &rows {
                    self.push(row, None);
                }
                let total = body["total"]
                    .as_u64()
                    .map(|t| t as usize)
                    .unwrap_or(rows.len());
                self.state = Position::Offset { next: PAGE, total };
                self.done = body.get("next").is_none() || rows.is_empty();
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
            for row in &rows {
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
            // for the next run; see `settle_secs`. Measured on the portal's clock, which
            // stamps DATE_MODIFY: a host clock running ahead must not shorten the window.
            let portal_now = self
                .client
                .portal_now()
                .await
                .map_err(|e| e.fatal_in(SYSTEM, "server.time"))?;
            let until = portal_now - chrono::Duration::seconds(inc.settle_secs as i64);
            base["filter"][format!("<={}", inc.field)] =
                Json::from(until.to_rfc3339_opts(chrono::SecondsFormat::Secs, false));
            self.state = match cursor {
                Some(c) if c["date"].is_string() => Position::After {
                    date: as_text(&c["date"]),
                    id: as_text(&c["id"]),
                    ties: true,
                },
                _ => {
                    let start = inc
                        .start
                        .as_ref()
                        .map(|t| t.render(&scope))
                        .transpose()
                        .map_err(|e| Fatal::unavailable("Bitrix24", e))?;
                    Position::After {
                        date: start.unwrap_or_else(|| "2000-01-01T00:00:00+00:00".into()),
                        id: "0".into(),
                        ties: false,
                    }
                }
            };
        }
        self.base = Json::Object(base);
        Ok(())
    }

    async fn next_batch(&mut self, _: &RunCtx) -> Result<Option<Vec<Record>>, Fatal> {
        if self.buffer.is_empty() && !self.done {
            match (self.paging, &self.cfg.incremental) {
                (_, Some(_)) => self.fetch_incremental().await?,
                (Paging::Offset, None) => self.fetch_offset().await?,
                _ => self.fetch_keyset().await?,
            }
        }
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let n = self.buffer.len().min(PAGE);
        Ok(Some(self.buffer.drain(..n).collect()))
    }
}
