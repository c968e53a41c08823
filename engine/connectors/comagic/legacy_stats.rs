//! `comagic.legacy_stats`: seed 004's statistics methods for a period (with the Python class's
//! parameters: `date_till` = `dateTo` + 1 day for communications, goals and calls), through a
//! `comagic.legacy_api` connection. The session is always ended when the run ends (finished,
//! aborted by any component, Ctrl-C).

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Days, NaiveDate};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::legacy_api::{LegacyApi, LegacyError, SYSTEM};
use crate::config::component::SourceConfig;
use crate::config::{BuildCtx, ConnectionRef};
use crate::expr::Template;
use crate::runtime::{Fatal, Record, RunCtx, Source};

/// The statistics seed 004's class offers.
#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum LegacyReport {
    /// `getClients`: the agency's customers.
    CustomerList,
    /// `getSites`: the sites.
    Site,
    /// `getTags`: the tags.
    Tag,
    /// `getSummaryStats`: one summary per site (per day with `by_date`).
    Stat,
    /// `getCommunicationStats`: communications per site.
    Communication,
    /// `getGoalStats`: goals reached per site.
    Goal,
    /// `getCallStats`: calls.
    Call,
}

impl LegacyReport {
    fn name(self) -> &'static str {
        match self {
            LegacyReport::CustomerList => "customer_list",
            LegacyReport::Site => "site",
            LegacyReport::Tag => "tag",
            LegacyReport::Stat => "stat",
            LegacyReport::Communication => "communication",
            LegacyReport::Goal => "goal",
            LegacyReport::Call => "call",
        }
    }
}

/// Statistics from CoMagic's legacy API v1 for a period, one record per row with `report` naming
/// its kind (`site`, `stat`, `communication`, `goal`, `call`...). The session is opened on the
/// first request and always ended when the run ends (finished, failed or interrupted).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LegacyStatsConfig {
    /// A `comagic.legacy_api` connection.
    #[schemars(example = &"comagic_v1")]
    pub connection: ConnectionRef,
    /// First day of the period, `YYYY-MM-DD` (a template).
    #[schemars(example = &"{{ run.today | add_days(-7) }}")]
    pub date_from: Template,
    /// Last day of the period, inclusive (a template).
    #[schemars(example = &"{{ run.today | add_days(-1) }}")]
    pub date_to: Template,
    /// What to pull, in this order.
    #[serde(default = "default_reports")]
    pub reports: Vec<LegacyReport>,
    /// Only these sites (default: every site of the account).
    #[serde(default)]
    pub site_ids: Vec<u64>,
    /// Agency accounts: the customer (`customer_id`).
    #[serde(default)]
    pub customer_id: Option<u64>,
    /// Only this advertising campaign (`ac_id`).
    #[serde(default)]
    pub ac_id: Option<u64>,
    /// Summary statistics per day instead of for the whole period (`byDate`).
    #[serde(default)]
    pub by_date: bool,
    /// Communications: only this tag (`tag_id`).
    #[serde(default)]
    pub tag_id: Option<u64>,
    /// Communications: non-target ones too (`show_not_goal`).
    #[serde(default)]
    pub show_not_goal: Option<bool>,
    /// Communications: first ones only (`only_first`).
    #[serde(default)]
    pub only_first: Option<bool>,
    /// Calls: `in` or `out`.
    #[serde(default)]
    pub direction: Option<String>,
    /// Calls: the caller's number (`numa`, АОН).
    #[serde(default)]
    pub numa: Option<String>,
    /// Calls: the number called (`numb`).
    #[serde(default)]
    pub numb: Option<String>,
}

fn default_reports() -> Vec<LegacyReport> {
    vec![
        LegacyReport::Site,
        LegacyReport::Stat,
        LegacyReport::Communication,
        LegacyReport::Goal,
        LegacyReport::Call,
    ]
}

impl SourceConfig for LegacyStatsConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Box<dyn Source>, String> {
        if let Some(d) = &self.direction
            && d != "in"
            && d != "out"
        {
            return Err(format!("direction is `in` or `out`, got `{d}`"));
        }
        let api = ctx.connection::<LegacyApi>(&self.connection)?;
        Ok(Box::new(LegacyStats {
            cfg: self,
            api,
            queue: VecDeque::new(),
        }))
    }
}

/// One request still to make.
struct Pending {
    report: LegacyReport,
    params: Vec<(String, String)>,
    /// Fields added to each row (`site_id`, the period).
    extra: Vec<(String, Json)>,
}

struct LegacyStats {
    cfg: LegacyStatsConfig,
    api: Arc<LegacyApi>,
    queue: VecDeque<Pending>,
}

fn day(text: &str, what: &str) -> Result<NaiveDate, Fatal> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(text.trim()).map(|d| d.date_naive()))
        .map_err(|_| {
            Fatal::other(format!(
                "comagic.legacy_stats: {what} \"{text}\" is not a date YYYY-MM-DD"
            ))
        })
}

