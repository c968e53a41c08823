//! Scheduled runs: every pipeline in `--pipelines` with a `schedule:` runs at its ticks. A tick
//! that comes while the pipeline is still running (a long run, one started by `/run`, or one on
//! another replica or `etl run` holding its lease) is skipped and logged, never queued: the next
//! tick picks up from the checkpoint anyway. Replicas on one state run each tick once: the one
//! that takes the lease first records the tick in the state (kv table `serve.schedule`) before
//! running it, and the others skip a tick recorded already.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::Server;
use super::runs::{Refused, RunFailure, RunGuard, declared, execute, try_start};
use crate::runtime::schedule::Schedule;

/// Read the pipeline files once and start a timer for each scheduled one. Returns the names
/// scheduled, for the start-up log and the index.
pub async fn start(server: &Arc<Server>) -> Vec<String> {
    let mut scheduled = Vec::new();
    for (name, file) in server.pipeline_files() {
        match declared(file.clone()).await {
            Ok(d) => {
                if let Some(schedule) = d.schedule {
                    tracing::info!(
                        pipeline = name,
                        cron = schedule.expression,
                        tz = %schedule.tz,
                        "scheduled"
                    );
                    let names = Names {
                        file: name.clone(),
                        state: d.name,
                    };
                    tokio::spawn(tick(server.clone(), names, file, schedule));
                    scheduled.push(name);
                }
            }
            // A broken file is not scheduled, and says why; `/run` of it answers the same.
            Err(invalid) => tracing::warn!(
                pipeline = name,
                "not scheduled: invalid pipeline:\n{}",
                crate::secrets::redact(&invalid)
            ),
        }
    }
    scheduled
}

/// The kv table (per pipeline) where replicas record the last tick run, and its one key.
const TICKS_TABLE: &str = "serve.schedule";
const LAST_TICK: &str = "last_tick";

/// A scheduled pipeline's file name (its slot in this serve) and its `name:` (its state, lease
/// and tick record).
#[derive(Clone)]
struct Names {
    file: String,
    state: String,
}

async fn tick(server: Arc<Server>, names: Names, file: PathBuf, schedule: Schedule) {
    let name = names.file.clone();
    let mut previous = Utc::now();
    // `max`: a timer that fires a hair early must not give the same tick twice.
    while let Some(next) = schedule.next_after(Utc::now().max(previous)) {
        previous = next;
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let guard = match try_start(&server, &names.file, &names.state).await {
            Ok(guard) => guard,
            // Several replicas wake at each tick and all but one find the lease taken: routine.
            Err(Refused::Running(why)) => {
                tracing::info!(pipeline = name, tick = %next, "scheduled run skipped: {why}");
                continue;
            }
            Err(Refused::Store(e)) => {
                tracing::error!(
                    pipeline = name,
                    tick = %next,
                    "scheduled run skipped: {}",
                    crate::secrets::redact(&e)
                );
                continue;
            }
        };
        match claim(&server, &names.state, next).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(
                    pipeline = name,
                    tick = %next,
                    "scheduled run skipped: another replica ran this tick"
                );
                continue;
            }
            Err(e) => {
                tracing::error!(
                    pipeline = name,
                    tick = %next,
                    "scheduled run skipped: cannot record the tick: {}",
                    crate::secrets::redact(&e)
                );
                continue;
            }
        }
        // The run goes on by itself, so that ticks during it are seen (and skipped) on time.
        tokio::spawn(run_tick(
            server.clone(),
            name.clone(),
            file.clone(),
            next,
            guard,
        ));
    }
}

/// Under the pipeline's lease: whether `tick` is still to run, recording it as run if so.
///
/// Replicas on one state wake at the same ticks; whichever takes the lease first runs the tick
/// and records it, and the others, taking the lease after it was released, find it recorded
/// (or a later one) and skip it. So each tick runs once however many replicas there are.
async fn claim(server: &Arc<Server>, name: &str, tick: DateTime<Utc>) -> Result<bool, String> {
    let (store, name) = (server.store.clone(), name.to_string());
    tokio::task::spawn_blocking(move || {
        let last = store.kv_get(&name, TICKS_TABLE, LAST_TICK)?.and_then(|v| {
            v.as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        });
        if last.is_some_and(|last| last >= tick) {
            return Ok(false);
        }
        let when = Json::String(tick.to_rfc3339());
        store.kv_put_all(&name, TICKS_TABLE, &[(LAST_TICK.to_string(), when)])?;
        Ok(true)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()))
}

async fn run_tick(
    server: Arc<Server>,
    name: String,
    file: PathBuf,
    tick: DateTime<Utc>,
    guard: RunGuard,
) {
    let _guard = guard;
    tracing::info!(pipeline = name, tick = %tick, "scheduled run started");
    match execute(&server, file, Vec::new()).await {
        Ok(report) => match &report.aborted {
            None => tracing::info!(
                pipeline = name,
                tick = %tick,
                counts = %report.counts,
                "scheduled run finished"
            ),
            Some(fatal) => tracing::error!(
                pipeline = name,
                tick = %tick,
                "scheduled run aborted: {}",
                crate::secrets::redact(&fatal.to_string())
            ),
        },
        Err(RunFailure::Invalid(e) | RunFailure::Failed(e)) => tracing::error!(
            pipeline = name,
            tick = %tick,
            "scheduled run failed: {}",
            crate::secrets::redact(&e)
        ),
    }
}
