//! The Bitrix24 client, over an incoming webhook or as an installed application (the token of
//! the request being answered, renewed once when it has expired).
//!
//! - One leaky bucket per portal, shared by every client of the process (governor's GCRA is the
//!   same meter as Bitrix24's bucket; `etl serve` answers many requests at once), a little
//!   under the portal's own so that a well-behaved run receives no QUERY_LIMIT_EXCEEDED at all.
//! - Per-method operating time (`time.operating`) tracked: slow down near the budget, park the
//!   method until `operating_reset_at` after OPERATION_TIME_LIMIT.
//! - Errors classified by their code, not only the HTTP status.
//! - Retries only where safe: refusals before execution (rate limits, connection never made),
//!   and reads. A write whose outcome is unknown is reported as such, never blindly repeated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use governor::DefaultDirectRateLimiter;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json, json};

mod auth;
mod body;

use super::clock::PortalClock;
use super::encode::build_query;
use crate::connectors::http::client::{backoff, client, describe};
use crate::runtime::error::ConnectorError;
use crate::runtime::metrics;
use crate::secrets;
use auth::portal_bucket;
pub use auth::{AppAuth, Auth};
pub use body::BatchResult;
use body::{BatchBody, Body, Read};

#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub webhook_url: String,
    /// Leaky bucket capacity (50; 250 on Enterprise).
    pub burst: u32,
    /// Leaky bucket drain per second (2; 5 on Enterprise).
    pub drain_per_second: f64,
    /// Per-request timeout; Bitrix24 itself stops a request at 60 s.
    pub timeout: Duration,
    /// Retries of a read on 5xx, timeouts, HTML answers.
    pub retries: usize,
    /// Per-method operating-time budget over 10 minutes, in seconds.
    pub operating_limit: f64,
    pub auth: Auth,
}

/// Read or write: decides what may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
}

/// How a call failed, in the shared vocabulary: `Rejected` (the portal refused this call for
/// its input: legacy `error: ""` 400s, NOT_FOUND, validation; the record fails, the run goes
/// on), `Unavailable` (down after retries, wrong webhook, missing scope or method: the run ends),
/// `Unknown` (a write was sent but its outcome is unknown: timeout, 5xx, HTML; it may have
/// happened).
pub type B24Error = ConnectorError<B24Rejection>;

/// The name failures are reported under.
pub const SYSTEM: &str = "Bitrix24";

/// The `system` label of this client's requests and waits in `/metrics`.
const METRIC_SYSTEM: &str = "bitrix24";

/// The portal's error code and description.
#[derive(Clone, Debug)]
pub struct B24Rejection {
    pub code: String,
    pub description: String,
}

