//! An emulator of CoMagic's Data API v2.0 (JSON-RPC over `POST /v2.0`), per the checklist in
//! `comagic-api.md` §7: the envelope and its errors, `login.user`/`logout.user` with expiring
//! tokens and permanent keys, point budgets per minute and per day with `metadata.limits` in every
//! reply and `-32029 limit_exceeded` when spent, the report methods with `fields`/`filter`/`sort`/
//! `limit`/`offset` and the 3-month window rule, and the tag methods, where `set.tag_sales` makes a
//! new sale on every call (it is not idempotent).
//!
//! For tests: a request log (secrets masked), counters, transport faults from the emulator kit
//! (keyed by method name: `Fault::Slow` on `set.tag_sales` gives a client timeout while the sale is
//! still made) and JSON-RPC faults ([`RpcFault`]: any error code, or the token expiring right now).
//! `GET /_emulator/stats` answers the counters as JSON (for benchmarks driven from a shell).

// A JSON-RPC error with its metadata is what every handler returns on failure; it is built once
// per failed request of a test double, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDateTime;
use serde_json::{Map, Value as Json, json};

use super::data::Rng;
use crate::connectors::http::emulator_kit::{self, Conn, Faults, ServerThread};

/// The system «Продажа» (sale) tag.
pub const SALE_TAG_ID: u64 = 547;
pub const SALE_TAG_NAME: &str = "Продажа";
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

#[derive(Clone, Debug)]
pub struct DataApiConfig {
    /// Permanent access keys (never expire).
    pub access_tokens: Vec<String>,
    /// Credentials `login.user` accepts.
    pub login: String,
    pub password: String,
    /// Lifetime of a `login.user` token (1 hour in the real service).
    pub token_ttl: Duration,
    pub app_id: u64,
    pub day_limit: u32,
    pub minute_limit: u32,
    /// Length of the "minute" budget window (60 s for real; shorter in tests).
    pub minute_window: Duration,
    pub day_window: Duration,
    /// Points per method; unlisted methods weigh `default_weight`.
    pub weights: HashMap<String, u32>,
    pub default_weight: u32,
    /// Whether `contact_phone_number` may be used in a `get.calls_report` filter (not confirmed
    /// for the real service; off gives `filter_prohibited`).
    pub phone_filter: bool,
    /// The «Учёт продаж» option; off makes `set.tag_sales` fail with -32008.
    pub sales_enabled: bool,
    /// Off answers every request with -32003 ip_not_whitelisted.
    pub ip_whitelisted: bool,
    pub max_limit: u64,
    pub max_offset: u64,
    /// Added to every request.
    pub latency: Duration,
}

impl Default for DataApiConfig {
    fn default() -> Self {
        DataApiConfig {
            access_tokens: vec!["cm-test-access-token-0001".into()],
            login: "cm-user".into(),
            password: "cm-password-42".into(),
            token_ttl: Duration::from_secs(3600),
            app_id: 48_512,
            day_limit: 100_000,
            minute_limit: 10_000,
            minute_window: Duration::from_secs(60),
            day_window: Duration::from_secs(86_400),
            weights: HashMap::from([
                ("login.user".to_string(), 0),
                ("logout.user".to_string(), 0),
                ("create.communication_comment".to_string(), 0),
            ]),
            default_weight: 1,
            phone_filter: true,
            sales_enabled: true,
            ip_whitelisted: true,
            max_limit: 10_000,
            max_offset: 100_000,
            latency: Duration::ZERO,
        }
    }
}

/// A tag on a communication.
#[derive(Clone, Debug, PartialEq)]
pub struct CommTag {
    pub tag_id: u64,
    pub tag_name: String,
    pub tag_type: String,
    pub tag_change_time: NaiveDateTime,
}

/// One `set.tag_sales` that took effect.
#[derive(Clone, Debug, PartialEq)]
pub struct Sale {
    pub id: u64,
    pub value: f64,
    pub date_time: NaiveDateTime,
    pub comment: Option<String>,
}

/// A call: one row of `get.calls_report`, and one communication of `get.communications_report`.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub id: u64,
    pub communication_id: u64,
    pub start_time: NaiveDateTime,
    pub contact_phone_number: String,
    pub virtual_phone_number: String,
    pub direction: String,
    pub is_lost: bool,
    pub talk_duration: u32,
    pub site_id: u64,
    pub tags: Vec<CommTag>,
    /// Active sales (cleared when the sale tag is unset).
    pub sales: Vec<Sale>,
    pub comments: Vec<String>,
}

impl Call {
    pub fn new(id: u64, start_time: NaiveDateTime, phone: &str, is_lost: bool) -> Call {
        Call {
            id,
            communication_id: id + 50_000_000,
            start_time,
            contact_phone_number: phone.to_string(),
            virtual_phone_number: "74993720000".into(),
            direction: "in".into(),
            is_lost,
            talk_duration: if is_lost { 0 } else { 30 + (id % 400) as u32 },
            site_id: 1201,
            tags: Vec::new(),
            sales: Vec::new(),
            comments: Vec::new(),
        }
    }

    /// Sum of the active sales, `None` without any.
    pub fn sale_cost(&self) -> Option<f64> {
        if self.sales.is_empty() {
            None
        } else {
            Some(self.sales.iter().map(|s| s.value).sum())
        }
    }

