//! Starting runs, whoever asks: a `/run/<pipeline>` request or the schedule. Both go through
//! [`try_start`], so one pipeline never runs twice at once, in one serve or across the
//! processes that share its state (serve replicas on one PostgreSQL, `etl run`).

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{Server, answer, error};
use crate::config::{self, LoadOptions};
use crate::connectors;
use crate::runtime::executor::{self, RunOptions, RunReport};
use crate::state::Lease;
use crate::state::lease::already_running;

/// Held while a pipeline runs in this serve: its slot here and its lease in the state store.
/// Dropping it releases both, the lease first, so that the pipeline is free everywhere by the
/// time this serve would admit it again.
pub struct RunGuard {
    server: Arc<Server>,
    pipeline: String,
    lease: Option<Lease>,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.lease.take();
        self.server
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.pipeline);
    }
}

/// Why a run was not admitted.
pub enum Refused {
    /// The pipeline is running, in this serve or in a process holding its lease (the message
    /// says which, and who).
    Running(String),
    /// The state store could not be asked for the lease.
    Store(String),
}

/// Admit a run of `pipeline`, or say why not.
///
/// The one gate for every run this serve starts (`/run` and schedule ticks). The in-process
/// slot keeps two runs in this serve apart without a round trip; the state store's lease keeps
/// apart every process on the same state: other serve replicas, `etl run` from cron. The lease
/// belongs to this process, so a serve killed mid-run loses it with its PostgreSQL session (or
/// its file lock on SQLite).
///
/// `pipeline` is the file's name (the slot, as `/run/<name>` and the index say it); the lease is
/// on `state_name`, the pipeline's `name:`, as `etl run` takes it and the state keys it.
pub async fn try_start(
    server: &Arc<Server>,
    pipeline: &str,
    state_name: &str,
) -> Result<RunGuard, Refused> {
    let admitted = server
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pipeline.to_string());
    if !admitted {
        return Err(Refused::Running(format!(
            "pipeline `{pipeline}` is already running; try again when it has finished"
        )));
    }
    // From here on, a refusal drops the guard and so frees the slot.
    let mut guard = RunGuard {
        server: server.clone(),
        pipeline: pipeline.to_string(),
        lease: None,
    };
    let (store, name) = (server.store.clone(), state_name.to_string());
    // The store blocks (a PostgreSQL lease opens a connection of its own): off the async threads.
    let lease = tokio::task::spawn_blocking(move || match store.try_lease(&name) {
        Ok(Some(lease)) => Ok(lease),
        Ok(None) => {
            let holder = store.lease_holder(&name).ok().flatten();
            Err(Refused::Running(already_running(&name, holder)))
        }
        Err(e) => Err(Refused::Store(format!(
            "cannot take the pipeline's lease: {e}"
        ))),
    })
    .await
    .unwrap_or_else(|e| {
        Err(Refused::Store(format!(
            "cannot take the pipeline's lease: {e}"
        )))
    })?;
    guard.lease = Some(lease);
    Ok(guard)
}

/// How a run that was admitted ended, short of a report.
pub enum RunFailure {
    /// The pipeline file does not load.
    Invalid(String),
    /// The run could not be carried out at all (no runtime, a panic, the state store).
    Failed(String),
}

/// Load `file` with `sets` and run it to its end on a thread of its own: pipelines are not
/// required to be `Send` futures, and a long run must not hold up requests or other runs.
pub async fn execute(
    server: &Arc<Server>,
    file: PathBuf,
    sets: Vec<(String, String)>,
) -> Result<RunReport, RunFailure> {
    let store = server.store.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RunFailure::Failed(e.to_string()))?;
        runtime.block_on(async move {
            let options = LoadOptions {
                sets,
                ..Default::default()
            };
            let pipeline = config::load(&file, connectors::registry(), &options)
                .map_err(|errors| RunFailure::Invalid(errors.render()))?;
            let opts = RunOptions {
                dry_run: false,
                journal: None,
                progress: false,
                ..Default::default()
            };
            executor::run(pipeline, Some(store), &opts)
                .await
                .map_err(RunFailure::Failed)
        })
    })
    .await;
    outcome.unwrap_or_else(|e| Err(RunFailure::Failed(format!("the run failed: {e}"))))
}

