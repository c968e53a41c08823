//! The legacy REST API v1 (seed 004's `CMInstance`): login for a session key, the statistics
//! methods with the Python class's parameters (`date_till` = `dateTo` + 1 day for communications,
//! goals and calls), one re-login on `102401:Unauthorized`, and the session always ended: the
//! `comagic.legacy_stats` source logs out when the run ends, however it ends (finished, aborted by
//! any component, Ctrl-C).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{Days, NaiveDate};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::config::component::{ConnectionConfig, SourceConfig};
use crate::config::{BuildCtx, ConnectionRef};
use crate::connectors::http::client;
use crate::expr::Template;
use crate::runtime::{Fatal, Record, RunCtx, Source};

pub const SYSTEM: &str = "CoMagic API v1";

/// CoMagic's legacy REST API v1 (session key).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LegacyConnection {
    /// The API base, `https://api.comagic.ru/api/` (UIS: `https://api.uiscom.ru/api/`).
    #[schemars(example = &"${env:COMAGIC_API_URL}")]
    pub url: String,
    /// The account user's login.
    #[schemars(example = &"${env:COMAGIC_LOGIN}")]
    pub login: String,
    /// Their password.
    #[schemars(example = &"${secret:COMAGIC_PASSWORD}")]
    pub password: String,
    /// Seconds before a request is abandoned.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Retries of a read that failed in transport, with backoff.
    #[serde(default = "default_retries")]
    pub retries: usize,
}

fn default_timeout() -> u64 {
    60
}
fn default_retries() -> usize {
    3
}

impl ConnectionConfig for LegacyConnection {
    fn build(self) -> Result<Arc<dyn std::any::Any + Send + Sync>, String> {
        Ok(Arc::new(LegacyApi::new(self)?))
    }
}

#[derive(Debug)]
pub enum LegacyError {
    /// `{"success": false, "message": ...}`.
    Refused(String),
    Unavailable(String),
}

impl std::fmt::Display for LegacyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LegacyError::Refused(m) => write!(f, "refused: {m}"),
            LegacyError::Unavailable(m) => f.write_str(m),
        }
    }
}

/// The client: one session at a time, opened on first use.
pub struct LegacyApi {
    base: String,
    login: String,
    password: String,
    retries: usize,
    http: reqwest::Client,
    session: tokio::sync::Mutex<Option<String>>,
    pub logins: AtomicU64,
    pub logouts: AtomicU64,
}

impl LegacyApi {
    pub fn new(c: LegacyConnection) -> Result<LegacyApi, String> {
        let mut base = c.url.trim().to_string();
        if url::Url::parse(&base).is_err() {
            return Err(format!(
                "CoMagic API v1: `{}` is not a URL (expected https://api.comagic.ru/api/)",
                c.url
            ));
        }
        if !base.ends_with('/') {
            base.push('/');
        }
        if c.login.trim().is_empty() || c.password.is_empty() {
            return Err("CoMagic API v1: set COMAGIC_LOGIN and COMAGIC_PASSWORD".into());
        }
        crate::secrets::register(&c.password);
        Ok(LegacyApi {
            base,
            login: c.login.trim().to_string(),
            password: c.password,
            retries: c.retries,
            http: client::client(Duration::from_secs(c.timeout_secs.max(1))),
            session: tokio::sync::Mutex::new(None),
            logins: AtomicU64::new(0),
            logouts: AtomicU64::new(0),
        })
    }