    fn field(&self, name: &str, report: Report) -> Option<Json> {
        let time = |t: &NaiveDateTime| Json::from(t.format(TIME_FORMAT).to_string());
        Some(match (report, name) {
            (Report::Calls, "id") | (Report::Communications, "communication_id") => json!(self.id),
            (Report::Calls, "communication_id") | (Report::Communications, "id") => json!(self.communication_id),
            (_, "communication_type") => json!("call"),
            (Report::Calls, "start_time") | (Report::Communications, "date_time") => time(&self.start_time),
            (Report::Calls, "finish_time") => time(&(self.start_time + chrono::Duration::seconds(self.talk_duration as i64 + 12))),
            (Report::Calls, "contact_phone_number") => json!(self.contact_phone_number),
            (Report::Calls, "virtual_phone_number") => json!(self.virtual_phone_number),
            (Report::Calls, "direction") => json!(self.direction),
            (Report::Calls, "is_lost") => json!(self.is_lost),
            (Report::Calls, "talk_duration") => json!(self.talk_duration),
            (Report::Calls, "communication_number") => json!(1),
            (_, "site_id") => json!(self.site_id),
            (_, "sale_date") => self.sales.last().map(|s| time(&s.date_time)).unwrap_or(Json::Null),
            (_, "sale_cost") => self.sale_cost().map(Json::from).unwrap_or(Json::Null),
            (_, "tags") => Json::Array(
                self.tags
                    .iter()
                    .map(|t| {
                        json!({"tag_id": t.tag_id, "tag_name": t.tag_name, "tag_type": t.tag_type,
                               "tag_change_time": time(&t.tag_change_time), "tag_user_id": null,
                               "tag_user_login": null, "tag_employee_id": null, "tag_employee_full_name": null})
                    })
                    .collect(),
            ),
            (_, "campaign_name") => json!("Яндекс.Директ"),
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Report {
    Calls,
    Communications,
}

impl Report {
    fn fields(self) -> &'static [&'static str] {
        match self {
            Report::Calls => &[
                "id",
                "communication_id",
                "communication_type",
                "communication_number",
                "start_time",
                "finish_time",
                "contact_phone_number",
                "virtual_phone_number",
                "direction",
                "is_lost",
                "talk_duration",
                "site_id",
                "campaign_name",
                "tags",
                "sale_date",
                "sale_cost",
            ],
            Report::Communications => &[
                "id",
                "communication_id",
                "communication_type",
                "date_time",
                "site_id",
                "campaign_name",
                "tags",
                "sale_date",
                "sale_cost",
            ],
        }
    }
    fn default_fields(self) -> &'static [&'static str] {
        match self {
            Report::Calls => &[
                "id",
                "start_time",
                "finish_time",
                "contact_phone_number",
                "virtual_phone_number",
                "direction",
                "is_lost",
                "communication_id",
            ],
            Report::Communications => &["id", "communication_type", "date_time", "site_id"],
        }
    }
    fn filterable(self, field: &str, phone_filter: bool) -> bool {
        match self {
            Report::Calls => match field {
                "contact_phone_number" => phone_filter,
                f => [
                    "id",
                    "communication_id",
                    "communication_type",
                    "start_time",
                    "virtual_phone_number",
                    "direction",
                    "is_lost",
                    "site_id",
                ]
                .contains(&f),
            },
            Report::Communications => {
                ["id", "communication_type", "date_time", "site_id"].contains(&field)
            }
        }
    }
    fn sortable(self, field: &str) -> bool {
        ["id", "start_time", "date_time", "communication_id"].contains(&field)
            && self.fields().contains(&field)
    }
    fn time_field(self) -> &'static str {
        match self {
            Report::Calls => "start_time",
            Report::Communications => "date_time",
        }
    }
}

/// An error the emulator answers instead of processing a request.
#[derive(Clone, Debug, PartialEq)]
pub enum RpcFault {
    /// This JSON-RPC error (e.g. `-32603 internal_error`, `-32029 limit_exceeded`).
    Error { code: i64, mnemonic: String },
    /// The token the request carries expires now; the request gets `-32001 access_token_expired`.
    ExpireToken,
}

/// `fault` for `times` requests of `method` (any method when `None`), after `after` of them.
#[derive(Clone, Debug)]
pub struct RpcFaultRule {
    pub method: Option<String>,
    pub after: u32,
    pub times: u32,
    pub fault: RpcFault,
}

impl RpcFaultRule {
    pub fn new(method: Option<&str>, fault: RpcFault) -> Self {
        RpcFaultRule {
            method: method.map(str::to_string),
            after: 0,
            times: 1,
            fault,
        }
    }
    pub fn after(mut self, n: u32) -> Self {
        self.after = n;
        self
    }
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }
}

/// One request as the emulator saw it (secrets masked).
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    pub params: Json,
    /// `(code, mnemonic)` of the error answered, if any.
    pub error: Option<(i64, String)>,
}

/// Counters for tests and benchmarks.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    /// HTTP requests received.
    pub requests: u64,
    /// Points charged.
    pub points: u64,
    /// Requests per method (JSON-RPC requests that named one).
    pub by_method: std::collections::BTreeMap<String, u64>,
    /// `-32029` answers.
    pub limit_exceeded: u64,
    pub logins: u64,
    pub logouts: u64,
    /// `set.tag_sales` calls that made a sale.
    pub sales_made: u64,
}

struct Budget {
    started: Instant,
    minute_index: u64,
    minute_used: u32,
    day_index: u64,
    day_used: u32,
}

struct TokenInfo {
    expires: Option<Instant>,
    expired: bool,
}

struct World {
    calls: Vec<Call>,
    by_comm: HashMap<u64, usize>,
    by_phone: HashMap<String, Vec<usize>>,
    tags: Vec<(u64, String, bool)>,
    tokens: HashMap<String, TokenInfo>,
    next_sale: u64,
    budget: Budget,
    log: Vec<LoggedRequest>,
    stats: Stats,
    rpc_faults: Vec<RpcFaultRule>,
    rng: Rng,
}

impl World {
    fn reindex(&mut self) {
        self.calls.sort_by_key(|c| (c.start_time, c.id));
        self.by_comm = self
            .calls
            .iter()
            .enumerate()
            .map(|(i, c)| (c.communication_id, i))
            .collect();
        self.by_phone.clear();
        for (i, c) in self.calls.iter().enumerate() {
            self.by_phone
                .entry(c.contact_phone_number.clone())
                .or_default()
                .push(i);
        }
    }
}