impl std::fmt::Display for B24Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.code.is_empty() {
            f.write_str(&self.description)
        } else {
            write!(f, "{} ({})", self.description, self.code)
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Operating {
    /// Seconds used in the rolling window, as last reported.
    used: f64,
    /// When the oldest minute leaves the window (unix seconds).
    reset_at: f64,
    /// No calls of this method before this instant (after OPERATION_TIME_LIMIT).
    parked_until: Option<Instant>,
    /// Refusals in a row without a reset time: the wait doubles each time.
    refusals: u32,
}

/// Errors that mean "refused before execution": the command may simply be sent again later.
pub fn is_refusal(code: &str) -> bool {
    code.eq_ignore_ascii_case("OPERATION_TIME_LIMIT")
        || code.eq_ignore_ascii_case("QUERY_LIMIT_EXCEEDED")
}

pub struct Client {
    base: RwLock<String>,
    http: reqwest::Client,
    bucket: Arc<DefaultDirectRateLimiter>,
    operating: Mutex<HashMap<String, Operating>>,
    clock: PortalClock,
    cfg: ClientConfig,
}

/// What one HTTP exchange ended with.
enum Attempt<B> {
    /// The answer, and its `time` block.
    Done(B, Json),
    /// Nothing ran on the portal: safe to repeat after the given wait.
    Refused(Duration),
    /// Failed in a way that a read may retry.
    Transient(String),
    /// The request never reached the portal (no connection): any call may be repeated.
    NotSent(String),
    /// The application's access token has expired: nothing ran; renew it and repeat.
    Expired,
    Fatal(B24Error),
}

const MAX_LIMIT_RETRIES: usize = 60;
const MAX_MOVES: usize = 3;

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Client, String> {
        let mut base = cfg.webhook_url.trim().to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        let url =
            url::Url::parse(&base).map_err(|e| format!("invalid Bitrix24 webhook URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("the Bitrix24 webhook URL must start with https://".into());
        }
        secrets::register_url(&base);
        Ok(Client {
            bucket: portal_bucket(&url, &cfg),
            base: RwLock::new(base),
            http: client(cfg.timeout),
            operating: Mutex::new(HashMap::new()),
            clock: PortalClock::default(),
            cfg,
        })
    }

    fn base(&self) -> String {
        self.base.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Call one method. `params` use lowercase names (`id`, `fields`, `filter`, ...).
    pub async fn call(&self, method: &str, params: &Json, kind: Kind) -> Result<Json, B24Error> {
        self.call_as::<Json>(method, params, kind).await
    }

    /// Call one method and read its answer as `B`.
    async fn call_as<B: Body>(
        &self,
        method: &str,
        params: &Json,
        kind: Kind,
    ) -> Result<B, B24Error> {
        let mut transient_failures = 0usize;
        let mut limit_refusals = 0usize;
        let mut moves = 0usize;
        let mut renewed = false;
        let mut delays = backoff(self.cfg.retries, Duration::from_millis(300)).build();
        use backon::BackoffBuilder as _;
        loop {
            self.wait_for_method(method).await;
            let queued = Instant::now();
            self.bucket.until_ready().await;
            if queued.elapsed() >= Duration::from_millis(1) {
                metrics::rate_limit_wait(METRIC_SYSTEM, queued.elapsed());
            }
            match self.attempt::<B>(method, params, &mut moves).await {
                Attempt::Done(body, time) => {
                    self.note_operating(method, &time);
                    self.clock.note(&time);
                    return Ok(body);
                }
                Attempt::Refused(wait) => {
                    limit_refusals += 1;
                    if limit_refusals > MAX_LIMIT_RETRIES {
                        return Err(B24Error::Unavailable(format!(
                            "{method}: Bitrix24 kept refusing requests (rate or time limits)"
                        )));
                    }
                    tracing::debug!(
                        method,
                        wait_ms = wait.as_millis() as u64,
                        "Bitrix24 refused before execution; waiting"
                    );
                    metrics::rate_limit_wait(METRIC_SYSTEM, wait);
                    tokio::time::sleep(wait).await;
                }
                Attempt::NotSent(message) => {
                    transient_failures += 1;
                    match delays.next() {
                        Some(d) => {
                            tracing::warn!(
                                method,
                                attempt = transient_failures,
                                "cannot reach Bitrix24, retrying: {}",
                                secrets::redact(&message)
                            );
                            tokio::time::sleep(d).await;
                        }
                        None => {
                            return Err(B24Error::Unavailable(format!(
                                "Bitrix24 unavailable ({method}): {message}"
                            )));
                        }
                    }
                }
                Attempt::Transient(message) => {
                    transient_failures += 1;
                    match (kind, delays.next()) {
                        (Kind::Read, Some(d)) => {
                            tracing::warn!(
                                method,
                                attempt = transient_failures,
                                "Bitrix24 read failed, retrying: {}",
                                secrets::redact(&message)
                            );
                            tokio::time::sleep(d).await;
                        }
                        (Kind::Read, None) => {
                            return Err(B24Error::Unavailable(format!(
                                "Bitrix24 unavailable ({method}): {message}"
                            )));
                        }
                        (Kind::Write, _) => {
                            return Err(B24Error::Unknown(format!("{method}: {message}")));
                        }
                    }
                }
                Attempt::Expired if !renewed => {
                    renewed = true;
                    self.renew(method).await?;
                }
                Attempt::Expired => {
                    return Err(B24Error::Unavailable(format!(
                        "{method}: Bitrix24 refused the renewed access token (expired_token)"
                    )));
                }
                Attempt::Fatal(e) => return Err(e),
            }
        }
    }

    /// The portal's current time as its answers tell it (see `clock.rs`); `None` before the
    /// first answer. Costs no request.
    pub fn portal_now(&self) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        self.clock.now()
    }

    async fn attempt<B: Body>(&self, method: &str, params: &Json, moves: &mut usize) -> Attempt<B> {
        let url = format!("{}{method}", self.base());
        let body = match self.body(params) {
            Ok(body) => body,
            Err(e) => return Attempt::Fatal(e),
        };
        let sent = self
            .http
            .post(&url)
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            // The connection was never made: nothing ran, so even a write may be repeated.
            Err(e) if e.is_connect() => {
                metrics::request(METRIC_SYSTEM, "error");
                return Attempt::NotSent(describe(&e));
            }
            Err(e) => {
                metrics::request(METRIC_SYSTEM, "error");
                return Attempt::Transient(describe(&e));
            }
        };
        let status = resp.status().as_u16();
        metrics::request(METRIC_SYSTEM, &status.to_string());
        if (300..400).contains(&status) {
            return self.moved(
                resp.headers().get("location").and_then(|l| l.to_str().ok()),
                method,
                moves,
            );
        }
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => return Attempt::Transient(describe(&e)),
        };
        match B::read(&text) {
            Err(_) => Attempt::Transient(format!(
                "HTTP {status} with a non-JSON body: {}",
                snippet(&text)
            )),
            Ok(Read::Failed(body)) => self.classify(method, status, &body, &body["error"]),
            Ok(Read::Done(..)) if status >= 500 => Attempt::Transient(format!("HTTP {status}")),
            Ok(Read::Done(body, time)) => Attempt::Done(body, time),
        }
    }

    /// 302: the portal moved. The old host executed nothing; repeat at the new address.
    fn moved<B>(&self, location: Option<&str>, method: &str, moves: &mut usize) -> Attempt<B> {
        *moves += 1;
        let Some(location) = location.filter(|_| *moves <= MAX_MOVES) else {
            return Attempt::Fatal(B24Error::Unavailable(
                "Bitrix24 redirected without a usable Location (or too often)".into(),
            ));
        };
        let Some(cut) = location.find(method) else {
            return Attempt::Fatal(B24Error::Unavailable(
                "Bitrix24 redirected to an address that is not a webhook URL".into(),
            ));
        };
        let new_base = location[..cut].to_string();
        secrets::register_url(&new_base);
        tracing::warn!(
            "Bitrix24 portal moved to {}; update B24_WEBHOOK_URL",
            secrets::redact(&new_base)
        );
        *self.base.write().unwrap_or_else(|e| e.into_inner()) = new_base;
        Attempt::Refused(Duration::ZERO)
    }

    fn classify<B>(&self, method: &str, status: u16, body: &Json, code: &Json) -> Attempt<B> {
        let code = code
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| code.to_string());
        let description = body["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let unavailable = |m: String| Attempt::Fatal(B24Error::Unavailable(m));
        if let Auth::App(_) = &self.cfg.auth {
            match code.to_ascii_uppercase().as_str() {
                "EXPIRED_TOKEN" => return Attempt::Expired,
                "INVALID_TOKEN" | "NO_AUTH_FOUND" | "WRONG_AUTH_TYPE" => {
                    return unavailable(format!(
                        "Bitrix24 refused the user's access token for {method} ({code}): {description}"
                    ));
                }
                _ => {}
            }
        }
        match code.to_ascii_uppercase().as_str() {
            "QUERY_LIMIT_EXCEEDED" => Attempt::Refused(Duration::from_millis(600)),
            "OPERATION_TIME_LIMIT" => {
                let reset_at = body["time"]["operating_reset_at"].as_f64();
                self.park(method, reset_at);
                Attempt::Refused(Duration::ZERO)
            }
            "NO_AUTH_FOUND"
            | "INVALID_CREDENTIALS"
            | "EXPIRED_TOKEN"
            | "INVALID_TOKEN"
            | "WRONG_AUTH_TYPE" => unavailable(format!(
                "Bitrix24 rejected the webhook ({code}): the user or code in B24_WEBHOOK_URL is wrong, or the webhook was deleted"
            )),
            "INSUFFICIENT_SCOPE" => unavailable(format!(
                "the Bitrix24 webhook lacks the scope needed for {method} (insufficient_scope): tick it in the webhook's settings"
            )),
            "ERROR_METHOD_NOT_FOUND" => unavailable(format!(
                "Bitrix24 has no method {method} (ERROR_METHOD_NOT_FOUND), or the webhook's scopes hide it"
            )),
            "OVERLOAD_LIMIT" => unavailable(
                "Bitrix24 blocked this portal's REST access (OVERLOAD_LIMIT): ask Bitrix24 support"
                    .into(),
            ),
            "ACCESS_DENIED" | "PORTAL_DELETED" | "INVALID_REQUEST" => {
                unavailable(format!("Bitrix24 refused {method}: {description} ({code})"))
            }
            "INTERNAL_SERVER_ERROR" | "ERROR_UNEXPECTED_ANSWER" => {
                Attempt::Transient(format!("{description} ({code})"))
            }
            _ if status >= 500 => {
                Attempt::Transient(format!("HTTP {status}: {description} ({code})"))
            }
            _ => Attempt::Fatal(B24Error::Rejected(B24Rejection { code, description })),
        }
    }

    /// Park a method until the portal's `operating_reset_at`; without one, for 1 s doubling
    /// with every refusal in a row (up to a minute).
    fn park(&self, method: &str, reset_at: Option<f64>) {
        let now = unix_now();
        let mut map = self.operating.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(method.to_string()).or_default();
        let fallback = f64::from(1u32 << entry.refusals.min(6)).min(60.0);
        entry.refusals += 1;
        let wait = reset_at
            .map(|r| r - now)
            .filter(|w| *w > 0.0)
            .unwrap_or(fallback)
            .min(600.0);
        tracing::warn!(
            method,
            wait_s = wait,
            "Bitrix24 operating-time limit reached; method parked"
        );
        entry.parked_until = Some(Instant::now() + Duration::from_secs_f64(wait));
    }

    fn note_operating(&self, method: &str, time: &Json) {
        let (Some(used), reset_at) = (
            time["operating"].as_f64(),
            time["operating_reset_at"].as_f64(),
        ) else {
            return;
        };
        let mut map = self.operating.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(method.to_string()).or_default();
        entry.refusals = 0;
        entry.used = used;
        entry.reset_at = reset_at.unwrap_or(entry.reset_at);
    }

    /// Parked methods wait out their park; methods near their budget slow down
    /// (1% of the time to the window's reset, at most 7 s), as the official JS SDK does.
    async fn wait_for_method(&self, method: &str) {
        let state = self
            .operating
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(method)
            .copied();
        let Some(op) = state else { return };
        if let Some(until) = op.parked_until
            && until > Instant::now()
        {
            metrics::rate_limit_wait(METRIC_SYSTEM, until - Instant::now());
            tokio::time::sleep_until(until.into()).await;
            return;
        }
        if op.used > 0.8 * self.cfg.operating_limit {
            let to_reset = (op.reset_at - unix_now()).max(0.0);
            let wait = Duration::from_secs_f64((to_reset * 0.01).min(7.0));
            metrics::rate_limit_wait(METRIC_SYSTEM, wait);
            tokio::time::sleep(wait).await;
        }
    }

    /// Up to 50 commands in one request. A command is `(key, method, params)`.
    ///
    /// Commands the portal refused before running them (a method over its operating time) are
    /// sent again once their method's park is over; with `halt` (chained commands) they are left
    /// in `errors` instead, and the caller continues from the last command that ran.
    pub async fn batch(
        &self,
        commands: &[(String, String, Json)],
        halt: bool,
        kind: Kind,
    ) -> Result<BatchResult, B24Error> {
        self.batch_as::<Json>(commands, halt, kind).await
    }

    /// `batch`, each command's result kept as the text it came in (list reads: the rows are
    /// parsed when delivered, on every core).
    pub async fn batch_raw(
        &self,
        commands: &[(String, String, Json)],
        halt: bool,
        kind: Kind,
    ) -> Result<BatchResult<Box<RawValue>>, B24Error> {
        self.batch_as::<Box<RawValue>>(commands, halt, kind).await
    }

    async fn batch_as<R: DeserializeOwned>(
        &self,
        commands: &[(String, String, Json)],
        halt: bool,
        kind: Kind,
    ) -> Result<BatchResult<R>, B24Error> {
        let mut out = BatchResult::default();
        let mut pending: Vec<&(String, String, Json)> = commands.iter().collect();
        for _round in 0..MAX_LIMIT_RETRIES {
            let subset: Vec<(String, String, Json)> =
                pending.iter().map(|c| (*c).clone()).collect();
            let mut result = self.batch_once::<R>(&subset, halt, kind).await?;
            let mut refused = Vec::new();
            for cmd in pending {
                let key = &cmd.0;
                if let Some(v) = result.results.remove(key) {
                    out.results.insert(key.clone(), v);
                }
                if let Some(t) = result.totals.remove(key) {
                    out.totals.insert(key.clone(), t);
                }
                match result.errors.remove(key) {
                    Some((code, _)) if is_refusal(&code) && !halt => {
                        self.park(&cmd.1, None);
                        refused.push(cmd);
                    }
                    Some(e) => {
                        if is_refusal(&e.0) {
                            self.park(&cmd.1, None);
                        }
                        out.errors.insert(key.clone(), e);
                    }
                    None => {}
                }
            }
            if refused.is_empty() {
                return Ok(out);
            }
            pending = refused;
        }
        Err(B24Error::Unavailable(
            "Bitrix24 kept refusing batch commands (operating-time limits)".into(),
        ))
    }

    async fn batch_once<R: DeserializeOwned>(
        &self,
        commands: &[(String, String, Json)],
        halt: bool,
        kind: Kind,
    ) -> Result<BatchResult<R>, B24Error> {
        assert!(
            commands.len() <= 50,
            "a Bitrix24 batch holds at most 50 commands"
        );
        let mut methods: Vec<&str> = commands.iter().map(|c| c.1.as_str()).collect();
        methods.dedup();
        for m in methods {
            self.wait_for_method(m).await;
        }
        let cmd: Map<String, Json> = commands
            .iter()
            .map(|(k, m, p)| (k.clone(), Json::from(format!("{m}?{}", build_query(p)))))
            .collect();
        let body: BatchBody<R> = self
            .call_as(
                "batch",
                &json!({"halt": if halt { 1 } else { 0 }, "cmd": cmd}),
                kind,
            )
            .await?;
        for (key, method, _) in commands {
            if let Some(t) = body.result_time.get(key) {
                self.note_operating(method, t);
            }
        }
        Ok(body.into())
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn snippet(text: &str) -> String {
    text.trim()
        .chars()
        .take(120)
        .collect::<String>()
        .replace('\n', " ")
}
