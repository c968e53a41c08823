//! An emulator of the client CRM's orders API (seed 003: the phone+sum store that CoMagic sale
//! tags are made from), over real HTTP on 127.0.0.1.
//!
//! # Endpoint
//! `GET /api/orders?date_from=YYYY-MM-DD&page=N` with `Authorization: Bearer <token>`:
//! ```json
//! {"orders": [{"id": 1, "number": "ORD-000001", "created_at": "2025-01-30T10:15:00+03:00",
//!              "phone": "8 (916) 123-45-67", "service": "Общий анализ крови",
//!              "payments": [{"sum": 1500, "paid_at": "2025-01-30T10:20:00+03:00"},
//!                           {"sum": "300.50", "paid_at": "2025-01-31T09:00:00+03:00"}]}],
//!  "next_page": 2}
//! ```
//! - Orders are sorted by `created_at`, then `id`; `page` starts at 1 (default 1), `next_page` is
//!   null on the last page; a page past the end is empty. Page size: [`OrdersConfig::page_size`].
//! - `date_from` (optional) keeps orders with `created_at` >= that day's midnight in Moscow
//!   (+03:00, the CRM's time zone).
//! - Phones come in whatever format the CRM's users typed ("8 (916) 123-45-67", "+7 916 1234567",
//!   "9161234567", ...); `sum` is a JSON number or a numeric string.
//! - Errors: `{"detail": "..."}`: 401 without or with a wrong token, 400 for a bad `date_from` or
//!   `page`, 404 for other paths, 405 for other methods; injected faults as in
//!   [`crate::kit`].
//!
//! Data: [`orders_demo`] (a dozen hand-written orders covering the awkward cases) and
//! [`orders_bulk`] (any number, deterministic per seed), or any `Vec<Order>`; change it at runtime
//! with [`OrdersEmulator::push_order`], [`OrdersEmulator::add_payment`],
//! [`OrdersEmulator::update_order`].

mod data;

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
    extract::{ConnectInfo, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime};
use serde::{Serialize, Serializer};
use serde_json::json;

use crate::kit::{self, Conn, ServerThread, check_bearer, json_error};
pub use crate::kit::{Fault, FaultRule, Faults, Scope};
pub use data::{moscow, orders_bulk, orders_bulk_at, orders_demo, orders_demo_at, phone_formats};

#[derive(Clone, Debug)]
pub struct OrdersConfig {
    /// The bearer token requests must carry.
    pub token: String,
    /// Orders per page.
    pub page_size: usize,
    /// Added to every request before it is handled.
    pub latency: Duration,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            token: "orders-test-token".to_string(),
            page_size: 100,
            latency: Duration::ZERO,
        }
    }
}

fn iso<S: Serializer>(t: &DateTime<FixedOffset>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&t.format("%Y-%m-%dT%H:%M:%S%:z"))
}

/// A payment sum as the CRM sends it: a JSON number or a numeric string.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Sum {
    Number(serde_json::Number),
    Text(String),
}

