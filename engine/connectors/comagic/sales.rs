//! `comagic.tag_sales`: seed 003's sale tagging. For each phone (with the sum of its orders), find
//! its calls by caller number in a window before the order, pick one, and make the communication
//! carry exactly one sale with that sum:
//! - no sale yet: `set.tag_sales` with the amount and the services in the comment (`tags_applied`);
//! - a sale with the same amount: left alone and counted as `problem` (seed 003's guard against
//!   double requests);
//! - a sale with another amount: `unset.tag_communications` of the sale tag, then `set.tag_sales`
//!   (`tags_removed_updated`).
//!
//! Journal counters: `phones_analyzed`, `communications_found` (matching communications, all of
//! them, duplicates included), `tags_applied`, `tags_removed_updated`, `problem`; log lines
//! `<phone>:<communication id>` or `<phone>:<result>`.
//!
//! `set.tag_sales` is not idempotent. When a write's outcome is unknown (timeout, dropped
//! connection, 5xx), the communication is read again and the next step decided from what it
//! carries; nothing is sent twice blindly.
//!
//! Calls are found with as few requests as the data allows: the whole window of a batch is read
//! page by page (10,000 rows per request) and matched here, unless that would take more requests
//! than one filtered request per phone; windows already read are not read again in the same run.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{FixedOffset, NaiveDateTime};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::dataapi::{CallError, DataApi, Effect, ReportReader, format_time, parse_time};
use crate::config::component::StepConfig;
use crate::config::{BuildCtx, ConnectionRef};
use crate::expr::Template;
use crate::runtime::{Fatal, Item, RunCtx, Step};

/// Put CoMagic sale tags (amount + comment) on the call each phone's order came from (seed 003).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagSalesConfig {
    /// A `comagic.data_api` connection.
    #[schemars(example = &"comagic")]
    pub connection: ConnectionRef,
    /// The caller number to look for, `7XXXXXXXXXX` (a template over the record).
    #[serde(default = "d_phone")]
    #[schemars(example = &"{{ record.phone }}")]
    pub phone: Template,
    /// The sale amount in roubles (`transaction_value`).
    #[serde(default = "d_amount")]
    #[schemars(example = &"{{ record.amount }}")]
    pub amount: Template,
    /// When the order was made (ISO 8601, or `YYYY-MM-DD hh:mm:ss` in the account's time): the
    /// window for the call ends here.
    #[serde(default = "d_order_at")]
    #[schemars(example = &"{{ record.first_order_at }}")]
    pub order_at: Template,
    /// The sale's `date_time`; moved to the call's start when it is earlier.
    #[serde(default = "d_sale_at")]
    #[schemars(example = &"{{ record.last_paid_at or record.last_order_at }}")]
    pub sale_at: Template,
    /// The sale's comment; cut to 255 characters.
    #[serde(default = "d_comment")]
    #[schemars(example = &"{{ record.services | join(', ') }}")]
    pub comment: Template,
    /// Days before `order_at` in which the call is looked for (at most 90).
    #[serde(default = "d_lookback")]
    #[schemars(example = &"{{ settings.lookback_days }}")]
    pub lookback_days: Template,
    /// Which call of the window carries the sale: `latest` (the last touch before the order) or
    /// `earliest` (the first).
    #[serde(default = "d_pick")]
    #[schemars(example = &"{{ settings.pick }}")]
    pub pick: Template,
    /// Consider lost (unanswered) calls too.
    #[serde(default)]
    pub include_lost: bool,
    /// The account's UTC offset: report times and `date_time` are local to it.
    #[serde(default = "d_timezone")]
    pub timezone: String,
    /// Name of the system sale tag.
    #[serde(default = "d_sale_tag")]
    pub sale_tag: String,
    /// Rows per report request (at most 10000).
    #[serde(default = "d_page")]
    pub page_size: u64,
    /// How calls are found: `auto` (whichever takes fewer requests), `bulk` (read the window,
    /// match here) or `per_phone` (a filtered request per phone).
    #[serde(default)]
    pub lookup: Lookup,
    /// Attempts at one write whose outcome stays unknown (each after reading the communication again).
    #[serde(default = "d_attempts")]
    pub write_attempts: u32,
}

