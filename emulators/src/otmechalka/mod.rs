//! An otmechalka.com emulator speaking the API of seed 001 over real HTTP on 127.0.0.1, for
//! end-to-end tests, benchmarks and the CLI's sandbox mode.
//!
//! # Endpoints
//! Every request needs `Authorization: Bearer <token>`. Paths end with `/`; a path the API does
//! not have answers 404 with a `detail` that says so (distinct from `"Not found."`).
//!
//! | request | success | errors |
//! |---|---|---|
//! | `GET /api/clients/<origin_id>/` | 200 client | 404 `{"detail": "Not found."}` |
//! | `POST /api/clients/` (create) | 201 client incl. `id` | 400 invalid, 409 origin_id exists, 400 active-client limit |
//! | `POST /api/clients/<origin_id>/` (update, full replacement) | 200 client | 404 absent, 400 invalid |
//! | `GET /api/tickets/<origin_id>/` | 200 ticket | 404 `{"detail": "Not found."}` |
//! | `POST /api/tickets/` (create) | 201 ticket incl. `id` | 400 invalid or unknown `client_origin_id`, 409 origin_id exists |
//!
//! # Error bodies
//! One shape for every error: `{"detail": "<human-readable summary>"}`; validation errors (400)
//! add `errors`, field name -> list of messages, all failing fields at once:
//! ```json
//! {"detail": "Invalid input: phone: Phone must be 11 digits starting with 7, e.g. \"79261234567\"; got \"89261234567\".",
//!  "errors": {"phone": ["Phone must be 11 digits starting with 7, e.g. \"79261234567\"; got \"89261234567\"."]}}
//! ```
//! 401 (`"Authentication credentials were not provided."`, `"Invalid token."`), 404, 405, 409,
//! 415 (body not `application/json`), 400 for unparseable JSON and for the active-client limit
//! carry `detail` only. Injected faults answer `{"detail": "Injected fault: HTTP 500"}` or an
//! nginx-style HTML page (see [`Fault`]).
//!
//! # Validation
//! - clients: `origin_id`, `last_name`, `first_name`, `phone`, `courses` (non-empty list),
//!   `branchoffices` (non-empty list), `gender` (`M`/`F`) required; `email`, `birthdate`,
//!   `additional_data` optional (absent, null and "" all mean "not given").
//! - tickets: `origin_id`, `client_origin_id` (an existing client), `ticket_type`,
//!   `price_initial`, `discount`, `price_final`, `selling_date`, `selling_branchoffice`, `employee`,
//!   `payment_method` (`CASH`/`ONLINE`) required.
//! - `phone` exactly 11 digits starting with 7; dates `YYYY-MM-DD`; `email` of the shape a@b.c;
//!   money a string with two decimals ("9000.00"), `price_final` = `price_initial` - `discount`
//!   (switch off with [`OtmechalkaConfig::check_prices`]); string fields also take integers.
//! - courses and branch offices by exact name or numeric ID, ticket types by exact name, from
//!   [`Catalogue`] (default: the seed's account, see `catalogue.rs`).
//! - at most [`OtmechalkaConfig::max_active_clients`] (5,000) non-archived clients: creating one
//!   more answers 400 `{"detail": "Active clients limit reached: ..."}`.
//!
//! Unknown body fields are ignored. The stored client normalises courses and branch offices to
//! catalogue IDs (strings) and adds their names, the groups it joined and `is_archived`.

mod catalogue;
mod store;
mod validate;

#[cfg(test)]
mod tests;

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::Value;

use crate::kit::{self, Conn, ServerThread, check_bearer, json_error};
pub use crate::kit::{Fault, FaultRule, Faults, Scope};
pub use catalogue::{Catalogue, Named, TicketType};
pub use store::{ApiError, Client, Ticket};
pub use validate::FieldErrors;

/// How the emulator behaves. `Default` is the seed's account with token `otm-test-token`.
#[derive(Clone, Debug)]
pub struct OtmechalkaConfig {
    /// The bearer token requests must carry.
    pub token: String,
    /// Added to every request before it is handled.
    pub latency: Duration,
    /// The limit on non-archived clients (the real account has 5,000).
    pub max_active_clients: usize,
    /// Known courses, branch offices and ticket types.
    pub catalogue: Catalogue,
    /// Require `price_final` == `price_initial` - `discount` on tickets.
    pub check_prices: bool,
}

impl Default for OtmechalkaConfig {
    fn default() -> Self {
        Self {
            token: "otm-test-token".to_string(),
            latency: Duration::ZERO,
            max_active_clients: 5_000,
            catalogue: Catalogue::default(),
            check_prices: true,
        }
    }
}

/// The kind of a request, for counters and fault scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /api/clients/<origin_id>/`
    ClientGet,
    /// `POST /api/clients/`
    ClientCreate,
    /// `POST /api/clients/<origin_id>/`
    ClientUpdate,
    /// `GET /api/tickets/<origin_id>/`
    TicketGet,
    /// `POST /api/tickets/`
    TicketCreate,
    /// Anything else (unknown path or method).
    Other,
}

