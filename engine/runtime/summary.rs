//! How a finished run is told: the log line and metrics of its summary, the closing headline,
//! and the pipeline's own `journal:` rendering. Apart from the executor, which runs the batches.

use super::executor::RunOptions;
use super::journal::Counts;
use super::{Fatal, RunCtx};
use crate::secrets::redact;

/// The run's result and record counts for `/metrics` (a dry run did nothing, so it counts none).
pub(super) fn record_metrics(
    pipeline: &str,
    counts: &Counts,
    aborted: bool,
    elapsed: std::time::Duration,
) {
    let result = if aborted { "aborted" } else { "finished" };
    let records = [
        ("ok", counts.ok),
        ("skipped", counts.skipped),
        ("failed", counts.failed),
    ];
    super::metrics::run_finished(pipeline, result, &records, elapsed);
}

/// says (`-`: standard output); returns the rendered value (what `etl serve` answers).
pub(super) fn write_rendered_journal(
    template: &crate::expr::Template,
    ctx: &RunCtx,
    summary: &serde_json::Value,
    opts: &RunOptions,
    to_stdout: bool,
) -> Result<Option<serde_json::Value>, String> {
    let value = render_journal(template, ctx, summary)?;
    let rendered = redact(&serde_json::to_string_pretty(&value).unwrap_or_default());
    match (&opts.journal, to_stdout) {
        (_, true) => println!("{rendered}"),
        (Some(path), false) => std::fs::write(path, format!("{rendered}\n"))
            .map_err(|e| format!("cannot write journal {}: {e}", path.display()))?,
        (None, false) => {}
    }
    Ok(serde_json::from_str(&rendered).ok())
}

/// The run's summary in the logs (at `info`), for operators who read logs rather than stdout.
pub(super) fn log_summary(counts: &Counts, aborted: Option<&Fatal>, elapsed: std::time::Duration) {
    let elapsed_ms = elapsed.as_millis() as u64;
    let (ok, skipped, failed) = (counts.ok, counts.skipped, counts.failed);
    match aborted {
        None => tracing::info!(
            status = "finished",
            ok,
            skipped,
            failed,
            elapsed_ms,
            "run finished"
        ),
        Some(fatal) => tracing::info!(
            status = "aborted",
            ok,
            skipped,
            failed,
            elapsed_ms,
            error = %fatal,
            "run finished"
        ),
    }
}

/// The last line a run prints: `name: finished in 1.2s: 3 records: 3 ok, ...` (and the error).
pub(super) fn headline(
    name: &str,
    counts: &Counts,
    aborted: Option<&Fatal>,
    elapsed: std::time::Duration,
) -> String {
    format!(
        "{}: {} in {:.1}s: {} records: {}{}",
        name,
        if aborted.is_some() {
            "ABORTED"
        } else {
            "finished"
        },
        elapsed.as_secs_f64(),
        counts.total(),
        counts,
        aborted
            .map(|f| format!("\n  error: {}", redact(&f.to_string())))
            .unwrap_or_default()
    )
}

/// The pipeline's own journal shape (e.g. seed 003's `{"success": ..., "journal": {...}}`).
fn render_journal(
    template: &crate::expr::Template,
    ctx: &RunCtx,
    summary: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let aborted = summary["status"] == "aborted";
    let scope = minijinja::context! {
        success => !aborted,
        status => summary["status"].as_str().unwrap_or_default(),
        error => summary["error"].as_str(),
        counts => minijinja::value::Value::from(minijinja::value::Serde(&summary["counts"])),
        counters => minijinja::value::Value::from(minijinja::value::Serde(&summary["counters"])),
        log => minijinja::value::Value::from(minijinja::value::Serde(&summary["log"])),
        settings => ctx.settings_value.clone(),
        run => ctx.run_value.clone(),
    };
    template
        .eval(&scope)
        .map_err(|e| format!("journal template: {e}"))
}