fn tpl(s: &str) -> Template {
    Template::compile(s, crate::expr::RECORD_ROOTS, &[])
        .ok()
        .expect("valid default template")
}
fn d_phone() -> Template {
    tpl("{{ record.phone }}")
}
fn d_amount() -> Template {
    tpl("{{ record.amount }}")
}
fn d_order_at() -> Template {
    tpl("{{ record.first_order_at }}")
}
fn d_sale_at() -> Template {
    tpl("{{ record.last_paid_at or record.last_order_at }}")
}
fn d_comment() -> Template {
    tpl("{{ record.services | join(', ') }}")
}
fn d_lookback() -> Template {
    Template::literal(json!(30))
}
fn d_pick() -> Template {
    Template::literal(json!("latest"))
}
fn d_timezone() -> String {
    "+03:00".into()
}
fn d_sale_tag() -> String {
    "Продажа".into()
}
fn d_page() -> u64 {
    10_000
}
fn d_attempts() -> u32 {
    3
}

#[derive(Deserialize, JsonSchema, Default, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Lookup {
    #[default]
    Auto,
    Bulk,
    PerPhone,
}

impl StepConfig for TagSalesConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Arc<dyn Step>, String> {
        let api = ctx.connection::<DataApi>(&self.connection)?;
        let tz: FixedOffset = self.timezone.parse().map_err(|_| {
            format!(
                "timezone must be an offset such as +03:00, got `{}`",
                self.timezone
            )
        })?;
        if !(1..=10_000).contains(&self.page_size) {
            return Err(format!(
                "page_size must be from 1 to 10000, got {}",
                self.page_size
            ));
        }
        Ok(Arc::new(TagSales {
            cfg: self,
            api,
            tz,
            id: ctx.id.clone(),
            state: tokio::sync::Mutex::new(RunState::default()),
        }))
    }
}

/// What the step learns during one run.
#[derive(Default)]
struct RunState {
    sale_tag_id: Option<u64>,
    /// Windows read in full, merged.
    covered: Vec<(NaiveDateTime, NaiveDateTime)>,
    /// Calls of those windows by phone.
    calls: HashMap<String, Vec<CallRow>>,
    /// `false` once the API refused a filter on `contact_phone_number`.
    phone_filter: Option<bool>,
    /// Per-phone lookups in this run (their rows are not part of `calls`).
    per_phone: HashMap<String, Vec<CallRow>>,
}

/// The parts of a `get.calls_report` row that matter here.
#[derive(Clone, Debug)]
struct CallRow {
    id: u64,
    communication_id: u64,
    communication_type: String,
    start_time: NaiveDateTime,
    is_lost: bool,
    sale_kop: Option<i64>,
    tag_ids: Vec<u64>,
}

const FIELDS: &[&str] = &[
    "id",
    "communication_id",
    "communication_type",
    "start_time",
    "contact_phone_number",
    "is_lost",
    "tags",
    "sale_date",
    "sale_cost",
];

impl CallRow {
    fn from_json(v: &Json) -> Option<(String, CallRow)> {
        let phone = v.get("contact_phone_number")?.as_str()?.to_string();
        let row = CallRow {
            id: v.get("id")?.as_u64()?,
            communication_id: v.get("communication_id")?.as_u64()?,
            communication_type: v
                .get("communication_type")
                .and_then(Json::as_str)
                .unwrap_or("call")
                .to_string(),
            start_time: parse_time(v.get("start_time")?.as_str()?, false).ok()?,
            is_lost: v.get("is_lost").and_then(Json::as_bool).unwrap_or(false),
            sale_kop: v
                .get("sale_cost")
                .and_then(Json::as_f64)
                .map(|c| (c * 100.0).round() as i64),
            tag_ids: v
                .get("tags")
                .and_then(Json::as_array)
                .map(|tags| {
                    tags.iter()
                        .filter_map(|t| t.get("tag_id").and_then(Json::as_u64))
                        .collect()
                })
                .unwrap_or_default(),
        };
        Some((phone, row))
    }

    fn has_sale(&self, sale_tag: u64) -> bool {
        self.sale_kop.is_some() || self.tag_ids.contains(&sale_tag)
    }
}

/// One phone's work.
struct Job {
    index: usize,
    phone: String,
    amount_kop: i64,
    from: NaiveDateTime,
    till: NaiveDateTime,
    sale_at: Option<NaiveDateTime>,
    comment: String,
    latest: bool,
}