fn fatal(e: LegacyError) -> Fatal {
    match e {
        LegacyError::Rejected(m) => Fatal::unavailable(SYSTEM, format!("refused: {m}")),
        other => other.fatal(SYSTEM),
    }
}

/// Add `key=value` to a request's parameters when the option is set.
fn opt(params: &mut Vec<(String, String)>, key: &str, v: Option<impl ToString>) {
    if let Some(v) = v {
        params.push((key.to_string(), v.to_string()));
    }
}

fn period(from: NaiveDate, to: NaiveDate) -> Vec<(String, Json)> {
    vec![
        ("date_from".to_string(), json!(from.to_string())),
        ("date_to".to_string(), json!(to.to_string())),
    ]
}

impl LegacyStats {
    /// The requests, in the order of `reports`; `site_rows` are the sites already read.
    fn plan(&mut self, sites: &[u64], site_rows: Vec<Json>, from: NaiveDate, to: NaiveDate) {
        let c = &self.cfg;
        for &report in &c.reports {
            let requests = match report {
                LegacyReport::CustomerList | LegacyReport::Tag => {
                    let mut params = Vec::new();
                    if report == LegacyReport::Tag {
                        opt(&mut params, "customer_id", c.customer_id);
                    }
                    vec![Pending {
                        report,
                        params,
                        extra: Vec::new(),
                    }]
                }
                LegacyReport::Site => vec![Pending {
                    report,
                    params: Vec::new(),
                    extra: vec![("__rows".into(), Json::Array(site_rows.clone()))],
                }],
                LegacyReport::Stat => sites
                    .iter()
                    .flat_map(|&site| self.stat_requests(site, from, to))
                    .collect(),
                LegacyReport::Communication | LegacyReport::Goal => sites
                    .iter()
                    .map(|&site| self.site_request(report, site, from, to))
                    .collect(),
                LegacyReport::Call => vec![self.call_request(sites, from, to)],
            };
            self.queue.extend(requests);
        }
    }

    /// `getSummaryStats` of one site: for the period, or per day with `by_date`.
    fn stat_requests(&self, site: u64, from: NaiveDate, to: NaiveDate) -> Vec<Pending> {
        let c = &self.cfg;
        let days: Vec<(NaiveDate, NaiveDate)> = if c.by_date {
            from.iter_days()
                .take_while(|d| *d <= to)
                .map(|d| (d, d))
                .collect()
        } else {
            vec![(from, to)]
        };
        days.into_iter()
            .map(|(a, b)| {
                let mut params = vec![
                    ("site_id".into(), site.to_string()),
                    ("date_from".into(), a.to_string()),
                    ("date_till".into(), b.to_string()),
                ];
                opt(&mut params, "ac_id", c.ac_id);
                opt(&mut params, "customer_id", c.customer_id);
                let mut extra = vec![("site_id".to_string(), json!(site))];
                extra.extend(period(a, b));
                Pending {
                    report: LegacyReport::Stat,
                    params,
                    extra,
                }
            })
            .collect()
    }

