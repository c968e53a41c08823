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
//! The portal serves from the kit's server thread ([`crate::kit::ServerThread`]), so it keeps
//! answering while a synchronous test blocks (e.g. running the `etl` binary with
//! `std::process`); such tests call [`Emulator::start_background`], the same start without
//! `async`.
//!
//! Layout: `http` (routing and the request's way through faults, limits and execution),
//! `params` (PHP bracket / form / JSON decoding), `filter` (operators; `filter::page`: select,
//! order, pages), `methods` (dispatch; `methods::crm`: record methods and writes), `batch`,
//! `limits` (leaky bucket, operating time), `faults` (the portal's faults on the kit's queue),
//! `data` + `schema` + `cell` (the portal model), `generate` (`demo` and `bulk` data), `dates`.
//!
//! The installed local application (`app`, `oauth`): `/rest/METHOD?auth=TOKEN` runs as the
//! token's user, `/oauth/token/` refreshes tokens, `bizproc.activity.*` and
//! `bizproc.event.send` work in the application context (`bizproc`), and `workflow` sends a
//! handler request as Bitrix24's queue server does (also `POST /_emulator/workflow`).
//!
//! The methods of the business-process actions live in `methods::{links, item, activity,
//! timeline, invoice, dictionaries, requisites, telephony, calendar, disk}`; `files` serves
//! Drive downloads (`/disk/download/ID/?token=…`); `generate::bp` adds their demo data.
//! "The write commits, then the portal answers 500" is [`Fault::WriteThenFail`] (e.g.
//! `faults().on_method("crm.invoice.add", Fault::WriteThenFail, 1)`).
//!
//! `crm.item.list/get/update/add` are emulated for leads, deals, contacts, companies and smart
//! invoices (31) (`items`, `methods::item`). Not emulated: `crm.activity.binding.list`, `fm` on `crm.item.update`,
//! `multipart/form-data` bodies, `.xml` output, the OAuth authorization-code flow, https
//! handlers, plain-HTTP rejection, `logic: OR` filters, outgoing event webhooks, per-client-IP
//! buckets (one bucket per portal), user-field permissions, and `crm.*.fields` beyond the
//! declared set.

pub mod app;
pub mod batch;
pub mod bizproc;
pub mod cell;
pub mod data;
pub mod dates;
pub mod faults;
mod files;
pub mod filter;
pub mod generate;
mod http;
pub mod items;
pub mod limits;
pub mod methods;
mod oauth;
pub mod params;
pub mod schema;
pub mod workflow;

#[cfg(test)]
mod app_tests;
#[cfg(test)]
mod http_tests;

pub use app::AppConfig;
pub use bizproc::{ActivityLogLine, EventSend, RegisteredActivity};
pub use data::{Portal, Row, Table};
pub use faults::{Fault, Faults};
pub use generate::ReportScale;
pub use schema::FieldDef;
pub use workflow::{Workflow, WorkflowRequest, WorkflowRun};

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

use crate::kit::ServerThread;

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
    /// The local application installed on the portal (OAuth path, bizproc).
    pub app: AppConfig,
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
            app: AppConfig::default(),
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
    tokens: Mutex<app::Tokens>,
    /// A portal-wide outage: every /rest and /oauth request answers 503 HTML.
    unavailable: std::sync::atomic::AtomicBool,
    /// The bound address (set once the server listens), for the URLs the portal hands out.
    addr: std::sync::OnceLock<SocketAddr>,
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

/// A running emulator, on the kit's server thread. Dropping it stops the server.
pub struct Emulator {
    shared: Arc<Shared>,
    server: ServerThread,
}

/// What [`Emulator::start_background`] returns; every emulator now serves from its own thread.
pub type BackgroundEmulator = Emulator;

impl Emulator {
    /// Bind (127.0.0.1:0 unless `config.addr`) and serve `portal` from the kit's server thread.
    /// `async` for the callers that await it; the server does not need their runtime.
    pub async fn start(config: EmulatorConfig, portal: Portal) -> std::io::Result<Emulator> {
        Self::start_background(config, portal)
    }

    /// Start from synchronous code (tests that block, e.g. while the `etl` binary runs).
    pub fn start_background(config: EmulatorConfig, portal: Portal) -> std::io::Result<Emulator> {
        let addr = config
            .addr
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
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
            tokens: Mutex::new(app::Tokens::default()),
            unavailable: std::sync::atomic::AtomicBool::new(false),
            addr: std::sync::OnceLock::new(),
        });
        let app = Router::new()
            .fallback(http::handle)
            .with_state(shared.clone());
        let server = ServerThread::spawn_at("b24-emulator", addr, app)?;
        let _ = shared.addr.set(server.addr());
        lock(&shared.portal).base_url = server.url();
        Ok(Emulator { shared, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.server.url()
    }
    /// `http://127.0.0.1:PORT/rest/1/CODE/`
    pub fn webhook_url(&self) -> String {
        let c = self.shared.cfg();
        format!("{}/rest/{}/{}/", self.server.url(), c.user_id, c.code)
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
            client_id: None,
            admin: cfg.app.admin_user_ids.contains(&cfg.user_id),
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
    /// Set the portal's clock `secs` seconds off the host's: negative puts the portal behind
    /// (a host whose clock runs ahead), positive ahead. Replaces any [`Self::advance_time`].
    pub fn set_clock_offset(&self, secs: f64) {
        *lock(&self.shared.skew) = secs;
    }
    /// The emulator's current unix time in seconds.
    pub fn now(&self) -> f64 {
        self.shared.now()
    }

    /// Stop serving; in-flight requests are cancelled.
    pub async fn shutdown(mut self) {
        self.server.stop();
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
