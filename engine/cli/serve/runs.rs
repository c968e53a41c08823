//! Starting runs, whoever asks: a `/run/<pipeline>` request or the schedule. Both go through
//! [`try_start`], so one pipeline never runs twice at once inside one serve.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{Server, answer, error};
use crate::config::{self, LoadOptions};
use crate::connectors;
use crate::runtime::executor::{self, RunOptions, RunReport};

/// Held while a pipeline runs in this serve; dropping it lets the pipeline start again.
pub struct RunGuard {
    server: Arc<Server>,
    pipeline: String,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.server
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.pipeline);
    }
}

/// Admit a run of `pipeline`, or `None` while one is going on.
///
/// The one gate for every run this serve starts. Today it is exclusive within the process;
/// the state store's lease (several replicas on one PostgreSQL) belongs here too: take it after
/// the in-process slot, keep it in the guard, release it on drop.
pub fn try_start(server: &Arc<Server>, pipeline: &str) -> Option<RunGuard> {
    let admitted = server
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pipeline.to_string());
    admitted.then(|| RunGuard {
        server: server.clone(),
        pipeline: pipeline.to_string(),
    })
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
    pub serve_settings: Vec<String>,
    pub schedule: Option<crate::runtime::schedule::Schedule>,
}

/// Load `file` as it is (no query settings) for its `serve_settings:` and `schedule:`.
pub async fn declared(file: PathBuf) -> Result<Declared, String> {
    tokio::task::spawn_blocking(move || {
        config::load(&file, connectors::registry(), &LoadOptions::default())
            .map(|p| Declared {
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
    let Some(_guard) = try_start(&server, &name) else {
        return error(
            StatusCode::CONFLICT,
            format!("pipeline `{name}` is already running; try again when it has finished"),
        );
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
