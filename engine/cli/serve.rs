//! `etl serve --listen ADDR`: run pipelines over HTTP (seed 003's `main.py`).
//!
//! `GET /run/<name>` runs `pipelines/<name>.yaml` and answers its journal as JSON (the pipeline's
//! `journal:` template, e.g. seed 003's `{"success": true, "journal": {...}}`; without one, the run
//! summary). Query parameters override settings: `?update_db` (a flag) sets
//! `settings.update_db=true`, `?lookback_days=14` sets `settings.lookback_days=14` (YAML values).
//! One run per pipeline at a time: a request for a pipeline that is running gets 409 with a JSON
//! message. Status: 200 when the run finished, 500 when it was aborted or the pipeline is invalid,
//! 404 for an unknown pipeline.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value as Json, json};

use crate::config::{self, LoadOptions};
use crate::connectors;
use crate::runtime::executor::{self, RunOptions};
use crate::state::Store;

pub struct ServeArgs {
    pub listen: String,
    pub pipelines: PathBuf,
    pub state: PathBuf,
}

struct Server {
    pipelines: PathBuf,
    store: Arc<Store>,
    running: Mutex<HashSet<String>>,
}

/// Removes the pipeline from the running set however the request ends.
struct Busy<'a>(&'a Server, String);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
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

/// `?update_db&lookback_days=14` -> `settings.update_db=true`, `settings.lookback_days=14`.
fn settings_from_query(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(|(k, v)| {
            (
                format!("settings.{k}"),
                if v.is_empty() {
                    "true".to_string()
                } else {
                    v.into_owned()
                },
            )
        })
        .collect()
}

async fn run_pipeline(
    State(server): State<Arc<Server>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return error(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`"));
    }
    let file = server.pipelines.join(format!("{name}.yaml"));
    if !file.is_file() {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no pipeline named `{name}` ({} does not exist)",
                file.display()
            ),
        );
    }
    if !server
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.clone())
    {
        return error(
            StatusCode::CONFLICT,
            format!("pipeline `{name}` is already running; try again when it has finished"),
        );
    }
    let _busy = Busy(&server, name.clone());
    let sets = settings_from_query(query.as_deref());
    tracing::info!(pipeline = name, ?sets, "run requested");
    let store = server.store.clone();
    // Each run on a thread of its own: pipelines are not required to be `Send` futures, and a
    // long run must not hold up other requests.
    let outcome = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let pipeline = match config::load(
                &file,
                connectors::registry(),
                &LoadOptions {
                    sets,
                    ..Default::default()
                },
            ) {
                Ok(p) => p,
                Err(errors) => return Ok(Err(format!("invalid pipeline:\n{}", errors.render()))),
            };
            let opts = RunOptions {
                dry_run: false,
                journal: None,
                progress: false,
            };
            executor::run(pipeline, Some(store), &opts).await.map(Ok)
        })
    })
    .await;
    match outcome {
        Ok(Ok(Ok(report))) => {
            let status = if report.aborted.is_some() {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            answer(status, report.journal.unwrap_or(report.summary))
        }
        Ok(Ok(Err(invalid))) => error(StatusCode::INTERNAL_SERVER_ERROR, invalid),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the run failed: {e}"),
        ),
    }
}

async fn index(State(server): State<Arc<Server>>) -> Response {
    let mut names: Vec<String> = std::fs::read_dir(&server.pipelines)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".yaml"))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let running: Vec<String> = server
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    answer(
        StatusCode::OK,
        json!({"pipelines": names, "running": running, "run": "GET /run/<pipeline>[?setting=value]"}),
    )
}

pub async fn serve(args: ServeArgs) -> u8 {
    let store = match Store::open(&args.state) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ABORTED;
        }
    };
    let server = Arc::new(Server {
        pipelines: args.pipelines,
        store,
        running: Mutex::new(HashSet::new()),
    });
    let app = Router::new()
        .route("/", get(index))
        .route("/run/{name}", get(run_pipeline))
        .with_state(server);
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return super::EXIT_INVALID;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(args.listen);
    // Scripts and tests read this line to learn the port of `--listen 127.0.0.1:0`.
    println!("listening on http://{addr}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    // On Ctrl-C, running pipelines stop (each ends its sessions) and are answered before exiting.
    match axum::serve(listener, app)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_become_settings() {
        assert_eq!(
            settings_from_query(Some("update_db")),
            vec![("settings.update_db".to_string(), "true".to_string())]
        );
        assert_eq!(
            settings_from_query(Some("lookback_days=14&bad.key=1")),
            vec![("settings.lookback_days".to_string(), "14".to_string())]
        );
        assert!(settings_from_query(None).is_empty());
    }
}