struct Shared {
    config: DataApiConfig,
    world: Mutex<World>,
    faults: Faults<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A JSON-RPC error on its way out.
struct RpcErr {
    code: i64,
    mnemonic: String,
    message: String,
    field: Option<String>,
    value: Json,
    metadata: Json,
}

fn err(code: i64, mnemonic: &str, message: impl Into<String>) -> RpcErr {
    RpcErr {
        code,
        mnemonic: mnemonic.into(),
        message: message.into(),
        field: None,
        value: Json::Null,
        metadata: json!({}),
    }
}

fn param_err(mnemonic: &str, field: &str, value: Json, message: impl Into<String>) -> RpcErr {
    RpcErr {
        field: Some(field.into()),
        value,
        ..err(-32602, mnemonic, message)
    }
}

fn message_of(code: i64) -> &'static str {
    match code {
        -32700 => "Parse error",
        -32600 => "Invalid Request",
        -32601 => "Method not found",
        -32602 => "Invalid params",
        -32603 => "Internal error",
        -32001 => "Authorization error",
        -32003 => "Forbidden",
        -32008 => "Component disabled",
        -32009 => "Account inactive",
        -32029 => "Limit exceeded",
        -32099 => "Unsupported request",
        _ => "Error",
    }
}

const METHODS: &[(&str, &[&str])] = &[
    ("login.user", &["login", "password"]),
    ("logout.user", &["access_token"]),
    ("get.account", &["access_token", "user_id"]),
    (
        "get.tags",
        &[
            "access_token",
            "user_id",
            "limit",
            "offset",
            "fields",
            "filter",
            "sort",
        ],
    ),
    (
        "get.calls_report",
        &[
            "access_token",
            "user_id",
            "date_from",
            "date_till",
            "limit",
            "offset",
            "fields",
            "filter",
            "sort",
            "include_ongoing_calls",
        ],
    ),
    (
        "get.communications_report",
        &[
            "access_token",
            "user_id",
            "date_from",
            "date_till",
            "limit",
            "offset",
            "fields",
            "filter",
            "sort",
        ],
    ),
    (
        "set.tag_sales",
        &[
            "access_token",
            "user_id",
            "communication_id",
            "communication_type",
            "date_time",
            "transaction_value",
            "comment",
        ],
    ),
    (
        "set.tag_communications",
        &[
            "access_token",
            "user_id",
            "communication_id",
            "communication_type",
            "tag_id",
        ],
    ),
    (
        "unset.tag_communications",
        &[
            "access_token",
            "user_id",
            "communication_id",
            "communication_type",
            "tag_id",
        ],
    ),
    (
        "create.communication_comment",
        &[
            "access_token",
            "user_id",
            "communication_id",
            "communication_type",
            "comment",
        ],
    ),
];

fn is_write(method: &str) -> bool {
    !method.starts_with("get.")
}

fn masked(params: &Json) -> Json {
    let mut p = params.clone();
    if let Json::Object(m) = &mut p {
        for k in ["access_token", "password"] {
            if m.contains_key(k) {
                m.insert(k.into(), json!("***"));
            }
        }
    }
    p
}

impl Shared {
    fn limits(&self, w: &mut World) -> Json {
        self.roll(w);
        let now = w.budget.started.elapsed();
        let left = |window: Duration, index: u64| {
            let end = window.as_secs_f64() * (index + 1) as f64;
            (end - now.as_secs_f64()).ceil().max(1.0) as u64
        };
        json!({
            "day_limit": self.config.day_limit,
            "day_remaining": self.config.day_limit.saturating_sub(w.budget.day_used),
            "day_reset": left(self.config.day_window, w.budget.day_index),
            "minute_limit": self.config.minute_limit,
            "minute_remaining": self.config.minute_limit.saturating_sub(w.budget.minute_used),
            "minute_reset": left(self.config.minute_window, w.budget.minute_index),
        })
    }

    fn roll(&self, w: &mut World) {
        let now = w.budget.started.elapsed();
        let index = |window: Duration| (now.as_secs_f64() / window.as_secs_f64().max(0.001)) as u64;
        let (m, d) = (
            index(self.config.minute_window),
            index(self.config.day_window),
        );
        if m != w.budget.minute_index {
            w.budget.minute_index = m;
            w.budget.minute_used = 0;
        }
        if d != w.budget.day_index {
            w.budget.day_index = d;
            w.budget.day_used = 0;
        }
    }

    /// Charge `points` or refuse with -32029.
    fn charge(&self, w: &mut World, points: u32) -> Result<(), RpcErr> {
        self.roll(w);
        let b = &w.budget;
        if b.minute_used + points > self.config.minute_limit
            || b.day_used + points > self.config.day_limit
        {
            w.stats.limit_exceeded += 1;
            let limits = self.limits(w);
            return Err(RpcErr {
                metadata: json!({"limits": limits}),
                ..err(-32029, "limit_exceeded", "Limit exceeded")
            });
        }
        w.budget.minute_used += points;
        w.budget.day_used += points;
        w.stats.points += points as u64;
        Ok(())
    }

    fn take_rpc_fault(w: &mut World, method: &str) -> Option<RpcFault> {
        let mut hit = None;
        for (i, rule) in w.rpc_faults.iter_mut().enumerate() {
            if rule.method.as_deref().is_some_and(|m| m != method) {
                continue;
            }
            if rule.after > 0 {
                rule.after -= 1;
                continue;
            }
            rule.times -= 1;
            hit = Some((i, rule.fault.clone(), rule.times == 0));
            break;
        }
        let (i, fault, done) = hit?;
        if done {
            w.rpc_faults.remove(i);
        }
        Some(fault)
    }

