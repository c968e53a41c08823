//! `etl serve --listen ADDR`: run pipelines over HTTP (seed 003's `main.py`) and on schedules.
//!
//! Closed by default: it listens on 127.0.0.1 unless told otherwise, and starting a run needs
//! `Authorization: Bearer $ETL_SERVE_TOKEN` (without a token, `/run` is disabled).
//!
//! - `GET /run/<name>` runs `pipelines/<name>.yaml` and answers its journal as JSON (the
//!   pipeline's `journal:` template, e.g. seed 003's `{"success": true, "journal": {...}}`;
//!   without one, the run summary). Query parameters set the settings the pipeline lists in
//!   `serve_settings:` (`?update_db` sets `settings.update_db=true`, `?lookback_days=14` sets
//!   14, values are YAML); any other parameter is 400. One run per pipeline at a time: 409
//!   while it runs, here or in another process holding its lease in the state store (another
//!   replica, `etl run`). 200 when the run finished, 500 when it was aborted or the pipeline is
//!   invalid, 404 for an unknown pipeline.
//! - Pipelines with a `schedule:` run at its ticks, once across replicas (see `schedule.rs`).
//! - `GET /healthz` and `GET /metrics` (Prometheus text) need no token.
//! - `POST /bp/<code>` answers Bitrix24 business-process actions: every pipeline under the
//!   directory whose source is `bitrix24.bp_activity` (see `bp`). They are authenticated as
//!   Bitrix24 requests, not with the bearer token.

mod auth;
pub mod bp;
mod runs;
mod schedule;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value as Json, json};

use crate::runtime::metrics;
use crate::state::Store;

pub struct ServeArgs {
    pub listen: String,
    pub pipelines: PathBuf,
    pub state: PathBuf,
    pub bp: bp::BpSettings,
}

pub(crate) struct Server {
    pipelines: PathBuf,
    store: Arc<Store>,
    /// Pipelines running in this process (by file name), whoever started them.
    running: Mutex<HashSet<String>>,
    /// `ETL_SERVE_TOKEN`; `None` disables the protected routes.
    token: Option<String>,
    scheduled: Mutex<Vec<String>>,
}

impl Server {
    /// `pipelines/<name>.yaml`, for a name that cannot leave the directory.
    fn pipeline_file(&self, name: &str) -> Option<PathBuf> {
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        plain.then(|| self.pipelines.join(format!("{name}.yaml")))
    }

    /// Every `*.yaml` in the pipelines directory, by name, sorted.
    fn pipeline_files(&self) -> Vec<(String, PathBuf)> {
        let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&self.pipelines)
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().to_str()?.strip_suffix(".yaml")?.to_string();
                        Some((name, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }
}

fn answer(status: StatusCode, body: Json) -> Response {
    (status, axum::Json(body)).into_response()
}

fn error(status: StatusCode, message: impl AsRef<str>) -> Response {
    let message = crate::secrets::redact(message.as_ref());
    answer(
        status,
        json!({"success": false, "message": format!("ERROR: {message}")}),
    )
}

async fn index(State(server): State<Arc<Server>>) -> Response {
    let names: Vec<String> = server
        .pipeline_files()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let running: Vec<String> = server
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    let scheduled = server
        .scheduled
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    answer(
        StatusCode::OK,
        json!({
            "pipelines": names,
            "running": running,
            "scheduled": scheduled,
            "run": "GET /run/<pipeline>[?setting=value] with Authorization: Bearer <ETL_SERVE_TOKEN>",
        }),
    )
}

async fn healthz() -> Response {
    answer(StatusCode::OK, json!({"status": "ok"}))
}

async fn metrics_text() -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::encode(),
    )
        .into_response()
}

fn router(server: Arc<Server>, actions: Option<Arc<bp::Bp>>) -> Router {
    let protected = Router::new()
        .route("/", get(index))
        .route("/run/{name}", get(runs::run_pipeline))
        .route_layer(middleware::from_fn_with_state(
            server.clone(),
            auth::require_token,
        ));
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .merge(protected)
        .layer(middleware::from_fn(auth::limit_body))
        .layer(DefaultBodyLimit::max(auth::MAX_BODY_BYTES))
        .with_state(server);
    // Merged after the layers above: handler requests have a limit of their own (1 MiB).
    match actions {
        Some(actions) => routes.merge(bp::router(actions)),
        None => routes,
    }
}

/// A word in the log when the address is reachable from other machines.
fn warn_if_exposed(addr: &std::net::SocketAddr, token: bool) {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "listening beyond this machine; /run {}",
            if token { "requires the token" } else { "is disabled (no ETL_SERVE_TOKEN)" }
        );
    }
}

pub async fn serve(args: ServeArgs) -> u8 {
    let store = match Store::open(&args.state) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ABORTED;
        }
    };
    let actions = match bp::start(&args.pipelines, store.clone(), args.bp).await {
        Ok(actions) => actions,
        Err(e) => {
            eprintln!("error: {}", crate::secrets::redact(&e));
            return super::EXIT_INVALID;
        }
    };
    let token = auth::configured_token();
    if token.is_none() {
        eprintln!(
            "note: {} is not set, so GET /run is disabled; /healthz, /metrics and schedules work",
            auth::TOKEN_VAR
        );
    }
    let server = Arc::new(Server {
        pipelines: args.pipelines,
        store,
        running: Mutex::new(HashSet::new()),
        token,
        scheduled: Mutex::new(Vec::new()),
    });
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return super::EXIT_INVALID;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => {
            warn_if_exposed(&a, server.token.is_some());
            a.to_string()
        }
        Err(_) => args.listen,
    };
    let scheduled = schedule::start(&server).await;
    *server.scheduled.lock().unwrap_or_else(|e| e.into_inner()) = scheduled;
    // Scripts and tests read this line to learn the port of `--listen 127.0.0.1:0`.
    println!("listening on http://{addr}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    // On Ctrl-C, running pipelines stop (each ends its sessions) and are answered before exiting.
    match axum::serve(listener, router(server, actions))
        .with_graceful_shutdown(crate::runtime::executor::interrupted())
        .await
    {
        Ok(()) => super::EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            super::EXIT_ABORTED
        }
    }
}
