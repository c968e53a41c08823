//! Scheduled runs: every pipeline in `--pipelines` with a `schedule:` runs at its ticks. A tick
//! that comes while the pipeline is still running (a long run, or one started by `/run`) is
//! skipped and logged, never queued: the next tick picks up from the checkpoint anyway.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;

use super::Server;
use super::runs::{RunFailure, declared, execute, try_start};
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
                    tokio::spawn(tick(server.clone(), name.clone(), file, schedule));
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

async fn tick(server: Arc<Server>, name: String, file: PathBuf, schedule: Schedule) {
    while let Some(next) = schedule.next_after(Utc::now()) {
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let Some(guard) = try_start(&server, &name) else {
            tracing::warn!(
                pipeline = name,
                tick = %next,
                "scheduled run skipped: the pipeline is still running"
            );
            continue;
        };
        // The run goes on by itself, so that ticks during it are seen (and skipped) on time.
        let (server, name, file) = (server.clone(), name.clone(), file.clone());
        tokio::spawn(async move {
            let _guard = guard;
            tracing::info!(pipeline = name, tick = %next, "scheduled run started");
            match execute(&server, file, Vec::new()).await {
                Ok(report) => match &report.aborted {
                    None => tracing::info!(
                        pipeline = name,
                        counts = %report.counts,
                        "scheduled run finished"
                    ),
                    Some(fatal) => tracing::error!(
                        pipeline = name,
                        "scheduled run aborted: {}",
                        crate::secrets::redact(&fatal.to_string())
                    ),
                },
                Err(RunFailure::Invalid(e) | RunFailure::Failed(e)) => tracing::error!(
                    pipeline = name,
                    "scheduled run failed: {}",
                    crate::secrets::redact(&e)
                ),
            }
        });
    }
}
