//! An in-process Bitrix24 cloud portal: the incoming-webhook REST API over real HTTP on
//! 127.0.0.1, for end-to-end tests, benchmarks and the CLI sandbox.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use emulators::bitrix24::{Emulator, EmulatorConfig, Fault, Portal};
//! let emu = Emulator::start(EmulatorConfig::default(), Portal::demo()).await?;
//! let url = emu.webhook_url(); // http://127.0.0.1:PORT/rest/1/CODE/
//! emu.faults().push(Fault::InternalError);
//! # let _ = url;
//! assert_eq!(emu.requests("crm.contact.list"), 0);
//! emu.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Synchronous tests that block their thread (e.g. running the `etl` binary with
//! `std::process`) should use [`Emulator::start_background`], which serves from its own runtime
//! thread; a server started on a current-thread test runtime stalls while that thread blocks.
//!
//! Layout: `params` (PHP bracket / form / JSON decoding), `filter` (operators, select, order,
//! pages), `methods` (dispatch), `batch`, `limits` (leaky bucket, operating time), `faults`,
//! `data` + `schema` + `cell` (the portal model), `generate` (demo and bulk data), `dates`.
//!
//! `crm.item.list` is emulated for leads, deals, contacts and companies (`items`). Not emulated:
//! the other `crm.item.*` methods, `crm.activity.binding.list`, `crm.timeline.comment.add`,
//! `multipart/form-data` bodies, `.xml` output, OAuth (`auth=` tokens, `expired_token`),
//! plain-HTTP rejection, `logic: OR` filters, outgoing event webhooks, per-client-IP buckets
//! (one bucket per portal), user-field permissions, and `crm.*.fields` beyond the declared set.

pub mod batch;
pub mod cell;
pub mod data;
pub mod dates;
pub mod faults;
pub mod filter;
pub mod generate;
pub mod items;
pub mod limits;
pub mod methods;
pub mod params;
pub mod schema;

#[cfg(test)]
mod http_tests;

pub use data::{Portal, Row, Table};
pub use faults::{Fault, Faults};
pub use generate::ReportScale;
pub use schema::FieldDef;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use dates::{format_ts, now_f64};
use limits::Limits;
use methods::{ApiError, Env, Reply};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How `batch` is charged against operating time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchBilling {
    /// Each sub-command is checked and charged to its own method (RD limits.md).
    PerMethod,
    /// The whole batch is checked and charged to the method `batch` (what JS SDK PR #539 saw).
    Batch,
}

/// Behaviour knobs. `Default` is a standard cloud plan with no artificial latency.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Listen address; None = 127.0.0.1 on a free port.
    pub addr: Option<SocketAddr>,
    /// Webhook owner (`/rest/{user_id}/{code}/`).
    pub user_id: u64,
    pub code: String,
    /// Scopes granted to the webhook (`crm`, `user`, `department`).
    pub scopes: Vec<String>,
    /// Leaky bucket burst (50; Enterprise 250). Infinity disables the limit.
    pub bucket_capacity: f64,
    /// Leaky bucket drain per second (2; Enterprise 5).
    pub bucket_drain_per_sec: f64,
    /// Status of `QUERY_LIMIT_EXCEEDED` (503 now, 429 in pre-2025 docs).
    pub query_limit_status: u16,
    /// Operating-time budget per method within the window, seconds (480).
    pub operating_limit_secs: f64,
    /// Rolling window of the operating budget (10 minutes, in ten slots).
    pub operating_window: Duration,
    /// Fake execution time charged per call, per returned row, and per COUNT (start >= 0).
    pub op_time_per_call: f64,
    pub op_time_per_row: f64,
    pub op_time_per_count: f64,
    pub batch_billing: BatchBilling,
    /// Artificial latency added to every HTTP request.
    pub latency: Duration,
    /// Extra latency for each list call that counts (`start >= 0`), batch sub-commands included.
    pub count_latency: Duration,
    /// Keep a log of (method, params) of every call.
    pub log_requests: bool,
    /// Stop logging after this many entries (memory bound for benchmarks).
    pub log_limit: usize,
    pub max_body_bytes: usize,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            addr: None,
            user_id: 1,
            code: "b24emulator0code".into(),
            scopes: vec!["crm".into(), "user".into(), "department".into()],
            bucket_capacity: 50.0,
            bucket_drain_per_sec: 2.0,
            query_limit_status: 503,
            operating_limit_secs: 480.0,
            operating_window: Duration::from_secs(600),
            op_time_per_call: 0.01,
            op_time_per_row: 0.001,
            op_time_per_count: 0.05,
            batch_billing: BatchBilling::PerMethod,
            latency: Duration::ZERO,
            count_latency: Duration::ZERO,
            log_requests: true,
            log_limit: 200_000,
            max_body_bytes: 32 << 20,
        }
    }
}