    /// One request with the envelope checked; retried in transport (GET) with backoff.
    async fn request(
        &self,
        make: impl Fn() -> reqwest::RequestBuilder,
        retry: bool,
    ) -> Result<Json, LegacyError> {
        let mut failures = 0;
        loop {
            let outcome = match make().send().await {
                Err(e) => Err(client::describe(&e)),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match resp.text().await {
                        Err(e) => Err(client::describe(&e)),
                        Ok(text) => match serde_json::from_str::<Json>(&text) {
                            Ok(v) if v.get("success").is_some() => Ok(v),
                            _ => Err(crate::secrets::redact(&format!(
                                "HTTP {status}: {}",
                                text.trim().chars().take(200).collect::<String>()
                            ))),
                        },
                    }
                }
            };
            match outcome {
                Ok(v) if v["success"] == true => {
                    return Ok(v.get("data").cloned().unwrap_or(Json::Null));
                }
                Ok(v) => {
                    return Err(LegacyError::Refused(
                        v["message"].as_str().unwrap_or("no message").to_string(),
                    ));
                }
                Err(m) => {
                    failures += 1;
                    if !retry || failures > self.retries {
                        return Err(LegacyError::Unavailable(m));
                    }
                    tokio::time::sleep(Duration::from_millis(
                        300 * (1 << failures.min(5)) + rand::random::<u64>() % 200,
                    ))
                    .await;
                }
            }
        }
    }

    async fn open_session(&self, session: &mut Option<String>) -> Result<String, LegacyError> {
        if let Some(k) = session {
            return Ok(k.clone());
        }
        let form = [
            ("login", self.login.as_str()),
            ("password", self.password.as_str()),
        ];
        let url = format!("{}login/", self.base);
        let data = self
            .request(|| self.http.post(&url).form(&form), true)
            .await
            .map_err(|e| match e {
                LegacyError::Refused(m) => LegacyError::Refused(format!("login: {m}")),
                LegacyError::Unavailable(m) => LegacyError::Unavailable(format!("login: {m}")),
            })?;
        let key = data
            .get("session_key")
            .and_then(Json::as_str)
            .ok_or_else(|| {
                LegacyError::Unavailable("login: no session_key in the answer".into())
            })?;
        crate::secrets::register(key);
        self.logins.fetch_add(1, Ordering::Relaxed);
        *session = Some(key.to_string());
        Ok(key.to_string())
    }

    /// `GET /api/v1/<method>/` with `params`; the session is opened first (and once more when
    /// the API says `102401:Unauthorized`).
    pub async fn get(
        &self,
        method: &str,
        params: &[(String, String)],
    ) -> Result<Json, LegacyError> {
        let mut session = self.session.lock().await;
        let url = format!("{}v1/{method}/", self.base);
        let mut relogged = false;
        loop {
            let key = self.open_session(&mut session).await?;
            let mut query: Vec<(&str, &str)> = vec![("session_key", key.as_str())];
            query.extend(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            match self
                .request(|| self.http.get(&url).query(&query), true)
                .await
            {
                Err(LegacyError::Refused(m)) if m.starts_with("102401") && !relogged => {
                    tracing::info!(method, "CoMagic session ended ({m}); logging in again");
                    relogged = true;
                    *session = None;
                }
                Err(LegacyError::Refused(m)) => {
                    return Err(LegacyError::Refused(format!("{method}: {m}")));
                }
                Err(LegacyError::Unavailable(m)) => {
                    return Err(LegacyError::Unavailable(format!("{method}: {m}")));
                }
                Ok(data) => return Ok(data),
            }
        }
    }

    /// End the session, if one is open (any answer is accepted, as `endSession` does).
    pub async fn logout(&self) {
        let mut session = self.session.lock().await;
        let Some(key) = session.take() else { return };
        let url = format!("{}logout/", self.base);
        let query = [("session_key", key.as_str())];
        match self
            .request(|| self.http.get(&url).query(&query), false)
            .await
        {
            Ok(_) | Err(LegacyError::Refused(_)) => {}
            Err(LegacyError::Unavailable(m)) => tracing::warn!("CoMagic logout failed: {m}"),
        }
        self.logouts.fetch_add(1, Ordering::Relaxed);
    }
}

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
        LegacyError::Refused(m) => Fatal::unavailable(SYSTEM, format!("refused: {m}")),
        LegacyError::Unavailable(m) => Fatal::unavailable(SYSTEM, m),
    }
}