    /// The whole handling of one HTTP body: the JSON-RPC answer.
    fn process(&self, body: &[u8]) -> Json {
        let request: Json = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return reply_err(
                    &Json::Null,
                    err(-32700, "parse_error", format!("Parse error: {e}")),
                );
            }
        };
        let obj = match &request {
            Json::Array(_) => {
                return reply_err(
                    &Json::Null,
                    err(
                        -32099,
                        "batch_opreations_not_supported",
                        "Batch operations are not supported",
                    ),
                );
            }
            Json::Object(o) => o,
            _ => {
                return reply_err(
                    &Json::Null,
                    err(-32600, "invalid_request", "Invalid Request"),
                );
            }
        };
        let id = obj.get("id").cloned();
        let id_ok = matches!(&id, Some(Json::String(_)) | Some(Json::Number(_)));
        if obj.get("jsonrpc").and_then(Json::as_str) != Some("2.0") || (id.is_some() && !id_ok) {
            return reply_err(
                &id.unwrap_or(Json::Null),
                err(-32600, "invalid_request", "Invalid Request"),
            );
        }
        let Some(id) = id else {
            return reply_err(
                &Json::Null,
                err(
                    -32099,
                    "notifications_not_supported",
                    "Notifications are not supported",
                ),
            );
        };
        let method = obj
            .get("method")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        let params = obj.get("params").cloned().unwrap_or_else(|| json!({}));
        let mut w = lock(&self.world);
        *w.stats.by_method.entry(method.clone()).or_insert(0) += 1;
        let result = self.dispatch(&mut w, &method, &params);
        let (reply, error) = match result {
            Ok(data) => {
                let mut metadata = Map::new();
                if let Some(total) = data.1 {
                    metadata.insert("total_items".into(), json!(total));
                }
                metadata.insert(
                    "api_version".into(),
                    json!({"current_version_deprecated": false, "current_version": "2.0"}),
                );
                metadata.insert("limits".into(), self.limits(&mut w));
                (
                    json!({"jsonrpc": "2.0", "id": id, "result": {"data": data.0, "metadata": metadata}}),
                    None,
                )
            }
            Err(e) => {
                let tag = (e.code, e.mnemonic.clone());
                (reply_err(&id, e), Some(tag))
            }
        };
        w.log.push(LoggedRequest {
            method,
            params: masked(&params),
            error,
        });
        reply
    }

    fn dispatch(
        &self,
        w: &mut World,
        method: &str,
        params: &Json,
    ) -> Result<(Json, Option<u64>), RpcErr> {
        let Some((_, allowed)) = METHODS.iter().find(|(m, _)| *m == method) else {
            return Err(err(
                -32601,
                "method_not_found",
                format!("Method not found: {method}"),
            ));
        };
        let Json::Object(p) = params else {
            return Err(param_err(
                "data_type_error",
                "params",
                params.clone(),
                "params must be an object",
            ));
        };
        if !self.config.ip_whitelisted {
            return Err(err(
                -32003,
                "ip_not_whitelisted",
                "IP address is not whitelisted",
            ));
        }
        if let Some(k) = p.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(param_err(
                "unexpected_parameters",
                k,
                p[k].clone(),
                format!("Unexpected parameter: {k}"),
            ));
        }
        match Self::take_rpc_fault(w, method) {
            Some(RpcFault::Error { code, mnemonic }) => {
                return Err(err(
                    code,
                    &mnemonic,
                    format!("{} (injected)", message_of(code)),
                ));
            }
            Some(RpcFault::ExpireToken) => {
                if let Some(t) = p
                    .get("access_token")
                    .and_then(Json::as_str)
                    .and_then(|t| w.tokens.get_mut(t))
                {
                    t.expired = true;
                }
            }
            None => {}
        }
        if method == "login.user" {
            return self.login(w, p).map(|d| (d, None));
        }
        let token = str_param(p, "access_token", true)?.unwrap_or_default();
        match w.tokens.get(&token) {
            None if self.config.access_tokens.contains(&token) => {}
            None => {
                return Err(err(
                    -32001,
                    "access_token_invalid",
                    "Access token is invalid",
                ));
            }
            Some(t) if t.expired || t.expires.is_some_and(|e| Instant::now() >= e) => {
                return Err(err(
                    -32001,
                    "access_token_expired",
                    "Access token has expired",
                ));
            }
            Some(_) => {}
        }
        if method == "logout.user" {
            w.tokens.remove(&token);
            w.stats.logouts += 1;
            return Ok((json!({}), None));
        }
        let weight = self
            .config
            .weights
            .get(method)
            .copied()
            .unwrap_or(self.config.default_weight);
        self.charge(w, weight)?;
        match method {
            "get.account" => Ok((
                json!([{"app_id": self.config.app_id, "name": "Клиника «Здоровье»", "timezone": "Europe/Moscow"}]),
                None,
            )),
            "get.tags" => self.get_tags(w, p),
            "get.calls_report" => self.report(w, p, Report::Calls),
            "get.communications_report" => self.report(w, p, Report::Communications),
            "set.tag_sales" => self.set_tag_sales(w, p).map(|d| (d, None)),
            "set.tag_communications" | "unset.tag_communications" => self
                .tag(w, p, method == "set.tag_communications")
                .map(|d| (d, None)),
            "create.communication_comment" => self.comment(w, p).map(|d| (d, None)),
            _ => Err(err(
                -32601,
                "method_not_found",
                format!("Method not found: {method}"),
            )),
        }
    }

    fn login(&self, w: &mut World, p: &Map<String, Json>) -> Result<Json, RpcErr> {
        let login = str_param(p, "login", true)?.unwrap_or_default();
        let password = str_param(p, "password", true)?.unwrap_or_default();
        if login != self.config.login || password != self.config.password {
            return Err(err(-32001, "auth_error", "Wrong login or password"));
        }
        let token: String = (0..4)
            .map(|_| format!("{:08x}", w.rng.next() as u32))
            .collect();
        let expire_at = chrono::Utc::now().timestamp() + self.config.token_ttl.as_secs() as i64;
        w.tokens.insert(
            token.clone(),
            TokenInfo {
                expires: Some(Instant::now() + self.config.token_ttl),
                expired: false,
            },
        );
        w.stats.logins += 1;
        Ok(json!({"access_token": token, "expire_at": expire_at, "app_id": self.config.app_id}))
    }

    fn get_tags(
        &self,
        w: &mut World,
        p: &Map<String, Json>,
    ) -> Result<(Json, Option<u64>), RpcErr> {
        let rows: Vec<Json> = w.tags.iter().map(|(id, name, system)| json!({"id": id, "name": name, "is_system": system, "tag_group_id": null})).collect();
        let filter = p.get("filter");
        let mut hits = Vec::new();
        for row in rows {
            if let Some(f) = filter
                && !eval_filter(
                    f,
                    &|name| row.get(name).cloned(),
                    &|f| ["id", "name", "is_system"].contains(&f),
                    &|f| ["id", "name", "is_system", "tag_group_id"].contains(&f),
                )?
            {
                continue;
            }
            hits.push(row);
        }
        let total = hits.len() as u64;
        let (limit, offset) = self.paging(p)?;
        let page: Vec<Json> = hits
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .collect();
        Ok((Json::Array(page), Some(total)))
    }

    fn paging(&self, p: &Map<String, Json>) -> Result<(u64, u64), RpcErr> {
        let limit = uint_param(p, "limit")?.unwrap_or(1000);
        if limit > self.config.max_limit {
            return Err(param_err(
                "invalid_parameter_value",
                "limit",
                json!(limit),
                format!("limit must not exceed {}", self.config.max_limit),
            ));
        }
        let offset = uint_param(p, "offset")?.unwrap_or(0);
        if offset > self.config.max_offset {
            return Err(param_err(
                "invalid_parameter_value",
                "offset",
                json!(offset),
                format!("offset must not exceed {}", self.config.max_offset),
            ));
        }
        Ok((limit, offset))
    }

    fn report(
        &self,
        w: &mut World,
        p: &Map<String, Json>,
        report: Report,
    ) -> Result<(Json, Option<u64>), RpcErr> {
        let from = time_param(p, "date_from")?;
        let till = time_param(p, "date_till")?;
        if till < from {
            return Err(param_err(
                "invalid_parameters_combination",
                "date_till",
                p["date_till"].clone(),
                "date_till is earlier than date_from",
            ));
        }
        if till
            > from
                .checked_add_months(chrono::Months::new(3))
                .unwrap_or(from)
        {
            return Err(param_err(
                "date_interval_limit_reached",
                "date_till",
                p["date_till"].clone(),
                "The date interval must not exceed 3 months",
            ));
        }
        let (limit, offset) = self.paging(p)?;
        let fields: Vec<String> = match p.get("fields") {
            None | Some(Json::Null) => report
                .default_fields()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Some(Json::Array(list)) => {
                let mut out = Vec::new();
                for f in list {
                    let name = f.as_str().unwrap_or_default();
                    if !report.fields().contains(&name) {
                        return Err(param_err(
                            "invalid_parameter_value",
                            "fields",
                            f.clone(),
                            format!("Unknown field: {f}"),
                        ));
                    }
                    out.push(name.to_string());
                }
                out
            }
            Some(other) => {
                return Err(param_err(
                    "data_type_error",
                    "fields",
                    other.clone(),
                    "fields must be an array",
                ));
            }
        };
        let sort: Vec<(String, bool)> = match p.get("sort") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(list)) => {
                let mut out = Vec::new();
                for s in list {
                    let field = s.get("field").and_then(Json::as_str).unwrap_or_default();
                    if !report.sortable(field) {
                        return Err(param_err(
                            "sort_prohibited",
                            "sort",
                            s.clone(),
                            format!("Sorting by {field} is not allowed"),
                        ));
                    }
                    let desc = match s.get("order").and_then(Json::as_str).unwrap_or("asc") {
                        "asc" => false,
                        "desc" => true,
                        o => {
                            return Err(param_err(
                                "invalid_parameter_value",
                                "sort",
                                json!(o),
                                "order is asc or desc",
                            ));
                        }
                    };
                    out.push((field.to_string(), desc));
                }
                out
            }
            Some(other) => {
                return Err(param_err(
                    "data_type_error",
                    "sort",
                    other.clone(),
                    "sort must be an array",
                ));
            }
        };
        // Candidates: the time window (calls are sorted by time), narrowed by a phone index when
        // the filter pins contact_phone_number.
        let lo = w.calls.partition_point(|c| c.start_time < from);
        let hi = w.calls.partition_point(|c| c.start_time <= till);
        let pinned = p
            .get("filter")
            .and_then(pinned_phone)
            .filter(|_| report == Report::Calls && self.config.phone_filter);
        let candidates: Vec<usize> = match pinned {
            Some(phone) => w
                .by_phone
                .get(&phone)
                .map(|v| v.iter().copied().filter(|i| (lo..hi).contains(i)).collect())
                .unwrap_or_default(),
            None => (lo..hi).collect(),
        };
        let phone_filter = self.config.phone_filter;
        let mut hits = Vec::with_capacity(candidates.len());
        for i in candidates {
            let call = &w.calls[i];
            if let Some(f) = p.get("filter") {
                let get = |name: &str| call.field(name, report);
                if !eval_filter(
                    f,
                    &get,
                    &|name| report.filterable(name, phone_filter),
                    &|name| report.fields().contains(&name),
                )? {
                    continue;
                }
            }
            hits.push(i);
        }
        for (field, desc) in sort.iter().rev() {
            // Calls are kept in time order: sorting by time needs no comparisons.
            if field == report.time_field() {
                if *desc {
                    hits.reverse();
                }
                continue;
            }
            hits.sort_by(|a, b| {
                let (x, y) = (
                    w.calls[*a].field(field, report),
                    w.calls[*b].field(field, report),
                );
                let o = compare(
                    x.as_ref().unwrap_or(&Json::Null),
                    y.as_ref().unwrap_or(&Json::Null),
                )
                .unwrap_or(std::cmp::Ordering::Equal);
                if *desc { o.reverse() } else { o }
            });
        }
        let total = hits.len() as u64;
        let rows: Vec<Json> = hits
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .map(|i| {
                let call = &w.calls[i];
                Json::Object(
                    fields
                        .iter()
                        .map(|f| (f.clone(), call.field(f, report).unwrap_or(Json::Null)))
                        .collect(),
                )
            })
            .collect();
        Ok((Json::Array(rows), Some(total)))
    }

    fn communication<'a>(
        &self,
        w: &'a mut World,
        p: &Map<String, Json>,
        only_calls: bool,
    ) -> Result<&'a mut Call, RpcErr> {
        let id = match p.get("communication_id") {
            None | Some(Json::Null) => {
                return Err(param_err(
                    "required_parameter_missed",
                    "communication_id",
                    Json::Null,
                    "communication_id is required",
                ));
            }
            Some(v) => v.as_u64().ok_or_else(|| {
                param_err(
                    "data_type_error",
                    "communication_id",
                    v.clone(),
                    "communication_id must be a number",
                )
            })?,
        };
        let kind = str_param(p, "communication_type", true)?.unwrap_or_default();
        if !["call", "chat", "goal", "offline_message"].contains(&kind.as_str())
            || (only_calls && kind != "call")
        {
            return Err(param_err(
                "invalid_parameter_value",
                "communication_type",
                json!(kind),
                "Invalid communication_type",
            ));
        }
        let found = if kind == "call" {
            w.by_comm.get(&id).copied()
        } else {
            None
        };
        match found {
            Some(i) => Ok(&mut w.calls[i]),
            None => Err(param_err(
                "invalid_parameter_value",
                "communication_id",
                json!(id),
                "Communication not found",
            )),
        }
    }

    fn set_tag_sales(&self, w: &mut World, p: &Map<String, Json>) -> Result<Json, RpcErr> {
        let date_time = time_param(p, "date_time")?;
        let value = match p.get("transaction_value") {
            None | Some(Json::Null) => {
                return Err(param_err(
                    "required_parameter_missed",
                    "transaction_value",
                    Json::Null,
                    "transaction_value is required",
                ));
            }
            Some(v) => v.as_f64().ok_or_else(|| {
                param_err(
                    "data_type_error",
                    "transaction_value",
                    v.clone(),
                    "transaction_value must be a number",
                )
            })?,
        };
        let comment = str_param(p, "comment", false)?;
        if let Some(c) = &comment
            && c.chars().count() > 255
        {
            return Err(param_err(
                "invalid_parameter_value",
                "comment",
                json!(c),
                "comment must not exceed 255 characters",
            ));
        }
        if !self.config.sales_enabled {
            return Err(err(
                -32008,
                "method_component_disabled",
                "The sales accounting component is switched off",
            ));
        }
        let sale_id = w.next_sale;
        let call = self.communication(w, p, false)?;
        if date_time < call.start_time {
            return Err(param_err(
                "invalid_parameter_value",
                "date_time",
                p["date_time"].clone(),
                "date_time is earlier than the communication",
            ));
        }
        call.sales.push(Sale {
            id: sale_id,
            value,
            date_time,
            comment,
        });
        if !call.tags.iter().any(|t| t.tag_id == SALE_TAG_ID) {
            call.tags.push(CommTag {
                tag_id: SALE_TAG_ID,
                tag_name: SALE_TAG_NAME.into(),
                tag_type: "system".into(),
                tag_change_time: now_local(),
            });
        }
        w.next_sale += 1;
        w.stats.sales_made += 1;
        Ok(json!({"id": sale_id}))
    }

    fn tag(&self, w: &mut World, p: &Map<String, Json>, set: bool) -> Result<Json, RpcErr> {
        let tag_id = match p.get("tag_id") {
            None | Some(Json::Null) => {
                return Err(param_err(
                    "required_parameter_missed",
                    "tag_id",
                    Json::Null,
                    "tag_id is required",
                ));
            }
            Some(v) => v.as_u64().ok_or_else(|| {
                param_err(
                    "data_type_error",
                    "tag_id",
                    v.clone(),
                    "tag_id must be a number",
                )
            })?,
        };
        let Some((_, name, _)) = w.tags.iter().find(|(id, _, _)| *id == tag_id).cloned() else {
            return Err(param_err(
                "invalid_parameter_value",
                "tag_id",
                json!(tag_id),
                "Tag not found",
            ));
        };
        let call = self.communication(w, p, false)?;
        if set {
            if !call.tags.iter().any(|t| t.tag_id == tag_id) {
                call.tags.push(CommTag {
                    tag_id,
                    tag_name: name,
                    tag_type: "manual".into(),
                    tag_change_time: now_local(),
                });
            }
        } else {
            call.tags.retain(|t| t.tag_id != tag_id);
            if tag_id == SALE_TAG_ID {
                call.sales.clear();
            }
        }
        Ok(json!({}))
    }

    fn comment(&self, w: &mut World, p: &Map<String, Json>) -> Result<Json, RpcErr> {
        let text = str_param(p, "comment", true)?.unwrap_or_default();
        let call = self.communication(w, p, true)?;
        call.comments.push(text);
        Ok(json!({"success": true}))
    }
}

