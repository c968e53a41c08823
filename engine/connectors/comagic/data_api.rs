//! The Data API v2.0 client: the JSON-RPC envelope, errors by code and mnemonic, a permanent key
//! or `login.user` (one re-login when the token expires), the point budget read from
//! `metadata.limits` (calls wait for `minute_reset` instead of running into -32029), and reports
//! read page by page (`limit`/`offset` up to `total_items`) over windows split to at most 3 months.
//!
//! Writes are not retried blindly: when a write was sent and its outcome is unknown (timeout,
//! dropped connection, 5xx, -32603) the caller gets [`CallError::Unknown`] and must look before
//! trying again (`set.tag_sales` makes a new sale on every call).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use crate::config::component::ConnectionConfig;
use crate::connectors::http::client;
use crate::connectors::http::transport::Transport;
use crate::runtime::error::ConnectorError;
use crate::runtime::metrics;

/// The name failures are reported under.
pub const SYSTEM: &str = "CoMagic Data API";

/// The `system` label of this client's requests and waits in `/metrics`.
const METRIC_SYSTEM: &str = "comagic";

/// CoMagic / UIS / CallGear Data API v2.0.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataApiConnection {
    /// The endpoint, `https://dataapi.comagic.ru/v2.0` (UIS: `https://dataapi.uiscom.ru/v2.0`).
    #[schemars(example = &"${env:COMAGIC_DATA_API_URL}")]
    pub url: String,
    /// A permanent (or temporary) access key from the account's Users section. When empty,
    /// `login` and `password` are used to get a token with `login.user`.
    #[serde(default)]
    #[schemars(example = &"${secret:COMAGIC_ACCESS_TOKEN:-}")]
    pub access_token: Option<String>,
    /// Login for `login.user`.
    #[serde(default)]
    #[schemars(example = &"${env:COMAGIC_LOGIN:-}")]
    pub login: Option<String>,
    /// Password for `login.user`.
    #[serde(default)]
    #[schemars(example = &"${secret:COMAGIC_PASSWORD:-}")]
    pub password: Option<String>,
    #[serde(flatten)]
    pub transport: Transport<30, 3>,
    /// Longest single wait for the point budget; a daily budget that resets later ends the run.
    #[serde(default = "default_max_wait")]
    #[schemars(range(min = 1))]
    pub max_wait_secs: u64,
    /// Wait after an unexpected -32029 when the reply does not say when the budget resets.
    #[serde(default = "default_limit_wait")]
    #[schemars(range(min = 1))]
    pub limit_wait_secs: u64,
    /// Points per minute left for other users of the account (calls wait when fewer remain).
    #[serde(default)]
    pub reserve_points: u32,
    /// Largest `offset` the API accepts; longer reports are read in shorter windows.
    #[serde(default = "default_max_offset")]
    #[schemars(range(min = 1))]
    pub max_offset: u64,
}

fn default_max_wait() -> u64 {
    900
}
fn default_limit_wait() -> u64 {
    60
}
fn default_max_offset() -> u64 {
    100_000
}

impl ConnectionConfig for DataApiConnection {
    fn build(self) -> Result<Arc<dyn std::any::Any + Send + Sync>, String> {
        Ok(Arc::new(DataApi::new(self)?))
    }
}

enum Auth {
    Key(String),
    Login { login: String, password: String },
}

/// A JSON-RPC error as CoMagic sends it.
#[derive(Clone, Debug)]
pub struct RpcError {
    pub code: i64,
    pub mnemonic: String,
    pub message: String,
    pub field: Option<String>,
    pub value: Json,
    pub metadata: Json,
}

impl RpcError {
    fn from_json(e: &Json) -> RpcError {
        let data = e.get("data").cloned().unwrap_or(Json::Null);
        RpcError {
            code: e.get("code").and_then(Json::as_i64).unwrap_or(0),
            mnemonic: data
                .get("mnemonic")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string(),
            message: e
                .get("message")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string(),
            field: data.get("field").and_then(Json::as_str).map(str::to_string),
            value: data.get("value").cloned().unwrap_or(Json::Null),
            metadata: data.get("metadata").cloned().unwrap_or(Json::Null),
        }
    }