impl EmulatorConfig {
    /// Enterprise plan: bucket 250, drain 5/s.
    pub fn enterprise() -> Self {
        EmulatorConfig {
            bucket_capacity: 250.0,
            bucket_drain_per_sec: 5.0,
            ..Default::default()
        }
    }
    /// No rate or operating limits (benchmarks of the engine itself).
    pub fn unlimited() -> Self {
        EmulatorConfig {
            bucket_capacity: f64::INFINITY,
            operating_limit_secs: f64::INFINITY,
            ..Default::default()
        }
    }
}

/// One logged call: the method and its decoded parameters (batch sub-commands carry their key).
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedCall {
    pub method: String,
    pub params: Value,
    pub batch_key: Option<String>,
}

#[derive(Debug, Default)]
struct Stats {
    http: u64,
    by_method: HashMap<String, u64>,
    refusals: u64,
    by_status: HashMap<u16, u64>,
    log: Vec<LoggedCall>,
}

struct Shared {
    /// seconds added to the real clock ([`Emulator::advance_time`])
    skew: Mutex<f64>,
    config: RwLock<EmulatorConfig>,
    portal: Mutex<Portal>,
    limits: Mutex<Limits>,
    faults: Faults,
    stats: Mutex<Stats>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// The emulator's clock: real unix time plus the test-controlled skew.
    fn now(&self) -> f64 {
        now_f64() + *lock(&self.skew)
    }
    fn cfg(&self) -> EmulatorConfig {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    fn log(
        &self,
        cfg: &EmulatorConfig,
        method: &str,
        params: &Map<String, Value>,
        key: Option<&str>,
    ) {
        let mut s = lock(&self.stats);
        *s.by_method.entry(method.to_string()).or_default() += 1;
        if cfg.log_requests && s.log.len() < cfg.log_limit {
            s.log.push(LoggedCall {
                method: method.to_string(),
                params: Value::Object(params.clone()),
                batch_key: key.map(str::to_string),
            });
        }
    }
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Emulator {
    /// Bind (127.0.0.1:0 unless `config.addr`) and serve `portal` in the background.
    pub async fn start(config: EmulatorConfig, portal: Portal) -> std::io::Result<Emulator> {
        let addr = config
            .addr
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            skew: Mutex::new(0.0),
            limits: Mutex::new(Limits::new(
                config.bucket_capacity,
                config.bucket_drain_per_sec,
            )),
            config: RwLock::new(config),
            portal: Mutex::new(portal),
            faults: Faults::default(),
            stats: Mutex::new(Stats::default()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Emulator {
            shared,
            addr,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// Start on a dedicated runtime thread (for synchronous tests that block, e.g. while the
    /// `etl` binary runs). The returned handle derefs to [`Emulator`]; dropping it stops both.
    pub fn start_background(
        config: EmulatorConfig,
        portal: Portal,
    ) -> std::io::Result<BackgroundEmulator> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("b24-emulator")
            .enable_all()
            .build()?;
        let emu = rt.block_on(Emulator::start(config, portal))?;
        Ok(BackgroundEmulator {
            emu: Some(emu),
            rt: Some(rt),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// `http://127.0.0.1:PORT/rest/1/CODE/`
    pub fn webhook_url(&self) -> String {
        let c = self.shared.cfg();
        format!("http://{}/rest/{}/{}/", self.addr, c.user_id, c.code)
    }

    /// Calls of `method` received: HTTP requests naming it plus batch sub-commands executed
    /// (a batch itself counts as `batch`).
    pub fn requests(&self, method: &str) -> u64 {
        lock(&self.shared.stats)
            .by_method
            .get(&method.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }
    /// All HTTP requests received, whatever their fate.
    pub fn http_requests(&self) -> u64 {
        lock(&self.shared.stats).http
    }
    /// Answers `QUERY_LIMIT_EXCEEDED` (503) and `OPERATION_TIME_LIMIT` (429) sent, injected
    /// ones included; batch sub-command refusals count too.
    pub fn limit_refusals(&self) -> u64 {
        lock(&self.shared.stats).refusals
    }
    /// HTTP responses sent with this status.
    pub fn responses_with_status(&self, status: u16) -> u64 {
        lock(&self.shared.stats)
            .by_status
            .get(&status)
            .copied()
            .unwrap_or(0)
    }
    /// The whole call log, oldest first.
    pub fn log(&self) -> Vec<LoggedCall> {
        lock(&self.shared.stats).log.clone()
    }
    /// Logged calls of one method.
    pub fn calls(&self, method: &str) -> Vec<LoggedCall> {
        let m = method.to_ascii_lowercase();
        lock(&self.shared.stats)
            .log
            .iter()
            .filter(|c| c.method == m)
            .cloned()
            .collect()
    }
    /// Reset counters and the log.
    pub fn clear_log(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }
    /// Successful writes through the API by method (`crm.contact.update`, ...).
    pub fn mutations(&self, method: &str) -> u64 {
        lock(&self.shared.portal).mutations(&method.to_ascii_lowercase())
    }
    /// Fault injection handle.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }
    /// Read or change the data while the server runs.
    pub fn with_portal<R>(&self, f: impl FnOnce(&mut Portal) -> R) -> R {
        f(&mut lock(&self.shared.portal))
    }
    /// What a person does in the portal while the server runs: call a method directly, at the
    /// emulator's clock, without touching limits or request counts.
    pub fn act(&self, method: &str, params: Value) -> Result<Value, String> {
        let cfg = self.shared.cfg();
        let env = Env {
            now: self.shared.now().floor() as i64,
            user_id: cfg.user_id,
            scopes: cfg.scopes.clone(),
        };
        let params = params.as_object().cloned().unwrap_or_default();
        methods::call(&mut lock(&self.shared.portal), method, &params, &env)
            .map(|r| r.result)
            .map_err(|e| e.body().to_string())
    }
    /// Change behaviour knobs on the fly (limits are rebuilt if their sizes change).
    pub fn update_config(&self, f: impl FnOnce(&mut EmulatorConfig)) {
        let mut c = self
            .shared
            .config
            .write()
            .unwrap_or_else(|e| e.into_inner());
        f(&mut c);
        let mut l = lock(&self.shared.limits);
        l.bucket.capacity = c.bucket_capacity;
        l.bucket.drain_per_sec = c.bucket_drain_per_sec;
    }
    /// Empty the leaky bucket and forget operating time.
    pub fn reset_limits(&self) {
        let c = self.shared.cfg();
        *lock(&self.shared.limits) = Limits::new(c.bucket_capacity, c.bucket_drain_per_sec);
    }

    /// Move the emulator's clock forward (DATE_MODIFY stamps, bucket drain, operating
    /// windows), so tests can let limits recover without sleeping.
    pub fn advance_time(&self, by: Duration) {
        *lock(&self.shared.skew) += by.as_secs_f64();
    }
    /// The emulator's current unix time in seconds.
    pub fn now(&self) -> f64 {
        self.shared.now()
    }

    /// Stop serving (waits up to 2 s for in-flight requests).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// An [`Emulator`] serving from its own runtime thread (see [`Emulator::start_background`]).
pub struct BackgroundEmulator {
    emu: Option<Emulator>,
    rt: Option<tokio::runtime::Runtime>,
}

impl std::ops::Deref for BackgroundEmulator {
    type Target = Emulator;
    fn deref(&self) -> &Emulator {
        self.emu.as_ref().expect("present until drop")
    }
}

impl Drop for BackgroundEmulator {
    fn drop(&mut self) {
        drop(self.emu.take());
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Serve `portal` on `addr` until Ctrl-C (CLI sandbox). Prints the webhook URL to stderr.
pub async fn serve_forever(
    mut config: EmulatorConfig,
    portal: Portal,
    addr: SocketAddr,
) -> std::io::Result<()> {
    config.addr = Some(addr);
    let emu = Emulator::start(config, portal).await?;
    eprintln!("Bitrix24 emulator: webhook {}", emu.webhook_url());
    tokio::signal::ctrl_c().await?;
    emu.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// HTTP handling

fn json_response(status: u16, body: &Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.status, &e.body())
}

fn html_response(status: u16, title: &str) -> Response {
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

/// Headers go out, then the body stream fails: hyper aborts the connection.
fn dropped_response() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other(
            "connection dropped by fault injection",
        ))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn query_limit(cfg: &EmulatorConfig) -> ApiError {
    ApiError::new(
        cfg.query_limit_status,
        "QUERY_LIMIT_EXCEEDED",
        "Too many requests",
    )
}

fn operation_limit() -> ApiError {
    ApiError::new(
        429,
        "OPERATION_TIME_LIMIT",
        "Method is blocked due to operation time limit.",
    )
}

fn time_object(
    start: f64,
    finish: f64,
    processing: f64,
    offset: i32,
    operating: Option<(f64, f64)>,
) -> Value {
    let mut t = json!({
        "start": start,
        "finish": finish,
        "duration": finish - start,
        "processing": processing,
        "date_start": format_ts(start.floor() as i64, offset),
        "date_finish": format_ts(finish.floor() as i64, offset),
    });
    if let Some((used, reset)) = operating {
        t["operating_reset_at"] = json!(reset.floor() as i64);
        t["operating"] = json!(used);
    }
    t
}

fn fake_time(cfg: &EmulatorConfig, reply: &Reply) -> f64 {
    cfg.op_time_per_call
        + cfg.op_time_per_row * reply.rows as f64
        + if reply.counted {
            cfg.op_time_per_count
        } else {
            0.0
        }
}

/// Parse body by content type into a parameter map.
fn body_params(content_type: &str, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let ct = content_type.to_ascii_lowercase();
    if ct.starts_with("application/json") {
        return match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Ok(Map::new()),
            Err(_) => Err(ApiError::new(
                400,
                "INVALID_REQUEST",
                "Invalid JSON in request body",
            )),
        };
    }
    if ct.starts_with("multipart/") {
        return Err(ApiError::new(
            400,
            "INVALID_REQUEST",
            "multipart/form-data is not supported by the emulator",
        ));
    }
    Ok(params::parse_query(&String::from_utf8_lossy(body)))
}

async fn handle(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let received = sh.now();
    lock(&sh.stats).http += 1;
    let resp = handle_inner(&sh, req, received).await;
    let mut s = lock(&sh.stats);
    *s.by_status.entry(resp.status().as_u16()).or_default() += 1;
    let refused = resp.status().as_u16() == 429 || resp.headers().get("x-b24emu-refusal").is_some();
    if refused {
        s.refusals += 1;
    }
    drop(s);
    let mut resp = resp;
    resp.headers_mut().remove("x-b24emu-refusal");
    resp
}

fn mark_refusal(mut r: Response) -> Response {
    r.headers_mut()
        .insert("x-b24emu-refusal", HeaderValue::from_static("1"));
    r
}

async fn handle_inner(sh: &Arc<Shared>, req: Request, received: f64) -> Response {
    let cfg = sh.cfg();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
    if segs.first() != Some(&"rest") {
        let mut r = Response::new(Body::from("Not Found"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    if segs.len() < 4 {
        return error_response(&ApiError::new(
            401,
            "NO_AUTH_FOUND",
            "Wrong authorization data",
        ));
    }
    if segs[1] != cfg.user_id.to_string() || segs[2] != cfg.code {
        return error_response(&ApiError::new(
            401,
            "NO_AUTH_FOUND",
            "Wrong authorization data",
        ));
    }
    let raw_method = params::url_decode(segs[3])
        .trim_end_matches('/')
        .to_ascii_lowercase();
    if raw_method.ends_with(".xml") {
        return error_response(&ApiError::new(
            400,
            "INVALID_REQUEST",
            "XML output is not supported by the emulator",
        ));
    }
    let method = raw_method
        .strip_suffix(".json")
        .unwrap_or(&raw_method)
        .to_string();

    let ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = match axum::body::to_bytes(body, cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&ApiError::new(
                400,
                "INVALID_REQUEST",
                "Request body too large or unreadable",
            ));
        }
    };
    let mut params = params::parse_query(&query);
    match body_params(&ct, &bytes) {
        Ok(b) => params::merge(&mut params, b),
        Err(e) => return error_response(&e),
    }

    let Some(scope) = methods::scope_of(&method) else {
        return error_response(&ApiError::method_not_found());
    };
    if !scope.is_empty() && !cfg.scopes.iter().any(|s| s.eq_ignore_ascii_case(scope)) {
        return error_response(&ApiError::insufficient_scope());
    }
    sh.log(&cfg, &method, &params, None);

    let commands = if method == "batch" {
        match batch::parse_commands(&params) {
            Ok(c) => Some(c),
            Err(e) => return error_response(&e),
        }
    } else {
        None
    };

    // fault injection (before anything runs)
    let mut names: Vec<&str> = vec![method.as_str()];
    if let Some(cs) = &commands {
        names.extend(cs.iter().map(|c| c.method.as_str()));
    }
    let fault = sh.faults.take(&names);
    match &fault {
        Some(Fault::InternalError) => {
            return error_response(&ApiError::new(
                500,
                "INTERNAL_SERVER_ERROR",
                "Internal server error",
            ));
        }
        Some(Fault::HtmlBadGateway) => return html_response(502, "502 Bad Gateway"),
        Some(Fault::HtmlServiceUnavailable) => {
            return html_response(503, "503 Service Temporarily Unavailable");
        }
        Some(Fault::QueryLimit) => return mark_refusal(error_response(&query_limit(&cfg))),
        Some(Fault::OverloadLimit) => {
            return error_response(&ApiError::new(
                503,
                "OVERLOAD_LIMIT",
                "REST API is blocked due to overload.",
            ));
        }
        Some(Fault::OperationTimeLimit) => return error_response(&operation_limit()),
        Some(Fault::DropConnection) => return dropped_response(),
        Some(Fault::Moved(base)) => {
            let mut loc = format!("{}{}", base, segs[3]);
            if !query.is_empty() {
                loc.push('?');
                loc.push_str(&query);
            }
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::FOUND;
            if let Ok(v) = HeaderValue::from_str(&loc) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        Some(Fault::Status {
            status,
            content_type,
            body,
        }) => {
            let mut r = Response::new(Body::from(body.clone()));
            *r.status_mut() =
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if let Ok(v) = HeaderValue::from_str(content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            return r;
        }
        Some(Fault::Hang(d)) => tokio::time::sleep(*d).await,
        _ => {}
    }

    if !cfg.latency.is_zero() {
        tokio::time::sleep(cfg.latency).await;
    }

    // leaky bucket: refused before execution
    let now = sh.now();
    let window = cfg.operating_window.as_secs_f64();
    {
        let mut l = lock(&sh.limits);
        if !l.bucket.try_acquire(now) {
            return mark_refusal(error_response(&query_limit(&cfg)));
        }
        let billed = if method == "batch" && cfg.batch_billing == BatchBilling::PerMethod {
            None
        } else {
            Some(method.as_str())
        };
        if let Some(m) = billed
            && l.meter(m).used(now, window) >= cfg.operating_limit_secs
        {
            return error_response(&operation_limit());
        }
    }

    let env = Env {
        now: now.floor() as i64,
        user_id: cfg.user_id,
        scopes: cfg.scopes.clone(),
    };
    let exec_start = Instant::now();
    let (outcome, counted_calls) = {
        let mut portal = lock(&sh.portal);
        let offset = portal.offset_secs;
        match &commands {
            None => {
                let r = methods::call(&mut portal, &method, &params, &env);
                let counted = r.as_ref().map_or(0, |r| r.counted as u32);
                (r.map(|r| (r, offset)), counted)
            }
            Some(cmds) => {
                let halt = batch::halt_flag(&params);
                let mut counted = 0u32;
                let mut batch_time = 0.0f64;
                let result = batch::run(cmds, halt, |cmd, sub_params| {
                    let t0 = sh.now();
                    sh.log(&cfg, &cmd.method, &sub_params, Some(&cmd.key));
                    let Some(scope) = methods::scope_of(&cmd.method) else {
                        return (Err(ApiError::method_not_found()), Value::Null);
                    };
                    if !scope.is_empty()
                        && !cfg.scopes.iter().any(|s| s.eq_ignore_ascii_case(scope))
                    {
                        return (Err(ApiError::insufficient_scope()), Value::Null);
                    }
                    if cfg.batch_billing == BatchBilling::PerMethod {
                        let used = lock(&sh.limits).meter(&cmd.method).used(t0, window);
                        if used >= cfg.operating_limit_secs {
                            lock(&sh.stats).refusals += 1;
                            return (Err(operation_limit()), Value::Null);
                        }
                    }
                    let r = methods::call(&mut portal, &cmd.method, &sub_params, &env);
                    let t1 = sh.now();
                    match r {
                        Ok(reply) => {
                            counted += reply.counted as u32;
                            let secs = fake_time(&cfg, &reply);
                            batch_time += secs;
                            let mut l = lock(&sh.limits);
                            let op = if cfg.batch_billing == BatchBilling::PerMethod {
                                let m = l.meter(&cmd.method);
                                m.charge(t1, window, secs);
                                Some((m.used(t1, window), m.reset_at(t1, window)))
                            } else {
                                None
                            };
                            let time = time_object(t0, t1, t1 - t0, offset, op);
                            (Ok(reply), time)
                        }
                        Err(e) => (Err(e), Value::Null),
                    }
                });
                let reply = Reply {
                    result,
                    total: None,
                    next: None,
                    rows: 0,
                    counted: false,
                };
                if cfg.batch_billing == BatchBilling::Batch {
                    lock(&sh.limits).meter("batch").charge(
                        sh.now(),
                        window,
                        cfg.op_time_per_call + batch_time,
                    );
                }
                (Ok((reply, offset)), counted)
            }
        }
    };
    let processing = exec_start.elapsed().as_secs_f64();
    if counted_calls > 0 && !cfg.count_latency.is_zero() {
        tokio::time::sleep(cfg.count_latency * counted_calls).await;
    }

    let (reply, offset) = match outcome {
        Ok(x) => x,
        Err(e) => return error_response(&e),
    };
    let finish = sh.now();
    let billed = if method == "batch" && cfg.batch_billing == BatchBilling::PerMethod {
        None
    } else {
        Some(method.as_str())
    };
    let operating = billed.map(|m| {
        let mut l = lock(&sh.limits);
        let meter = l.meter(m);
        if m != "batch" {
            meter.charge(finish, window, fake_time(&cfg, &reply));
        }
        (meter.used(finish, window), meter.reset_at(finish, window))
    });
    let mut body = Map::new();
    body.insert("result".into(), reply.result);
    if let Some(n) = reply.next {
        body.insert("next".into(), json!(n));
    }
    if let Some(t) = reply.total {
        body.insert("total".into(), json!(t));
    }
    body.insert(
        "time".into(),
        time_object(received, finish, processing, offset, operating),
    );
    let body = Value::Object(body);

    match fault {
        Some(Fault::Slow(d)) => {
            tokio::time::sleep(d).await;
            json_response(200, &body)
        }
        Some(Fault::WriteThenFail) => error_response(&ApiError::new(
            500,
            "INTERNAL_SERVER_ERROR",
            "Internal server error",
        )),
        Some(Fault::WriteThenDrop) => dropped_response(),
        _ => json_response(200, &body),
    }
}