fn now_local() -> NaiveDateTime {
    chrono::Utc::now()
        .with_timezone(&crate::connectors::http::orders_emulator::moscow())
        .naive_local()
}

fn reply_err(id: &Json, e: RpcErr) -> Json {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message,
        "data": {"mnemonic": e.mnemonic, "field": e.field, "value": e.value, "params": {}, "extended_helper": null, "metadata": e.metadata}}})
}

fn str_param(p: &Map<String, Json>, name: &str, required: bool) -> Result<Option<String>, RpcErr> {
    match p.get(name) {
        None | Some(Json::Null) if required => Err(param_err(
            "required_parameter_missed",
            name,
            Json::Null,
            format!("{name} is required"),
        )),
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(param_err(
            "data_type_error",
            name,
            v.clone(),
            format!("{name} must be a string"),
        )),
    }
}

fn uint_param(p: &Map<String, Json>, name: &str) -> Result<Option<u64>, RpcErr> {
    match p.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            param_err(
                "data_type_error",
                name,
                v.clone(),
                format!("{name} must be a whole number"),
            )
        }),
    }
}

fn time_param(p: &Map<String, Json>, name: &str) -> Result<NaiveDateTime, RpcErr> {
    let text = str_param(p, name, true)?.unwrap_or_default();
    NaiveDateTime::parse_from_str(&text, TIME_FORMAT).map_err(|_| {
        param_err(
            "invalid_parameter_value",
            name,
            json!(text),
            format!("{name} must be YYYY-MM-DD hh:mm:ss"),
        )
    })
}