    /// Errors that concern the request's parameters (this record), not the service or account.
    pub fn is_params(&self) -> bool {
        self.code == -32602
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.mnemonic, self.message)?;
        if let Some(field) = &self.field {
            write!(f, " (field {field}")?;
            if !self.value.is_null() {
                let v = self.value.to_string();
                let v: String = v.chars().take(80).collect();
                write!(f, " = {v}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Why a call did not give a result, in the shared vocabulary: `Rejected` (CoMagic answered
/// with an error, after waiting out budgets and one re-login), `Unavailable` (the service could
/// not be reached, a read kept failing, or the point budget is spent for longer than
/// `max_wait_secs`: nothing was done), `Unknown` (a write was sent but its outcome is unknown:
/// timeout, dropped connection, 5xx, -32603).
pub type CallError = ConnectorError<RpcError>;

/// Whether a call may be repeated after a transport failure.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Effect {
    /// Reads: repeat freely.
    Read,
    /// Writes: repeat only when provably not sent.
    Write,
}

/// The `result` of a successful call.
#[derive(Clone, Debug)]
pub struct Reply {
    /// `result.data` (or `result` when the reply has no `data` wrapper).
    pub data: Json,
    pub total_items: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    day_remaining: u64,
    day_reset: u64,
    minute_limit: u64,
    minute_remaining: u64,
    minute_reset: u64,
    at: Instant,
}

impl Limits {
    fn from_json(v: &Json) -> Option<Limits> {
        let n = |k: &str| v.get(k).and_then(Json::as_u64);
        Some(Limits {
            day_remaining: n("day_remaining")?,
            day_reset: n("day_reset").unwrap_or(86_400),
            minute_limit: n("minute_limit").unwrap_or(0),
            minute_remaining: n("minute_remaining")?,
            minute_reset: n("minute_reset").unwrap_or(60),
            at: Instant::now(),
        })
    }
    fn minute_window_open(&self) -> bool {
        self.at.elapsed() < Duration::from_secs(self.minute_reset)
    }
}

#[derive(Default)]
struct Session {
    token: Option<String>,
    expire_at: Option<i64>,
    limits: Option<Limits>,
    /// Points each method cost, learned from consecutive `minute_remaining` values.
    weights: HashMap<String, u64>,
    next_id: u64,
}

/// Counters of one client (one run).
#[derive(Default, Debug)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub points: AtomicU64,
    pub budget_waits: AtomicU64,
    pub logins: AtomicU64,
}

/// A Data API client; one per connection (and run). Calls are serialised: the budget is the
/// account's, and a faster pace would only reach -32029 sooner.
pub struct DataApi {
    url: String,
    auth: Auth,
    http: reqwest::Client,
    opts: DataApiConnection,
    session: tokio::sync::Mutex<Session>,
    pub stats: ClientStats,
}

/// How one request went.
enum Exchange {
    /// The request did not leave (connection refused, DNS): safe to repeat.
    NotSent(String),
    /// Sent, no usable answer.
    Failed(String),
    Answer(Json),
}

impl DataApi {
    pub fn new(mut opts: DataApiConnection) -> Result<DataApi, String> {
        let nonempty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let auth = match (
            nonempty(&opts.access_token),
            nonempty(&opts.login),
            nonempty(&opts.password),
        ) {
            (Some(key), _, _) => {
                crate::secrets::register(&key);
                Auth::Key(key)
            }
            (None, Some(login), Some(password)) => {
                crate::secrets::register(&password);
                Auth::Login { login, password }
            }
            _ => {
                return Err("CoMagic Data API: set an access key (COMAGIC_ACCESS_TOKEN), or a login and password (COMAGIC_LOGIN, COMAGIC_PASSWORD)".into());
            }
        };
        if url::Url::parse(opts.url.trim()).is_err() {
            return Err(format!(
                "CoMagic Data API: `{}` is not a URL (expected https://dataapi.comagic.ru/v2.0)",
                opts.url
            ));
        }
        opts.access_token = None;
        opts.password = None;
        Ok(DataApi {
            url: opts.url.trim().to_string(),
            auth,
            http: client::client(opts.transport.timeout()),
            session: tokio::sync::Mutex::new(Session::default()),
            stats: ClientStats::default(),
            opts,
        })
    }

    /// Call `method`. `params` must not carry `access_token`; it is added here.
    pub async fn call(
        &self,
        method: &str,
        params: Map<String, Json>,
        effect: Effect,
    ) -> Result<Reply, CallError> {
        let mut s = self.session.lock().await;
        let mut relogged = false;
        let mut transport_failures = 0usize;
        let mut limit_waits = 0usize;
        loop {
            let token = self.token(&mut s).await?;
            self.wait_for_budget(&mut s, method).await?;
            let mut p = params.clone();
            p.insert("access_token".into(), Json::String(token));
            let answer = match self.send(&mut s, method, p).await {
                Exchange::Answer(a) => a,
                Exchange::Failed(m) if effect == Effect::Write => {
                    return Err(CallError::Unknown(m));
                }
                Exchange::NotSent(m) | Exchange::Failed(m) => {
                    transport_failures += 1;
                    if transport_failures > self.opts.transport.retries {
                        return Err(CallError::Unavailable(m));
                    }
                    tokio::time::sleep(backoff(transport_failures)).await;
                    continue;
                }
            };
            if let Some(e) = answer.get("error") {
                let e = RpcError::from_json(e);
                match (e.code, e.mnemonic.as_str()) {
                    (-32029, _) => {
                        limit_waits += 1;
                        if limit_waits > 5 {
                            return Err(CallError::Rejected(e));
                        }
                        self.wait_after_limit(&mut s, &e).await?;
                        continue;
                    }
                    (-32603, _) if effect == Effect::Write => {
                        return Err(CallError::Unknown(e.to_string()));
                    }
                    (-32603, _) => {
                        transport_failures += 1;
                        if transport_failures > self.opts.transport.retries {
                            return Err(CallError::Rejected(e));
                        }
                        tokio::time::sleep(backoff(transport_failures)).await;
                        continue;
                    }
                    (-32001, "access_token_expired" | "access_token_invalid")
                        if matches!(self.auth, Auth::Login { .. }) && !relogged =>
                    {
                        tracing::info!(method, "CoMagic token {}; logging in again", e.mnemonic);
                        relogged = true;
                        s.token = None;
                        continue;
                    }
                    _ => return Err(CallError::Rejected(e)),
                }
            }
            let Some(result) = answer.get("result") else {
                let m = "No result in CoMagic answer".to_string();
                return Err(if effect == Effect::Write {
                    CallError::Unknown(m)
                } else {
                    CallError::Unavailable(m)
                });
            };
            let metadata = result.get("metadata");
            if let Some(limits) = metadata
                .and_then(|m| m.get("limits"))
                .and_then(Limits::from_json)
            {
                self.learn(&mut s, method, limits);
            }
            let total_items = metadata
                .and_then(|m| m.get("total_items"))
                .and_then(Json::as_u64);
            let data = match result.get("data") {
                Some(d) => d.clone(),
                None => result.clone(),
            };
            return Ok(Reply { data, total_items });
        }
    }

    /// One POST; classifies what happened.
    async fn send(&self, s: &mut Session, method: &str, params: Map<String, Json>) -> Exchange {
        s.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": s.next_id, "method": method, "params": params});
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .http
            .post(&self.url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=UTF-8",
            )
            .body(body.to_string())
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                metrics::request(METRIC_SYSTEM, "error");
                return if e.is_connect() {
                    Exchange::NotSent(client::describe(&e))
                } else {
                    Exchange::Failed(client::describe(&e))
                };
            }
        };
        let status = resp.status().as_u16();
        metrics::request(METRIC_SYSTEM, &status.to_string());
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => return Exchange::Failed(client::describe(&e)),
        };
        match serde_json::from_str::<Json>(&text) {
            Ok(v) if v.get("result").is_some() || v.get("error").is_some() => Exchange::Answer(v),
            _ => {
                let snippet: String = text.trim().chars().take(200).collect();
                Exchange::Failed(crate::secrets::redact(&format!("HTTP {status}: {snippet}")))
            }
        }
    }

    async fn token(&self, s: &mut Session) -> Result<String, CallError> {
        let (login, password) = match &self.auth {
            Auth::Key(k) => return Ok(k.clone()),
            Auth::Login { login, password } => (login, password),
        };
        let soon = s
            .expire_at
            .is_some_and(|at| chrono::Utc::now().timestamp() + 30 >= at);
        if let Some(t) = &s.token
            && !soon
        {
            return Ok(t.clone());
        }
        let mut p = Map::new();
        p.insert("login".into(), json!(login));
        p.insert("password".into(), json!(password));
        let mut failures = 0;
        let answer = loop {
            match self.send(s, "login.user", p.clone()).await {
                Exchange::Answer(a) => break a,
                Exchange::NotSent(m) | Exchange::Failed(m) => {
                    failures += 1;
                    if failures > self.opts.transport.retries {
                        return Err(CallError::Unavailable(format!("login.user: {m}")));
                    }
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        };
        if let Some(e) = answer.get("error") {
            return Err(CallError::Rejected(RpcError::from_json(e)));
        }
        let data = answer
            .get("result")
            .map(|r| r.get("data").unwrap_or(r))
            .cloned()
            .unwrap_or(Json::Null);
        let Some(token) = data.get("access_token").and_then(Json::as_str) else {
            return Err(CallError::Unavailable(
                "login.user: no access_token in the answer".into(),
            ));
        };
        crate::secrets::register(token);
        self.stats.logins.fetch_add(1, Ordering::Relaxed);
        s.token = Some(token.to_string());
        s.expire_at = data
            .get("expire_at")
            .or_else(|| data.get("expire"))
            .and_then(Json::as_i64);
        Ok(token.to_string())
    }

    /// Wait while the last known budget cannot pay for `method`.
    async fn wait_for_budget(&self, s: &mut Session, method: &str) -> Result<(), CallError> {
        let Some(l) = s.limits else { return Ok(()) };
        let weight = s.weights.get(method).copied().unwrap_or(1);
        if weight == 0 {
            return Ok(());
        }
        let need = weight + self.opts.reserve_points as u64;
        let since = l.at.elapsed();
        if l.day_remaining < need && since < Duration::from_secs(l.day_reset) {
            let wait = Duration::from_secs(l.day_reset) - since + MARGIN;
            if wait > Duration::from_secs(self.opts.max_wait_secs) {
                return Err(CallError::Unavailable(format!(
                    "the daily point budget is spent ({} left, {method} needs {need}); it resets in {}",
                    l.day_remaining,
                    human(wait)
                )));
            }
            self.pause(s, wait, "daily").await;
            return Ok(());
        }
        if l.minute_remaining < need && l.minute_window_open() {
            let wait = Duration::from_secs(l.minute_reset).saturating_sub(since) + MARGIN;
            self.pause(s, wait, "per-minute").await;
        }
        Ok(())
    }

    /// After an unexpected -32029: wait for the reset the error (or the last reply) names.
    async fn wait_after_limit(&self, s: &mut Session, e: &RpcError) -> Result<(), CallError> {
        let limits = e
            .metadata
            .get("limits")
            .and_then(Limits::from_json)
            .or(s.limits);
        let wait = match limits {
            Some(l) if l.day_remaining == 0 => {
                let w = Duration::from_secs(l.day_reset).saturating_sub(l.at.elapsed()) + MARGIN;
                if w > Duration::from_secs(self.opts.max_wait_secs) {
                    return Err(CallError::Unavailable(format!(
                        "the daily point budget is spent; it resets in {}",
                        human(w)
                    )));
                }
                w
            }
            Some(l) if l.minute_window_open() => {
                Duration::from_secs(l.minute_reset).saturating_sub(l.at.elapsed()) + MARGIN
            }
            _ => Duration::from_secs(self.opts.limit_wait_secs),
        };
        tracing::info!(
            "CoMagic answered -32029 limit_exceeded; waiting {}",
            human(wait)
        );
        self.pause(s, wait, "per-minute").await;
        Ok(())
    }

    async fn pause(&self, s: &mut Session, wait: Duration, which: &str) {
        tracing::info!(
            "CoMagic {which} point budget spent; waiting {} for it to reset",
            human(wait)
        );
        self.stats.budget_waits.fetch_add(1, Ordering::Relaxed);
        metrics::rate_limit_wait(METRIC_SYSTEM, wait);
        tokio::time::sleep(wait).await;
        s.limits = None;
    }

    /// Remember the new limits; the drop in `minute_remaining` since the last reply (same window)
    /// is what this method costs.
    fn learn(&self, s: &mut Session, method: &str, new: Limits) {
        let spent = match s.limits {
            Some(old)
                if old.minute_window_open() && old.minute_remaining >= new.minute_remaining =>
            {
                old.minute_remaining - new.minute_remaining
            }
            // The first reply of a window: what is used of it so far (ours, unless others share the account).
            _ => new.minute_limit.saturating_sub(new.minute_remaining),
        };
        s.weights.insert(method.to_string(), spent);
        self.stats.points.fetch_add(spent, Ordering::Relaxed);
        s.limits = Some(new);
    }

    /// Log out a `login.user` token (nothing to do with a permanent key).
    /// Largest `offset` the API accepts (longer reports are read in shorter windows).
    pub fn max_offset(&self) -> u64 {
        self.opts.max_offset
    }

    pub async fn logout(&self) {
        let mut s = self.session.lock().await;
        if let (Some(token), Auth::Login { .. }) = (s.token.take(), &self.auth) {
            let mut p = Map::new();
            p.insert("access_token".into(), json!(token));
            let _ = self.send(&mut s, "logout.user", p).await;
        }
    }
}

const MARGIN: Duration = Duration::from_millis(200);

fn backoff(attempt: usize) -> Duration {
    let base = 200u64 * (1 << attempt.min(6));
    Duration::from_millis(base + rand::random::<u64>() % 200)
}

fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 90.0 {
        format!("{s:.1}s")
    } else if s < 5400.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}