/// Requests received, counted on arrival (before latency, faults and the token check).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub gets: u64,
    pub creates: u64,
    pub updates: u64,
    pub ticket_gets: u64,
    pub ticket_creates: u64,
    pub other: u64,
    pub total: u64,
    /// POST requests of any kind: what "a second run writes nothing" is checked against.
    pub writes: u64,
    /// Writes that succeeded and were stored (including those whose answer a fault replaced).
    pub applied_writes: u64,
    /// Requests refused with 401.
    pub unauthorized: u64,
    /// Requests being answered right now, and the most there ever were at once (a client's
    /// concurrency as the service saw it).
    pub in_flight: u64,
    pub max_in_flight: u64,
}

enum Route {
    Clients,
    Client(String),
    Tickets,
    Ticket(String),
    Unknown,
}

fn route(path: &str) -> Route {
    let item = |rest: &str| -> Option<String> {
        let id = rest.strip_suffix('/')?;
        if id.is_empty() || id.contains('/') {
            return None;
        }
        Some(
            percent_encoding::percent_decode_str(id)
                .decode_utf8_lossy()
                .into_owned(),
        )
    };
    if let Some(rest) = path.strip_prefix("/api/clients/") {
        if rest.is_empty() {
            return Route::Clients;
        }
        return item(rest).map_or(Route::Unknown, Route::Client);
    }
    if let Some(rest) = path.strip_prefix("/api/tickets/") {
        if rest.is_empty() {
            return Route::Tickets;
        }
        return item(rest).map_or(Route::Unknown, Route::Ticket);
    }
    Route::Unknown
}

fn endpoint(method: &Method, route: &Route) -> Endpoint {
    match (method, route) {
        (&Method::GET, Route::Client(_)) => Endpoint::ClientGet,
        (&Method::POST, Route::Clients) => Endpoint::ClientCreate,
        (&Method::POST, Route::Client(_)) => Endpoint::ClientUpdate,
        (&Method::GET, Route::Ticket(_)) => Endpoint::TicketGet,
        (&Method::POST, Route::Tickets) => Endpoint::TicketCreate,
        _ => Endpoint::Other,
    }
}

struct Shared {
    config: OtmechalkaConfig,
    store: Mutex<store::Store>,
    counters: Mutex<Counters>,
    faults: Faults<Endpoint>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ok(status: StatusCode, body: &impl Serialize) -> Response {
    (status, Json(body)).into_response()
}

fn api_error(e: &ApiError) -> Response {
    (e.status(), Json(e.body())).into_response()
}

#[allow(clippy::result_large_err)] // the error is the response itself, built once per bad request
fn parse_json(headers: &HeaderMap, body: &[u8]) -> Result<Value, Response> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Unsupported media type \"{ctype}\" in request. Send application/json."),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, format!("JSON parse error - {e}")))
}

impl Shared {
    fn count(&self, ep: Endpoint, is_write: bool) {
        let mut c = lock(&self.counters);
        c.total += 1;
        c.in_flight += 1;
        c.max_in_flight = c.max_in_flight.max(c.in_flight);
        c.writes += u64::from(is_write);
        match ep {
            Endpoint::ClientGet => c.gets += 1,
            Endpoint::ClientCreate => c.creates += 1,
            Endpoint::ClientUpdate => c.updates += 1,
            Endpoint::TicketGet => c.ticket_gets += 1,
            Endpoint::TicketCreate => c.ticket_creates += 1,
            Endpoint::Other => c.other += 1,
        }
    }