struct TagSales {
    cfg: TagSalesConfig,
    api: Arc<DataApi>,
    tz: FixedOffset,
    id: Option<String>,
    state: tokio::sync::Mutex<RunState>,
}

fn money(kop: i64) -> String {
    format!("{}.{:02}", kop / 100, (kop % 100).abs())
}

/// At most 255 characters, cut at a character boundary with an ellipsis.
pub fn clip_comment(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= 255 {
        return text.to_string();
    }
    let mut out: String = text.chars().take(254).collect();
    out.push('…');
    out
}

/// Merge `[a, b]` into a sorted list of disjoint intervals (seconds are whole: adjacent ones join).
fn cover(list: &mut Vec<(NaiveDateTime, NaiveDateTime)>, a: NaiveDateTime, b: NaiveDateTime) {
    list.push((a, b));
    list.sort();
    let mut out: Vec<(NaiveDateTime, NaiveDateTime)> = Vec::with_capacity(list.len());
    for (x, y) in list.drain(..) {
        match out.last_mut() {
            Some(last) if x <= last.1 + chrono::Duration::seconds(1) => last.1 = last.1.max(y),
            _ => out.push((x, y)),
        }
    }
    *list = out;
}

/// The parts of `[a, b]` not in `list`.
fn uncovered(
    list: &[(NaiveDateTime, NaiveDateTime)],
    a: NaiveDateTime,
    b: NaiveDateTime,
) -> Vec<(NaiveDateTime, NaiveDateTime)> {
    let mut out = Vec::new();
    let mut start = a;
    for &(x, y) in list {
        if y < start || x > b {
            continue;
        }
        if x > start {
            out.push((start, x - chrono::Duration::seconds(1)));
        }
        start = start.max(y + chrono::Duration::seconds(1));
        if start > b {
            break;
        }
    }
    if start <= b {
        out.push((start, b));
    }
    out
}

fn report_params() -> Map<String, Json> {
    let mut p = Map::new();
    p.insert("fields".into(), json!(FIELDS));
    p.insert(
        "sort".into(),
        json!([{"field": "start_time", "order": "asc"}]),
    );
    p
}

/// How a write ended for one phone.
enum Done {
    Applied(u64),
    Updated(u64),
}

enum WriteErr {
    /// This record's problem (CoMagic rejected the parameters).
    Record(String),
    Fatal(Fatal),
}