    /// `getCommunicationStats` / `getGoalStats` of one site.
    fn site_request(
        &self,
        report: LegacyReport,
        site: u64,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Pending {
        let c = &self.cfg;
        // The API's date_till is exclusive: the class asks for dateTo + 1 day.
        let mut params = vec![
            ("site_id".into(), site.to_string()),
            ("date_from".into(), from.to_string()),
            ("date_till".into(), (to + Days::new(1)).to_string()),
        ];
        opt(&mut params, "ac_id", c.ac_id);
        opt(&mut params, "tag_id", c.tag_id);
        if report == LegacyReport::Communication {
            opt(&mut params, "show_not_goal", c.show_not_goal);
            opt(&mut params, "only_first", c.only_first);
        } else {
            opt(&mut params, "customer_id", c.customer_id);
        }
        Pending {
            report,
            params,
            extra: vec![("site_id".to_string(), json!(site))],
        }
    }

    /// `getCallStats`, for every site at once (or the one site asked for).
    fn call_request(&self, sites: &[u64], from: NaiveDate, to: NaiveDate) -> Pending {
        let c = &self.cfg;
        let mut params = vec![
            ("date_from".into(), from.to_string()),
            ("date_till".into(), (to + Days::new(1)).to_string()),
        ];
        if !c.site_ids.is_empty() && sites.len() == 1 {
            params.push(("site_id".into(), sites[0].to_string()));
        }
        opt(&mut params, "ac_id", c.ac_id);
        opt(&mut params, "customer_id", c.customer_id);
        opt(&mut params, "tag_id", c.tag_id);
        opt(&mut params, "direction", c.direction.clone());
        opt(&mut params, "numa", c.numa.clone());
        opt(&mut params, "numb", c.numb.clone());
        Pending {
            report: LegacyReport::Call,
            params,
            extra: Vec::new(),
        }
    }
}

/// Rows of a reply, each a record of `report` with `extra` fields first.
fn records(
    report: LegacyReport,
    data: Json,
    extra: &[(String, Json)],
    sites: Option<&[u64]>,
) -> Vec<Record> {
    let rows = match data {
        Json::Array(rows) => rows,
        Json::Null => Vec::new(),
        other => vec![other],
    };
    // `stat` answers a one-element list: the summary.
    let rows = if report == LegacyReport::Stat {
        rows.into_iter().take(1).collect()
    } else {
        rows
    };
    rows.into_iter()
        .filter(|row| {
            report != LegacyReport::Call
                || sites.is_none_or(|s| {
                    row.get("site_id")
                        .and_then(Json::as_u64)
                        .is_none_or(|id| s.contains(&id))
                })
        })
        .enumerate()
        .map(|(i, row)| {
            let mut out = serde_json::Map::new();
            out.insert("report".into(), json!(report.name()));
            for (k, v) in extra {
                out.insert(k.clone(), v.clone());
            }
            if let Json::Object(fields) = row {
                for (k, mut v) in fields {
                    // Protocol-relative record links, as CMInstance rewrites them.
                    if k == "file_link"
                        && let Json::Array(links) = &mut v
                    {
                        for l in links.iter_mut() {
                            if let Some(s) = l.as_str().filter(|s| s.starts_with("//")) {
                                *l = json!(format!("https:{s}"));
                            }
                        }
                    }
                    if !out.contains_key(&k) || k != "site_id" {
                        out.insert(k, v);
                    }
                }
            } else {
                out.insert("value".into(), row);
            }
            let id = out
                .get("id")
                .map(|v| v.to_string().trim_matches('"').to_string());
            let key = match (report, id) {
                (LegacyReport::Stat, _) => format!(
                    "stat:{}:{}",
                    out["site_id"],
                    out.get("date_from")
                        .map(|d| d.to_string().trim_matches('"').to_string())
                        .unwrap_or_default()
                ),
                (_, Some(id)) => format!("{}:{id}", report.name()),
                (_, None) => format!("{}:{i}", report.name()),
            };
            Record::new(key, Json::Object(out))
        })
        .collect()
}

#[async_trait]
impl Source for LegacyStats {
    async fn open(&mut self, ctx: &RunCtx, _cursor: Option<Json>) -> Result<(), Fatal> {
        let scope = ctx.run_scope(None);
        let render = |t: &Template, what: &str| {
            t.render(&scope)
                .map_err(|e| Fatal::other(format!("comagic.legacy_stats: {what}: {e}")))
        };
        let from = day(&render(&self.cfg.date_from, "date_from")?, "date_from")?;
        let to = day(&render(&self.cfg.date_to, "date_to")?, "date_to")?;
        if to < from {
            return Err(Fatal::other(format!(
                "comagic.legacy_stats: date_to ({to}) is before date_from ({from})"
            )));
        }
        self.queue.clear();
        let needs_sites = self.cfg.reports.iter().any(|r| {
            matches!(
                r,
                LegacyReport::Site
                    | LegacyReport::Stat
                    | LegacyReport::Communication
                    | LegacyReport::Goal
            )
        });
        let mut sites = self.cfg.site_ids.clone();
        let mut site_rows = Vec::new();
        if needs_sites {
            let mut params = Vec::new();
            if let Some(c) = self.cfg.customer_id {
                params.push(("customer_id".to_string(), c.to_string()));
            }
            let data = self.api.get("site", &params).await.map_err(fatal)?;
            let all: Vec<Json> = data.as_array().cloned().unwrap_or_default();
            if sites.is_empty() {
                sites = all
                    .iter()
                    .filter_map(|s| s.get("id").and_then(Json::as_u64))
                    .collect();
            }
            site_rows = all
                .into_iter()
                .filter(|s| {
                    s.get("id")
                        .and_then(Json::as_u64)
                        .is_some_and(|id| sites.contains(&id))
                })
                .collect();
        }
        self.plan(&sites, site_rows, from, to);
        Ok(())
    }

    async fn next_batch(&mut self, _: &RunCtx) -> Result<Option<Vec<Record>>, Fatal> {
        let Some(p) = self.queue.pop_front() else {
            return Ok(None);
        };
        let sites = (!self.cfg.site_ids.is_empty()).then_some(self.cfg.site_ids.as_slice());
        if let Some((_, rows)) = p.extra.iter().find(|(k, _)| k == "__rows") {
            return Ok(Some(records(p.report, rows.clone(), &[], None)));
        }
        let data = self
            .api
            .get(p.report.name(), &p.params)
            .await
            .map_err(fatal)?;
        Ok(Some(records(p.report, data, &p.extra, sites)))
    }

    async fn close(&mut self, _: &RunCtx) {
        self.api.logout().await;
    }
}