/// The phone a filter requires (`contact_phone_number = X`, alone or in an `and` group).
fn pinned_phone(filter: &Json) -> Option<String> {
    if filter.get("field").and_then(Json::as_str) == Some("contact_phone_number")
        && filter.get("operator").and_then(Json::as_str) == Some("=")
    {
        return filter
            .get("value")
            .and_then(Json::as_str)
            .map(str::to_string);
    }
    if filter
        .get("condition")
        .and_then(Json::as_str)
        .unwrap_or("and")
        == "and"
    {
        return filter
            .get("filters")?
            .as_array()?
            .iter()
            .find_map(pinned_phone);
    }
    None
}

fn compare(a: &Json, b: &Json) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Json::String(x), Json::String(y)) => Some(x.cmp(y)),
        (Json::Bool(x), Json::Bool(y)) => Some(x.cmp(y)),
        (Json::Null, Json::Null) => Some(std::cmp::Ordering::Equal),
        _ => None,
    }
}

fn like(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('%').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

type Getter<'a> = &'a dyn Fn(&str) -> Option<Json>;
type Check<'a> = &'a dyn Fn(&str) -> bool;

/// Evaluate a filter (one condition or a nested `{filters, condition}` group) on one row.
fn eval_filter(
    filter: &Json,
    get: Getter,
    filterable: Check,
    known: Check,
) -> Result<bool, RpcErr> {
    if let Some(list) = filter.get("filters") {
        let list = list.as_array().ok_or_else(|| {
            param_err(
                "data_type_error",
                "filter",
                filter.clone(),
                "filters must be an array",
            )
        })?;
        let or = match filter
            .get("condition")
            .and_then(Json::as_str)
            .unwrap_or("and")
        {
            "and" => false,
            "or" => true,
            c => {
                return Err(param_err(
                    "invalid_parameter_value",
                    "filter",
                    json!(c),
                    "condition is and or or",
                ));
            }
        };
        for f in list {
            let hit = eval_filter(f, get, filterable, known)?;
            if hit == or {
                return Ok(or);
            }
        }
        return Ok(!or);
    }
    let field = filter.get("field").and_then(Json::as_str).ok_or_else(|| {
        param_err(
            "required_parameter_missed",
            "filter",
            filter.clone(),
            "filter.field is required",
        )
    })?;
    if !known(field) {
        return Err(param_err(
            "unexpected_parameters",
            "filter",
            json!(field),
            format!("Unknown field: {field}"),
        ));
    }
    if !filterable(field) {
        return Err(param_err(
            "filter_prohibited",
            "filter",
            json!(field),
            format!("Filtering by {field} is not allowed"),
        ));
    }
    let op = filter.get("operator").and_then(Json::as_str).unwrap_or("=");
    let value = filter.get("value").unwrap_or(&Json::Null);
    let actual = get(field).unwrap_or(Json::Null);
    use std::cmp::Ordering::*;
    Ok(match op {
        "=" => compare(&actual, value) == Some(Equal),
        "!=" => compare(&actual, value) != Some(Equal),
        "<" => compare(&actual, value) == Some(Less),
        ">" => compare(&actual, value) == Some(Greater),
        "<=" => matches!(compare(&actual, value), Some(Less | Equal)),
        ">=" => matches!(compare(&actual, value), Some(Greater | Equal)),
        "in" => value
            .as_array()
            .ok_or_else(|| {
                param_err(
                    "data_type_error",
                    "filter",
                    value.clone(),
                    "in takes an array",
                )
            })?
            .iter()
            .any(|v| compare(&actual, v) == Some(Equal)),
        "like" => matches!((&actual, value), (Json::String(a), Json::String(p)) if like(p, a)),
        o => {
            return Err(param_err(
                "invalid_parameter_value",
                "filter",
                json!(o),
                format!("Unknown operator: {o}"),
            ));
        }
    })
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/');
    if method == Method::GET && path == "/_emulator/stats" {
        let stats = lock(&shared.world).stats.clone();
        return axum::Json(stats).into_response();
    }
    lock(&shared.world).stats.requests += 1;
    if path != "/v2.0" {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "Only POST is supported").into_response();
    }
    let rpc_method = serde_json::from_slice::<Json>(&body)
        .ok()
        .and_then(|v| v.get("method").and_then(Json::as_str).map(str::to_string))
        .unwrap_or_default();
    let write = is_write(&rpc_method);
    let work = || {
        let reply = shared.process(&body);
        let mut resp = axum::Json(reply).into_response();
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        resp
    };
    emulator_kit::respond(
        &shared.faults,
        &rpc_method,
        write,
        &conn,
        shared.config.latency,
        work,
    )
    .await
}