impl TagSales {
    fn local(&self, text: &str, what: &str) -> Result<NaiveDateTime, String> {
        let t = text.trim();
        if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
            return Ok(dt.with_timezone(&self.tz).naive_local());
        }
        parse_time(t, true).map_err(|e| format!("{what}: {e}"))
    }

    fn job(&self, index: usize, item: &Item, ctx: &RunCtx) -> Result<Job, String> {
        let scope = ctx.scope(item);
        let eval = |t: &Template, what: &str| t.eval(&scope).map_err(|e| format!("{what}: {e}"));
        let phone = match eval(&self.cfg.phone, "phone")? {
            Json::String(s) => crate::expr::filters::normalize_phone(&s)?,
            Json::Number(n) => crate::expr::filters::normalize_phone(&n.to_string())?,
            other => return Err(format!("phone: expected a phone number, got {other}")),
        };
        let amount = eval(&self.cfg.amount, "amount")?;
        let amount_kop =
            super::phone_store::kopecks(&amount).map_err(|e| format!("amount: {e}"))?;
        let order_at = eval(&self.cfg.order_at, "order_at")?;
        let order_at = order_at
            .as_str()
            .ok_or_else(|| format!("order_at: expected a date-time, got {order_at}"))?;
        let till = self.local(order_at, "order_at")?;
        let days = match eval(&self.cfg.lookback_days, "lookback_days")? {
            Json::Number(n) => n.as_i64(),
            Json::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|d| (1..=90).contains(d))
        .ok_or("lookback_days must be a whole number of days from 1 to 90")?;
        let latest = match eval(&self.cfg.pick, "pick")?.as_str().unwrap_or_default() {
            "latest" => true,
            "earliest" => false,
            other => {
                return Err(format!(
                    "pick must be `latest` or `earliest`, got `{other}`"
                ));
            }
        };
        let sale_at = match eval(&self.cfg.sale_at, "sale_at")? {
            Json::String(s) if !s.trim().is_empty() => Some(self.local(&s, "sale_at")?),
            _ => None,
        };
        let comment = clip_comment(
            &eval(&self.cfg.comment, "comment")?
                .as_str()
                .map(str::to_string)
                .unwrap_or_default(),
        );
        Ok(Job {
            index,
            phone,
            amount_kop,
            from: till - chrono::Duration::days(days),
            till,
            sale_at,
            comment,
            latest,
        })
    }

    async fn sale_tag_id(&self, st: &mut RunState) -> Result<u64, Fatal> {
        if let Some(id) = st.sale_tag_id {
            return Ok(id);
        }
        let mut p = Map::new();
        p.insert(
            "filter".into(),
            json!({"field": "name", "operator": "=", "value": self.cfg.sale_tag}),
        );
        let reply = self
            .api
            .call("get.tags", p, Effect::Read)
            .await
            .map_err(|e| e.fatal("get.tags"))?;
        let id = reply
            .data
            .as_array()
            .and_then(|tags| {
                tags.iter().find(|t| {
                    t.get("name").and_then(Json::as_str) == Some(self.cfg.sale_tag.as_str())
                })
            })
            .and_then(|t| t.get("id").and_then(Json::as_u64))
            .ok_or_else(|| {
                Fatal::other(format!(
                    "CoMagic has no tag named «{}» (the sale tag); check `sale_tag`",
                    self.cfg.sale_tag
                ))
            })?;
        st.sale_tag_id = Some(id);
        Ok(id)
    }

    /// Read `[a, b]` in full into the run's call index.
    async fn read_window(
        &self,
        st: &mut RunState,
        a: NaiveDateTime,
        b: NaiveDateTime,
    ) -> Result<(), Fatal> {
        let mut reader = ReportReader::new(
            self.api.clone(),
            "get.calls_report",
            a,
            b,
            report_params(),
            self.cfg.page_size,
        );
        while let Some(rows) = reader
            .next_page()
            .await
            .map_err(|e| e.fatal("get.calls_report"))?
        {
            for row in &rows {
                if let Some((phone, call)) = CallRow::from_json(row) {
                    st.calls.entry(phone).or_default().push(call);
                }
            }
        }
        cover(&mut st.covered, a, b);
        Ok(())
    }

    /// One phone's calls in its window, with a filter on the caller number.
    async fn read_phone(&self, job: &Job) -> Result<Vec<CallRow>, CallError> {
        let mut p = report_params();
        p.insert(
            "filter".into(),
            json!({"field": "contact_phone_number", "operator": "=", "value": job.phone}),
        );
        let mut reader = ReportReader::new(
            self.api.clone(),
            "get.calls_report",
            job.from,
            job.till,
            p,
            self.cfg.page_size,
        );
        let mut out = Vec::new();
        while let Some(rows) = reader.next_page().await? {
            out.extend(
                rows.iter()
                    .filter_map(CallRow::from_json)
                    .filter(|(phone, _)| *phone == job.phone)
                    .map(|(_, c)| c),
            );
        }
        Ok(out)
    }

    /// Make sure the calls of every job's window are known, with as few requests as possible.
    async fn lookup(&self, st: &mut RunState, jobs: &[Job]) -> Result<(), Fatal> {
        let mut missing: Vec<(NaiveDateTime, NaiveDateTime)> = Vec::new();
        let mut needy = 0u64;
        for job in jobs {
            let gaps = uncovered(&st.covered, job.from, job.till);
            if !gaps.is_empty() {
                needy += 1;
            }
            for (a, b) in gaps {
                cover(&mut missing, a, b);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let mut mode = self.cfg.lookup;
        if st.phone_filter == Some(false) {
            mode = Lookup::Bulk;
        }
        if mode == Lookup::Auto {
            // One one-row request says how dense the calls are; estimate what reading it all costs.
            let seconds: i64 = missing
                .iter()
                .map(|(x, y)| (*y - *x).num_seconds() + 1)
                .sum();
            let (total, window) = self
                .count_calls(missing[0].0, missing[0].1)
                .await
                .map_err(|e| e.fatal("get.calls_report"))?;
            let rows = total as f64 * seconds as f64 / window.max(1) as f64;
            let pages_estimate =
                (rows / self.cfg.page_size as f64).ceil() as u64 + missing.len() as u64;
            mode = if pages_estimate <= needy {
                Lookup::Bulk
            } else {
                Lookup::PerPhone
            };
            tracing::info!(pages_estimate, phones = needy, ?mode, "calls lookup");
        }
        if mode == Lookup::PerPhone {
            for job in jobs {
                if uncovered(&st.covered, job.from, job.till).is_empty()
                    || st.per_phone.contains_key(&job.phone)
                {
                    continue;
                }
                match self.read_phone(job).await {
                    Ok(rows) => {
                        st.per_phone.insert(job.phone.clone(), rows);
                    }
                    Err(CallError::Rpc(e))
                        if e.mnemonic == "filter_prohibited"
                            || e.mnemonic == "unexpected_parameters" =>
                    {
                        tracing::info!(
                            "CoMagic refuses a filter on contact_phone_number ({e}); matching calls here instead"
                        );
                        st.phone_filter = Some(false);
                        st.per_phone.clear();
                        return Box::pin(self.lookup(st, jobs)).await;
                    }
                    Err(e) => return Err(e.fatal("get.calls_report")),
                }
            }
            st.phone_filter = Some(true);
            return Ok(());
        }
        for (a, b) in missing {
            self.read_window(st, a, b).await?;
        }
        Ok(())
    }

    /// `total_items` of the first (at most 3-month) part of a window, and that part's length in
    /// seconds (a one-row request).
    async fn count_calls(
        &self,
        a: NaiveDateTime,
        b: NaiveDateTime,
    ) -> Result<(u64, i64), CallError> {
        let (x, y) = super::dataapi::split_range(a, b)[0];
        let mut p = Map::new();
        p.insert("fields".into(), json!(["id"]));
        p.insert("date_from".into(), json!(format_time(&x)));
        p.insert("date_till".into(), json!(format_time(&y)));
        p.insert("limit".into(), json!(1));
        let reply = self.api.call("get.calls_report", p, Effect::Read).await?;
        Ok((reply.total_items.unwrap_or(0), (y - x).num_seconds() + 1))
    }

    /// The job's candidate calls, oldest first.
    fn candidates(&self, st: &RunState, job: &Job) -> Vec<CallRow> {
        let rows = st
            .per_phone
            .get(&job.phone)
            .or_else(|| st.calls.get(&job.phone));
        let mut out: Vec<CallRow> = rows
            .map(|rows| {
                rows.iter()
                    .filter(|c| c.start_time >= job.from && c.start_time <= job.till)
                    .filter(|c| self.cfg.include_lost || !c.is_lost)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|c| (c.start_time, c.id));
        out
    }

    /// Keep the run's index in line with what was written.
    fn remember(st: &mut RunState, phone: &str, call: &CallRow) {
        for list in [st.calls.get_mut(phone), st.per_phone.get_mut(phone)]
            .into_iter()
            .flatten()
        {
            for c in list.iter_mut().filter(|c| c.id == call.id) {
                *c = call.clone();
            }
        }
    }

    /// The communication as CoMagic has it now.
    async fn reread(&self, call: &CallRow) -> Result<Option<CallRow>, Fatal> {
        let mut p = report_params();
        p.insert("date_from".into(), json!(format_time(&call.start_time)));
        p.insert("date_till".into(), json!(format_time(&call.start_time)));
        p.insert("limit".into(), json!(100));
        let reply = self
            .api
            .call("get.calls_report", p, Effect::Read)
            .await
            .map_err(|e| e.fatal("get.calls_report"))?;
        Ok(reply
            .data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(CallRow::from_json)
            .map(|(_, c)| c)
            .find(|c| c.id == call.id))
    }

    fn fatal_or_record(method: &str, e: CallError) -> WriteErr {
        match e {
            CallError::Rpc(r) if r.is_params() => WriteErr::Record(format!("{method}: {r}")),
            other => WriteErr::Fatal(other.fatal(method)),
        }
    }

    /// Bring `call` to carrying exactly one sale of the job's amount.
    async fn write(&self, job: &Job, call: &mut CallRow, sale_tag: u64) -> Result<Done, WriteErr> {
        let updating = call.has_sale(sale_tag);
        let attempts = self.cfg.write_attempts.max(1);
        let mut sale_id = 0;
        for attempt in 0..attempts {
            if call.has_sale(sale_tag) {
                if attempt > 0 && call.sale_kop == Some(job.amount_kop) {
                    break; // an earlier attempt took effect
                }
                let mut p = Map::new();
                p.insert("communication_id".into(), json!(call.communication_id));
                p.insert("communication_type".into(), json!(call.communication_type));
                p.insert("tag_id".into(), json!(sale_tag));
                match self
                    .api
                    .call("unset.tag_communications", p, Effect::Write)
                    .await
                {
                    Ok(_) => {
                        call.sale_kop = None;
                        call.tag_ids.retain(|t| *t != sale_tag);
                    }
                    Err(CallError::Unknown(m)) => {
                        tracing::warn!(
                            phone = job.phone,
                            "unset.tag_communications on {}: {m}; reading it again",
                            call.communication_id
                        );
                        *call = self
                            .reread(call)
                            .await
                            .map_err(WriteErr::Fatal)?
                            .ok_or_else(|| {
                                WriteErr::Record(format!(
                                    "communication {} is gone",
                                    call.communication_id
                                ))
                            })?;
                        continue;
                    }
                    Err(e) => return Err(Self::fatal_or_record("unset.tag_communications", e)),
                }
            }
            let date_time = job.sale_at.unwrap_or(job.till).max(call.start_time);
            let mut p = Map::new();
            p.insert("communication_id".into(), json!(call.communication_id));
            p.insert("communication_type".into(), json!(call.communication_type));
            p.insert("date_time".into(), json!(format_time(&date_time)));
            p.insert(
                "transaction_value".into(),
                json!(job.amount_kop as f64 / 100.0),
            );
            if !job.comment.is_empty() {
                p.insert("comment".into(), json!(job.comment));
            }
            match self.api.call("set.tag_sales", p, Effect::Write).await {
                Ok(reply) => {
                    sale_id = reply.data.get("id").and_then(Json::as_u64).unwrap_or(0);
                    call.sale_kop = Some(job.amount_kop);
                    if !call.tag_ids.contains(&sale_tag) {
                        call.tag_ids.push(sale_tag);
                    }
                    return Ok(if updating {
                        Done::Updated(sale_id)
                    } else {
                        Done::Applied(sale_id)
                    });
                }
                Err(CallError::Unknown(m)) => {
                    tracing::warn!(
                        phone = job.phone,
                        "set.tag_sales on {}: {m}; reading the communication before anything else",
                        call.communication_id
                    );
                    *call = self
                        .reread(call)
                        .await
                        .map_err(WriteErr::Fatal)?
                        .ok_or_else(|| {
                            WriteErr::Record(format!(
                                "communication {} is gone",
                                call.communication_id
                            ))
                        })?;
                    if call.has_sale(sale_tag) && call.sale_kop == Some(job.amount_kop) {
                        break; // it took effect
                    }
                }
                Err(e) => return Err(Self::fatal_or_record("set.tag_sales", e)),
            }
        }
        if call.has_sale(sale_tag) && call.sale_kop == Some(job.amount_kop) {
            return Ok(if updating {
                Done::Updated(sale_id)
            } else {
                Done::Applied(sale_id)
            });
        }
        Err(WriteErr::Fatal(Fatal::unavailable(
            super::dataapi::SYSTEM,
            format!(
                "the sale for communication {} could not be confirmed after {attempts} attempts",
                call.communication_id
            ),
        )))
    }
}

#[async_trait]
impl Step for TagSales {
    async fn process(&self, items: &mut [Item], ctx: &RunCtx) -> Result<(), Fatal> {
        for name in [
            "phones_analyzed",
            "communications_found",
            "tags_applied",
            "tags_removed_updated",
            "problem",
        ] {
            ctx.declare_counter(name);
        }
        let mut jobs = Vec::new();
        for (index, item) in items.iter_mut().enumerate().filter(|(_, i)| i.pending()) {
            ctx.count("phones_analyzed", 1);
            match self.job(index, item, ctx) {
                Ok(job) if job.amount_kop <= 0 => {
                    ctx.log(format!("{}:no payments", job.phone));
                    item.skip("no payments: nothing to tag");
                }
                Ok(job) => jobs.push(job),
                Err(reason) => {
                    ctx.log(format!("{}:invalid: {reason}", item.record.key));
                    item.fail(reason);
                }
            }
        }
        if jobs.is_empty() {
            return Ok(());
        }
        let mut st = self.state.lock().await;
        let sale_tag = self.sale_tag_id(&mut st).await?;
        self.lookup(&mut st, &jobs).await?;
        for job in &jobs {
            let item = &mut items[job.index];
            let candidates = self.candidates(&st, job);
            ctx.count("communications_found", candidates.len() as i64);
            let chosen = if job.latest {
                candidates.last()
            } else {
                candidates.first()
            };
            let Some(mut call) = chosen.cloned() else {
                ctx.log(format!("{}:no communication", job.phone));
                item.skip(format!(
                    "no {}call from {} in the {} days before the order",
                    if self.cfg.include_lost {
                        ""
                    } else {
                        "answered "
                    },
                    job.phone,
                    (job.till - job.from).num_days()
                ));
                continue;
            };
            ctx.log(format!("{}:{}", job.phone, call.communication_id));
            let mut output = json!({"phone": job.phone, "communication_id": call.communication_id, "call_id": call.id,
                                    "start_time": format_time(&call.start_time), "amount": job.amount_kop as f64 / 100.0});
            if call.has_sale(sale_tag) && call.sale_kop == Some(job.amount_kop) {
                ctx.count("problem", 1);
                item.skip(format!(
                    "communication {} already carries a sale of {}",
                    call.communication_id,
                    money(job.amount_kop)
                ));
                continue;
            }
            let action = if call.has_sale(sale_tag) {
                "update"
            } else {
                "tag"
            };
            if ctx.dry_run {
                println!(
                    "[dry-run] comagic.tag_sales: {action} communication {} ({}) with a sale of {}{}",
                    call.communication_id,
                    job.phone,
                    money(job.amount_kop),
                    call.sale_kop
                        .map(|k| format!(" (now {})", money(k)))
                        .unwrap_or_default()
                );
                continue;
            }
            let result = self.write(job, &mut call, sale_tag).await;
            Self::remember(&mut st, &job.phone, &call);
            match result {
                Ok(Done::Applied(id)) => {
                    ctx.count("tags_applied", 1);
                    output["action"] = json!("tagged");
                    output["sale_id"] = json!(id);
                }
                Ok(Done::Updated(id)) => {
                    ctx.count("tags_removed_updated", 1);
                    output["action"] = json!("updated");
                    output["sale_id"] = json!(id);
                }
                Err(WriteErr::Record(reason)) => {
                    ctx.log(format!("{}:failed: {reason}", job.phone));
                    item.fail(reason);
                    continue;
                }
                Err(WriteErr::Fatal(f)) => return Err(f),
            }
            if let Some(id) = &self.id {
                item.record.set_step_output(id, output.clone());
            }
            item.record.data = Arc::new(output);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        parse_time(s, false).unwrap()
    }

    #[test]
    fn intervals_merge_and_subtract() {
        let mut list = Vec::new();
        cover(
            &mut list,
            t("2025-01-10 00:00:00"),
            t("2025-01-20 00:00:00"),
        );
        cover(
            &mut list,
            t("2025-01-01 00:00:00"),
            t("2025-01-05 00:00:00"),
        );
        cover(
            &mut list,
            t("2025-01-20 00:00:01"),
            t("2025-01-25 00:00:00"),
        );
        assert_eq!(
            list,
            vec![
                (t("2025-01-01 00:00:00"), t("2025-01-05 00:00:00")),
                (t("2025-01-10 00:00:00"), t("2025-01-25 00:00:00"))
            ]
        );
        let gaps = uncovered(&list, t("2025-01-03 00:00:00"), t("2025-01-30 00:00:00"));
        assert_eq!(
            gaps,
            vec![
                (t("2025-01-05 00:00:01"), t("2025-01-09 23:59:59")),
                (t("2025-01-25 00:00:01"), t("2025-01-30 00:00:00"))
            ]
        );
        assert!(uncovered(&list, t("2025-01-11 00:00:00"), t("2025-01-12 00:00:00")).is_empty());
    }

    #[test]
    fn comments_fit_in_255_characters() {
        assert_eq!(clip_comment(" УЗИ "), "УЗИ");
        let long = "Общий анализ крови, ".repeat(20);
        let c = clip_comment(&long);
        assert_eq!(c.chars().count(), 255);
        assert!(c.ends_with('…'));
        assert_eq!(money(150_050), "1500.50");
    }
}