impl LegacyStats {
    /// The requests, in the order of `reports`; `site_rows` are the sites already read.
    fn plan(&mut self, sites: &[u64], site_rows: Vec<Json>, from: NaiveDate, to: NaiveDate) {
        let c = &self.cfg;
        let s = |v: &dyn ToString| v.to_string();
        let next = to + Days::new(1);
        let opt = |params: &mut Vec<(String, String)>, key: &str, v: Option<String>| {
            if let Some(v) = v {
                params.push((key.to_string(), v));
            }
        };
        let period = |from: NaiveDate, to: NaiveDate| {
            vec![
                ("date_from".to_string(), json!(from.to_string())),
                ("date_to".to_string(), json!(to.to_string())),
            ]
        };
        for &report in &c.reports {
            match report {
                LegacyReport::CustomerList | LegacyReport::Tag => {
                    let mut params = Vec::new();
                    if report == LegacyReport::Tag {
                        opt(&mut params, "customer_id", c.customer_id.map(|v| s(&v)));
                    }
                    self.queue.push_back(Pending {
                        report,
                        params,
                        extra: Vec::new(),
                    });
                }
                LegacyReport::Site => {
                    self.queue.push_back(Pending {
                        report,
                        params: Vec::new(),
                        extra: vec![("__rows".into(), Json::Array(site_rows.clone()))],
                    });
                }
                LegacyReport::Stat => {
                    for &site in sites {
                        let days: Vec<(NaiveDate, NaiveDate)> = if c.by_date {
                            from.iter_days()
                                .take_while(|d| *d <= to)
                                .map(|d| (d, d))
                                .collect()
                        } else {
                            vec![(from, to)]
                        };
                        for (a, b) in days {
                            let mut params = vec![
                                ("site_id".into(), s(&site)),
                                ("date_from".into(), a.to_string()),
                                ("date_till".into(), b.to_string()),
                            ];
                            opt(&mut params, "ac_id", c.ac_id.map(|v| s(&v)));
                            opt(&mut params, "customer_id", c.customer_id.map(|v| s(&v)));
                            let mut extra = vec![("site_id".to_string(), json!(site))];
                            extra.extend(period(a, b));
                            self.queue.push_back(Pending {
                                report,
                                params,
                                extra,
                            });
                        }
                    }
                }
                LegacyReport::Communication | LegacyReport::Goal => {
                    for &site in sites {
                        // The API's date_till is exclusive: the class asks for dateTo + 1 day.
                        let mut params = vec![
                            ("site_id".into(), s(&site)),
                            ("date_from".into(), from.to_string()),
                            ("date_till".into(), next.to_string()),
                        ];
                        opt(&mut params, "ac_id", c.ac_id.map(|v| s(&v)));
                        opt(&mut params, "tag_id", c.tag_id.map(|v| s(&v)));
                        if report == LegacyReport::Communication {
                            opt(&mut params, "show_not_goal", c.show_not_goal.map(|v| s(&v)));
                            opt(&mut params, "only_first", c.only_first.map(|v| s(&v)));
                        } else {
                            opt(&mut params, "customer_id", c.customer_id.map(|v| s(&v)));
                        }
                        self.queue.push_back(Pending {
                            report,
                            params,
                            extra: vec![("site_id".to_string(), json!(site))],
                        });
                    }
                }
                LegacyReport::Call => {
                    let mut params = vec![
                        ("date_from".into(), from.to_string()),
                        ("date_till".into(), next.to_string()),
                    ];
                    if !c.site_ids.is_empty() && sites.len() == 1 {
                        params.push(("site_id".into(), s(&sites[0])));
                    }
                    opt(&mut params, "ac_id", c.ac_id.map(|v| s(&v)));
                    opt(&mut params, "customer_id", c.customer_id.map(|v| s(&v)));
                    opt(&mut params, "tag_id", c.tag_id.map(|v| s(&v)));
                    opt(&mut params, "direction", c.direction.clone());
                    opt(&mut params, "numa", c.numa.clone());
                    opt(&mut params, "numb", c.numb.clone());
                    self.queue.push_back(Pending {
                        report,
                        params,
                        extra: Vec::new(),
                    });
                }
            }
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
