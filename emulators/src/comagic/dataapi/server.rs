//! The HTTP side: the handler behind the kit's transport faults, and the emulator handle.

use super::*;

pub(super) async fn handle(
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
    kit::respond(
        &shared.faults,
        &rpc_method,
        write,
        &conn,
        shared.config.latency,
        work,
    )
    .await
}

pub(super) fn shared(config: DataApiConfig, calls: Vec<Call>) -> Arc<Shared> {
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
        rng: Rng(0xDA7A),
    };
    world.reindex();
    Arc::new(Shared {
        config,
        world: Mutex::new(world),
        faults: Faults::default(),
        rpc_faults: Faults::default(),
    })
}

pub(super) fn router(shared: Arc<Shared>) -> Router {
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
        self.shared.rpc_faults.add(rule.0);
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
    kit::serve(listener, router(shared(config, calls))).await
}

/// The ids of the sales made (for assertions on duplicates).
pub fn sale_ids(calls: &[Call]) -> HashSet<u64> {
    calls
        .iter()
        .flat_map(|c| c.sales.iter().map(|s| s.id))
        .collect()
}