impl Sum {
    pub fn int(v: i64) -> Self {
        Sum::Number(v.into())
    }
    /// Panics on NaN or infinity.
    pub fn float(v: f64) -> Self {
        Sum::Number(serde_json::Number::from_f64(v).expect("finite sum"))
    }
    pub fn text(v: impl Into<String>) -> Self {
        Sum::Text(v.into())
    }
    /// The amount in roubles (None for a string that is not a number).
    pub fn amount(&self) -> Option<f64> {
        match self {
            Sum::Number(n) => n.as_f64(),
            Sum::Text(s) => s.trim().parse().ok(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Payment {
    pub sum: Sum,
    #[serde(serialize_with = "iso")]
    pub paid_at: DateTime<FixedOffset>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Order {
    pub id: u64,
    pub number: String,
    #[serde(serialize_with = "iso")]
    pub created_at: DateTime<FixedOffset>,
    pub phone: String,
    pub service: String,
    pub payments: Vec<Payment>,
}

impl Order {
    /// Sum of the payments that parse as numbers.
    pub fn total(&self) -> f64 {
        self.payments.iter().filter_map(|p| p.sum.amount()).sum()
    }
}

/// The kind of a request, for fault scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrdersEndpoint {
    /// `GET /api/orders`
    List,
    /// Anything else.
    Other,
}

/// The query of one `GET /api/orders` request, as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OrdersQuery {
    pub date_from: Option<String>,
    pub page: Option<String>,
}

struct Shared {
    config: OrdersConfig,
    /// Sorted by (created_at, id).
    orders: Mutex<Vec<Order>>,
    requests: Mutex<(u64, Vec<OrdersQuery>)>,
    faults: Faults<OrdersEndpoint>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sort(orders: &mut [Order]) {
    orders.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
}

impl Shared {
    fn list(&self, query: &OrdersQuery) -> Response {
        let bad = |msg: String| json_error(StatusCode::BAD_REQUEST, msg);
        let from = match query.date_from.as_deref() {
            None | Some("") => None,
            Some(s) => match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                Ok(d) if s.len() == 10 => Some(d),
                _ => return bad(format!("date_from must be a date YYYY-MM-DD; got \"{s}\".")),
            },
        };
        let page = match query.page.as_deref() {
            None | Some("") => 1,
            Some(s) => match s.parse::<usize>() {
                Ok(p) if p >= 1 => p,
                _ => return bad(format!("page must be a whole number from 1; got \"{s}\".")),
            },
        };
        let orders = lock(&self.orders);
        let start = match from {
            None => 0,
            Some(d) => {
                let midnight = d
                    .and_time(NaiveTime::MIN)
                    .and_local_timezone(moscow())
                    .unwrap();
                orders.partition_point(|o| o.created_at < midnight)
            }
        };
        let matching = &orders[start..];
        let size = self.config.page_size.max(1);
        let first = (page - 1).saturating_mul(size).min(matching.len());
        let last = first.saturating_add(size).min(matching.len());
        let next_page = (last < matching.len()).then_some(page + 1);
        let body = json!({ "orders": &matching[first..last], "next_page": next_page });
        (StatusCode::OK, Json(body)).into_response()
    }

    fn process(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
        let path = uri.path();
        if path != "/api/orders" && path != "/api/orders/" {
            return json_error(
                StatusCode::NOT_FOUND,
                format!("No such endpoint: {method} {path}. The API has GET /api/orders."),
            );
        }
        if let Err(resp) = check_bearer(headers, &self.config.token) {
            return resp;
        }
        if method != Method::GET {
            return json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("Method \"{method}\" not allowed."),
            );
        }
        let mut query = OrdersQuery::default();
        for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
            match &*k {
                "date_from" => query.date_from = Some(v.into_owned()),
                "page" => query.page = Some(v.into_owned()),
                _ => {}
            }
        }
        lock(&self.requests).1.push(query.clone());
        self.list(&query)
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    lock(&shared.requests).0 += 1;
    let path = uri.path();
    let ep = if method == Method::GET && (path == "/api/orders" || path == "/api/orders/") {
        OrdersEndpoint::List
    } else {
        OrdersEndpoint::Other
    };
    let is_write = method == Method::POST;
    let work = || shared.process(&method, &uri, &headers);
    kit::respond(
        &shared.faults,
        &ep,
        is_write,
        &conn,
        shared.config.latency,
        work,
    )
    .await
}

fn shared(config: OrdersConfig, mut orders: Vec<Order>) -> Arc<Shared> {
    sort(&mut orders);
    Arc::new(Shared {
        config,
        orders: Mutex::new(orders),
        requests: Mutex::new((0, Vec::new())),
        faults: Faults::default(),
    })
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// A running orders API on 127.0.0.1 and a random port; stops on [`shutdown`](Self::shutdown) or drop.
pub struct OrdersEmulator {
    server: ServerThread,
    shared: Arc<Shared>,
}

impl OrdersEmulator {
    /// Binds 127.0.0.1:0 and serves `orders` on a thread of its own.
    pub fn start(config: OrdersConfig, orders: Vec<Order>) -> io::Result<Self> {
        let shared = shared(config, orders);
        let server = ServerThread::spawn("orders-emulator", router(Arc::clone(&shared)))?;
        Ok(Self { server, shared })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash): the value for `ORDERS_API_URL`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The value for `ORDERS_API_TOKEN`.
    pub fn token(&self) -> &str {
        &self.shared.config.token
    }

    /// Requests received, of any kind (counted on arrival).
    pub fn requests(&self) -> u64 {
        lock(&self.shared.requests).0
    }

    /// The queries of the authorised `GET /api/orders` requests, in order.
    pub fn queries(&self) -> Vec<OrdersQuery> {
        lock(&self.shared.requests).1.clone()
    }

    /// All orders, sorted by created_at then id.
    pub fn orders(&self) -> Vec<Order> {
        lock(&self.shared.orders).clone()
    }

    /// Adds an order, or replaces the one with the same id.
    pub fn push_order(&self, order: Order) {
        let mut orders = lock(&self.shared.orders);
        orders.retain(|o| o.id != order.id);
        let at = orders.partition_point(|o| (o.created_at, o.id) < (order.created_at, order.id));
        orders.insert(at, order);
    }

    /// Appends a payment to an order; false if there is no such order.
    pub fn add_payment(&self, order_id: u64, payment: Payment) -> bool {
        self.update_order(order_id, |o| o.payments.push(payment))
    }

    /// Changes an order in place (e.g. a payment's sum); false if there is no such order.
    pub fn update_order(&self, order_id: u64, change: impl FnOnce(&mut Order)) -> bool {
        let mut orders = lock(&self.shared.orders);
        let Some(order) = orders.iter_mut().find(|o| o.id == order_id) else {
            return false;
        };
        change(order);
        sort(&mut orders);
        true
    }

    /// The fault queue; e.g. `emu.faults().fail_next(1, Fault::Status(500))`.
    pub fn faults(&self) -> &Faults<OrdersEndpoint> {
        &self.shared.faults
    }

    /// Stops the server and waits for its thread.
    pub fn shutdown(mut self) {
        self.server.stop();
    }
}

/// Serves `orders` on `addr` until the future is dropped (for the CLI's sandbox mode).
pub async fn serve_forever(
    config: OrdersConfig,
    orders: Vec<Order>,
    addr: SocketAddr,
) -> io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    kit::serve(listener, router(shared(config, orders))).await
}