    /// Handles one request completely; synchronous so that a write is atomic.
    fn process(
        &self,
        method: &Method,
        path: &str,
        route: &Route,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        if let Route::Unknown = route {
            return json_error(
                StatusCode::NOT_FOUND,
                format!(
                    "No such endpoint: {method} {path}. The API has /api/clients/, /api/clients/<origin_id>/, \
                     /api/tickets/ and /api/tickets/<origin_id>/ (note the trailing slash)."
                ),
            );
        }
        if let Err(resp) = check_bearer(headers, &self.config.token) {
            lock(&self.counters).unauthorized += 1;
            return resp;
        }
        let write = |res: Result<Response, Response>| {
            let resp = res.unwrap_or_else(|e| e);
            if resp.status().is_success() {
                lock(&self.counters).applied_writes += 1;
            }
            resp
        };
        let cfg = &self.config;
        match (method, route) {
            (&Method::GET, Route::Client(id)) => match lock(&self.store).clients.get(id) {
                Some(c) => ok(StatusCode::OK, c),
                None => api_error(&ApiError::NotFound),
            },
            (&Method::GET, Route::Ticket(id)) => match lock(&self.store).tickets.get(id) {
                Some(t) => ok(StatusCode::OK, t),
                None => api_error(&ApiError::NotFound),
            },
            (&Method::POST, Route::Clients) => write(parse_json(headers, body).map(|v| {
                match lock(&self.store).create_client(&v, cfg) {
                    Ok(c) => ok(StatusCode::CREATED, &c),
                    Err(e) => api_error(&e),
                }
            })),
            (&Method::POST, Route::Client(id)) => write(parse_json(headers, body).map(|v| {
                match lock(&self.store).update_client(id, &v, cfg) {
                    Ok(c) => ok(StatusCode::OK, &c),
                    Err(e) => api_error(&e),
                }
            })),
            (&Method::POST, Route::Tickets) => write(parse_json(headers, body).map(|v| {
                match lock(&self.store).create_ticket(&v, cfg) {
                    Ok(t) => ok(StatusCode::CREATED, &t),
                    Err(e) => api_error(&e),
                }
            })),
            _ => json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("Method \"{method}\" not allowed."),
            ),
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let route = route(uri.path());
    let ep = endpoint(&method, &route);
    let is_write = method == Method::POST;
    shared.count(ep, is_write);
    let work = || shared.process(&method, uri.path(), &route, &headers, &body);
    let response = kit::respond(
        &shared.faults,
        &ep,
        is_write,
        &conn,
        shared.config.latency,
        work,
    )
    .await;
    let mut c = lock(&shared.counters);
    c.in_flight = c.in_flight.saturating_sub(1);
    response
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn shared(config: OtmechalkaConfig) -> Arc<Shared> {
    Arc::new(Shared {
        config,
        store: Mutex::new(store::Store::new()),
        counters: Mutex::new(Counters::default()),
        faults: Faults::default(),
    })
}

/// A running emulator on 127.0.0.1 and a random port; stops on [`shutdown`](Self::shutdown) or drop.
pub struct OtmechalkaEmulator {
    server: ServerThread,
    shared: Arc<Shared>,
}

impl OtmechalkaEmulator {
    /// Binds 127.0.0.1:0 and serves on a thread of its own (usable from sync and async code).
    pub fn start(config: OtmechalkaConfig) -> io::Result<Self> {
        let shared = shared(config);
        let server = ServerThread::spawn("otmechalka-emulator", router(Arc::clone(&shared)))?;
        Ok(Self { server, shared })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash): the value for `OTMECHALKA_URL`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The value for `OTMECHALKA_TOKEN`.
    pub fn token(&self) -> &str {
        &self.shared.config.token
    }

    pub fn config(&self) -> &OtmechalkaConfig {
        &self.shared.config
    }

    pub fn counters(&self) -> Counters {
        *lock(&self.shared.counters)
    }

    pub fn reset_counters(&self) {
        *lock(&self.shared.counters) = Counters::default();
    }

    /// All stored clients, in creation order.
    pub fn clients(&self) -> Vec<Client> {
        let mut all: Vec<Client> = lock(&self.shared.store).clients.values().cloned().collect();
        all.sort_by_key(|c| c.id);
        all
    }

    pub fn client(&self, origin_id: &str) -> Option<Client> {
        lock(&self.shared.store).clients.get(origin_id).cloned()
    }

    /// All stored tickets, in creation order.
    pub fn tickets(&self) -> Vec<Ticket> {
        let mut all: Vec<Ticket> = lock(&self.shared.store).tickets.values().cloned().collect();
        all.sort_by_key(|t| t.id);
        all
    }

    pub fn ticket(&self, origin_id: &str) -> Option<Ticket> {
        lock(&self.shared.store).tickets.get(origin_id).cloned()
    }

    /// Clients counted against the limit.
    pub fn active_clients(&self) -> usize {
        lock(&self.shared.store).active_clients()
    }

    /// The fault queue; e.g. `emu.faults().fail_next(2, Fault::Status(503))`.
    pub fn faults(&self) -> &Faults<Endpoint> {
        &self.shared.faults
    }

    /// Stores a client as `POST /api/clients/` would (same rules), without counting a request.
    pub fn seed_client(&self, body: Value) -> Result<Client, ApiError> {
        lock(&self.shared.store).create_client(&body, &self.shared.config)
    }

    /// Stores a ticket as `POST /api/tickets/` would, without counting a request.
    pub fn seed_ticket(&self, body: Value) -> Result<Ticket, ApiError> {
        lock(&self.shared.store).create_ticket(&body, &self.shared.config)
    }

    /// Archives a client (it stops counting against the limit); false if there is none.
    pub fn archive_client(&self, origin_id: &str) -> bool {
        lock(&self.shared.store).set_archived(origin_id, true)
    }

    /// Stops the server and waits for its thread.
    pub fn shutdown(mut self) {
        self.server.stop();
    }
}

/// Serves the emulator on `addr` until the future is dropped (for the CLI's sandbox mode).
pub async fn serve_forever(config: OtmechalkaConfig, addr: SocketAddr) -> io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    kit::serve(listener, router(shared(config))).await
}
