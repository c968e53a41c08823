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

// `RpcErr` is the JSON-RPC error answer itself, built once per failed request: boxing it would
// only add noise to every `?`.
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

mod envelope;
mod filter;
mod methods;
mod rpc;
mod server;

use crate::kit::{self, Conn, FaultRule, Faults, Scope, ServerThread};
use envelope::*;
use filter::*;
pub use server::{DataApiEmulator, sale_ids, serve_forever};

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

/// `fault` for `times` requests of `method` (any method when `None`), after `after` of them:
/// the Data API's way of writing a kit [`FaultRule`].
#[derive(Clone, Debug)]
pub struct RpcFaultRule(FaultRule<String, RpcFault>);

impl RpcFaultRule {
    pub fn new(method: Option<&str>, fault: RpcFault) -> Self {
        let rule = FaultRule::new(fault);
        RpcFaultRule(match method {
            Some(m) => rule.on(Scope::Only(m.to_string())),
            None => rule,
        })
    }
    pub fn after(self, n: u32) -> Self {
        RpcFaultRule(self.0.after(n))
    }
    pub fn times(self, n: u32) -> Self {
        RpcFaultRule(self.0.times(n))
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
    /// JSON-RPC faults, on the kit's queue like the transport faults.
    rpc_faults: Faults<String, RpcFault>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