/// What a pipeline file offers `etl serve`, read without running it.
pub struct Declared {
    /// The pipeline's `name:`, which keys its state and lease.
    pub name: String,
    pub serve_settings: Vec<String>,
    pub schedule: Option<crate::runtime::schedule::Schedule>,
}

/// Load `file` as it is (no query settings) for its `serve_settings:` and `schedule:`.
pub async fn declared(file: PathBuf) -> Result<Declared, String> {
    tokio::task::spawn_blocking(move || {
        config::load(&file, connectors::registry(), &LoadOptions::default())
            .map(|p| Declared {
                name: p.name,
                serve_settings: p.serve_settings,
                schedule: p.schedule,
            })
            .map_err(|errors| errors.render())
    })
    .await
    .unwrap_or_else(|e| Err(format!("cannot load the pipeline: {e}")))
}

/// `?update_db&lookback_days=14` -> `settings.update_db=true`, `settings.lookback_days=14`;
/// only names in `allowed` (the pipeline's `serve_settings:`), anything else is an error.
pub fn settings_from_query(
    query: Option<&str>,
    allowed: &[String],
) -> Result<Vec<(String, String)>, String> {
    let mut sets = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key.is_empty() {
            continue;
        }
        if !allowed.iter().any(|a| *a == key) {
            let listed = if allowed.is_empty() {
                "it lists none".to_string()
            } else {
                format!("it lists: {}", allowed.join(", "))
            };
            return Err(format!(
                "`{key}` cannot be set from the query: only the settings in the pipeline's `serve_settings:` can ({listed})"
            ));
        }
        let value = if value.is_empty() {
            "true".to_string()
        } else {
            value.into_owned()
        };
        sets.push((format!("settings.{key}"), value));
    }
    Ok(sets)
}

/// `GET /run/<name>[?setting=value]`: run `pipelines/<name>.yaml`, answer its journal.
pub async fn run_pipeline(
    State(server): State<Arc<Server>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(file) = server.pipeline_file(&name) else {
        return error(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`"));
    };
    if !file.is_file() {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no pipeline named `{name}` ({} does not exist)",
                file.display()
            ),
        );
    }
    let declared = match declared(file.clone()).await {
        Ok(d) => d,
        Err(invalid) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("invalid pipeline:\n{invalid}"),
            );
        }
    };
    let sets = match settings_from_query(query.as_deref(), &declared.serve_settings) {
        Ok(s) => s,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let _guard = match try_start(&server, &name, &declared.name).await {
        Ok(guard) => guard,
        Err(Refused::Running(message)) => return error(StatusCode::CONFLICT, message),
        Err(Refused::Store(message)) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, message);
        }
    };
    tracing::info!(pipeline = name, ?sets, "run requested");
    match execute(&server, file, sets).await {
        Ok(report) => {
            let status = if report.aborted.is_some() {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            answer(status, report.journal.unwrap_or(report.summary))
        }
        Err(RunFailure::Invalid(invalid)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("invalid pipeline:\n{invalid}"),
        ),
        Err(RunFailure::Failed(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_declared_settings_come_from_the_query() {
        let allowed = vec!["update_db".to_string(), "lookback_days".to_string()];
        assert_eq!(
            settings_from_query(Some("update_db"), &allowed).unwrap(),
            vec![("settings.update_db".to_string(), "true".to_string())]
        );
        assert_eq!(
            settings_from_query(Some("lookback_days=14"), &allowed).unwrap(),
            vec![("settings.lookback_days".to_string(), "14".to_string())]
        );
        assert!(settings_from_query(None, &allowed).unwrap().is_empty());
        let refused = settings_from_query(Some("update_db&pick=earliest"), &allowed).unwrap_err();
        assert!(
            refused.starts_with("`pick` cannot be set from the query"),
            "{refused}"
        );
        assert!(settings_from_query(Some("bad.key=1"), &allowed).is_err());
        assert!(settings_from_query(Some("update_db"), &[]).is_err());
    }
}
