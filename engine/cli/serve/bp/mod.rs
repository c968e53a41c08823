//! Business-process actions over `etl serve` (seed 002): `POST /bp/<code>` for every action
//! pipeline under `--pipelines`, and `POST /bp/install` (the app's `ONAPPINSTALL`).
//!
//! A request is authenticated before anything else (no Bitrix24 call, nothing stored when it
//! fails), then accepted once: its row in the state store (`bp_requests`, inserted if absent)
//! is the dedupe record, the queue of its run and the outbox of its reply. It is answered 200
//! at once and runs in the background, a bounded number at a time:
//!
//! - the pipeline is loaded fresh and run for that one request (`RunOptions::input`); a run
//!   that finds a system unavailable is tried again with backoff (`run.attempt` + 1) until the
//!   retry window from receipt is over, then the failure is the answer;
//! - the answer is stored before it is sent (`bizproc.event.send`, as the request's user); a
//!   reply that cannot be sent stays in the outbox and is sent again with backoff;
//! - work is claimed with an expiry, so replicas sharing a PostgreSQL state never both run a
//!   request, and whatever a killed serve left (a run, a reply) is taken up again once its claim
//!   has expired, by this serve restarted or by another replica;
//! - once replied, the row keeps no token and no event token.

mod actions;
mod handler;
mod journal;
mod run;
mod work;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use tokio::sync::Semaphore;

use crate::connectors::bitrix24::app::AppConfig;
use crate::state::Store;

/// How serve works on business-process requests.
#[derive(Clone, Debug)]
pub struct BpSettings {
    /// Requests run at once (more wait; none is refused).
    pub concurrency: usize,
    /// From receipt, how long a run that finds a system unavailable is tried again.
    pub retry_window: Duration,
    /// How long a claim on a request lasts without being renewed (a killed serve's work is
    /// taken up after this).
    pub claim_ttl: Duration,
    /// The longest wait between two tries (runs and replies).
    pub max_backoff: Duration,
    /// `--journal FILE`: one JSON line per request.
    pub journal: Option<PathBuf>,
}

impl Default for BpSettings {
    fn default() -> Self {
        BpSettings {
            concurrency: 8,
            retry_window: Duration::from_secs(600),
            claim_ttl: Duration::from_secs(30),
            max_backoff: Duration::from_secs(60),
            journal: None,
        }
    }
}

/// The business-process side of one serve.
pub(crate) struct Bp {
    app: AppConfig,
    actions: actions::Actions,
    store: Arc<Store>,
    settings: BpSettings,
    pool: Arc<Semaphore>,
    /// Requests this serve has in hand (queued for the pool or being worked on).
    in_flight: Mutex<HashSet<String>>,
    journal: Option<journal::Journal>,
    /// Who claims: this machine and process, and a random part for a restarted process.
    owner: String,
}

impl Bp {
    /// Run `f` with the store off the async threads (PostgreSQL calls block).
    async fn store<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .unwrap_or_else(|e| Err(format!("the state store call failed: {e}")))
    }

    fn claim_ttl_ms(&self) -> i64 {
        self.settings.claim_ttl.as_millis() as i64
    }
}

/// Find the action pipelines under `pipelines`; without any, or without the app's environment
/// (a warning then), `None`: no `/bp` routes. Otherwise every action pipeline must load, and
/// the background work (queued runs, unsent replies) starts.
pub async fn start(
    pipelines: &Path,
    store: Arc<Store>,
    settings: BpSettings,
) -> Result<Option<Arc<Bp>>, String> {
    let dir = pipelines.to_path_buf();
    let actions = tokio::task::spawn_blocking(move || actions::index(&dir))
        .await
        .map_err(|e| e.to_string())??;
    if actions.is_empty() {
        return Ok(None);
    }
    // A serve for `/run` and schedules keeps working where no application is configured;
    // the operator is told why the actions are not served.
    let app = match AppConfig::from_env() {
        Ok(app) => app,
        Err(e) => {
            tracing::warn!(
                actions = actions.len(),
                "business-process actions are not served (no /bp routes): {e}"
            );
            return Ok(None);
        }
    };
    store.seal_secrets_with(&app.client_secret);
    let checked = actions.clone();
    tokio::task::spawn_blocking(move || actions::validate(&checked))
        .await
        .map_err(|e| e.to_string())??;
    let journal = match &settings.journal {
        Some(path) => Some(journal::Journal::open(path)?),
        None => None,
    };
    let holder = crate::state::LeaseHolder::this_process();
    let bp = Arc::new(Bp {
        app,
        owner: format!("{}/{:08x}", holder.describe(), rand::random::<u32>()),
        pool: Arc::new(Semaphore::new(settings.concurrency.max(1))),
        actions,
        store,
        settings,
        in_flight: Mutex::new(HashSet::new()),
        journal,
    });
    for (code, file) in &bp.actions {
        tracing::info!(code, file = %file.display(), "business-process action served at /bp/{code}");
    }
    tokio::spawn(work::sweep(bp.clone()));
    Ok(Some(bp))
}

/// `POST /bp/install` and `POST /bp/<code>`, with their own body limit (1 MiB).
pub fn router(bp: Arc<Bp>) -> Router {
    Router::new()
        .route("/bp/install", post(handler::install))
        .route("/bp/{code}", post(handler::action))
        .with_state(bp)
}