fn shared(config: DataApiConfig, calls: Vec<Call>) -> Arc<Shared> {
    let mut world = World {
        calls,
        by_comm: HashMap::new(),
        by_phone: HashMap::new(),
        tags: vec![
            (SALE_TAG_ID, SALE_TAG_NAME.into(), true),
            (601, "Целевой".into(), false),
            (602, "Спам".into(), false),
            (603, "Повторный".into(), false),
        ],
        tokens: HashMap::new(),
        next_sale: 9_000_001,
        budget: Budget {
            started: Instant::now(),
            minute_index: 0,
            minute_used: 0,
            day_index: 0,
            day_used: 0,
        },
        log: Vec::new(),
        stats: Stats::default(),
        rpc_faults: Vec::new(),
        rng: Rng(0xDA7A),
    };
    world.reindex();
    Arc::new(Shared {
        config,
        world: Mutex::new(world),
        faults: Faults::default(),
    })
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// A running Data API on 127.0.0.1; stops on [`shutdown`](Self::shutdown) or drop.
pub struct DataApiEmulator {
    server: ServerThread,
    shared: Arc<Shared>,
}

impl DataApiEmulator {
    pub fn start(config: DataApiConfig, calls: Vec<Call>) -> io::Result<Self> {
        let shared = shared(config, calls);
        let server = ServerThread::spawn("comagic-data-api", router(shared.clone()))?;
        Ok(DataApiEmulator { server, shared })
    }

    /// `http://127.0.0.1:PORT/v2.0`: the value for `COMAGIC_DATA_API_URL`.
    pub fn url(&self) -> String {
        format!("{}/v2.0", self.server.url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The first permanent key: the value for `COMAGIC_ACCESS_TOKEN`.
    pub fn token(&self) -> &str {
        &self.shared.config.access_tokens[0]
    }

    pub fn config(&self) -> &DataApiConfig {
        &self.shared.config
    }

    pub fn stats(&self) -> Stats {
        lock(&self.shared.world).stats.clone()
    }

    /// Every JSON-RPC request, in order.
    pub fn log(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.world).log.clone()
    }

    /// The requests of one method, in order.
    pub fn requests_of(&self, method: &str) -> Vec<LoggedRequest> {
        lock(&self.shared.world)
            .log
            .iter()
            .filter(|r| r.method == method)
            .cloned()
            .collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared.world).calls.clone()
    }

    /// The call whose communication id this is.
    pub fn communication(&self, communication_id: u64) -> Option<Call> {
        let w = lock(&self.shared.world);
        w.by_comm
            .get(&communication_id)
            .map(|&i| w.calls[i].clone())
    }

    /// Calls from this number, in time order.
    pub fn calls_of(&self, phone: &str) -> Vec<Call> {
        let w = lock(&self.shared.world);
        w.by_phone
            .get(phone)
            .map(|v| v.iter().map(|&i| w.calls[i].clone()).collect())
            .unwrap_or_default()
    }

    /// Calls that carry at least one sale.
    pub fn sold(&self) -> Vec<Call> {
        lock(&self.shared.world)
            .calls
            .iter()
            .filter(|c| !c.sales.is_empty())
            .cloned()
            .collect()
    }

    pub fn add_calls(&self, calls: Vec<Call>) {
        let mut w = lock(&self.shared.world);
        w.calls.extend(calls);
        w.reindex();
    }

    /// Change a communication in place (put a sale on it by hand, say).
    pub fn update_communication(
        &self,
        communication_id: u64,
        change: impl FnOnce(&mut Call),
    ) -> bool {
        let mut w = lock(&self.shared.world);
        let Some(&i) = w.by_comm.get(&communication_id) else {
            return false;
        };
        change(&mut w.calls[i]);
        true
    }

    /// Spend points of the current windows as another client of the same account would.
    pub fn spend(&self, points: u32) {
        let mut w = lock(&self.shared.world);
        self.shared.roll(&mut w);
        w.budget.minute_used = (w.budget.minute_used + points).min(self.shared.config.minute_limit);
        w.budget.day_used = (w.budget.day_used + points).min(self.shared.config.day_limit);
    }

    /// Queue a JSON-RPC fault.
    pub fn rpc_fault(&self, rule: RpcFaultRule) {
        if rule.times > 0 {
            lock(&self.shared.world).rpc_faults.push(rule);
        }
    }

    /// Transport faults keyed by JSON-RPC method name (`Scope::Only("set.tag_sales".into())`).
    pub fn faults(&self) -> &Faults<String> {
        &self.shared.faults
    }

    /// Tokens from `login.user` that are still valid.
    pub fn live_tokens(&self) -> usize {
        let w = lock(&self.shared.world);
        w.tokens
            .values()
            .filter(|t| !t.expired && t.expires.is_none_or(|e| Instant::now() < e))
            .count()
    }

    pub fn shutdown(mut self) {
        self.server.stop();
    }
}

/// Serves on `addr` until the future is dropped (for `etl emulate`).
pub async fn serve_forever(
    config: DataApiConfig,
    calls: Vec<Call>,
    listener: tokio::net::TcpListener,
) -> io::Result<()> {
    emulator_kit::serve(listener, router(shared(config, calls))).await
}

/// The ids of the sales made (for assertions on duplicates).
pub fn sale_ids(calls: &[Call]) -> HashSet<u64> {
    calls
        .iter()
        .flat_map(|c| c.sales.iter().map(|s| s.id))
        .collect()
}
