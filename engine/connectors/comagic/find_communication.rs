//! `comagic.find_communication`: the lookup half of seed 003. For each phone (with the sum of its
//! orders), find its calls by caller number in a window before the order and pick one; the
//! `comagic.tag_sales` sink then puts the sale on it.
//! - no payments: skipped (log `<phone>:no payments`);
//! - no call in the window: skipped (log `<phone>:no communication`);
//! - the call already carries a sale with the same amount: skipped and counted as `problem`
//!   (seed 003's guard against double requests), so a second run writes nothing;
//! - otherwise the call is `steps.<id>` (log `<phone>:<communication id>`).
//!
//! Journal counters: `phones_analyzed`, `communications_found` (matching communications, all of
//! them, duplicates included), `problem`.
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

use super::calls::{CallRow, cover, money, report_params, uncovered};
use super::data_api::{CallError, DataApi, Effect, SYSTEM};
use super::report_reader::{ReportReader, format_time, parse_time, split_range};
use crate::config::component::StepConfig;
use crate::config::{BuildCtx, ConnectionRef};
use crate::expr::Template;
use crate::runtime::{Fatal, Item, RunCtx, Step};

/// Find the CoMagic call each phone's order came from (seed 003); it becomes `steps.<id>`, the
/// communication a `comagic.tag_sales` sink puts the sale on.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindCommunicationConfig {
    /// A `comagic.data_api` connection.
    #[schemars(example = &"comagic")]
    pub connection: ConnectionRef,
    /// The caller number to look for, `7XXXXXXXXXX` (a template over the record).
    #[serde(default = "d_phone")]
    #[schemars(example = &"{{ record.phone }}")]
    pub phone: Template,
    /// The sale amount in roubles: a call already carrying a sale of it is left alone (`problem`).
    #[serde(default = "d_amount")]
    #[schemars(example = &"{{ record.amount }}")]
    pub amount: Template,
    /// When the order was made (ISO 8601, or `YYYY-MM-DD hh:mm:ss` in the account's time): the
    /// window for the call ends here.
    #[serde(default = "d_order_at")]
    #[schemars(example = &"{{ record.first_order_at }}")]
    pub order_at: Template,
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
    #[schemars(range(min = 1, max = 10000))]
    pub page_size: u64,
    /// How calls are found: `auto` (whichever takes fewer requests), `bulk` (read the window,
    /// match here) or `per_phone` (a filtered request per phone).
    #[serde(default)]
    pub lookup: Lookup,
}

pub(super) fn record_template(s: &str) -> Template {
    Template::compile(s, crate::expr::RECORD_ROOTS, &[])
        .ok()
        .expect("valid default template")
}
fn d_phone() -> Template {
    record_template("{{ record.phone }}")
}
fn d_amount() -> Template {
    record_template("{{ record.amount }}")
}
fn d_order_at() -> Template {
    record_template("{{ record.first_order_at }}")
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

#[derive(Deserialize, JsonSchema, Default, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Lookup {
    #[default]
    Auto,
    Bulk,
    PerPhone,
}

impl StepConfig for FindCommunicationConfig {
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
        let id = ctx.id.clone().ok_or(
            "a comagic.find_communication step needs an `id`: the communication is `steps.<id>`",
        )?;
        Ok(Arc::new(FindCommunication {
            cfg: self,
            api,
            tz,
            id,
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

/// One phone's search.
struct Job {
    index: usize,
    phone: String,
    amount_kop: i64,
    from: NaiveDateTime,
    till: NaiveDateTime,
    latest: bool,
}

struct FindCommunication {
    cfg: FindCommunicationConfig,
    api: Arc<DataApi>,
    tz: FixedOffset,
    id: String,
    state: tokio::sync::Mutex<RunState>,
}

impl FindCommunication {
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
        Ok(Job {
            index,
            phone,
            amount_kop,
            from: till - chrono::Duration::days(days),
            till,
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
            .map_err(|e| e.fatal_in(SYSTEM, "get.tags"))?;
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
            .map_err(|e| e.fatal_in(SYSTEM, "get.calls_report"))?
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
                .map_err(|e| e.fatal_in(SYSTEM, "get.calls_report"))?;
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
                    Err(CallError::Rejected(e))
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
                    Err(e) => return Err(e.fatal_in(SYSTEM, "get.calls_report")),
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
        let (x, y) = split_range(a, b)[0];
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
}

#[async_trait]
impl Step for FindCommunication {
    async fn process(&self, items: &mut [Item], ctx: &RunCtx) -> Result<(), Fatal> {
        for name in ["phones_analyzed", "communications_found", "problem"] {
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
            let Some(call) = chosen else {
                ctx.log(format!("{}:no communication", job.phone));
                item.skip(self.nothing_found(job));
                continue;
            };
            ctx.log(format!("{}:{}", job.phone, call.communication_id));
            if call.carries(sale_tag, job.amount_kop) {
                ctx.count("problem", 1);
                item.skip(format!(
                    "communication {} already carries a sale of {}",
                    call.communication_id,
                    money(job.amount_kop)
                ));
                continue;
            }
            let found = self.found(job, call, sale_tag);
            item.record.set_step_output(&self.id, found);
        }
        Ok(())
    }
}

impl FindCommunication {
    fn nothing_found(&self, job: &Job) -> String {
        format!(
            "no {}call from {} in the {} days before the order",
            if self.cfg.include_lost {
                ""
            } else {
                "answered "
            },
            job.phone,
            (job.till - job.from).num_days()
        )
    }

    /// `steps.<id>`: the communication, the sale it should carry, and what the sink needs to
    /// write it (the sale tag, the account's offset for `sale_at`).
    fn found(&self, job: &Job, call: &CallRow, sale_tag: u64) -> Json {
        json!({
            "phone": job.phone,
            "communication_id": call.communication_id,
            "communication_type": call.communication_type,
            "call_id": call.id,
            "start_time": format_time(&call.start_time),
            "order_at": format_time(&job.till),
            "amount": job.amount_kop as f64 / 100.0,
            "current_sale": call.sale_kop.map(|k| k as f64 / 100.0),
            "has_sale": call.has_sale(sale_tag),
            "sale_tag_id": sale_tag,
            "utc_offset": self.tz.to_string(),
        })
    }
}
